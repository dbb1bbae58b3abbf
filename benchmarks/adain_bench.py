"""The ``adain`` section of ``run.py``: AdaIN against TransformerNet, multi-style against single-style.

Two speed targets of the course, measured on the device at hand, batch 1, inference mode:

* AdaIN stylisation (``nstlib.stylize_adain``, any style) at 512x512 at least as fast per image as
  ``TransformerNet`` (one style) on the same device;
* a multi-style network (``TransformerNet(num_styles=N)``, Dumoulin et al.) no slower than a
  single-style one.

Every option stylises the same photo (the Golden Gate sample when present, else its synthetic
stand-in) resized to each size; AdaIN's style image is the Starry Night stand-in at the same size.
All options live in one process: each is warmed up twice at every size, then ``repeats`` rounds run
every option once per size in turn (a busy machine slows them alike; each round starts with the next
option, so none always runs first) and the median is reported, with its ratio to ``TransformerNet``
float32 (``backend="torch"``) of the same run.

The multiply-adds per pixel of each option are counted, not derived by hand: a forward hook on every
``nn.Conv2d`` adds ``output elements x in_channels / groups x kernel height x kernel width`` during one
float32 call, divided by the content's pixels (for ``backend="auto"`` and bfloat16 rows: their
float32 twin, the same network; the rewritten CPU network of ``backend="auto"`` computes the same
function with its own arrangement of the sums). Weights are seeded random (timings do not depend on
them): He-normal for AdaIN's encoder and decoder, PyTorch's initialisation for TransformerNet.
"""

from __future__ import annotations

import statistics
import time
import warnings

import torch
import torch.nn.functional as F
from torch import nn

ADAIN_OPTIONS = ("transformer-fp32", "transformer-auto", "adain", "adain-cached", "adain-cached-bf16")
NUM_STYLES = (1, 4, 16)
SIZES = ("512x512", "512x384")  # width x height; 512x384 is the 4:3 photo's own shape
TARGET_SIZE = "512x512"
MULTI_TOLERANCE = 0.05
"""A multi-style option counts as "no slower" up to this fraction over TransformerNet(): the spread of
repeated timings on a quiet machine (a busy one spreads more; the ratios are printed either way)."""


class Skip(Exception):
    """An option that cannot run here (no native bfloat16); the reason is reported."""


def options(num_styles=NUM_STYLES) -> list[str]:
    """Every option, in table order: the references, AdaIN, then the multi-style networks."""
    names = list(ADAIN_OPTIONS)
    names += [f"multi-{n}" for n in num_styles] + [f"multi-{n}-blend" for n in num_styles if n >= 2]
    largest = max(num_styles)
    return names + [f"multi-{largest}-auto", f"multi-{largest}-extracted-auto"]


def describe(option: str) -> str:
    fixed = {
        "transformer-fp32": "`TransformerNet()`, `stylize_image(net, x, backend=\"torch\")`: float32 (the reference)",
        "transformer-auto": "`TransformerNet()`, `stylize_image(net, x)`: `backend=\"auto\"`, the default",
        "adain": "AdaIN, `stylize_adain(model, x, style)`: the style encoded at every call",
        "adain-cached": "AdaIN, `stylize_adain(model, x, encode_style(model, style))`: the style encoded once",
        "adain-cached-bf16": "AdaIN, style encoded once, under `torch.autocast(..., torch.bfloat16)`",
    }
    if option in fixed:
        return fixed[option]
    n = int(option.split("-")[1])
    if option.endswith("-extracted-auto"):
        return f"`extract_style(TransformerNet(num_styles={n}), {n - 1})` then `stylize_image` with `backend=\"auto\"`"
    if option.endswith("-auto"):
        return f"`TransformerNet(num_styles={n})`, `stylize_image(net, x, style={n - 1})`, default backend"
    if option.endswith("-blend"):
        return f"`TransformerNet(num_styles={n})`, `backend=\"torch\"`, a blend of two styles (0.5, 0.5)"
    return f"`TransformerNet(num_styles={n})`, `backend=\"torch\"`, `style={n - 1}`"


def parse_size(text: str) -> tuple[int, int]:
    """``"512x384"`` (width x height) or ``"256"`` (square) as ``(height, width)``."""
    try:
        width, _, height = str(text).lower().partition("x")
        shape = (int(height or width), int(width))
    except ValueError:
        raise SystemExit(f"--adain-sizes: {text!r} is not WIDTHxHEIGHT (e.g. 512x384) or one number") from None
    if min(shape) < 16:
        raise SystemExit(f"--adain-sizes: {text!r} is too small: both networks need at least 16 px on each side")
    return shape


# --------------------------------------------------------------------------- inputs and networks


def inputs(source: str, shapes: dict[str, tuple[int, int]]) -> tuple[dict, dict]:
    """Per size: the photo (``source``: a file, or "standin") and the style stand-in, ``[1, 3, H, W]`` in [0, 1]."""
    from nstlib.data.samples import standin
    from nstlib.images import load_image

    def exact(image: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
        if tuple(image.shape[-2:]) == shape:
            return image
        return F.interpolate(image, size=shape, mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)

    contents, styles = {}, {}
    for key, shape in shapes.items():
        photo = load_image(standin("golden_gate", max(shape)) if source == "standin" else source, max(shape))
        contents[key] = exact(photo, shape)
        styles[key] = exact(load_image(standin("starry_night", max(shape)), max(shape)), shape)
    return contents, styles


def _he_normal(module: nn.Module, seed: int) -> nn.Module:
    """Every convolution N(0, sqrt(2 / fan_in)), biases 0: activations neither vanish nor blow up."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for conv in (m for m in module.modules() if isinstance(m, nn.Conv2d)):
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * (2.0 / conv.weight[0].numel()) ** 0.5)
            conv.bias.zero_()
    return module


def networks(device: torch.device, num_styles) -> dict:
    """``{"single": TransformerNet(), "adain": AdaINModel, N: TransformerNet(num_styles=N)}``, seeded, eval mode."""
    from nstlib.adain_model import AdaINModel
    from nstlib.transform_net import TransformerNet

    torch.manual_seed(0)
    nets = {"single": TransformerNet(), "adain": _he_normal(AdaINModel(), 1)}
    for n in num_styles:
        torch.manual_seed(0)
        nets[n] = TransformerNet(num_styles=n)
    return {key: net.to(device).eval() for key, net in nets.items()}


def _bfloat16_here(device: torch.device) -> bool:
    from nstlib.fast import native_bfloat16

    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and native_bfloat16()


def build(option: str, nets: dict, styles: dict, device: torch.device):
    """``run(size_key, x)``: the option's stylisation of ``x`` (a ``[1, 3, H, W]`` CPU image in [0, 1])."""
    from nstlib.adain_model import encode_style, stylize_adain
    from nstlib.fast import stylize_image
    from nstlib.multistyle import extract_style

    single, adain = nets["single"], nets["adain"]
    if option == "transformer-fp32":
        return lambda key, x: stylize_image(single, x, backend="torch")
    if option == "transformer-auto":
        return lambda key, x: stylize_image(single, x)
    if option == "adain":
        return lambda key, x: stylize_adain(adain, x, styles[key])
    if option == "adain-cached":
        encoded = {key: encode_style(adain, style) for key, style in styles.items()}
        return lambda key, x: stylize_adain(adain, x, encoded[key])
    if option == "adain-cached-bf16":
        if not _bfloat16_here(device):
            raise Skip(f"no native bfloat16 on this {device.type} (CPU: avx512_bf16 / amx_bf16)")
        with torch.autocast(device.type, dtype=torch.bfloat16):
            encoded = {key: encode_style(adain, style) for key, style in styles.items()}

        def run(key, x):
            with torch.autocast(device.type, dtype=torch.bfloat16):
                return stylize_adain(adain, x, encoded[key])

        return run
    n = int(option.split("-")[1])
    net = nets[n]
    if option.endswith("-extracted-auto"):
        extracted = extract_style(net, n - 1).eval()
        return lambda key, x: stylize_image(extracted, x)
    if option.endswith("-auto"):
        return lambda key, x: stylize_image(net, x, style=n - 1)
    if option.endswith("-blend"):
        weights = torch.zeros(n)
        weights[:2] = 0.5
        return lambda key, x: stylize_image(net, x, style=weights, backend="torch")
    return lambda key, x: stylize_image(net, x, style=n - 1, backend="torch")


def float32_twin(option: str) -> str:
    """The option whose float32 PyTorch run counts ``option``'s multiply-adds: the same network, computed
    by ``nn.Conv2d`` modules the hooks see (``backend="auto"``'s rewritten network and autocast are not)."""
    if option == "transformer-auto":
        return "transformer-fp32"
    if option == "adain-cached-bf16":
        return "adain-cached"
    if option.startswith("multi-") and option.endswith("-auto"):
        return "multi-" + option.split("-")[1]
    return option


def count_macs(modules, call) -> int:
    """Multiply-adds of every ``nn.Conv2d`` in ``modules`` during ``call()``, counted by forward hooks."""
    total = [0]

    def hook(conv, args, out):
        total[0] += out.numel() * (conv.in_channels // conv.groups) * conv.kernel_size[0] * conv.kernel_size[1]

    handles = [m.register_forward_hook(hook) for module in modules for m in module.modules() if isinstance(m, nn.Conv2d)]
    try:
        call()
    finally:
        for handle in handles:
            handle.remove()
    return total[0]


def backend_ran(option: str, shape: tuple[int, int], device: torch.device) -> str:
    """What runs: the backend ``"auto"`` picks for this image, or the precision."""
    from nstlib.fast import _choose

    if option == "adain-cached-bf16":
        return "bfloat16 autocast"
    if option == "transformer-auto" or option.endswith("-auto"):  # with style=, "auto" skips "onnx"
        style = 0 if option.startswith("multi-") and not option.endswith("-extracted-auto") else None
        return _choose("auto", device, pixels=shape[0] * shape[1], torch_options=False, style=style)
    return "torch"


# --------------------------------------------------------------------------- the measurement


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def warm(option_names: list[str], source: str, sizes: list[str], repeats: int, threads: int | None,
         device: str | None, num_styles=NUM_STYLES) -> dict:
    """Median seconds per image of every option at every size, interleaved round by round; MACs per pixel."""
    dev = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if threads:
        torch.set_num_threads(threads)
    shapes = {key: parse_size(key) for key in sizes}
    contents, styles = inputs(source, shapes)
    nets = networks(dev, num_styles)
    built, skipped = {}, {}
    for option in option_names:
        try:
            built[option] = build(option, nets, styles, dev)
        except Skip as why:
            skipped[option] = str(why)
    fallbacks = {}
    with torch.no_grad():  # warm-up (and each backend's one-off preparation) at every size
        for option, run in built.items():
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                for key in sizes:
                    run(key, contents[key])
                    run(key, contents[key])
            fallbacks.update({option: str(w.message) for w in caught if "could not be prepared" in str(w.message)})
        macs = {option: {key: count_macs(list(nets.values()), lambda: built[float32_twin(option)](
                    key, contents[key])) / (shapes[key][0] * shapes[key][1]) for key in sizes}
                for option in built if float32_twin(option) in built}
    times = {option: {key: [] for key in sizes} for option in built}
    names = list(built)
    with torch.inference_mode():
        for round_ in range(repeats):
            turn = names[round_ % len(names):] + names[:round_ % len(names)]  # each round starts one further on
            for key in sizes:
                for option in turn:
                    run = built[option]
                    _sync(dev)
                    started = time.perf_counter()
                    run(key, contents[key])  # returns a CPU tensor: the device's work is done
                    times[option][key].append(time.perf_counter() - started)
    results = {option: {"seconds": {key: statistics.median(values) for key, values in times[option].items()},
                        "all_seconds": times[option], "macs_per_pixel": macs.get(option, {}),
                        "ran": {key: "torch" if option in fallbacks else backend_ran(option, shapes[key], dev)
                                for key in sizes}, **({"fallback": fallbacks[option]} if option in fallbacks else {})}
               for option in built}
    return {"results": results, "skipped": skipped, "shapes": {key: list(shape) for key, shape in shapes.items()},
            "repeats": repeats, "threads": torch.get_num_threads(), "device": str(dev), "photo": source}


# --------------------------------------------------------------------------- records, targets and the table


def merge(measured: dict, option_names: list[str]) -> list[dict]:
    """One record per option, in table order: timings, ratios to TransformerNet float32, MACs, or why skipped."""
    results = measured.get("results", {})
    base = results.get("transformer-fp32", {}).get("seconds", {})
    records = []
    for option in option_names:
        record = {"option": option, "description": describe(option)}
        if option in results:
            record.update(results[option])
            record["ratio_to_fp32"] = {k: v / base[k] for k, v in record["seconds"].items() if k in base}
        elif option in measured.get("skipped", {}):
            record["skipped"] = measured["skipped"][option]
        else:
            continue
        records.append(record)
    return records


def target_size(sizes: list[str]) -> str:
    """The size the targets are checked at: :data:`TARGET_SIZE` when measured, else the first."""
    return TARGET_SIZE if TARGET_SIZE in sizes else sizes[0]


def checks(records: list[dict], sizes: list[str]) -> dict[str, bool]:
    """The two targets at :func:`target_size`, from the records of one run."""
    key = target_size(sizes)
    seconds = {r["option"]: r["seconds"][key] for r in records if key in r.get("seconds", {})}
    out: dict[str, bool] = {}
    if "transformer-fp32" not in seconds:
        return out
    base = seconds["transformer-fp32"]
    for option, label in (("adain", "style encoded every call"), ("adain-cached", "style encoded once")):
        if option in seconds:
            out[f"AdaIN at {key}, {label}, at least as fast as TransformerNet float32"] = seconds[option] <= base
    if "adain-cached-bf16" in seconds and "transformer-auto" in seconds:
        out[f"AdaIN bfloat16 at {key}, style encoded once, at least as fast as TransformerNet with "
            "backend=\"auto\""] = seconds["adain-cached-bf16"] <= seconds["transformer-auto"]
    bound = 1 + MULTI_TOLERANCE
    for option, value in seconds.items():
        if not option.startswith("multi-"):
            continue
        n = option.split("-")[1]
        if option.endswith("-auto"):
            what = "extracted style" if "extracted" in option else "style index"
            reference = seconds.get("transformer-auto")
            if reference is not None:
                out[f"num_styles={n}, {what}, default backend, no slower than TransformerNet() default backend "
                    f"at {key} (<= {bound:.2f}x)"] = value <= bound * reference
            continue
        what = "blend of two styles" if option.endswith("-blend") else "style index"
        out[f"num_styles={n}, {what}, no slower than TransformerNet() at {key}, both float32 "
            f"(<= {bound:.2f}x)"] = value <= bound * base
    return out


def _f(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def markdown(records: list[dict], sizes: list[str]) -> str:
    """The records as a markdown table: MACs per pixel, then per size seconds per image and the ratio."""
    head = ["option", "MACs / pixel"]
    for key in sizes:
        head += [f"s/image {key}", "x TransformerNet fp32"]
    head += ["runs as"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in records:
        if "skipped" in r:
            lines.append(f"| {r['description']} | skipped: {r['skipped']} |" + " |" * (len(head) - 2))
            continue
        macs = r["macs_per_pixel"].get(sizes[0])
        cells = [r["description"], _f(None if macs is None else round(macs), ",d")]
        for key in sizes:
            cells += [_f(r["seconds"].get(key), ".3f"), _f(r["ratio_to_fp32"].get(key), ".2f")]
        cells.append(", ".join(sorted(set(r["ran"].values()))))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
