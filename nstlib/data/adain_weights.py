"""The released AdaIN weights of naoto0804/pytorch-AdaIN: ``vgg_normalised.pth`` and ``decoder.pth``.

pytorch-AdaIN's README sends users to its GitHub release ``v0.0.0`` for these two files
(:data:`ENCODER_URL`, :data:`DECODER_URL`): the encoder is the "normalised" VGG19 of Gatys et al.
with a preprocessing 1x1 convolution in front and reflection padding, converted from the original
Torch code of Huang & Belongie, the decoder is their trained decoder. Both are plain state dicts
whose keys are the indices of ``net.py``'s ``nn.Sequential`` stacks (``0.weight``, ``2.weight``,
... and ``1.weight``, ``5.weight``, ...): :func:`nstlib.adain_model.adain_encoder` and
:func:`~nstlib.adain_model.adain_decoder` rebuild those stacks, so the files load unchanged, and every
file is checked against that layout (names and shapes) before use.

No checksum is published, so :func:`fetch_adain_file` trusts a file on first use, like
:mod:`nstlib.data.pretrained`: after the layout check passes it records the file's SHA-256 in
``<file>.sha256.json`` and refuses any later copy (a new download, a mirror copy, a file placed by
hand) with another SHA-256.

Where a file comes from, in this order:

1. the cache, ``<cache>/adain/<file>`` (``NSTLIB_CACHE``; a file placed there by hand counts);
2. a mirror folder: ``NSTLIB_MIRROR`` naming a folder that holds ``adain/<file>`` (copied atomically);
3. in quick mode nothing more: the loaders print the quick-mode banner and return seeded random
   stand-ins (quick mode never touches the network);
4. a mirror URL (``NSTLIB_MIRROR=<base URL>``: ``<base>/adain/<file>``; plain http only once a
   SHA-256 is recorded to check it against), else the release URL, both through
   :func:`nstlib.data.download.download` (atomic, resumable, retried).

Outside quick mode nothing ever falls back to random weights: a failure raises
:class:`~nstlib.vgg.WeightsError` saying what to download and where to put it.
"""

from __future__ import annotations

import datetime
import json
import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import config
from ..adain_model import ENCODER_MODULES, AdaINModel, adain_decoder, adain_encoder, check_layout
from ..fileio import atomic_write, atomic_write_json
from ..vgg import WeightsError
from .download import DownloadError, download, sha256_file

__all__ = [
    "ADAIN_CHECKPOINT_KIND",
    "DECODER_FILE",
    "DECODER_URL",
    "ENCODER_FILE",
    "ENCODER_URL",
    "RELEASE_URL",
    "STAND_IN_SEED",
    "adain_dir",
    "fetch_adain_file",
    "load_adain",
    "load_adain_decoder",
    "load_adain_encoder",
    "random_decoder",
    "random_encoder",
    "save_adain_decoder",
]

RELEASE_URL = "https://github.com/naoto0804/pytorch-AdaIN/releases/download/v0.0.0"
"""The GitHub release that pytorch-AdaIN's README links for its models."""

ENCODER_FILE = "vgg_normalised.pth"
DECODER_FILE = "decoder.pth"
ENCODER_URL = f"{RELEASE_URL}/{ENCODER_FILE}"
DECODER_URL = f"{RELEASE_URL}/{DECODER_FILE}"
_URLS = {ENCODER_FILE: ENCODER_URL, DECODER_FILE: DECODER_URL}

ADAIN_CHECKPOINT_KIND = "nstlib.adain_train_checkpoint"
"""``"kind"`` of the training checkpoints of :func:`nstlib.train_adain_decoder` (their ``"decoder"`` loads here)."""

STAND_IN_SEED = 0
"""Seed of the random stand-ins of quick mode (and of ``weights=None``)."""

RECORD_SUFFIX = ".sha256.json"


def adain_dir() -> Path:
    """``<cache>/adain``: the two files and their recorded SHA-256 (not created here)."""
    return config.cache_dir() / "adain"


# ---- fetching with trust on first use ----------------------------------------------------------------------

def _record_path(path: Path) -> Path:
    return path.with_name(path.name + RECORD_SUFFIX)


def _known_sha256(path: Path) -> str | None:
    record = _record_path(path)
    if not record.is_file():
        return None
    try:
        return str(json.loads(record.read_text(encoding="utf-8"))["sha256"])
    except (ValueError, KeyError, TypeError) as error:
        raise WeightsError(f"{record} is damaged ({error}): delete it (the file will be trusted anew on the next "
                           "call)") from error


def _manual(filename: str, url: str, path: Path) -> str:
    return (f"To install it by hand, download {url} on a machine with internet access and place it at {path} "
            f"(or put it in a folder as adain/{filename} and set {config.ENV_MIRROR} to that folder), then call "
            "again.")


def _mismatch(path: Path, digest: str, known: str, deleted: bool) -> WeightsError:
    record = _record_path(path)
    fate = "it was deleted and not used" if deleted else "it was not used"
    return WeightsError(
        f"{path.name} has SHA-256 {digest}, but the copy first used had {known} (recorded in {record}): the file "
        f"changed upstream or was altered, so {fate}. Delete {path} to fetch it again, or, if you trust the new "
        f"file, delete {record} and call again.")


def _mirror_folder_file(filename: str) -> Path | None:
    """``<mirror>/adain/<filename>`` when the mirror is a folder holding it, else None."""
    mirror = config.mirror()
    if not mirror or mirror.lower().startswith(("http://", "https://")):
        return None
    folder = Path(mirror).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"{config.ENV_MIRROR}={mirror!r} is neither an existing folder nor an http(s):// URL: "
                                "fix the path or unset it")
    source = folder / "adain" / filename
    return source if source.is_file() else None


def _obtain(filename: str, path: Path, url: str, known: str | None, progress: bool) -> None:
    """Fill the missing ``path`` from the mirror or ``url`` (see the module docstring); WeightsError otherwise."""
    source = _mirror_folder_file(filename)
    if source is not None:
        with open(source, "rb") as src:
            atomic_write(path, lambda out: shutil.copyfileobj(src, out))
        return
    if config.quick_mode():
        raise WeightsError(f"quick mode ({config.ENV_QUICK}=1) never downloads, and {filename} is not in {path.parent}. "
                           "load_adain() returns a random stand-in in quick mode; or unset "
                           f"{config.ENV_QUICK}. " + _manual(filename, url, path))
    mirror = config.mirror()
    source_url = f"{mirror.rstrip('/')}/adain/{filename}" if mirror else url
    try:
        download(source_url, path, sha256=known, progress=progress, allow_http=bool(mirror) and known is not None)
    except DownloadError as error:
        if known is not None and "sha256 mismatch" in error.reason:
            raise _mismatch(path, error.reason.rsplit(" ", 1)[-1], known, deleted=True) from error
        raise WeightsError(f"could not download the AdaIN weights {filename}:\n{error}\n"
                           + _manual(filename, url, path)) from error


def _read(path: Path) -> Any:
    """``torch.load(path, weights_only=True)``; a WeightsError naming the file otherwise."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise WeightsError(f"{path} holds pickled Python objects, which are not loaded for safety "
                           "(weights_only=True); expected a state dict of tensors") from error
    except Exception as error:
        raise WeightsError(f"{path} is not a readable PyTorch file ({type(error).__name__}: {error}); it may be "
                           "truncated (an interrupted download or copy): delete it and fetch it again") from error


def _fetch(filename: str, url: str, progress: bool, check) -> tuple[Path, dict]:
    """The cached file (fetched if missing), its SHA-256 checked against the record, and ``check(state)``."""
    path = adain_dir() / filename
    known = _known_sha256(path)
    fetched = not path.is_file()
    if fetched:
        _obtain(filename, path, url, known, progress)
    digest = sha256_file(path)
    if known is not None and digest != known:
        if fetched:
            path.unlink(missing_ok=True)
        raise _mismatch(path, digest, known, deleted=fetched)
    try:
        state = check(_read(path), str(path))
    except (WeightsError, ValueError) as error:
        if known is not None:  # a trusted file: the layout check passed when it was recorded
            raise WeightsError(str(error)) from error
        path.unlink(missing_ok=True)
        raise WeightsError(f"{error}\nThe untrusted file {path} was deleted. Check the URL ({url}). "
                           + _manual(filename, url, path)) from error
    if known is None:
        atomic_write_json(_record_path(path), {
            "sha256": digest, "size": path.stat().st_size, "url": url,
            "recorded": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "note": "trust on first use: a later file with another sha256 is refused"})
    return path, state


def fetch_adain_file(filename: str, *, url: str | None = None, progress: bool = True) -> Path:
    """The cached ``vgg_normalised.pth`` or ``decoder.pth``, fetched, layout-checked and trusted on first use.

    ``url`` replaces the release URL (a test server, say). Raises :class:`~nstlib.vgg.WeightsError`
    when the file cannot be obtained, does not have pytorch-AdaIN's layout (it is then deleted),
    or differs from the copy first trusted; the message says what to do.
    """
    if filename not in _URLS:
        raise ValueError(f"filename={filename!r} must be {ENCODER_FILE!r} or {DECODER_FILE!r}")
    check = _check_encoder if filename == ENCODER_FILE else _check_decoder
    return _fetch(filename, url or _URLS[filename], progress, check)[0]


# ---- layouts, stand-ins and loaders -----------------------------------------------------------------------

def _check_encoder(state: Any, what: str) -> dict:
    state = _unwrap(state, "encoder.")
    with torch.device("meta"):
        full = adain_encoder(full=True)
    extra = {k: v.shape for k, v in full.state_dict().items() if int(k.split(".")[0]) >= ENCODER_MODULES}
    with torch.device("meta"):
        return check_layout(adain_encoder(), state, what, allowed_extra=extra)


def _check_decoder(state: Any, what: str) -> dict:
    state = _unwrap(state, "decoder.")
    with torch.device("meta"):
        return check_layout(adain_decoder(), state, what)


def _unwrap(obj: Any, prefix: str) -> Any:
    """A training checkpoint's decoder, or the ``prefix``-ed part of an :class:`AdaINModel` state dict."""
    if isinstance(obj, dict) and obj.get("kind") == ADAIN_CHECKPOINT_KIND and prefix == "decoder.":
        return obj.get("decoder")
    if isinstance(obj, dict) and any(isinstance(k, str) and k.startswith(prefix) for k in obj):
        return {k[len(prefix):]: v for k, v in obj.items() if k.startswith(prefix)}
    return obj


def random_encoder(seed: int = STAND_IN_SEED) -> nn.Sequential:
    """The encoder with seeded random weights (Kaiming normal, fan-out, zero biases, as torchvision's
    VGG), drawn from a private generator state: the global random state does not move."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = adain_encoder()
        for module in encoder:
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
    return encoder


def random_decoder(seed: int = STAND_IN_SEED) -> nn.Sequential:
    """The decoder with seeded random weights (Kaiming normal, fan-in, zero biases; global random state
    untouched) and output bias 0.5: a random model's pictures are visible noise around mid-grey, not black.
    (Training starts from PyTorch's default initialisation instead, as pytorch-AdaIN's does.)"""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        decoder = adain_decoder()
        for module in decoder:
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)
    with torch.no_grad():
        decoder[-1].bias.fill_(0.5)
    return decoder


def _available(filename: str) -> bool:
    return (adain_dir() / filename).is_file() or _mirror_folder_file(filename) is not None


def _load(weights: Any, filename: str, url: str, progress: bool, check, build, randomly) -> tuple[nn.Sequential, str]:
    """One stack from ``weights`` ("pretrained", None / "random", or a path) and where it came from."""
    if weights is None or weights == "random":
        return randomly(STAND_IN_SEED), "random"
    if weights == "pretrained":
        if config.quick_mode() and not _available(filename):
            config.announce()
            print(f"quick mode: {filename} is not cached; using a random stand-in (seed {STAND_IN_SEED}), not "
                  "the pretrained AdaIN weights.", flush=True)
            return randomly(STAND_IN_SEED), "stand-in"
        path, state = _fetch(filename, url, progress, check)
    elif isinstance(weights, (str, os.PathLike)):
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"weights={str(weights)!r} is neither 'pretrained', 'random', None nor an "
                                    f"existing file (a {filename} in pytorch-AdaIN's layout)")
        try:
            state = check(_read(path), str(path))
        except ValueError as error:
            raise WeightsError(str(error)) from error
    else:
        raise TypeError(f"weights must be 'pretrained', 'random', None or a path, not {type(weights).__name__}")
    with torch.random.fork_rng(devices=[]):  # building initialises weights: keep the global RNG where it was
        stack = build()
    stack.load_state_dict(state)
    return stack, str(path)


def load_adain_encoder(weights: Any = "pretrained", *, url: str = ENCODER_URL, progress: bool = True) -> nn.Sequential:
    """The AdaIN encoder (image to ``relu4_1``, 31 modules): "pretrained" (``vgg_normalised.pth``),
    None or "random" (:func:`random_encoder`), or a path to a state dict in pytorch-AdaIN's layout."""
    return _load(weights, ENCODER_FILE, url, progress, _check_encoder, adain_encoder, random_encoder)[0]


def load_adain_decoder(weights: Any = "pretrained", *, url: str = DECODER_URL, progress: bool = True) -> nn.Sequential:
    """The AdaIN decoder: "pretrained" (``decoder.pth``), None or "random" (:func:`random_decoder`), or
    a path: a state dict in pytorch-AdaIN's layout (its ``decoder_iter_*.pth.tar`` too), a file of
    :func:`save_adain_decoder`, or a training checkpoint of :func:`nstlib.train_adain_decoder`."""
    return _load(weights, DECODER_FILE, url, progress, _check_decoder, adain_decoder, random_decoder)[0]


def load_adain(weights: Any = "pretrained", *, encoder: Any = None, progress: bool = True,
               encoder_url: str = ENCODER_URL, decoder_url: str = DECODER_URL) -> AdaINModel:
    """An :class:`~nstlib.adain_model.AdaINModel` (CPU, eval mode) for :func:`nstlib.stylize_adain`.

    ``weights`` chooses the decoder: "pretrained" (pytorch-AdaIN's ``decoder.pth``), a path (say a
    decoder trained with :func:`nstlib.train_adain_decoder`), or None for seeded random weights.
    ``encoder``: "pretrained" (``vgg_normalised.pth``), "random", a path, or None to follow
    ``weights`` (random when ``weights`` is None, else pretrained). Files are fetched and checked by
    :func:`fetch_adain_file`. In quick mode a "pretrained" file that is neither cached nor in the
    mirror folder becomes a seeded random stand-in (with the quick-mode banner and a note);
    ``model.metadata`` says where each part came from (``"stand-in"``, ``"random"`` or a path).
    """
    if encoder is None:
        encoder = "random" if weights is None else "pretrained"
    enc, enc_source = _load(encoder, ENCODER_FILE, encoder_url, progress, _check_encoder, adain_encoder,
                            random_encoder)
    dec, dec_source = _load(weights, DECODER_FILE, decoder_url, progress, _check_decoder, adain_decoder,
                            random_decoder)
    model = AdaINModel(enc, dec).eval()
    model.metadata = {"encoder": enc_source, "decoder": dec_source,
                      "stand_in": "stand-in" in (enc_source, dec_source)}
    return model


def save_adain_decoder(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write the decoder of ``model`` (an :class:`AdaINModel` or the decoder stack) as a plain state dict
    in pytorch-AdaIN's layout (CPU tensors), atomically: it loads with :func:`load_adain` and, unchanged,
    as ``--decoder`` of pytorch-AdaIN's own ``test.py``."""
    decoder = model.decoder if isinstance(model, AdaINModel) else model
    if not isinstance(decoder, nn.Module):
        raise TypeError(f"model must be an AdaINModel or its decoder, not {type(model).__name__}")
    with torch.device("meta"):
        reference = adain_decoder()
    state = check_layout(reference, decoder.state_dict(), "the decoder")
    path = Path(path).expanduser()
    if path.is_dir():
        raise IsADirectoryError(f"path={str(path)!r} is a folder: pass the file to write, e.g. {path / 'decoder.pth'}")
    payload = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    return atomic_write(path, lambda f: torch.save(payload, f))
