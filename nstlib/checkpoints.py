"""Checkpoint formats: save and load a :class:`~nstlib.TransformerNet`, read other layouts.

* :func:`save_transform_net` writes ``{"format", "version", "config", "state_dict",
  "metadata"}`` atomically; :func:`load_transform_net` reads it back, and also reads a
  training checkpoint (``"config"`` + ``"model"``) and pytorch/examples' ``fast_neural_style``
  state dicts (renamed by :func:`convert_examples_state_dict`).
* Every file is read with ``torch.load(weights_only=True)``: a checkpoint holds only tensors,
  numbers, strings, lists and dicts, never pickled Python objects.

Training checkpoints (resume after a disconnect) are :mod:`nstlib.resume`.
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any, Iterable

import torch

from .fileio import atomic_write
from .transform_net import TransformerNet

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "CheckpointError",
    "check_plain",
    "convert_examples_state_dict",
    "examples_key_map",
    "load_transform_net",
    "save_transform_net",
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
    unknown = set(config) - {"upsample", "base", "output", "pixel_scale"}
    if unknown:
        raise CheckpointError(f"{source}: config has unknown keys {sorted(unknown)}; TransformerNet takes "
                              "upsample, base, output and pixel_scale (was it written by a newer nstlib?)")
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
