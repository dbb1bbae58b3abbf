"""Johnson, Alahi & Fei-Fei (2016): train a :class:`~nstlib.transform_net.TransformerNet` for one style.

Gatys et al. optimise the pixels of every image anew; Johnson et al. train a feed-forward network
``f`` once, so that stylising is a single forward pass. For a batch of content images ``x`` the
network's output ``y = f(x)`` is scored by the perceptual loss (:mod:`nstlib.perceptual`)::

    loss(x) = content_weight * sum_l w_l * MSE(F_l(y), F_l(x))          (content: the input itself)
            + style_weight   * sum_l w_l * ||gram(F_l(y)) - A_l||_F^2    (style: fixed Gram targets)
            + tv_weight      * TV(y)

averaged over the batch, and Adam updates the weights of ``f`` (VGG19 stays frozen).
:func:`train_transform_net` reads top to bottom as that algorithm, one small named step each:

1. check the arguments (:func:`_check_data_and_loss`, :func:`_check_run_controls`);
2. set up: quick mode's caps, the device, the data, the style images (:func:`_set_up`);
3. build the network, the loss and Adam, fresh or from a checkpoint (:func:`_find_checkpoint`,
   :func:`_build`);
4. for each batch (:func:`_train`): forward, perceptual loss, backward, Adam step
   (:func:`_train_step`); record the losses (:func:`_record`); then samples, checkpoint, progress
   and callback (:func:`_after_step`);
5. return a :class:`TrainResult`.

Around that loop it adds what a course needs: a progress bar, a loss history, atomic checkpoints
that survive a Colab disconnect and resume exactly (formats and resumption:
:mod:`nstlib.checkpoints`), sample images, a callback for live plots, mixed precision on GPUs and
a clear stop when the loss blows up.

Default loss weights
--------------------
``content_weight=1e5, style_weight=1e10, tv_weight=0`` are the defaults of pytorch/examples'
``fast_neural_style``, whose loss is term for term ours, so they need no conversion:

* input: it scales pixels 0..255 by 1/255 and applies the same ImageNet mean/std
  normalisation before torchvision's VGG, so its features are those of our [0, 1] images;
* Gram matrix ``F F^T / (C H W)``, as :func:`~nstlib.gram_matrix`;
* style term ``sum_l MSELoss(G_l, A_l) = sum_l (1/C_l^2) ||G_l - A_l||_F^2`` (batch mean):
  exactly our default style layer weights ``1/C^2``;
* content term: the feature MSE, our :func:`~nstlib.content_loss`; no TV term.

Cross-check with rrmina/fast-neural-style-pytorch, whose VGG19 outputs the seed's code
copies: the same Gram and MSE, but Caffe VGG weights fed BGR pixels 0..255 minus the mean
pixel (no division by the standard deviation), content weight 17 and style weight 50 (its
mosaic model; 5 to 80 for the others). Its network input is ``k = 255 * 0.226 = 57.6``
times ours; to first order (a ReLU network scales with its input) features scale by
``k``, a feature MSE by ``k^2`` and a Gram difference squared by ``k^4``, so in our units
content ``17 k^2 = 5.6e4`` and style ``50 k^4 = 5.5e8`` (``5.5e7 .. 8.8e8`` over its
models): content within a factor 2 of 1e5, style 11 to 180 times smaller than 1e10. The two
VGG weight sets were trained separately, so only the order of magnitude carries over; we
take pytorch/examples' exact values. Both projects use VGG16 with the content at relu2_2;
with other layers (the VGG19 defaults here) the balance shifts, so tune ``style_weight`` by
factors of 10 while watching the samples (larger: more style). The history's ``content``
and ``style`` columns are unweighted; multiply by the weights to compare their shares.

Mixed precision
---------------
On CUDA ``amp=True`` picks bfloat16 on GPUs of compute capability 8.0 or newer (A100, L4, H100)
and float16 on older ones (Colab's T4); ``"float16"`` / ``"bfloat16"`` force one; ``False`` trains
in float32. float16 steps go through a ``GradScaler`` (loss scaling against gradient underflow);
bfloat16 has float32's exponent range and needs none. On the CPU only ``amp="bfloat16"`` changes
anything: bfloat16 autocast where the CPU computes it natively (AVX512-BF16, AMX, Arm BF16), else a
warning and float32 (:mod:`nstlib.precision`); ``True`` stays float32 there, as on MPS. The Gram
matrices and the losses are always float32.
"""

from __future__ import annotations

import math
import os
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from . import config, distributed, precision
from .checkpoints import (
    TRAIN_CHECKPOINT_KIND,
    check_resume,
    latest_train_checkpoint,
    restore_train_state,
    rng_states,
    save_transform_net,
    step_file,
    step_files,
    style_fingerprint,
    train_checkpoint,
    write_train_checkpoint,
)
from .config import get_device, set_seed
from .fast import stylize_images
from .images import load_image, save_image
from .layers import downsampling, resolve_layers
from .perceptual import PerceptualLoss, check_weight
from .plotting import plot_losses
from .transform_net import MIN_SIZE, UPSAMPLE_MODES, TransformerNet
from .validate import non_negative_int, positive_int

__all__ = [
    "CHECKPOINT_KIND",
    "DEFAULT_CONTENT_LAYERS",
    "DEFAULT_STYLE_LAYERS",
    "HISTORY_KEYS",
    "TrainResult",
    "TrainingDivergedError",
    "epoch_order",
    "train_transform_net",
]

DEFAULT_CONTENT_LAYERS = ("relu4_2",)
"""Content layer of the seed's VGG19 loss network."""

DEFAULT_STYLE_LAYERS = ("relu1_2", "relu2_2", "relu3_4", "relu4_2", "relu5_4")
"""Style layers: the seed slides' VGG19 outputs (features indices 3, 8, 17, 22, 35)."""

DEFAULT_CONTENT_WEIGHT = 1e5
DEFAULT_STYLE_WEIGHT = 1e10
DEFAULT_TV_WEIGHT = 0.0

HISTORY_KEYS = ("step", "total", "content", "style", "tv", "seconds", "lr")
"""Keys of the loss history: one value per optimiser step."""

CHECKPOINT_KIND = TRAIN_CHECKPOINT_KIND
"""The ``"kind"`` of the checkpoints :func:`train_transform_net` writes (:mod:`nstlib.checkpoints`)."""

SAMPLES = "samples"
"""Sub-folder of ``checkpoint_dir`` for the sample grids."""

Callback = Callable[[int, dict, "list[torch.Tensor] | None"], None]


class TrainingDivergedError(FloatingPointError):
    """A loss (or a weight) became NaN or infinite; training stopped without saving that state.

    Attributes: ``step`` (the failing step), ``losses`` (names of the non-finite losses),
    ``checkpoint_path`` (the last good checkpoint, or None), ``history`` (the steps before).
    """

    def __init__(self, message: str, step: int, losses: list[str], checkpoint_path: Path | None,
                 history: dict[str, list[float]]):
        super().__init__(message)
        self.step = step
        self.losses = losses
        self.checkpoint_path = checkpoint_path
        self.history = history


@dataclass
class TrainResult:
    """What :func:`train_transform_net` returns.

    ``net``: the trained :class:`TransformerNet` in eval mode, on the training device.
    ``history``: per-step lists (:data:`HISTORY_KEYS`): ``step``; ``total`` (weighted sum);
    ``content``, ``style``, ``tv`` (unweighted parts, as :class:`~nstlib.PerceptualLoss` returns
    them); ``seconds`` (training time so far, across resumptions); ``lr``.
    ``checkpoint_path``: the final checkpoint file (None without ``checkpoint_dir``).
    ``settings``: every setting used, JSON-serialisable.
    """

    net: TransformerNet
    history: dict[str, list[float]]
    checkpoint_path: Path | None = None
    settings: dict = field(default_factory=dict)
    rank: int = 0
    """This process's rank when several trained together (:mod:`nstlib.distributed`); 0 for one process."""

    @property
    def steps(self) -> int:
        """Optimiser steps done."""
        return len(self.history["total"])

    def final_losses(self) -> dict[str, float]:
        """The losses of the last step."""
        return {key: self.history[key][-1] for key in ("total", "content", "style", "tv") if self.history[key]}

    def save(self, path: str | os.PathLike) -> Path:
        """Save the network alone with :func:`~nstlib.checkpoints.save_transform_net` (settings as metadata).

        When several processes trained together, rank 0 writes the file and the others (holding the
        same weights) only return the path."""
        if self.rank != 0:
            return Path(path)
        return save_transform_net(self.net, path, trainer="nstlib.train_transform_net", step=self.steps,
                                  settings=self.settings)

    def plot(self, *, log: bool = True, title: str | None = None, ax=None):
        """Loss curves of the history (:func:`nstlib.plot_losses`): total, content, style and, unless
        all zero (``tv_weight=0``, nothing to draw on a log axis), tv against the step."""
        history = self.history
        keys = [key for key in ("total", "content", "style", "tv") if key in history and len(history[key])]
        if "tv" in keys and not any(float(v) > 0 for v in history["tv"]):
            keys.remove("tv")
        return plot_losses(history, keys=keys, log=log, title=title, ax=ax)


# --------------------------------------------------------------------------------------
# training


def train_transform_net(
    style,
    dataset,
    *,
    steps: int | None = None,
    epochs: int | None = None,
    batch_size: int = 4,
    image_size: int = 256,
    content_weight: float = DEFAULT_CONTENT_WEIGHT,
    style_weight: float = DEFAULT_STYLE_WEIGHT,
    tv_weight: float = DEFAULT_TV_WEIGHT,
    content_layers: Sequence[str] = DEFAULT_CONTENT_LAYERS,
    style_layers: Sequence[str] = DEFAULT_STYLE_LAYERS,
    layer_weights: Mapping | None = None,
    lr: float = 1e-3,
    upsample: str = "nearest",
    weights: str | None = "imagenet",
    style_size: int | None = None,
    device=None,
    amp: bool | str = True,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 500,
    keep_checkpoints: int = 3,
    sample_every: int = 500,
    sample_images=None,
    callback: Callback | None = None,
    log_every: int = 10,
    resume: bool | str = False,
    seed: int = 0,
    num_workers: int = 0,
    progress: bool = True,
) -> TrainResult:
    """Train a :class:`TransformerNet` to paint ``style`` (Johnson et al. 2016); returns a :class:`TrainResult`.

    Data: ``style`` is a style image, anything :func:`~nstlib.load_image` takes (path, URL, sample
    name, tensor), or a list of them (their Gram targets are averaged), loaded with longer side
    ``style_size`` (default ``image_size``, so brush strokes keep their size relative to the
    crops). ``dataset``: a torch ``Dataset`` of ``[3, H, W]`` float images in [0, 1] (or tuples
    starting with one), or a folder / name for :func:`nstlib.open_dataset` ("coco-val2017",
    "labelme", "synthetic"); items are resized (shorter side) and centre-cropped to ``image_size``
    squares, ``batch_size`` at a time. Give exactly one of ``steps`` (optimiser steps) and
    ``epochs`` (``len(dataset) // batch_size`` steps each, the incomplete last batch dropped;
    epoch ``e`` visits the data in :func:`epoch_order` ``(len, seed, e)``).

    Loss (:mod:`nstlib.perceptual`): ``content_layers``, ``style_layers`` (either naming scheme);
    ``layer_weights`` (default 1 for content, ``1/C^2`` for style); ``content_weight``,
    ``style_weight``, ``tv_weight`` (pytorch/examples' defaults: why, and how to tune them, in the
    module docstring); ``weights`` of VGG19 ("imagenet", or None for seeded random weights).
    Optimisation: Adam with ``lr``; ``upsample`` ("nearest" or "transpose"); ``seed`` (global RNGs
    via :func:`nstlib.set_seed` at a fresh start, initial weights, data order); ``device`` (None:
    :func:`nstlib.get_device`); ``num_workers`` (DataLoader processes); ``amp`` (mixed precision: on
    CUDA True picks bfloat16 or float16 by GPU, "float16" / "bfloat16" force one, False is float32;
    on a CPU "bfloat16" where native; see the module docstring).

    Checkpoints (``checkpoint_dir``, e.g. on Google Drive; :mod:`nstlib.checkpoints`): every
    ``checkpoint_every`` steps and at the end, the newest ``keep_checkpoints`` kept.
    ``resume=True`` continues exactly from the newest readable one (weights, Adam, data position,
    RNG states: N steps then a resumed run to 2N equal 2N at once, on the CPU with
    ``num_workers=0``), so resume with the same call: ``steps``/``epochs`` is the *total*. The
    settings in :data:`nstlib.checkpoints.RESUME_MUST_MATCH` must match the checkpoint's; ``lr``
    may differ (after a divergence: resume with a lower one). When no ``step_*.pth`` can be
    read, ``latest.pth`` is used.
    ``resume="auto"`` resumes when a checkpoint exists; without ``resume`` a folder that holds
    checkpoints is refused (nothing is overwritten).

    Monitoring: a progress bar (``progress``) with the mean losses of the last ``log_every`` steps.
    ``sample_images`` (loaded at ``image_size``) are stylised every ``sample_every`` steps and at
    the end, saved as ``samples/step_XXXXXX.png`` with ``checkpoint_dir``. ``callback(step, losses,
    samples)`` runs every ``log_every`` steps and after the last: ``losses`` holds that step's
    floats (``total content style tv seconds lr``), ``samples`` the stylised ``[1, 3, h, w]``
    images when that step made them, else None. A NaN or infinite loss (or weight) raises
    :class:`TrainingDivergedError` naming the step, the loss and the last good checkpoint; a bad
    state is never saved. Quick mode caps ``steps``, ``image_size`` and ``style_size`` and uses
    random VGG19 weights.

    Several processes (``torchrun --nproc_per_node N``): DistributedDataParallel, each rank on its
    slice of every global ``batch_size`` batch; rank 0 alone reads and writes files, shows progress
    and calls ``callback`` (:mod:`nstlib.distributed`).
    """
    options = _Options(**locals())  # every argument above, by name
    started = time.perf_counter()
    _check_data_and_loss(options)  # ValueErrors naming the argument, before anything slow
    _check_run_controls(options)
    ranks = distributed.join(options.device)  # None for one process; torchrun's N: nstlib.distributed
    try:
        _for_rank(options, ranks)
        plan = _set_up(options)  # quick mode's caps, device, data, style and sample images, settings
        found = (_find_checkpoint(options) if ranks is None  # rank 0 finds it and hands it to the others
                 else distributed.on_main(ranks, lambda: _find_checkpoint(options)))
        run = _build(options, plan, found, ranks)  # network, loss, Adam: fresh or resumed
        if run.step >= plan.total_steps:
            return _nothing_to_train(run)
        _train(run)  # batch, forward, perceptual loss, backward, step, record; samples, checkpoints, callback
        plan.settings["seconds"] = run.history["seconds"][-1] if run.history["seconds"] else 0.0
        plan.settings["total_seconds"] = time.perf_counter() - started
        return TrainResult(run.net, run.history, run.last_path, plan.settings, getattr(ranks, "rank", 0))
    finally:
        distributed.leave(ranks)


def _nothing_to_train(run: _Run) -> TrainResult:
    """The result of a call whose checkpoint already has ``steps`` steps: the checkpoint's network."""
    if run.options.progress:
        print(f"Nothing to train: the checkpoint is at step {run.step} and steps={run.plan.total_steps}")
    run.plan.settings["seconds"] = run.seconds_before
    return TrainResult(run.net.eval(), run.history, run.last_path, run.plan.settings, getattr(run.ranks, "rank", 0))


# --------------------------------------------------------------------------------------
# the run's settings and state


@dataclass
class _Options:
    """The arguments of :func:`train_transform_net`, by name; the two checks below validate them in place."""

    style: Any
    dataset: Any
    steps: int | None
    epochs: int | None
    batch_size: int
    image_size: int
    content_weight: float
    style_weight: float
    tv_weight: float
    content_layers: Sequence[str]
    style_layers: Sequence[str]
    layer_weights: Mapping | None
    lr: float
    upsample: str
    weights: str | None
    style_size: int | None
    device: Any
    amp: bool | str
    checkpoint_dir: Any
    checkpoint_every: int
    keep_checkpoints: int
    sample_every: int
    sample_images: Any
    callback: Callback | None
    log_every: int
    resume: bool | str
    seed: int
    num_workers: int
    progress: bool


@dataclass
class _Plan:
    """What :func:`_set_up` prepares: sizes after quick mode's caps, the device, the data, the images."""

    image_size: int
    style_size: int
    device: torch.device
    amp_dtype: torch.dtype | None
    data: Dataset
    steps_per_epoch: int
    total_steps: int
    style_images: list[torch.Tensor]
    samples_in: list[torch.Tensor] | None
    settings: dict[str, Any] = field(default_factory=dict)


def _one_style(step: int) -> None:
    """The style of every step of a one-style network: None (``net(x)``, the loss's one set of targets)."""
    return None


@dataclass
class _Run:
    """One training run: its options and plan, the models, and where it stands (built by :func:`_build`).

    ``style_grams[s]`` holds the Gram targets of the network's style ``s``, and step ``k`` trains style
    ``style_for_step(k)``: for a one-style network one (blended) set and None at every step, for
    ``TransformerNet(num_styles=N)`` N sets and :func:`nstlib.multistyle.style_for_step`'s choice."""

    options: _Options
    plan: _Plan
    net: TransformerNet
    loss: PerceptualLoss
    optimizer: torch.optim.Optimizer
    scaler: Any
    recent: deque  # (total, content, style) of the last log_every steps, for the progress bar
    history: dict[str, list[float]] = field(default_factory=lambda: {key: [] for key in HISTORY_KEYS})
    step: int = 0
    last_path: Path | None = None
    seconds_before: float = 0.0  # training time of the runs this one resumes
    loop_started: float = 0.0
    ranks: distributed.Ranks | None = None  # several processes: this one's place (nstlib.distributed)
    ddp: Any = None  # then: DistributedDataParallel(net), which the training step calls
    style_grams: list[dict[str, torch.Tensor]] = field(default_factory=list)  # per style of the network
    style_for_step: Callable[[int], int | None] = _one_style  # step (1, 2, ...) -> style index, or None

    def seconds(self) -> float:
        """Training time so far, across resumptions."""
        return self.seconds_before + time.perf_counter() - self.loop_started


# --------------------------------------------------------------------------------------
# checks and set-up (before the first step)


def _check_data_and_loss(o: _Options) -> None:
    """Steps, sizes, layers and loss weights: a ValueError naming the argument, before anything slow."""
    if (o.steps is None) == (o.epochs is None):
        raise ValueError(f"give exactly one of steps= and epochs= (got steps={o.steps!r}, epochs={o.epochs!r})")
    if o.steps is not None:
        o.steps = positive_int(o.steps, "steps")
    if o.epochs is not None:
        o.epochs = positive_int(o.epochs, "epochs")
    o.batch_size = positive_int(o.batch_size, "batch_size")
    o.content_layers = resolve_layers(o.content_layers, "content_layers")
    o.style_layers = resolve_layers(o.style_layers, "style_layers")
    smallest = max(MIN_SIZE, max(downsampling(name) for name in o.content_layers + o.style_layers))
    o.image_size = positive_int(o.image_size, "image_size")
    if o.image_size < smallest:
        raise ValueError(f"image_size={o.image_size} is too small: the transform net and the chosen VGG layers "
                         f"need at least {smallest} px")
    if o.style_size is not None:
        o.style_size = positive_int(o.style_size, "style_size")
        if o.style_size < smallest:
            raise ValueError(f"style_size={o.style_size} is too small: the chosen VGG layers need at least "
                             f"{smallest} px")
    o.content_weight = check_weight(o.content_weight, "content_weight")
    o.style_weight = check_weight(o.style_weight, "style_weight")
    o.tv_weight = check_weight(o.tv_weight, "tv_weight")
    o.lr = check_weight(o.lr, "lr")
    if o.lr == 0:
        raise ValueError("lr=0 must be greater than 0 (Adam's learning rate, 1e-3 by default)")
    if o.upsample not in UPSAMPLE_MODES:
        raise ValueError(f"upsample={o.upsample!r} must be one of {UPSAMPLE_MODES}")
    if o.weights not in ("imagenet", None, "random"):
        raise ValueError(f"weights={o.weights!r} must be 'imagenet' (pretrained) or None (seeded random weights)")


def _check_run_controls(o: _Options) -> None:
    """Precision, checkpoints, intervals, resume, seed, workers and callback (ValueErrors naming them)."""
    if o.amp not in (True, False, "float16", "bfloat16"):
        raise ValueError(f"amp={o.amp!r} must be True (automatic), False, 'float16' or 'bfloat16'")
    o.checkpoint_every = positive_int(o.checkpoint_every, "checkpoint_every")
    o.keep_checkpoints = positive_int(o.keep_checkpoints, "keep_checkpoints")
    o.sample_every = positive_int(o.sample_every, "sample_every")
    o.log_every = positive_int(o.log_every, "log_every")
    if o.resume not in (False, True, "auto"):
        raise ValueError(f"resume={o.resume!r} must be False, True or 'auto'")
    if o.resume and o.checkpoint_dir is None:
        raise ValueError(f"resume={o.resume!r} needs checkpoint_dir= (the folder the checkpoints were written to)")
    o.seed = non_negative_int(o.seed, "seed")
    o.num_workers = non_negative_int(o.num_workers, "num_workers")
    if o.callback is not None and not callable(o.callback):
        raise ValueError(f"callback={o.callback!r} must be a function callback(step, losses, samples) or None")
    if o.checkpoint_dir is not None:
        o.checkpoint_dir = Path(o.checkpoint_dir).expanduser()
        if o.checkpoint_dir.exists() and not o.checkpoint_dir.is_dir():
            raise ValueError(f"checkpoint_dir={str(o.checkpoint_dir)!r} is a file: pass a folder")


def _for_rank(o: _Options, ranks: distributed.Ranks | None) -> None:
    """With several processes: the global batch must split evenly; each rank trains on its own GPU; ranks
    other than 0 show no progress, call no callback and make no samples (rank 0 does, for all)."""
    if ranks is None:
        return
    distributed.check_batch(o.batch_size, ranks)
    o.device = distributed.device_for(ranks, o.device)
    if not ranks.is_main:
        o.progress, o.callback, o.sample_images = False, None, None


def _set_up(o: _Options) -> _Plan:
    """Quick mode's caps (the one place they apply), the device, the data and the style and sample images."""
    image_size = config.cap_size(o.image_size)
    style_size = config.cap_size(o.style_size) if o.style_size is not None else image_size
    try:
        device = get_device(None if o.device is None else str(o.device))  # checks that the device exists
    except RuntimeError as error:  # torch.device's own message for a string it does not know
        raise ValueError(f"device={o.device!r} is not a device: use 'cuda', 'mps', 'cpu' or None ({error})") from None
    data = _open(o.dataset, image_size)
    if len(data) < o.batch_size:
        raise ValueError(f"dataset has {len(data)} images, fewer than batch_size={o.batch_size}: "
                         "use a smaller batch_size or more images")
    _as_image(data[0], "dataset[0]")  # a clear error now rather than inside the loop
    per_epoch = len(data) // o.batch_size
    styles = list(o.style) if isinstance(o.style, (list, tuple)) else [o.style]
    if not styles:
        raise ValueError("style is empty: give a style image")
    plan = _Plan(
        image_size=image_size, style_size=style_size, device=device, amp_dtype=_amp_dtype(o.amp, device),
        data=data, steps_per_epoch=per_epoch,
        total_steps=config.cap_steps(o.steps if o.steps is not None else o.epochs * per_epoch),
        style_images=[load_image(s, style_size) for s in styles],
        samples_in=_load_samples(o.sample_images, image_size) if o.sample_images is not None else None)
    plan.settings = _settings(o, plan)
    return plan


def _settings(o: _Options, plan: _Plan) -> dict[str, Any]:
    """Every setting, JSON-serialisable: :attr:`TrainResult.settings` and the checkpoints' ``settings``."""
    return {
        "style_sha256": style_fingerprint(plan.style_images),
        "style_shapes": [list(s.shape) for s in plan.style_images],
        "image_size": plan.image_size,
        "style_size": plan.style_size,
        "batch_size": o.batch_size,
        "content_layers": o.content_layers,
        "style_layers": o.style_layers,
        "content_weight": o.content_weight,
        "style_weight": o.style_weight,
        "tv_weight": o.tv_weight,
        "lr": o.lr,
        "upsample": o.upsample,
        "weights": "random" if o.weights in (None, "random") or config.quick_mode() else o.weights,
        "seed": o.seed,
        "dataset": type(plan.data).__name__,
        "dataset_length": len(plan.data),
        "steps_per_epoch": plan.steps_per_epoch,
        "steps": plan.total_steps,
        "epochs": o.epochs,
        "device": str(plan.device),
        "amp": str(plan.amp_dtype).removeprefix("torch.") if plan.amp_dtype is not None else None,
        "checkpoint_dir": str(o.checkpoint_dir) if o.checkpoint_dir is not None else None,
        "checkpoint_every": o.checkpoint_every,
        "keep_checkpoints": o.keep_checkpoints,
        "sample_every": o.sample_every,
        "log_every": o.log_every,
        "num_workers": o.num_workers,
        "quick": config.quick_mode(),
    }


def _find_checkpoint(o: _Options) -> tuple[Path, dict] | None:
    """The checkpoint to resume from (``resume``), or None; refuses to start afresh over old checkpoints."""
    if o.resume and o.checkpoint_dir is not None:
        # the RuntimeWarning for an unreadable file points at the caller of train_transform_net
        found = latest_train_checkpoint(o.checkpoint_dir, stacklevel=4)
        aside = sorted(p.name for p in o.checkpoint_dir.glob("*.pth.unreadable"))
        if found is None and o.resume is True and aside:
            raise FileNotFoundError(
                f"resume=True but no checkpoint in {o.checkpoint_dir} can be read (set aside as {', '.join(aside)}): "
                "copy an intact step_*.pth or latest.pth (from a backup or another copy of the folder) into it and "
                "call again, or start a new run in another checkpoint_dir (or here with resume='auto')")
        if found is None and o.resume is True:
            raise FileNotFoundError(f"resume=True but {o.checkpoint_dir} holds no checkpoint (step_*.pth): "
                                    "start without resume=, or use resume='auto'")
        return found
    if o.checkpoint_dir is not None and step_files(o.checkpoint_dir):
        raise ValueError(f"checkpoint_dir={str(o.checkpoint_dir)!r} already holds checkpoints of a run: pass "
                         "resume=True to continue it, or choose another folder (or delete them) to start afresh")
    return None


def _build(o: _Options, plan: _Plan, checkpoint: tuple[Path, dict] | None,
           ranks: distributed.Ranks | None = None, *, num_styles: int | None = None,
           style_for_step: Callable[[int], int | None] = _one_style) -> _Run:
    """The network, the perceptual loss with its style targets, Adam and the GradScaler; a fresh start
    seeds the global RNGs first, a resumed one loads the checkpoint and its RNG states last (each
    rank its own). With several processes the network is wrapped in ``DistributedDataParallel``.

    ``num_styles=None``: a one-style ``TransformerNet`` whose targets blend all the style images;
    ``num_styles=N`` (one per style image): ``TransformerNet(num_styles=N)``, style ``s``'s targets
    from style image ``s`` alone, step ``k`` training style ``style_for_step(k)`` and the history
    recording it in a ``style_index`` column (:mod:`nstlib.multistyle`)."""
    if checkpoint is None:
        set_seed(o.seed)
    if o.amp == "bfloat16" and plan.device.type == "cpu":  # bfloat16 autocast where this CPU has it natively
        plan.amp_dtype = precision.choose("bfloat16", plan.device, "amp")
        plan.settings["amp"] = "bfloat16" if plan.amp_dtype is not None else None
    net = TransformerNet(upsample=o.upsample, num_styles=num_styles)
    loss = PerceptualLoss(o.content_layers, o.style_layers, content_weight=o.content_weight,
                          style_weight=o.style_weight, tv_weight=o.tv_weight, layer_weights=o.layer_weights,
                          weights=o.weights)
    plan.settings["layer_weights"] = loss.layer_weights
    net.to(plan.device)
    loss.to(plan.device)
    if plan.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    grams = _style_targets(loss, [s.to(plan.device) for s in plan.style_images], num_styles)
    optimizer = torch.optim.Adam(net.parameters(), lr=o.lr)
    scaler = _grad_scaler(plan.amp_dtype == torch.float16)
    keys = HISTORY_KEYS if num_styles is None else (*HISTORY_KEYS, "style_index")
    run = _Run(o, plan, net, loss, optimizer, scaler, recent=deque(maxlen=o.log_every),
               history={key: [] for key in keys}, style_grams=grams, style_for_step=style_for_step)
    if checkpoint is not None:
        run.last_path, state = checkpoint
        check_resume(state.get("settings", {}), plan.settings, run.last_path)
        run.history, run.step = restore_train_state(state, net, optimizer, scaler, keys, lr=o.lr,
                                                    **({} if ranks is None else {"rank": ranks.rank,
                                                                                 "world_size": ranks.world_size}))
        if "style_index" in run.history:  # stored as floats, like every column
            run.history["style_index"] = [int(s) for s in run.history["style_index"]]
        if o.progress:
            saved_lr = state.get("settings", {}).get("lr", o.lr)
            changed = f", lr {o.lr:g} instead of the checkpoint's {saved_lr:g}" if saved_lr != o.lr else ""
            print(f"Resuming from {run.last_path} (step {run.step} of {plan.total_steps}{changed})")
    if ranks is not None:
        plan.settings["world_size"] = ranks.world_size
        run.ranks, run.ddp = ranks, distributed.wrap(net, plan.device)
    run.seconds_before = run.history["seconds"][-1] if run.history["seconds"] else 0.0
    run.loop_started = time.perf_counter()
    return run


def _style_targets(loss: PerceptualLoss, images: list[torch.Tensor], num_styles: int | None) -> list[dict]:
    """The Gram targets of each style of the network: one set blending all ``images`` (``num_styles=None``),
    or one set per image (``num_styles=len(images)``). ``loss`` is left holding the last set."""
    if num_styles is None:
        loss.set_style(images)
        return [loss.style_grams]
    grams = []
    for image in images:
        loss.set_style(image)
        grams.append(loss.style_grams)
    return grams


# --------------------------------------------------------------------------------------
# the loop and its steps


def _train(run: _Run) -> None:
    """One optimiser step per batch from ``run.step`` to ``total_steps``, step ``k`` training the style
    ``run.style_for_step(k)``; the network ends in eval mode."""
    o, plan = run.options, run.plan
    autocast = precision.autocast(plan.device, plan.amp_dtype)  # a no-op for float32
    bar = config.progress_bar(total=plan.total_steps, initial=run.step, desc="train", unit="step", disable=not o.progress)
    run.net.train()
    try:
        for epoch, batch in _epoch_batches(run):
            run.step += 1
            style = run.style_for_step(run.step)  # None for a one-style network
            values = _train_step(run, batch.to(plan.device, non_blocking=True), style, autocast)
            losses = _record(run, values)
            bar.update(1)
            _after_step(run, epoch, losses, bar)
    finally:
        bar.close()
    if run.ranks is not None:
        distributed.barrier()  # rank 0's last checkpoint is written before any rank goes on
    run.net.eval()


def _epoch_batches(run: _Run):
    """``(epoch, batch)`` from step ``run.step`` on: the rest of the current epoch, then whole epochs,
    each in :func:`epoch_order`, until ``total_steps``; with several processes, this rank's slice of each."""
    o, plan = run.options, run.plan
    shard = (0, 1) if getattr(run, "ranks", None) is None else (run.ranks.rank, run.ranks.world_size)
    step = run.step
    while step < plan.total_steps:
        epoch, first = divmod(step, plan.steps_per_epoch)
        count = min(plan.steps_per_epoch, first + plan.total_steps - step)
        order = epoch_order(len(plan.data), o.seed, epoch)
        for batch in _batches(plan.data, order, o.batch_size, first, count, plan.image_size, o.num_workers,
                              o.seed, epoch, plan.device.type == "cuda", shard):
            yield epoch, batch
        step += count - first


def _train_step(run: _Run, x: torch.Tensor, style: int | None, autocast) -> dict[str, float]:
    """``y = f(x; style)``, the perceptual loss of ``y`` (content target: the features of ``x`` itself;
    style targets: ``run.style_grams[style]``, the only set for ``style=None``), backward and an Adam
    step; returns the four losses as floats (plus ``style_index`` when ``style`` is an index). A
    non-finite loss raises :class:`TrainingDivergedError` before the backward pass, so the weights stay
    good. ``autocast`` (mixed precision, or a no-op) covers the forward pass and the loss only. With several
    processes the losses are the means over the ranks (the global batch's), so all ranks stop together."""
    run.loss.style_grams = run.style_grams[0 if style is None else style]
    run.optimizer.zero_grad(set_to_none=True)
    with autocast:
        model = run.net if run.ddp is None else run.ddp
        y = model(x) if style is None else model(x, style=style)
        with torch.no_grad():  # the content targets: the VGG features of the input itself
            features = run.loss.extractor(x)
        losses = run.loss(y, content_targets={name: features[name] for name in run.options.content_layers})
    values = {key: float(losses[key].detach()) for key in ("total", "content", "style", "tv")}
    if run.ranks is not None:
        values = distributed.mean_across(values, run.ranks)
    bad = [key for key in ("content", "style", "tv", "total") if not math.isfinite(values[key])]
    if bad:
        raise _diverged(run, bad, values)
    run.scaler.scale(losses["total"]).backward()
    run.scaler.step(run.optimizer)
    run.scaler.update()
    return values if style is None else {**values, "style_index": style}


def _record(run: _Run, values: Mapping[str, float]) -> dict[str, float]:
    """Append the step's losses, time and learning rate to the history; return them (the callback's ``losses``)."""
    seconds = run.seconds()
    lr = float(run.optimizer.param_groups[0]["lr"])
    for key, value in (("step", run.step), *values.items(), ("seconds", seconds), ("lr", lr)):
        run.history[key].append(value)
    run.recent.append((values["total"], values["content"], values["style"]))
    return {**values, "seconds": seconds, "lr": lr}


def _after_step(run: _Run, epoch: int, losses: dict[str, float], bar) -> None:
    """Samples every ``sample_every`` steps, a checkpoint every ``checkpoint_every``, the progress bar
    and the callback every ``log_every``; each also after the last step."""
    o, step = run.options, run.step
    final = step == run.plan.total_steps
    samples = None
    if run.plan.samples_in is not None and (step % o.sample_every == 0 or final):
        samples = _make_samples(run)
    if step % o.checkpoint_every == 0 or final:
        _save_checkpoint(run)
    if step % o.log_every == 0 or final:
        means = [sum(column) / len(run.recent) for column in zip(*run.recent)]
        bar.set_postfix(epoch=epoch, total=f"{means[0]:.4g}", content=f"{means[1]:.4g}",
                        style=f"{means[2]:.4g}", refresh=False)
        if o.callback is not None:
            o.callback(step, losses, samples)


def _make_samples(run: _Run) -> list[torch.Tensor]:
    """Stylise the sample images, in every style of a multi-style network (style 0's results first, then
    style 1's...); with ``checkpoint_dir`` also save them as ``samples/step_XXXXXX.png`` (one grid per
    style, stacked top to bottom)."""
    inputs, outputs, grids = run.plan.samples_in, [], []
    styles = [None] if run.net.num_styles is None else range(run.net.num_styles)
    for style in styles:
        stylised = stylize_images(run.net, inputs, batch_size=run.options.batch_size, style=style)
        outputs.extend(stylised)
        grids.append(_sample_grid(inputs, stylised))
    if run.options.checkpoint_dir is not None:
        save_image(torch.cat(grids, dim=-2), run.options.checkpoint_dir / SAMPLES / f"step_{run.step:06d}.png")
    return outputs


def _save_checkpoint(run: _Run) -> None:
    """Check that every weight is finite (else :class:`TrainingDivergedError`, nothing saved), then
    write the checkpoint with ``checkpoint_dir`` (:func:`nstlib.checkpoints.write_train_checkpoint`; with
    several processes rank 0 writes it, with every rank's RNG states)."""
    if not all(torch.isfinite(p).all() for p in run.net.parameters()):
        raise _diverged(run, ["network weights"], {"network weights": float("nan")})
    o, ranks = run.options, getattr(run, "ranks", None)
    if o.checkpoint_dir is not None:
        run.plan.settings["seconds"] = run.seconds()
        rng_ranks = None if ranks is None else distributed.gather(rng_states())  # every rank's, to resume exactly
        if ranks is not None and not ranks.is_main:
            run.last_path = step_file(o.checkpoint_dir, run.step)  # rank 0 writes it
            return
        state = train_checkpoint(run.net, run.optimizer, run.scaler, step=run.step,
                                 steps_per_epoch=run.plan.steps_per_epoch, seed=o.seed, history=run.history,
                                 settings=run.plan.settings, rng_ranks=rng_ranks)
        run.last_path = write_train_checkpoint(o.checkpoint_dir, run.step, state, o.keep_checkpoints)


def _diverged(run: _Run, names: list[str], values: Mapping[str, float]) -> TrainingDivergedError:
    """The error for a non-finite loss or weight at ``run.step``: what, where to resume, what to change."""
    o, last = run.options, run.last_path
    shown = ", ".join(f"{n}={values[n]}" for n in names)
    amp = run.plan.amp_dtype is not None
    precision = f", or amp=False (this run used mixed precision ({run.plan.settings['amp']}))" if amp else ""
    weights = f"content {o.content_weight:g}, style {o.style_weight:g}, tv {o.tv_weight:g}"
    if last:  # resume may change lr (and amp), not the loss weights: see RESUME_MUST_MATCH
        advice = (f"the last good checkpoint is {last}. Resume from it with a lower lr: the same call with "
                  f"resume=True and lr={o.lr / 10:g} (now {o.lr:g}; command line: --resume --lr {o.lr / 10:g})"
                  f"{precision}; lr may differ from the checkpoint's, the loss weights may not: lower ones "
                  f"({weights}) need a fresh run in another checkpoint_dir")
    else:
        advice = (f"no checkpoint was written yet. Try a lower lr (now {o.lr:g}, e.g. {o.lr / 10:g}) or lower "
                  f"loss weights ({weights}){precision}")
    return TrainingDivergedError(
        f"training diverged at step {run.step}: {shown} is not finite. Nothing of this step was saved; {advice}",
        run.step, names, last, {k: list(v) for k, v in run.history.items()})


# --------------------------------------------------------------------------------------
# mixed precision


def _amp_dtype(amp: bool | str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``amp`` on ``device``, or None for float32 (see "Mixed precision" above)."""
    if amp is False or device.type != "cuda":
        return None
    if amp == "float16":
        return torch.float16
    if amp == "bfloat16":
        return torch.bfloat16
    major, _ = torch.cuda.get_device_capability(device)
    return torch.bfloat16 if major >= 8 else torch.float16


def _grad_scaler(enabled: bool):
    """A CUDA GradScaler (``torch.amp`` from torch 2.3, ``torch.cuda.amp`` before)."""
    if hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler("cuda", enabled=enabled)
    return torch.cuda.amp.GradScaler(enabled=enabled)  # pragma: no cover - torch < 2.3


# --------------------------------------------------------------------------------------
# data


def epoch_order(length: int, seed: int, epoch: int) -> torch.Tensor:
    """The order in which epoch ``epoch`` visits a dataset of ``length`` items.

    ``torch.randperm(length)`` drawn from a private generator seeded with
    ``seed * 1_000_003 + epoch``: it depends on ``(seed, epoch)`` alone, never on the global
    random state, so a resumed run can rebuild the current epoch and skip the batches it used.
    """
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(length, generator=generator)


def _as_image(item: Any, where: str) -> torch.Tensor:
    """A dataset item (a ``[3, H, W]`` tensor, or a tuple whose first element is one) as float."""
    if isinstance(item, (tuple, list)) and item:
        item = item[0]
    if not isinstance(item, torch.Tensor) or item.dim() != 3 or item.shape[0] != 3:
        shape = tuple(item.shape) if isinstance(item, torch.Tensor) else type(item).__name__
        raise ValueError(f"{where} is {shape}: dataset items must be [3, H, W] float tensors in [0, 1] "
                         "(nstlib.open_dataset makes such a dataset)")
    if item.dtype == torch.uint8:
        return item.float() / 255
    if not item.is_floating_point():
        raise ValueError(f"{where} has dtype {item.dtype}: dataset items must be float tensors in [0, 1]")
    return item.float()


def _fit(image: torch.Tensor, size: int) -> torch.Tensor:
    """Resize ``[3, H, W]`` so the shorter side is ``size`` (antialiased bilinear), then centre-crop to ``size``."""
    height, width = image.shape[-2:]
    if (height, width) == (size, size):
        return image
    scale = size / min(height, width)
    new_h, new_w = max(size, round(height * scale)), max(size, round(width * scale))
    if (new_h, new_w) != (height, width):
        image = F.interpolate(image[None], size=(new_h, new_w), mode="bilinear", align_corners=False,
                              antialias=True)[0].clamp(0, 1)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return image[:, top:top + size, left:left + size]


class _Collate:
    """Stack dataset items into a ``[B, 3, size, size]`` batch (a class, so worker processes can pickle it)."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, items: list) -> torch.Tensor:
        return torch.stack([_fit(_as_image(item, "a dataset item"), self.size) for item in items])


def _open(dataset: Any, image_size: int) -> Dataset:
    if isinstance(dataset, (str, os.PathLike)):
        from .data.datasets import open_dataset  # lazy: the dataset module is only needed for names and folders

        return open_dataset(os.fspath(dataset) if isinstance(dataset, os.PathLike) else dataset, size=image_size)
    if not (hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")):
        raise ValueError(f"dataset is a {type(dataset).__name__}: pass a folder of images, a dataset name "
                         "('coco-val2017', 'labelme', 'synthetic') or a torch Dataset of [3, H, W] images")
    return dataset


def _batches(dataset: Dataset, order: torch.Tensor, batch_size: int, first: int, count: int,
             image_size: int, num_workers: int, seed: int, epoch: int, pin: bool,
             shard: tuple[int, int] = (0, 1)) -> DataLoader:
    """Batches ``first .. count - 1`` of one epoch (each ``batch_size`` indices of ``order``); of each,
    the slice of rank ``shard[0]`` of ``shard[1]`` processes (:func:`nstlib.distributed.shard`)."""
    indices = [distributed.shard(order[b * batch_size:(b + 1) * batch_size].tolist(), *shard)
               for b in range(first, count)]
    # The loader's own generator (used for worker seeds) is seeded too, so it never draws from the global RNG.
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch + 1)
    return DataLoader(dataset, batch_sampler=indices, num_workers=num_workers, collate_fn=_Collate(image_size),
                      pin_memory=pin, generator=generator)


# --------------------------------------------------------------------------------------
# samples


def _sample_grid(originals: Sequence[torch.Tensor], stylised: Sequence[torch.Tensor], gap: int = 2) -> torch.Tensor:
    """A ``[1, 3, 2 S + gap, N S + (N - 1) gap]`` white-backed grid: inputs on top, results below.

    ``S`` is the largest side among the images; each sits centred in its ``S x S`` cell.
    """
    side = max(max(img.shape[-2:]) for img in list(originals) + list(stylised))
    n = len(originals)
    grid = torch.ones(3, 2 * side + gap, n * side + (n - 1) * gap)
    for row, images in enumerate((originals, stylised)):
        for col, image in enumerate(images):
            h, w = image.shape[-2:]
            top = row * (side + gap) + (side - h) // 2
            left = col * (side + gap) + (side - w) // 2
            grid[:, top:top + h, left:left + w] = image.reshape(3, h, w).clamp(0, 1)
    return grid[None]


def _load_samples(sample_images: Any, image_size: int) -> list[torch.Tensor]:
    """The sample images (one or a list; paths, sample names or tensors), longer side ``image_size``."""
    if isinstance(sample_images, torch.Tensor):
        items = [sample_images] if sample_images.dim() == 3 else list(sample_images)
    elif isinstance(sample_images, (str, os.PathLike)):
        items = [sample_images]
    else:
        items = list(sample_images)
    if not items:
        raise ValueError("sample_images is empty: pass a list of content images (paths, sample names or tensors) or None")
    images = [load_image(item, image_size) for item in items]
    for i, image in enumerate(images):
        if min(image.shape[-2:]) < MIN_SIZE:
            raise ValueError(f"sample_images[{i}] is {image.shape[-2]}x{image.shape[-1]} px at image_size={image_size} "
                             f"(longer side), but the transform net needs {MIN_SIZE} px on each side: use a less "
                             "elongated sample image or a larger image_size")
    return images


