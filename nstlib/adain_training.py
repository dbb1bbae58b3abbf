"""Train the AdaIN decoder (Huang & Belongie 2017) on any folder of content images and any folder of styles.

For a batch of content images ``c`` and style images ``s`` (paired at random), the frozen encoder
``f`` (:class:`~nstlib.adain_model.AdaINModel`, to ``relu4_1``) and its layers ``phi_1 .. phi_4``
(``relu1_1, relu2_1, relu3_1, relu4_1``)::

    t   = AdaIN(f(c), f(s))                                   the target features
    L_c = MSE(f(g(t)), t)                                     the decoded image must re-encode to t
    L_s = sum_i MSE(mu(phi_i(g(t))), mu(phi_i(s))) + MSE(sigma(phi_i(g(t))), sigma(phi_i(s)))
    loss = content_weight * L_c + style_weight * L_s          (1 and 10 by default)

(``mu``, ``sigma``: :func:`~nstlib.adain_model.calc_mean_std`). Adam updates the decoder ``g`` alone;
its learning rate at step ``k`` (0-based) is ``lr / (1 + lr_decay * k)`` (1e-4 and 5e-5), as in
pytorch-AdaIN's ``train.py``, which imitates the original Torch code. Where that script takes a
random 256 px crop of each image resized to 512 x 512, the images here are resized (shorter side)
and centre-cropped to ``image_size`` squares, and the data order comes from private generators
seeded by ``(seed, stream, epoch)``: nothing random depends on the global state, so a run
resumes exactly (checkpoints like :func:`nstlib.train_transform_net`'s, :mod:`nstlib.checkpoints`).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from . import config
from .adain_model import MIN_SIZE, AdaINModel, adain, adain_decoder, calc_mean_std
from .checkpoints import (
    history_lists,
    history_tensors,
    latest_train_checkpoint,
    read_train_checkpoint,
    rng_states,
    set_rng_states,
    step_files,
    style_fingerprint,
    to_cpu,
    write_train_checkpoint,
)
from .config import get_device, set_seed
from .data import synthetic
from .data.adain_weights import ADAIN_CHECKPOINT_KIND, load_adain_encoder, save_adain_decoder
from .data.datasets import DATASETS, SyntheticDataset, center_crop, open_dataset, resize_shorter
from .perceptual import check_weight
from .plotting import plot_losses
from .training import TrainingDivergedError
from .validate import non_negative_int, positive_int

__all__ = ["AdaINTrainResult", "HISTORY_KEYS", "RESUME_MUST_MATCH", "StyleStandins", "adain_losses",
           "stream_indices", "train_adain_decoder"]

HISTORY_KEYS = ("step", "total", "content", "style", "seconds", "lr")
"""Keys of the loss history (``content`` and ``style`` unweighted; ``lr`` the step's learning rate)."""

RESUME_MUST_MATCH = ("content_dataset", "content_length", "style_dataset", "style_length", "image_size",
                     "batch_size", "content_weight", "style_weight", "lr_decay", "encoder_sha256", "seed")
"""Settings a resumed run must share with its checkpoint; ``lr`` may change (after a divergence)."""

CHECKPOINT_VERSION = 1


def adain_losses(model: AdaINModel, content: torch.Tensor, style: torch.Tensor) -> dict[str, torch.Tensor]:
    """``{"content": L_c, "style": L_s, "output": g(t)}`` for batches in [0, 1] (formulas in the module docstring)."""
    with torch.no_grad():
        style_features = model.encode_with_intermediate(style)
        target = adain(model.encode(content), style_features[-1])
    output = model.decode(target)
    output_features = model.encode_with_intermediate(output)
    content_loss = F.mse_loss(output_features[-1], target)
    style_loss = output.new_zeros(())
    for mine, theirs in zip(output_features, style_features):
        (mean_o, std_o), (mean_s, std_s) = calc_mean_std(mine), calc_mean_std(theirs)
        style_loss = style_loss + F.mse_loss(mean_o, mean_s) + F.mse_loss(std_o, std_s)
    return {"content": content_loss, "style": style_loss, "output": output}


# ---- data ---------------------------------------------------------------------------------------------------

class StyleStandins(Dataset):
    """``length`` deterministic painterly textures (:func:`nstlib.data.synthetic.style_standin`), ``[3, size, size]``."""

    def __init__(self, length: int = 16, size: int = 256):
        self.length, self.size = positive_int(length, "length"), positive_int(size, "size")

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> torch.Tensor:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} is out of range for {self.length} style stand-ins")
        image = synthetic.style_standin(f"adain-style-{index}", self.size, self.size)
        return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()


def _open_images(source: Any, size: int, kind: str) -> Dataset:
    """A folder / dataset name (``"synthetic"``: stand-ins), or a Dataset of ``[3, H, W]`` images in [0, 1]."""
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        standins = SyntheticDataset(64, size) if kind == "content" else StyleStandins(16, size)
        if name == "synthetic":
            return standins
        if config.quick_mode() and name not in DATASETS and not Path(name).expanduser().is_dir():
            config.announce()
            print(f"quick mode: {kind} folder {name!r} does not exist; using {len(standins)} synthetic stand-ins.")
            return standins
        return open_dataset(name, size)
    if hasattr(source, "__getitem__") and hasattr(source, "__len__"):
        return source
    raise ValueError(f"{kind} is a {type(source).__name__}: pass a folder of images, 'synthetic', or a torch "
                     "Dataset of [3, H, W] images in [0, 1]")


def stream_indices(length: int, seed: int, stream: int, start: int, count: int) -> list[int]:
    """Items ``start .. start + count - 1`` of an endless sequence of shuffled passes over ``length`` items.

    Pass ``e`` is ``torch.randperm(length)`` from a private generator seeded with
    ``(seed * 1_000_003 + e) * 2 + stream`` (stream 0: content, 1: style), so any stretch of the
    sequence is rebuilt from its position alone and a pass may straddle batches (any folder size works).
    """
    out, epoch, order = [], -1, None
    for position in range(start, start + count):
        if position // length != epoch:
            epoch = position // length
            generator = torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 2 + stream)
            order = torch.randperm(length, generator=generator)
        out.append(int(order[position % length]))
    return out


class _Batches:
    """Batch sampler of the steps ``first .. last - 1`` of one stream (a class, so workers can pickle it)."""

    def __init__(self, length: int, batch: int, seed: int, stream: int, first: int, last: int):
        self.args = (length, batch, seed, stream)
        self.first, self.last = first, last

    def __len__(self) -> int:
        return self.last - self.first

    def __iter__(self):
        length, batch, seed, stream = self.args
        for step in range(self.first, self.last):
            yield stream_indices(length, seed, stream, step * batch, batch)


class _Collate:
    """Dataset items to a ``[B, 3, size, size]`` batch: shorter side to ``size``, centre crop."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, items: list) -> torch.Tensor:
        images = []
        for item in items:
            item = item[0] if isinstance(item, (tuple, list)) and item else item
            if not isinstance(item, torch.Tensor) or item.dim() != 3 or item.shape[0] != 3:
                raise ValueError(f"a dataset item is {getattr(item, 'shape', type(item).__name__)}: items must be "
                                 "[3, H, W] float tensors in [0, 1] (nstlib.open_dataset makes such a dataset)")
            item = item.float() / 255 if item.dtype == torch.uint8 else item.float()
            images.append(center_crop(resize_shorter(item[None], self.size), self.size)[0])
        return torch.stack(images)


def _loader(data: Dataset, run: "_Run", stream: int, first: int) -> DataLoader:
    o = run.options
    sampler = _Batches(len(data), o["batch_size"], o["seed"], stream, first, run.total_steps)
    generator = torch.Generator().manual_seed(o["seed"] * 2 + stream)  # worker seeds: not the global RNG
    return DataLoader(data, batch_sampler=sampler, num_workers=o["num_workers"], collate_fn=_Collate(run.image_size),
                      generator=generator, pin_memory=run.device.type == "cuda")


# ---- the run ------------------------------------------------------------------------------------------------

@dataclass
class AdaINTrainResult:
    """What :func:`train_adain_decoder` returns: ``model`` (eval mode, training device), ``history``
    (lists per :data:`HISTORY_KEYS`), ``checkpoint_path`` (None without ``checkpoint_dir``), ``settings``."""

    model: AdaINModel
    history: dict[str, list[float]]
    checkpoint_path: Path | None = None
    settings: dict = field(default_factory=dict)

    @property
    def steps(self) -> int:
        """Optimiser steps done."""
        return len(self.history["total"])

    def save(self, path: str | os.PathLike) -> Path:
        """Save the decoder alone (:func:`nstlib.data.adain_weights.save_adain_decoder`): pytorch-AdaIN's layout."""
        return save_adain_decoder(self.model, path)

    def plot(self, *, log: bool = True, title: str | None = None, ax=None):
        """Loss curves (total, content, style) against the step (:func:`nstlib.plot_losses`)."""
        return plot_losses(self.history, keys=["total", "content", "style"], log=log, title=title, ax=ax)


@dataclass
class _Run:
    options: dict
    image_size: int
    total_steps: int
    device: torch.device
    content: Dataset
    style: Dataset
    settings: dict
    encoder: torch.nn.Sequential | None = None
    model: AdaINModel | None = None
    optimizer: torch.optim.Optimizer | None = None
    history: dict = field(default_factory=lambda: {key: [] for key in HISTORY_KEYS})
    step: int = 0
    last_path: Path | None = None
    seconds_before: float = 0.0
    started: float = 0.0

    def seconds(self) -> float:
        return self.seconds_before + time.perf_counter() - self.started


def train_adain_decoder(
    content,
    style,
    *,
    steps: int,
    batch_size: int = 8,
    image_size: int = 256,
    content_weight: float = 1.0,
    style_weight: float = 10.0,
    lr: float = 1e-4,
    lr_decay: float = 5e-5,
    encoder="pretrained",
    device=None,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 500,
    keep_checkpoints: int = 3,
    log_every: int = 10,
    callback: Callable[[int, dict], None] | None = None,
    resume: bool | str = False,
    seed: int = 0,
    num_workers: int = 0,
    progress: bool = True,
) -> AdaINTrainResult:
    """Train an AdaIN decoder for ``steps`` Adam steps; returns an :class:`AdaINTrainResult`.

    ``content``, ``style``: folders of images (any, searched recursively), dataset names of
    :func:`nstlib.open_dataset`, ``"synthetic"`` (stand-ins), or torch Datasets of ``[3, H, W]``
    images in [0, 1]; each step pairs ``batch_size`` content images with ``batch_size`` style images,
    all resized and centre-cropped to ``image_size``. Loss and learning-rate schedule: the module
    docstring. ``encoder``: "pretrained" (pytorch-AdaIN's ``vgg_normalised.pth``), "random" / None
    (seeded random weights, on purpose), or a path (:func:`nstlib.data.adain_weights.load_adain_encoder`).

    Checkpoints as :func:`nstlib.train_transform_net`'s: every ``checkpoint_every`` steps and at the
    end into ``checkpoint_dir`` (atomic; the newest ``keep_checkpoints`` kept, plus ``latest.pth``).
    ``resume=True`` continues exactly from the newest readable one (decoder, Adam, step, RNG states:
    N steps then a resumed run to 2N equal 2N at once), ``"auto"`` when one exists; ``steps`` is the
    *total*; the settings of :data:`RESUME_MUST_MATCH` must match, ``lr`` may change. Without
    ``resume`` a folder holding checkpoints is refused. A non-finite loss or weight raises
    :class:`~nstlib.TrainingDivergedError` naming the last good checkpoint; nothing bad is saved.
    ``callback(step, losses)`` runs every ``log_every`` steps and after the last. Quick mode caps
    ``steps`` and ``image_size`` and uses stand-ins for weights and folders that are not there.
    """
    options = dict(locals())
    _check(options)
    run = _set_up(options)
    _build(run, _find_checkpoint(options))
    if run.step < run.total_steps:
        _train(run)
    run.settings["seconds"] = run.history["seconds"][-1] if run.history["seconds"] else run.seconds_before
    return AdaINTrainResult(run.model.eval(), run.history, run.last_path, run.settings)


def _check(o: dict) -> None:
    """ValueErrors naming the argument, before anything slow."""
    for name in ("steps", "batch_size", "image_size", "checkpoint_every", "keep_checkpoints", "log_every"):
        o[name] = positive_int(o[name], name)
    if o["image_size"] < MIN_SIZE:
        raise ValueError(f"image_size={o['image_size']} is too small: AdaIN needs at least {MIN_SIZE} px")
    for name in ("content_weight", "style_weight", "lr", "lr_decay"):
        o[name] = check_weight(o[name], name)
    if o["lr"] == 0:
        raise ValueError("lr=0 must be greater than 0 (Adam's learning rate, 1e-4 by default)")
    if o["resume"] not in (False, True, "auto"):
        raise ValueError(f"resume={o['resume']!r} must be False, True or 'auto'")
    if o["resume"] and o["checkpoint_dir"] is None:
        raise ValueError(f"resume={o['resume']!r} needs checkpoint_dir= (the folder the checkpoints were written to)")
    o["seed"] = non_negative_int(o["seed"], "seed")
    o["num_workers"] = non_negative_int(o["num_workers"], "num_workers")
    if o["callback"] is not None and not callable(o["callback"]):
        raise ValueError(f"callback={o['callback']!r} must be a function callback(step, losses) or None")
    if o["checkpoint_dir"] is not None:
        o["checkpoint_dir"] = Path(o["checkpoint_dir"]).expanduser()
        if o["checkpoint_dir"].exists() and not o["checkpoint_dir"].is_dir():
            raise ValueError(f"checkpoint_dir={str(o['checkpoint_dir'])!r} is a file: pass a folder")


def _set_up(o: dict) -> _Run:
    """Quick mode's caps, the device, the data, the encoder's fingerprint and the settings."""
    size = config.cap_size(o["image_size"])
    try:
        device = get_device(None if o["device"] is None else str(o["device"]))
    except RuntimeError as error:
        raise ValueError(f"device={o['device']!r} is not a device: use 'cuda', 'mps', 'cpu' or None ({error})") from None
    content, style = _open_images(o["content"], size, "content"), _open_images(o["style"], size, "style")
    for name, data in (("content", content), ("style", style)):
        if len(data) == 0:
            raise ValueError(f"{name} holds no images")
    run = _Run(o, size, config.cap_steps(o["steps"]), device, content, style, {})
    encoder = load_adain_encoder(o["encoder"], progress=o["progress"])
    run.encoder = encoder
    run.settings = {
        "content_dataset": type(content).__name__, "content_length": len(content),
        "style_dataset": type(style).__name__, "style_length": len(style),
        "image_size": size, "batch_size": o["batch_size"], "content_weight": o["content_weight"],
        "style_weight": o["style_weight"], "lr": o["lr"], "lr_decay": o["lr_decay"],
        "encoder": str(o["encoder"]), "encoder_sha256": style_fingerprint(list(encoder.state_dict().values())),
        "seed": o["seed"], "steps": run.total_steps, "device": str(device),
        "checkpoint_dir": str(o["checkpoint_dir"]) if o["checkpoint_dir"] is not None else None,
        "checkpoint_every": o["checkpoint_every"], "keep_checkpoints": o["keep_checkpoints"],
        "num_workers": o["num_workers"], "quick": config.quick_mode(),
    }
    return run


def _read_checkpoint(path: Path) -> dict:
    return read_train_checkpoint(path, kind=ADAIN_CHECKPOINT_KIND, trainer="nstlib.train_adain_decoder",
                                 version=CHECKPOINT_VERSION)


def _find_checkpoint(o: dict) -> tuple[Path, dict] | None:
    """The newest readable checkpoint to resume from (:func:`nstlib.checkpoints.latest_train_checkpoint`:
    unreadable ones set aside with a warning), or None; refuses to start afresh over old checkpoints."""
    folder = o["checkpoint_dir"]
    if not o["resume"]:
        if folder is not None and step_files(folder):
            raise ValueError(f"checkpoint_dir={str(folder)!r} already holds checkpoints of a run: pass resume=True "
                             "to continue it, or choose another folder (or delete them) to start afresh")
        return None
    # the RuntimeWarning for an unreadable file points at the caller of train_adain_decoder
    found = latest_train_checkpoint(folder, read=_read_checkpoint, stacklevel=4, warn_latest=False)
    if found is None and o["resume"] is True:
        raise FileNotFoundError(f"resume=True but {folder} holds no readable checkpoint (step_*.pth or latest.pth): "
                                "start without resume=, or use resume='auto'")
    return found


def _build(run: _Run, checkpoint: tuple[Path, dict] | None) -> None:
    """The decoder (seeded at a fresh start, or the checkpoint's) and Adam; a resumed run restores the RNGs last."""
    o = run.options
    if checkpoint is None:
        set_seed(o["seed"])
    run.model = AdaINModel(run.encoder, adain_decoder()).to(run.device)
    run.optimizer = torch.optim.Adam(run.model.decoder.parameters(), lr=o["lr"])
    if checkpoint is not None:
        run.last_path, state = checkpoint
        saved = state.get("settings", {})
        differences = [f"{key}: checkpoint {saved.get(key)!r}, now {run.settings.get(key)!r}"
                       for key in RESUME_MUST_MATCH if saved.get(key) != run.settings.get(key)]
        if differences:
            raise ValueError(f"cannot resume from {run.last_path}: settings differ from the checkpoint's ("
                             + "; ".join(differences) + "). Use the checkpoint's settings, or a new checkpoint_dir")
        run.model.decoder.load_state_dict(state["decoder"])
        run.optimizer.load_state_dict(state["optimizer"])
        run.history = history_lists(state["history"], HISTORY_KEYS)
        run.step = int(state["step"])
        set_rng_states(state["rng"])
        if o["progress"]:
            print(f"Resuming from {run.last_path} (step {run.step} of {run.total_steps})")
    run.seconds_before = run.history["seconds"][-1] if run.history["seconds"] else 0.0
    run.started = time.perf_counter()


def _train(run: _Run) -> None:
    """One Adam step per batch pair from ``run.step`` to ``total_steps``; checkpoints, progress, callback."""
    o = run.options
    bar = config.progress_bar(total=run.total_steps, initial=run.step, desc="train-adain", unit="step", disable=not o["progress"])
    run.model.train()
    try:
        for content, style in zip(_loader(run.content, run, 0, run.step), _loader(run.style, run, 1, run.step)):
            run.step += 1
            losses = _train_step(run, content.to(run.device), style.to(run.device))
            bar.update(1)
            final = run.step == run.total_steps
            if run.step % o["checkpoint_every"] == 0 or final:
                _save_checkpoint(run)
            if run.step % o["log_every"] == 0 or final:
                bar.set_postfix(total=f"{losses['total']:.4g}", content=f"{losses['content']:.4g}",
                                style=f"{losses['style']:.4g}", refresh=False)
                if o["callback"] is not None:
                    o["callback"](run.step, losses)
    finally:
        bar.close()
        run.model.eval()


def _train_step(run: _Run, content: torch.Tensor, style: torch.Tensor) -> dict[str, float]:
    """Set the step's learning rate, compute the losses, stop on a non-finite one, backward, Adam step, record."""
    o = run.options
    lr = o["lr"] / (1.0 + o["lr_decay"] * (run.step - 1))
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    run.optimizer.zero_grad(set_to_none=True)
    parts = adain_losses(run.model, content, style)
    total = o["content_weight"] * parts["content"] + o["style_weight"] * parts["style"]
    values = {"total": float(total.detach()), "content": float(parts["content"].detach()),
              "style": float(parts["style"].detach())}
    bad = [key for key in ("content", "style", "total") if not math.isfinite(values[key])]
    if bad:
        raise _diverged(run, bad, values)
    total.backward()
    run.optimizer.step()
    values.update(seconds=run.seconds(), lr=lr)
    for key in HISTORY_KEYS:
        run.history[key].append(run.step if key == "step" else values[key])
    return values


def _save_checkpoint(run: _Run) -> None:
    """Check every decoder weight is finite (else TrainingDivergedError), then write the checkpoint atomically."""
    if not all(torch.isfinite(p).all() for p in run.model.decoder.parameters()):
        raise _diverged(run, ["decoder weights"], {"decoder weights": float("nan")})
    o = run.options
    if o["checkpoint_dir"] is None:
        return
    run.settings["seconds"] = run.seconds()
    payload = {
        "kind": ADAIN_CHECKPOINT_KIND, "version": CHECKPOINT_VERSION,
        "decoder": {k: v.detach().cpu().clone() for k, v in run.model.decoder.state_dict().items()},
        "optimizer": to_cpu(run.optimizer.state_dict()), "step": run.step, "rng": rng_states(),
        "history": history_tensors(run.history), "settings": dict(run.settings),
        "metadata": {"trainer": "nstlib.train_adain_decoder", "step": run.step},
    }
    run.last_path = write_train_checkpoint(o["checkpoint_dir"], run.step, payload, o["keep_checkpoints"])


def _diverged(run: _Run, names: list[str], values: dict[str, float]) -> TrainingDivergedError:
    o, last = run.options, run.last_path
    shown = ", ".join(f"{n}={values[n]}" for n in names)
    if last:
        advice = (f"the last good checkpoint is {last}. Resume from it with a lower lr: the same call with "
                  f"resume=True and lr={o['lr'] / 10:g} (now {o['lr']:g})")
    else:
        advice = f"no checkpoint was written yet. Try a lower lr (now {o['lr']:g}, e.g. {o['lr'] / 10:g})"
    return TrainingDivergedError(f"training diverged at step {run.step}: {shown} is not finite. Nothing of this "
                                 f"step was saved; {advice}", run.step, names, last,
                                 {k: list(v) for k, v in run.history.items()})
