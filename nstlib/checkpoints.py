"""Checkpoint formats: save and load a :class:`~nstlib.TransformerNet`, read other layouts, resume training.

* :func:`save_transform_net` writes ``{"format", "version", "config", "state_dict",
  "metadata"}`` atomically; :func:`load_transform_net` reads it back, and also reads a
  training checkpoint (``"config"`` + ``"model"``) and pytorch/examples' ``fast_neural_style``
  state dicts (renamed by :func:`convert_examples_state_dict`).
* :func:`save_examples_format` (:func:`to_examples_state_dict`) goes the other way: it writes a
  network as a pytorch/examples state dict, in their names and their 0..255 pixel convention.
* Every file is read with ``torch.load(weights_only=True)``: a checkpoint holds only tensors,
  numbers, strings, lists and dicts, never pickled Python objects.

Training checkpoints, the files :func:`nstlib.train_transform_net` writes so that a run
survives a disconnect and resumes exactly, are the second half of this module. The folder
(``checkpoint_dir``)::

    step_000500.pth, step_001000.pth, ...   every `checkpoint_every` steps and at the end;
                                            only the newest `keep_checkpoints` are kept
    latest.pth                              a copy of the newest one
    samples/step_000500.png, ...            sample grids (written by the training loop)

Every file is written atomically (temporary file + :func:`os.replace`), so a disconnect never
leaves a half-written checkpoint behind. A training checkpoint (:func:`train_checkpoint`) is a
dict that loads with ``torch.load(path, weights_only=True)``::

    kind            "nstlib.train_checkpoint"      version   1
    config          TransformerNet config           model     its state dict (CPU tensors)
    optimizer       Adam's state dict               scaler    GradScaler's state dict ({} if unused)
    step            optimiser steps done            epoch     epochs completed before the current one
    batch_in_epoch  batches of the current epoch already used
    data_seed       the seed of the data order     rng       torch CPU/CUDA, Python and NumPy RNG states
    rng_ranks       (several processes only) each rank's RNG states, in rank order
    history         the loss history (float64 tensors)
    settings        every setting (see TrainResult.settings)
    metadata        {"trainer": ..., "step": ..., "settings": ...}

so :func:`load_transform_net` reads it directly (layout 2 there). Resuming restores the
weights, Adam's moments, the data position and every global RNG state
(:func:`restore_train_state`), after :func:`check_resume` has compared the settings that
change the result (:data:`RESUME_MUST_MATCH`). The learning rate is not among them: resuming a
run that diverged with a lower ``lr`` is the usual fix, and the restored Adam steps with it.
:func:`latest_train_checkpoint` resumes from the newest readable ``step_*.pth`` and, when none
can be read, from ``latest.pth``.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import random
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from .fileio import atomic_write
from .transform_net import TransformerNet

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "CheckpointError",
    "EXAMPLES_BASE",
    "LATEST",
    "RESUME_MUST_MATCH",
    "TRAIN_CHECKPOINT_KIND",
    "TRAIN_CHECKPOINT_VERSION",
    "check_plain",
    "check_resume",
    "convert_examples_state_dict",
    "examples_key_map",
    "history_lists",
    "history_tensors",
    "latest_train_checkpoint",
    "load_transform_net",
    "read_train_checkpoint",
    "restore_train_state",
    "rng_states",
    "save_examples_format",
    "save_transform_net",
    "set_rng_states",
    "step_files",
    "style_fingerprint",
    "to_cpu",
    "to_examples_state_dict",
    "train_checkpoint",
    "write_train_checkpoint",
]

CHECKPOINT_FORMAT = "nstlib.transform_net"
"""Value of the ``"format"`` key of a checkpoint written by :func:`save_transform_net`."""

CHECKPOINT_VERSION = 1
"""Version written by :func:`save_transform_net`; :func:`load_transform_net` reads versions <= this."""


class CheckpointError(ValueError):
    """A file that is not a usable TransformerNet checkpoint; the message names the file and the fix."""


_STALE = {"running_mean", "running_var", "num_batches_tracked"}
_NORM_RE = re.compile(r"^(in\d+|res\d+\.in\d+)$")


def examples_key_map(num_residual: int = 5) -> dict[str, str]:
    """Module names of pytorch/examples' network -> module names of ``TransformerNet(upsample="nearest")``.

    ``conv1.conv2d -> down.0.conv``, ``in1 -> down.0.norm`` (likewise 2, 3);
    ``res<i>.conv<j>.conv2d -> res.<i-1>.conv<j>.conv``, ``res<i>.in<j> -> res.<i-1>.conv<j>.norm``;
    ``deconv1.conv2d -> up.0.conv``, ``in4 -> up.0.norm``, ``deconv2.conv2d -> up.1.conv``,
    ``in5 -> up.1.norm``; ``deconv3.conv2d -> final.conv``. Each module has a ``weight``
    and a ``bias``.
    """
    names = {}
    for i in range(3):
        names[f"conv{i + 1}.conv2d"] = f"down.{i}.conv"
        names[f"in{i + 1}"] = f"down.{i}.norm"
    for i in range(num_residual):
        for j in (1, 2):
            names[f"res{i + 1}.conv{j}.conv2d"] = f"res.{i}.conv{j}.conv"
            names[f"res{i + 1}.in{j}"] = f"res.{i}.conv{j}.norm"
    for i in range(2):
        names[f"deconv{i + 1}.conv2d"] = f"up.{i}.conv"
        names[f"in{i + 4}"] = f"up.{i}.norm"
    names["deconv3.conv2d"] = "final.conv"
    return names


def convert_examples_state_dict(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Rename a pytorch/examples ``TransformerNet`` state dict for ``TransformerNet(upsample="nearest")``.

    Every ``<module>.<weight|bias>`` is renamed with :func:`examples_key_map`. The stale
    ``running_mean`` / ``running_var`` / ``num_batches_tracked`` entries that old PyTorch
    versions stored for the instance norms (``in1``, ``res1.in2``, ...) are dropped, as
    pytorch/examples' own ``neural_style.py`` does. The tensors are not copied.

    Raises ``ValueError`` listing the unexpected and the missing keys when ``state`` is
    not such a state dict.
    """
    if not isinstance(state, dict):
        raise ValueError(f"state is a {type(state).__name__}, expected a state dict (name -> tensor)")
    names = examples_key_map()
    out: dict[str, torch.Tensor] = {}
    unexpected = []
    for key, value in state.items():
        module, _, param = str(key).rpartition(".")
        if param in _STALE and _NORM_RE.match(module):
            continue
        if module in names and param in ("weight", "bias") and isinstance(value, torch.Tensor):
            out[f"{names[module]}.{param}"] = value
        else:
            unexpected.append(str(key))
    missing = [f"{old}.{param}" for old in names for param in ("weight", "bias")
               if f"{names[old]}.{param}" not in out]
    if unexpected or missing:
        parts = []
        if unexpected:
            parts.append(f"unexpected keys {sorted(unexpected)[:8]}" + (" ..." if len(unexpected) > 8 else ""))
        if missing:
            parts.append(f"missing keys {missing[:8]}" + (" ..." if len(missing) > 8 else ""))
        raise ValueError("it is not a pytorch/examples fast_neural_style state dict: " + "; ".join(parts))
    return out


EXAMPLES_BASE = 32
"""Width of pytorch/examples' ``fast_neural_style`` network (fixed in its class)."""


def to_examples_state_dict(net: TransformerNet, *, any_width: bool = False) -> dict[str, torch.Tensor]:
    """``net``'s weights as a state dict of pytorch/examples' ``fast_neural_style`` ``TransformerNet``.

    The reverse of :func:`convert_examples_state_dict`: names by :func:`examples_key_map`
    (``down.0.conv -> conv1.conv2d``, ``down.0.norm -> in1``, ...), and pixels in their 0..255
    convention. ``net`` computes ``y(x) = N(s x) / s`` on ``x`` in [0, 1] (``s`` its
    ``pixel_scale``: 1 when trained in this course, 255 for a converted pytorch/examples model);
    their network ``E`` gets ``X = 255 x`` and must return ``255 y``. With the first convolution
    ``(W_1, b_1)`` and the last ``(W_f, b_f)`` of ``N``::

        W_1' = W_1 * s / 255                     (so that W_1' X = W_1 (s x): the first layer sees s x)
        W_f' = W_f * 255 / s,  b_f' = b_f * 255 / s        (the last layer returns 255 / s * N)

    and every other tensor unchanged, which gives ``E(255 x) = 255 N(s x) / s = 255 y(x)``
    exactly (up to float rounding). (``b_1`` needs no change: ``b_1`` of the first layer is
    removed by the instance norm after it, which subtracts each channel's mean; for the same
    reason the scale of ``W_1`` matters only through the norm's ``eps``, but folding it keeps
    the two networks equal.) For ``s = 255`` the tensors are the same values, so a converted
    pytorch/examples model round-trips unchanged.

    Their network pads nothing: on images whose height and width are multiples of 4 its output
    equals ``255 y``; on other sizes ``net`` pads and crops (see :mod:`nstlib.transform_net`)
    and theirs changes the size.

    Only networks of their architecture map onto their class: ``upsample="nearest"``,
    ``output="none"``, one style, and ``base=32`` (other widths only with ``any_width=True``,
    for a copy of their class with that width). Others raise ``ValueError`` naming the setting.
    Returns new contiguous float32 CPU tensors.
    """
    if not isinstance(net, TransformerNet):
        raise TypeError(f"net must be a TransformerNet, got {type(net).__name__}")
    config = net.config
    problems = []
    if config["upsample"] != "nearest":
        problems.append(f"upsample={config['upsample']!r} (theirs is 'nearest': resize + 3x3 convolution)")
    if config["output"] != "none":
        problems.append(f"output={config['output']!r} (theirs ends with a linear layer: 'none')")
    if config.get("num_styles") is not None:
        problems.append(f"num_styles={config['num_styles']!r} (theirs has one style per network)")
    if config["base"] != EXAMPLES_BASE and not any_width:
        problems.append(f"base={config['base']} (theirs is {EXAMPLES_BASE}; pass any_width=True for a copy of their "
                        "class with another width)")
    if problems:
        raise ValueError("this TransformerNet does not map onto pytorch/examples' fast_neural_style network: "
                         + "; ".join(problems) + ". Export it to ONNX or save it with save_transform_net instead")
    names = {new: old for old, new in examples_key_map().items()}
    state = {k: v.detach().to("cpu", torch.float32) for k, v in net.state_dict().items()}
    unmapped = [k for k in state if k.rpartition(".")[0] not in names]
    if unmapped:
        raise ValueError(f"these weights have no counterpart in pytorch/examples' network: {unmapped[:8]}")
    scale = 255.0 / net.pixel_scale
    out = {}
    for key, value in state.items():
        module, _, param = key.rpartition(".")
        if module == "down.0.conv" and param == "weight":
            value = value / scale
        elif module == "final.conv":
            value = value * scale
        out[f"{names[module]}.{param}"] = value.clone().contiguous()
    return out


def save_examples_format(net: TransformerNet, path: str | os.PathLike, *, any_width: bool = False) -> Path:
    """Write :func:`to_examples_state_dict` of ``net`` to ``path`` (``torch.save``, atomically); returns the path.

    pytorch/examples loads it as it loads its own models::

        style_model = TransformerNet()
        style_model.load_state_dict(torch.load(path))     # then style_model(255 * x) for x in [0, 1]

    and :func:`load_transform_net` reads it back as ``TransformerNet(pixel_scale=255)``.
    """
    state = to_examples_state_dict(net, any_width=any_width)
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"path={str(path)!r} is a folder: pass the file to write, e.g. {path / 'style.pth'}")
    return atomic_write(path, lambda f: torch.save(state, f))


def check_plain(value: Any, where: str) -> None:
    """Raise TypeError unless ``value`` holds only tensors, numbers, strings, None, lists/tuples, str-keyed dicts."""
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            check_plain(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where} has a key {key!r} of type {type(key).__name__}: keys must be strings")
            check_plain(item, f"{where}[{key!r}]")
        return
    hint = " (convert it with str())" if isinstance(value, os.PathLike) else ""
    raise TypeError(f"{where} is a {type(value).__name__}{hint}: checkpoints hold only tensors, numbers, "
                    "strings, None, lists and dicts, so that torch.load(weights_only=True) can read them")


def save_transform_net(net: TransformerNet, path: str | os.PathLike, **metadata: Any) -> Path:
    """Write ``net`` to ``path`` atomically and return ``Path(path)``.

    The file is ``torch.save`` of the dict ``{"format": "nstlib.transform_net", "version": 1,
    "config": net.config, "state_dict": {name: CPU tensor}, "metadata": metadata}``. It holds
    only tensors, numbers, strings, lists and dicts (``metadata`` is checked: anything else
    raises ``TypeError``), so it loads with ``torch.load(path, weights_only=True)``. It is
    written to a temporary file in the same folder and moved onto ``path`` with
    :func:`os.replace`: ``path`` is either the old file or the complete new one.
    """
    if not isinstance(net, TransformerNet):
        raise TypeError(f"net must be a TransformerNet, got {type(net).__name__}")
    check_plain(metadata, "metadata")
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"path={str(path)!r} is a folder: pass the file to write, e.g. {path / 'model.pth'}")
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "config": net.config,
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()},
        "metadata": dict(metadata),
    }
    return atomic_write(path, lambda f: torch.save(payload, f))


_EXPECTED = (
    "a TransformerNet checkpoint: a file written by nstlib's save_transform_net, a training checkpoint "
    "dict with 'config' and 'model' (or 'state_dict'), or a state dict of pytorch/examples' "
    "fast_neural_style TransformerNet (keys conv1.conv2d.weight ...)"
)


def _strip_prefix(state: dict[str, Any]) -> dict[str, Any]:
    """Drop a ``module.`` (DataParallel) or ``_orig_mod.`` (torch.compile) prefix carried by every key."""
    for prefix in ("module.", "_orig_mod."):
        if state and all(isinstance(k, str) and k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _short(keys: Iterable[str], limit: int = 8) -> str:
    keys = sorted(keys)
    text = ", ".join(keys[:limit])
    return text + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def _build(config: Any, source: str) -> TransformerNet:
    if not isinstance(config, dict):
        raise CheckpointError(f"{source}: 'config' is a {type(config).__name__}, expected a dict like "
                              f"{TransformerNet().config}")
    unknown = set(config) - {"upsample", "base", "output", "pixel_scale", "num_styles"}
    if unknown:
        raise CheckpointError(f"{source}: config has unknown keys {sorted(unknown)}; TransformerNet takes "
                              "upsample, base, output, pixel_scale and num_styles (was it written by a newer "
                              "nstlib?)")
    try:
        return TransformerNet(**config)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{source}: config {config!r} does not describe a TransformerNet: {error}") from error


def _load_weights(net: TransformerNet, state: dict[str, Any], source: str) -> TransformerNet:
    state = _strip_prefix(state)
    expected = net.state_dict()
    missing = set(expected) - set(state)
    unexpected = set(state) - set(expected)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys: {_short(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_short(unexpected)}")
        raise CheckpointError(f"{source}: the weights do not match TransformerNet(**{net.config}) ("
                              + "; ".join(parts) + "). Is it a checkpoint of another model or of another "
                              "architecture (upsample / base)?")
    bad = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
           if not isinstance(state[k], torch.Tensor) or state[k].shape != v.shape]
    if bad:
        raise CheckpointError(f"{source}: tensor shapes do not match TransformerNet(**{net.config}) "
                              f"(file vs model): {_short(bad, 4)}")
    net.load_state_dict(state)
    return net


def _from_object(obj: Any, source: str) -> TransformerNet:
    """Build a TransformerNet from what ``torch.load`` returned (see :func:`load_transform_net`)."""
    if isinstance(obj, dict) and "format" in obj:
        if obj["format"] != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{source}: format {obj['format']!r} is not {CHECKPOINT_FORMAT!r}; expected {_EXPECTED}")
        version = obj.get("version")
        if not isinstance(version, int) or version > CHECKPOINT_VERSION or version < 1:
            raise CheckpointError(f"{source}: checkpoint version {version!r} is not supported (this nstlib reads "
                                  f"versions 1..{CHECKPOINT_VERSION}): upgrade nstlib")
        if "config" not in obj or "state_dict" not in obj:
            raise CheckpointError(f"{source}: the checkpoint lacks 'config' or 'state_dict' (truncated or "
                                  "hand-edited?): save it again with save_transform_net")
        net = _load_weights(_build(obj["config"], source), obj["state_dict"], source)
        metadata = obj.get("metadata") or {}
    elif isinstance(obj, dict) and "config" in obj and ("model" in obj or "state_dict" in obj):
        state = obj["model"] if "model" in obj else obj["state_dict"]
        if not isinstance(state, dict):
            raise CheckpointError(f"{source}: its 'model' / 'state_dict' is a {type(state).__name__}, expected "
                                  "a state dict (name -> tensor)")
        net = _load_weights(_build(obj["config"], source), state, source)
        metadata = obj.get("metadata") or {}
    elif _is_state_dict(obj) and "conv1.conv2d.weight" in _strip_prefix(obj):
        try:
            state = convert_examples_state_dict(_strip_prefix(obj))
        except ValueError as error:
            raise CheckpointError(f"{source}: looks like a pytorch/examples state dict but {error}") from error
        base = int(state["down.0.conv.weight"].shape[0])
        net = _load_weights(TransformerNet(upsample="nearest", base=base, pixel_scale=255.0), state, source)
        metadata = {"source": "pytorch/examples fast_neural_style"}
    elif _is_state_dict(obj) and "down.0.conv.weight" in _strip_prefix(obj):
        raise CheckpointError(f"{source} is a bare TransformerNet state dict without its config (upsample, "
                              "output, pixel_scale cannot all be read from the weights). Load it with "
                              "net = TransformerNet(...same arguments as in training...); "
                              "net.load_state_dict(torch.load(path, weights_only=True)), then save it with "
                              "save_transform_net(net, path), which stores the config too")
    else:
        if isinstance(obj, dict):
            what = f"a dict with keys {_short(map(str, obj))}"
        else:
            what = f"a {type(obj).__name__}"
        raise CheckpointError(f"{source} holds {what}; expected {_EXPECTED}")
    if not isinstance(metadata, dict):
        metadata = {"metadata": metadata}
    net.metadata = dict(metadata)
    return net.eval()


def load_transform_net(path: str | os.PathLike, map_location: Any = "cpu") -> TransformerNet:
    """Load a :class:`TransformerNet` from ``path`` (always ``torch.load(weights_only=True)``), in eval mode.

    Accepted layouts (a dict, checked in this order):

    1. ``{"format": "nstlib.transform_net", "version": 1, "config": ..., "state_dict": ...,
       "metadata": ...}`` written by :func:`save_transform_net`;
    2. a training checkpoint ``{"config": net.config, "model": state_dict, ...}`` (or
       ``"state_dict"`` instead of ``"model"``); other keys (optimiser, RNG states, step,
       ``"metadata"``) are ignored here;
    3. a raw state dict of pytorch/examples' ``fast_neural_style`` network
       (``conv1.conv2d.weight``, ...), converted by
       :func:`convert_examples_state_dict` into
       ``TransformerNet(upsample="nearest", pixel_scale=255)``, so it takes [0, 1] images.

    A ``module.`` or ``_orig_mod.`` prefix on every weight name (DataParallel, torch.compile)
    is removed. The checkpoint's ``metadata`` dict is kept as ``net.metadata``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: (a ``ValueError``) ``path`` is a folder, not a PyTorch file, truncated,
            holds pickled Python objects, or holds the weights of another model; the message
            names the file and what was expected.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file; expected {_EXPECTED}")
    if path.is_dir():
        inside = sorted(p.name for p in path.iterdir() if p.suffix in {".pth", ".pt", ".ckpt"})
        hint = f" (it contains {', '.join(inside[:5])}: pass one of those)" if inside else ""
        raise CheckpointError(f"{path} is a folder{hint}; expected a file holding {_EXPECTED}")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        if "weights only" in str(error).lower():
            raise CheckpointError(
                f"{path} holds pickled Python objects, which are not loaded for safety (weights_only=True); "
                f"expected {_EXPECTED}. If it is a whole model saved with torch.save(model) by a source you "
                "trust, re-save its state_dict or use save_transform_net") from error
        raise CheckpointError(f"{path} is not a readable PyTorch file ({error}); expected {_EXPECTED}. "
                              "If it was downloaded, the download may be incomplete: delete it and fetch it again") from error
    except Exception as error:
        raise CheckpointError(f"{path} is not a readable PyTorch file ({type(error).__name__}: {error}); "
                              f"expected {_EXPECTED}. It may be truncated (an interrupted download or copy) "
                              "or another kind of file: delete it and fetch or save it again") from error
    return _from_object(obj, str(path))


# --------------------------------------------------------------------------------------
# training checkpoints: write, find, read and resume (see the module docstring)

TRAIN_CHECKPOINT_KIND = "nstlib.train_checkpoint"
"""Value of the ``"kind"`` key of a training checkpoint (:func:`train_checkpoint`)."""

TRAIN_CHECKPOINT_VERSION = 1
"""Version written by :func:`train_checkpoint`; :func:`read_train_checkpoint` reads versions <= this."""

LATEST = "latest.pth"
"""A copy of the newest step checkpoint in a checkpoint folder."""

_STEP_FILE = re.compile(r"^step_(\d+)\.pth$")

RESUME_MUST_MATCH = (
    "style_sha256", "image_size", "style_size", "batch_size", "content_layers", "style_layers",
    "layer_weights", "content_weight", "style_weight", "tv_weight", "upsample", "weights",
    "seed", "dataset_length", "num_styles", "style_order",
)
"""Settings a resumed run must share with its checkpoint (the others, e.g. ``steps``, ``amp``,
``device``, ``checkpoint_every``, may change). ``lr`` may change too: after a divergence, resuming
from the last good checkpoint with a lower learning rate is the natural fix
(:func:`restore_train_state` sets it on the restored optimiser); the history's ``lr`` column
records the learning rate of every step. ``num_styles`` and ``style_order`` are set by
:func:`nstlib.multistyle.train_multistyle_net` only (absent, so None, for one-style runs)."""


def rng_states() -> dict[str, Any]:
    """Global RNG states (torch CPU and CUDA, Python, NumPy) as tensors, numbers and lists,
    so that ``torch.load(weights_only=True)`` can read them back."""
    version, internal, gauss = random.getstate()
    _, keys, pos, has_gauss, cached = np.random.get_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    return {
        "torch": torch.get_rng_state(),
        "cuda": list(cuda),
        "python": [version, list(internal), gauss],
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
    }


def set_rng_states(states: Mapping[str, Any]) -> None:
    """Restore the global RNG states :func:`rng_states` captured (CUDA only with as many GPUs as then)."""
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(list(states["cuda"]))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    n = states["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))


def to_cpu(value: Any) -> Any:
    """``value`` with every tensor copied to the CPU (so a checkpoint loads on machines without a GPU)."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, dict):
        return {key: to_cpu(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_cpu(item) for item in value)
    return value


def history_tensors(history: Mapping[str, list[float]]) -> dict[str, torch.Tensor]:
    """The loss history's lists as float64 tensors (compact, and readable with ``weights_only=True``)."""
    return {key: torch.tensor(values, dtype=torch.float64) for key, values in history.items()}


def history_lists(history: Mapping[str, torch.Tensor], keys: Sequence[str]) -> dict[str, list[float]]:
    """The inverse of :func:`history_tensors` for ``keys`` (those present); ``"step"`` as ints."""
    out = {key: [float(v) for v in history[key].tolist()] for key in keys if key in history}
    out["step"] = [int(v) for v in out.get("step", [])]
    return out


def style_fingerprint(images: Sequence[torch.Tensor]) -> str:
    """SHA-256 of the style images' shapes and float32 pixels (to recognise the style on resume)."""
    digest = hashlib.sha256()
    for image in images:
        array = image.detach().to("cpu", torch.float32).contiguous().numpy()
        digest.update(repr(array.shape).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def train_checkpoint(net: TransformerNet, optimizer: torch.optim.Optimizer, scaler: Any, *, step: int,
                     steps_per_epoch: int, seed: int, history: Mapping[str, list[float]],
                     settings: Mapping[str, Any], rng_ranks: Sequence[Mapping[str, Any]] | None = None) -> dict:
    """The training checkpoint after ``step`` optimiser steps (layout in the module docstring).

    Everything is copied to the CPU; the global RNG states are captured now. ``rng_ranks``: every
    rank's RNG states (:func:`rng_states` on each, in rank order) when several processes train
    together (:mod:`nstlib.distributed`); stored as ``"rng_ranks"``.
    """
    plain = dict(settings)
    extra = {} if rng_ranks is None else {"rng_ranks": list(rng_ranks)}
    return {**extra,
        "kind": TRAIN_CHECKPOINT_KIND,
        "version": TRAIN_CHECKPOINT_VERSION,
        "config": net.config,
        "model": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
        "optimizer": to_cpu(optimizer.state_dict()),
        "scaler": scaler.state_dict(),
        "step": step,
        "epoch": step // steps_per_epoch,
        "batch_in_epoch": step % steps_per_epoch,
        "data_seed": int(seed),
        "rng": rng_states(),
        "history": history_tensors(history),
        "settings": plain,
        "metadata": {"trainer": "nstlib.train_transform_net", "step": step, "settings": plain},
    }


def step_file(directory: Path, step: int) -> Path:
    """``directory/step_<step, 6 digits>.pth``."""
    return directory / f"step_{step:06d}.pth"


def step_files(directory: Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of every ``step_*.pth`` in ``directory``, oldest first."""
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _STEP_FILE.match(p.name)) and p.is_file()]
    return sorted(found)


def write_train_checkpoint(directory: Path, step: int, payload: dict, keep: int) -> Path:
    """Write ``step_<step>.pth`` and ``latest.pth`` atomically, then prune to the newest ``keep`` step files."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    path = atomic_write(step_file(directory, step), lambda f: f.write(data))
    atomic_write(directory / LATEST, lambda f: f.write(data))
    files = step_files(directory)
    for old_step, old in files[:-keep]:
        if old_step < step:  # never the file just written, which is the newest
            old.unlink(missing_ok=True)
    return path


def read_train_checkpoint(path: Path, *, kind: str = TRAIN_CHECKPOINT_KIND,
                          trainer: str = "nstlib.train_transform_net", version: int = TRAIN_CHECKPOINT_VERSION) -> dict:
    """A training checkpoint of ``trainer`` (its ``"kind"``; ``weights_only=True``); ValueError for another
    file or a version newer than ``version``."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("kind") != kind:
        raise ValueError(f"{path} is not a training checkpoint of {trainer}")
    if state.get("version", 0) > version:
        raise ValueError(f"{path} was written by a newer nstlib (version {state.get('version')}): upgrade nstlib")
    return state


def latest_train_checkpoint(directory: Path, *, read: Callable[[Path], dict] = read_train_checkpoint,
                            stacklevel: int = 2, warn_latest: bool = True) -> tuple[Path, dict] | None:
    """The newest readable checkpoint in ``directory`` as ``(path, state)``, or None.

    ``read(path)`` reads one file and raises for a file it does not accept (default
    :func:`read_train_checkpoint`: :func:`nstlib.train_transform_net`'s checkpoints;
    :func:`nstlib.train_adain_decoder` passes its own). The ``step_*.pth`` files are tried newest
    first; when none of them can be read, ``latest.pth`` (a copy of the newest one written) is. Each
    unreadable file (e.g. cut by a disconnect or a broken copy) is renamed to ``*.unreadable`` with a
    ``RuntimeWarning`` (``stacklevel`` as in :func:`warnings.warn`, counted from this function);
    resuming from ``latest.pth`` warns too when ``warn_latest``.
    """
    directory = Path(directory)
    candidates = [path for _, path in reversed(step_files(directory))]
    if (directory / LATEST).is_file():
        candidates.append(directory / LATEST)
    for path in candidates:
        try:
            state = read(path)
        except Exception as error:  # a truncated or foreign file: set it aside, fall back to the previous one
            aside = path.with_name(path.name + ".unreadable")
            os.replace(path, aside)
            warnings.warn(f"{path} cannot be read ({type(error).__name__}: {error}); renamed it to {aside.name} "
                          "and looking for an older readable checkpoint", RuntimeWarning, stacklevel=stacklevel)
            continue
        if path.name == LATEST and warn_latest:
            warnings.warn(f"no step_*.pth in {directory} could be read: resuming from {path} (step "
                          f"{state.get('step')})", RuntimeWarning, stacklevel=stacklevel)
        return path, state
    return None


def check_resume(saved: Mapping[str, Any], current: Mapping[str, Any], path: Path) -> None:
    """Raise ValueError listing every setting in :data:`RESUME_MUST_MATCH` that differs from the checkpoint."""
    differences = []
    for key in RESUME_MUST_MATCH:
        if saved.get(key) != current.get(key):
            if key == "style_sha256":
                differences.append("the style image differs (other file, size or style_size)")
            else:
                differences.append(f"{key}: checkpoint {saved.get(key)!r}, now {current.get(key)!r}")
    if differences:
        raise ValueError(f"cannot resume from {path}: settings differ from the checkpoint's ("
                         + "; ".join(differences) + "). Use the checkpoint's settings, or a new checkpoint_dir "
                         "to start a new run")


def restore_train_state(state: Mapping[str, Any], net: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        scaler: Any, history_keys: Sequence[str], *, lr: float | None = None, rank: int = 0,
                        world_size: int = 1) -> tuple[dict[str, list[float]], int]:
    """Load a training checkpoint into ``net``, ``optimizer`` and ``scaler`` and restore the global
    RNG states (last, so nothing built afterwards draws from them); returns ``(history, step)``.

    ``lr``: the learning rate to continue with (every parameter group; Adam's moments are kept),
    or None for the checkpoint's. ``rank`` of ``world_size`` processes restores its own RNG states
    when the checkpoint holds one per rank of as many (``"rng_ranks"``), else the ``"rng"`` of rank 0."""
    net.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if lr is not None:
        for group in optimizer.param_groups:
            group["lr"] = lr
    if scaler.is_enabled() and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    history = history_lists(state["history"], history_keys)
    step = int(state["step"])
    per_rank = state.get("rng_ranks")
    set_rng_states(per_rank[rank] if per_rank is not None and len(per_rank) == world_size else state["rng"])
    return history, step
