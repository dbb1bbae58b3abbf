"""Johnson, Alahi & Fei-Fei (2016): train a :class:`~nstlib.transform_net.TransformerNet` for one style.

Gatys et al. optimise the pixels of every image anew; Johnson et al. train a feed-forward network
``f`` once, so that stylising is a single forward pass. For a batch of content images ``x`` the
network's output ``y = f(x)`` is scored by the perceptual loss (:mod:`nstlib.perceptual`)::

    loss(x) = content_weight * sum_l w_l * MSE(F_l(y), F_l(x))          (content: the input itself)
            + style_weight   * sum_l w_l * ||gram(F_l(y)) - A_l||_F^2    (style: fixed Gram targets)
            + tv_weight      * TV(y)

averaged over the batch, and Adam updates the weights of ``f`` (VGG19 stays frozen).
:func:`train_transform_net` adds what a course needs around that loop: a progress bar, a loss
history, atomic checkpoints that survive a Colab disconnect, exact resumption, sample images, a
callback for live plots, mixed precision on GPUs and a clear stop when the loss blows up.

Checkpoint folder layout (``checkpoint_dir``)::

    step_000500.pth, step_001000.pth, ...   every `checkpoint_every` steps and at the end;
                                            only the newest `keep_checkpoints` are kept
    latest.pth                              a copy of the newest one
    samples/step_000500.png, ...            sample grids (with `sample_images`)

Every file is written atomically (temporary file + :func:`os.replace`), so a disconnect never
leaves a half-written checkpoint behind. A checkpoint is a dict that loads with
``torch.load(path, weights_only=True)``::

    kind            "nstlib.train_checkpoint"      version   1
    config          TransformerNet config           model     its state dict (CPU tensors)
    optimizer       Adam's state dict               scaler    GradScaler's state dict ({} if unused)
    step            optimiser steps done            epoch     epochs completed before the current one
    batch_in_epoch  batches of the current epoch already used
    data_seed       the seed of the data order     rng       torch CPU/CUDA, Python and NumPy RNG states
    history         the loss history (float64 tensors)
    settings        every setting (see TrainResult.settings)
    metadata        {"trainer": ..., "step": ..., "settings": ...}

so :func:`nstlib.transform_net.load_transform_net` reads it directly (layout 2 there).
"""

from __future__ import annotations

import hashlib
import io
import math
import numbers
import os
import random
import re
import time
import warnings
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from . import config
from .fileio import atomic_write
from .layers import downsampling, resolve_layers
from .perceptual import PerceptualLoss, check_weight
from .plotting import plot_losses
from .checkpoints import save_transform_net
from .fast import stylize_images
from .transform_net import MIN_SIZE, UPSAMPLE_MODES, TransformerNet
from .config import get_device, set_seed

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

CHECKPOINT_KIND = "nstlib.train_checkpoint"
CHECKPOINT_VERSION = 1
LATEST = "latest.pth"
SAMPLES = "samples"
_STEP_FILE = re.compile(r"^step_(\d+)\.pth$")

RESUME_MUST_MATCH = (
    "style_sha256", "image_size", "style_size", "batch_size", "content_layers", "style_layers",
    "layer_weights", "content_weight", "style_weight", "tv_weight", "lr", "upsample", "weights",
    "seed", "dataset_length",
)
"""Settings a resumed run must share with its checkpoint (the others, e.g. ``steps``, ``amp``,
``device``, ``checkpoint_every``, may change)."""

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

    @property
    def steps(self) -> int:
        """Optimiser steps done."""
        return len(self.history["total"])

    def final_losses(self) -> dict[str, float]:
        """The losses of the last step."""
        return {key: self.history[key][-1] for key in ("total", "content", "style", "tv") if self.history[key]}

    def save(self, path: str | os.PathLike) -> Path:
        """Save the network alone with :func:`~nstlib.transform_net.save_transform_net` (settings as metadata)."""
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
# argument checks


def _positive_int(value: Any, argument: str, hint: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{argument}={value!r} must be a positive whole number{hint}")
    return int(value)


def _non_negative_int(value: Any, argument: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{argument}={value!r} must be a whole number >= 0")
    return int(value)


def _amp_dtype(amp: bool | str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``amp`` on ``device``, or None for float32 (see :func:`train_transform_net`)."""
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
             image_size: int, num_workers: int, seed: int, epoch: int, pin: bool) -> DataLoader:
    """Batches ``first .. count - 1`` of one epoch (each ``batch_size`` indices of ``order``)."""
    indices = [order[b * batch_size:(b + 1) * batch_size].tolist() for b in range(first, count)]
    # The loader's own generator (used for worker seeds) is seeded too, so it never draws from the global RNG.
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch + 1)
    return DataLoader(dataset, batch_sampler=indices, num_workers=num_workers, collate_fn=_Collate(image_size),
                      pin_memory=pin, generator=generator)


# --------------------------------------------------------------------------------------
# random states and checkpoints


def _rng_states() -> dict[str, Any]:
    """Global RNG states as tensors, numbers and lists (so ``weights_only=True`` can load them)."""
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


def _set_rng_states(states: Mapping[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(list(states["cuda"]))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    n = states["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))


def _step_file(directory: Path, step: int) -> Path:
    return directory / f"step_{step:06d}.pth"


def _step_files(directory: Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of every ``step_*.pth`` in ``directory``, oldest first."""
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _STEP_FILE.match(p.name)) and p.is_file()]
    return sorted(found)


def _read_checkpoint(path: Path) -> dict:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("kind") != CHECKPOINT_KIND:
        raise ValueError(f"{path} is not a training checkpoint of nstlib.train_transform_net")
    if state.get("version", 0) > CHECKPOINT_VERSION:
        raise ValueError(f"{path} was written by a newer nstlib (version {state.get('version')}): upgrade nstlib")
    return state


def _latest_checkpoint(directory: Path) -> tuple[Path, dict] | None:
    """The newest readable checkpoint; unreadable newer ones (e.g. cut by a disconnect) are renamed aside."""
    for _, path in reversed(_step_files(directory)):
        try:
            return path, _read_checkpoint(path)
        except Exception as error:  # a truncated or foreign file: set it aside, fall back to the previous one
            aside = path.with_name(path.name + ".unreadable")
            os.replace(path, aside)
            warnings.warn(f"{path} cannot be read ({type(error).__name__}: {error}); renamed it to {aside.name} "
                          "and resumed from the previous checkpoint", RuntimeWarning, stacklevel=3)
    return None


def _write_checkpoint(directory: Path, step: int, payload: dict, keep: int) -> Path:
    """Write ``step_<step>.pth`` and ``latest.pth`` atomically, then prune to the newest ``keep`` step files."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    path = atomic_write(_step_file(directory, step), lambda f: f.write(data))
    atomic_write(directory / LATEST, lambda f: f.write(data))
    files = _step_files(directory)
    for old_step, old in files[:-keep]:
        if old_step < step:  # never the file just written, which is the newest
            old.unlink(missing_ok=True)
    return path


def _to_cpu(value: Any) -> Any:
    """``value`` with every tensor copied to the CPU (so a checkpoint loads on machines without a GPU)."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, dict):
        return {key: _to_cpu(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(item) for item in value)
    return value


def _history_tensors(history: Mapping[str, list[float]]) -> dict[str, torch.Tensor]:
    return {key: torch.tensor(values, dtype=torch.float64) for key, values in history.items()}


def _history_lists(history: Mapping[str, torch.Tensor]) -> dict[str, list[float]]:
    out = {key: [float(v) for v in history[key].tolist()] for key in HISTORY_KEYS if key in history}
    out["step"] = [int(v) for v in out.get("step", [])]
    return out


def _fingerprint(images: Sequence[torch.Tensor]) -> str:
    """SHA-256 of the style images' shapes and float32 pixels (to recognise the style on resume)."""
    digest = hashlib.sha256()
    for image in images:
        array = image.detach().to("cpu", torch.float32).contiguous().numpy()
        digest.update(repr(array.shape).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


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
    from .images import load_image

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

    Data and style:

    * ``style``: one style image, anything :func:`~nstlib.load_image` takes (path, URL, sample
      name, tensor), or a list of them (their Gram targets are averaged), loaded with its longer
      side ``style_size`` (default: ``image_size``, so brush strokes keep their size relative to
      the training crops).
    * ``dataset``: a ``torch.utils.data.Dataset`` whose items are ``[3, H, W]`` float tensors in
      [0, 1] (or tuples whose first element is one), or a folder / dataset name for
      :func:`nstlib.open_dataset` ("coco-val2017", "labelme", "synthetic").
      Items not ``image_size`` square are resized (shorter side) and centre-cropped.
    * ``steps`` (optimiser steps) or ``epochs`` (passes over the dataset): give exactly one. An
      epoch is ``len(dataset) // batch_size`` steps (the incomplete last batch is dropped).
      Epoch ``e`` visits the data in :func:`epoch_order` ``(len, seed, e)``.
    * ``batch_size`` (4), ``image_size`` (256, the side of the square training crops).

    Loss (see :mod:`nstlib.perceptual`): ``content_layers`` (``relu4_2``) and ``style_layers``
    (``relu1_2 relu2_2 relu3_4 relu4_2 relu5_4``, the seed's VGG19 outputs) in either naming
    scheme; ``layer_weights`` overrides the per-layer weights (default 1 for content and
    ``1/C^2`` for style, i.e. each style layer is the *mean* squared Gram difference);
    ``weights`` the VGG19 weights ("imagenet", or None for seeded random weights).

    Default loss weights ``content_weight=1e5, style_weight=1e10, tv_weight=0`` are the
    defaults of pytorch/examples' ``fast_neural_style``, whose loss is term for term ours, so
    they need no conversion:

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

    Optimisation: Adam with learning rate ``lr`` (1e-3), ``upsample`` ("nearest" or
    "transpose", see :class:`TransformerNet`), ``seed`` (global RNGs via
    :func:`nstlib.set_seed` at a fresh start, the initial weights and the data order),
    ``device`` (None: :func:`nstlib.get_device`), ``num_workers`` (DataLoader worker processes).

    ``amp`` (mixed precision, CUDA only; ignored on the CPU and MPS): ``True`` picks bfloat16 on
    GPUs of compute capability 8.0 or newer (A100, L4, H100) and float16 on older ones (Colab's
    T4); ``"float16"`` / ``"bfloat16"`` force one; ``False`` trains in float32. float16 steps go
    through a ``GradScaler`` (loss scaling against gradient underflow); bfloat16 has float32's
    exponent range and needs none. The Gram matrices and the losses are always float32.

    Checkpoints (with ``checkpoint_dir``, e.g. a Google Drive folder on Colab; layout in the
    module docstring): written every ``checkpoint_every`` steps and at the end, newest
    ``keep_checkpoints`` kept. ``resume=True`` continues from the newest readable checkpoint
    with the same weights, optimiser state, data position and RNG states, so N steps then a
    resumed run to 2N give the same weights as 2N steps at once (on the CPU with
    ``num_workers=0``; GPUs are not bit-deterministic). ``steps``/``epochs`` is the *total*,
    so resume with the same call. Settings that change the result (:data:`RESUME_MUST_MATCH`)
    must match the checkpoint's; ``steps``, ``amp``, ``device``, intervals may change.
    ``resume="auto"`` resumes when a checkpoint exists and starts afresh otherwise. Without
    ``resume``, a ``checkpoint_dir`` that already holds checkpoints is refused (nothing is
    overwritten).

    Monitoring: a progress bar (``progress``) with the mean losses of the last ``log_every``
    steps. ``sample_images`` (content images, loaded with longer side ``image_size``) are
    stylised every ``sample_every`` steps and at the end; with ``checkpoint_dir`` each time is
    saved as ``samples/step_XXXXXX.png`` (inputs on top, results below). ``callback(step,
    losses, samples)`` runs after every step that is a multiple of ``log_every`` and after the
    last step (so the final samples always arrive): ``losses``
    holds that step's floats (``total content style tv seconds lr``), ``samples`` is the list
    of stylised ``[1, 3, h, w]`` images when that step made samples, else None.

    A NaN or infinite loss (or weight) stops training with :class:`TrainingDivergedError`
    naming the step, the loss and the last good checkpoint; a bad state is never saved.

    Quick mode caps ``steps`` (also when derived from ``epochs``), ``image_size`` and
    ``style_size`` and uses random VGG19 weights.
    """
    started = time.perf_counter()
    # ---- checks (before anything slow) ------------------------------------------------------
    if (steps is None) == (epochs is None):
        raise ValueError(f"give exactly one of steps= and epochs= (got steps={steps!r}, epochs={epochs!r})")
    if steps is not None:
        steps = _positive_int(steps, "steps")
    if epochs is not None:
        epochs = _positive_int(epochs, "epochs")
    batch_size = _positive_int(batch_size, "batch_size")
    content_layers = resolve_layers(content_layers, "content_layers")
    style_layers = resolve_layers(style_layers, "style_layers")
    smallest = max(MIN_SIZE, max(downsampling(name) for name in content_layers + style_layers))
    image_size = _positive_int(image_size, "image_size")
    if image_size < smallest:
        raise ValueError(f"image_size={image_size} is too small: the transform net and the chosen VGG layers "
                         f"need at least {smallest} px")
    if style_size is not None:
        style_size = _positive_int(style_size, "style_size")
        if style_size < smallest:
            raise ValueError(f"style_size={style_size} is too small: the chosen VGG layers need at least {smallest} px")
    content_weight = check_weight(content_weight, "content_weight")
    style_weight = check_weight(style_weight, "style_weight")
    tv_weight = check_weight(tv_weight, "tv_weight")
    lr = check_weight(lr, "lr")
    if lr == 0:
        raise ValueError("lr=0 must be greater than 0 (Adam's learning rate, 1e-3 by default)")
    if upsample not in UPSAMPLE_MODES:
        raise ValueError(f"upsample={upsample!r} must be one of {UPSAMPLE_MODES}")
    if weights not in ("imagenet", None, "random"):
        raise ValueError(f"weights={weights!r} must be 'imagenet' (pretrained) or None (seeded random weights)")
    if amp not in (True, False, "float16", "bfloat16"):
        raise ValueError(f"amp={amp!r} must be True (automatic), False, 'float16' or 'bfloat16'")
    checkpoint_every = _positive_int(checkpoint_every, "checkpoint_every")
    keep_checkpoints = _positive_int(keep_checkpoints, "keep_checkpoints")
    sample_every = _positive_int(sample_every, "sample_every")
    log_every = _positive_int(log_every, "log_every")
    if resume not in (False, True, "auto"):
        raise ValueError(f"resume={resume!r} must be False, True or 'auto'")
    if resume and checkpoint_dir is None:
        raise ValueError(f"resume={resume!r} needs checkpoint_dir= (the folder the checkpoints were written to)")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed={seed!r} must be a non-negative whole number")
    num_workers = _non_negative_int(num_workers, "num_workers")
    if callback is not None and not callable(callback):
        raise ValueError(f"callback={callback!r} must be a function callback(step, losses, samples) or None")
    if checkpoint_dir is not None:
        checkpoint_dir = Path(checkpoint_dir).expanduser()
        if checkpoint_dir.exists() and not checkpoint_dir.is_dir():
            raise ValueError(f"checkpoint_dir={str(checkpoint_dir)!r} is a file: pass a folder")

    # ---- quick mode, device, data ----------------------------------------------------------
    image_size = config.cap_size(image_size)
    style_size = config.cap_size(style_size) if style_size is not None else image_size
    try:
        device = get_device(None if device is None else str(device))  # checks that the device exists
    except RuntimeError as error:  # torch.device's own message for a string it does not know
        raise ValueError(f"device={device!r} is not a device: use 'cuda', 'mps', 'cpu' or None ({error})") from None
    amp_dtype = _amp_dtype(amp, device)
    data = _open(dataset, image_size)
    length = len(data)
    if length < batch_size:
        raise ValueError(f"dataset has {length} images, fewer than batch_size={batch_size}: "
                         "use a smaller batch_size or more images")
    _as_image(data[0], "dataset[0]")  # a clear error now rather than inside the loop
    per_epoch = length // batch_size
    total_steps = config.cap_steps(steps if steps is not None else epochs * per_epoch)

    from .images import load_image

    styles = list(style) if isinstance(style, (list, tuple)) else [style]
    if not styles:
        raise ValueError("style is empty: give a style image")
    style_images = [load_image(s, style_size) for s in styles]
    samples_in = _load_samples(sample_images, image_size) if sample_images is not None else None

    settings: dict[str, Any] = {
        "style_sha256": _fingerprint(style_images),
        "style_shapes": [list(s.shape) for s in style_images],
        "image_size": image_size,
        "style_size": style_size,
        "batch_size": batch_size,
        "content_layers": content_layers,
        "style_layers": style_layers,
        "content_weight": content_weight,
        "style_weight": style_weight,
        "tv_weight": tv_weight,
        "lr": lr,
        "upsample": upsample,
        "weights": "random" if weights in (None, "random") or config.quick_mode() else weights,
        "seed": int(seed),
        "dataset": type(data).__name__,
        "dataset_length": length,
        "steps_per_epoch": per_epoch,
        "steps": total_steps,
        "epochs": epochs,
        "device": str(device),
        "amp": str(amp_dtype).removeprefix("torch.") if amp_dtype is not None else None,
        "checkpoint_dir": str(checkpoint_dir) if checkpoint_dir is not None else None,
        "checkpoint_every": checkpoint_every,
        "keep_checkpoints": keep_checkpoints,
        "sample_every": sample_every,
        "log_every": log_every,
        "num_workers": num_workers,
        "quick": config.quick_mode(),
    }

    # ---- models -----------------------------------------------------------------------------
    checkpoint = None
    if resume and checkpoint_dir is not None:
        found = _latest_checkpoint(checkpoint_dir)
        if found is None and resume is True:
            raise FileNotFoundError(f"resume=True but {checkpoint_dir} holds no checkpoint (step_*.pth): "
                                    "start without resume=, or use resume='auto'")
        checkpoint = found
    elif checkpoint_dir is not None and _step_files(checkpoint_dir):
        raise ValueError(f"checkpoint_dir={str(checkpoint_dir)!r} already holds checkpoints of a run: pass "
                         "resume=True to continue it, or choose another folder (or delete them) to start afresh")

    if checkpoint is None:
        set_seed(int(seed))
    net = TransformerNet(upsample=upsample)
    loss = PerceptualLoss(content_layers, style_layers, content_weight=content_weight, style_weight=style_weight,
                          tv_weight=tv_weight, layer_weights=layer_weights, weights=weights)
    settings["layer_weights"] = loss.layer_weights
    net.to(device)
    loss.to(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    loss.set_style([s.to(device) for s in style_images])
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    scaler = _grad_scaler(amp_dtype == torch.float16)
    history: dict[str, list[float]] = {key: [] for key in HISTORY_KEYS}
    start = 0
    last_path: Path | None = None

    if checkpoint is not None:
        last_path, state = checkpoint
        _check_resume(state.get("settings", {}), settings, last_path)
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scaler.is_enabled() and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        history = _history_lists(state["history"])
        start = int(state["step"])
        _set_rng_states(state["rng"])
        if progress:
            print(f"Resuming from {last_path} (step {start} of {total_steps})")

    seconds_before = history["seconds"][-1] if history["seconds"] else 0.0
    loop_started = time.perf_counter()

    def payload(step: int) -> dict:
        settings["seconds"] = seconds_before + time.perf_counter() - loop_started
        plain = {k: v for k, v in settings.items()}
        return {
            "kind": CHECKPOINT_KIND,
            "version": CHECKPOINT_VERSION,
            "config": net.config,
            "model": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
            "optimizer": _to_cpu(optimizer.state_dict()),
            "scaler": scaler.state_dict(),
            "step": step,
            "epoch": step // per_epoch,
            "batch_in_epoch": step % per_epoch,
            "data_seed": int(seed),
            "rng": _rng_states(),
            "history": _history_tensors(history),
            "settings": plain,
            "metadata": {"trainer": "nstlib.train_transform_net", "step": step, "settings": plain},
        }

    def diverged(step: int, names: list[str], values: Mapping[str, float]) -> TrainingDivergedError:
        shown = ", ".join(f"{n}={values[n]}" for n in names)
        where = f"the last good checkpoint is {last_path}" if last_path else "no checkpoint was written yet"
        precision = f"mixed precision ({settings['amp']})" if amp_dtype is not None else "float32"
        return TrainingDivergedError(
            f"training diverged at step {step}: {shown} is not finite. Nothing of this step was saved; {where}. "
            f"Try a lower lr (now {lr:g}) or lower loss weights (content {content_weight:g}, style "
            f"{style_weight:g}, tv {tv_weight:g})"
            + (f", or amp=False (this run used {precision})" if amp_dtype is not None else "")
            + (", then resume=True" if last_path else ""),
            step, names, last_path, {k: list(v) for k, v in history.items()})

    def make_samples(step: int) -> list[torch.Tensor]:
        outputs = stylize_images(net, samples_in, batch_size=batch_size)
        if checkpoint_dir is not None:
            from .images import save_image

            save_image(_sample_grid(samples_in, outputs), checkpoint_dir / SAMPLES / f"step_{step:06d}.png")
        return outputs

    if start >= total_steps:
        if progress:
            print(f"Nothing to train: the checkpoint is at step {start} and steps={total_steps}")
        settings["seconds"] = seconds_before
        return TrainResult(net.eval(), history, last_path, settings)

    # ---- the loop ---------------------------------------------------------------------------
    autocast = (torch.autocast(device_type="cuda", dtype=amp_dtype) if amp_dtype is not None else nullcontext())
    recent: deque[tuple[float, float, float]] = deque(maxlen=log_every)
    bar = tqdm(total=total_steps, initial=start, desc="train", unit="step", disable=not progress)
    net.train()
    step = start
    try:
        while step < total_steps:
            epoch, first = divmod(step, per_epoch)
            count = min(per_epoch, first + total_steps - step)
            order = epoch_order(length, int(seed), epoch)
            loader = _batches(data, order, batch_size, first, count, image_size, num_workers, int(seed), epoch,
                              device.type == "cuda")
            for batch in loader:
                step += 1
                x = batch.to(device, non_blocking=True)
                optimizer.zero_grad(set_to_none=True)
                with autocast:
                    y = net(x)
                    with torch.no_grad():  # the content targets: the VGG features of the input itself
                        features = loss.extractor(x)
                    losses = loss(y, content_targets={name: features[name] for name in content_layers})
                values = {key: float(losses[key].detach()) for key in ("total", "content", "style", "tv")}
                bad = [key for key in ("content", "style", "tv", "total") if not math.isfinite(values[key])]
                if bad:
                    raise diverged(step, bad, values)
                scaler.scale(losses["total"]).backward()
                scaler.step(optimizer)
                scaler.update()

                seconds = seconds_before + time.perf_counter() - loop_started
                current_lr = float(optimizer.param_groups[0]["lr"])
                for key, value in (("step", step), *values.items(), ("seconds", seconds), ("lr", current_lr)):
                    history[key].append(value)
                recent.append((values["total"], values["content"], values["style"]))
                bar.update(1)

                final = step == total_steps
                samples = None
                if samples_in is not None and (step % sample_every == 0 or final):
                    samples = make_samples(step)
                if step % checkpoint_every == 0 or final:
                    if not all(torch.isfinite(p).all() for p in net.parameters()):
                        raise diverged(step, ["network weights"], {"network weights": float("nan")})
                    if checkpoint_dir is not None:
                        last_path = _write_checkpoint(checkpoint_dir, step, payload(step), keep_checkpoints)
                if step % log_every == 0 or final:
                    means = [sum(column) / len(recent) for column in zip(*recent)]
                    bar.set_postfix(epoch=epoch, total=f"{means[0]:.4g}", content=f"{means[1]:.4g}",
                                    style=f"{means[2]:.4g}", refresh=False)
                    if callback is not None:
                        callback(step, {**values, "seconds": seconds, "lr": current_lr}, samples)
    finally:
        bar.close()
    net.eval()
    settings["seconds"] = history["seconds"][-1] if history["seconds"] else 0.0
    settings["total_seconds"] = time.perf_counter() - started
    return TrainResult(net, history, last_path, settings)


def _check_resume(saved: Mapping[str, Any], current: Mapping[str, Any], path: Path) -> None:
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
