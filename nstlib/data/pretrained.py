"""The four pretrained fast style models of pytorch/examples (``fast_neural_style``).

pytorch/examples' ``download_saved_models.py`` fetches :data:`ARCHIVE_URL`, a zip holding
``candy.pth``, ``mosaic.pth``, ``rain_princess.pth`` and ``udnie.pth`` (BSD-3 licence, like
pytorch/examples; see its issue #837). No checksum is published, so :func:`fetch_pretrained`
trusts the archive on first use: it records the archive's SHA-256 next to it and refuses a
later archive with another SHA-256.

Their network is the same as ``TransformerNet(upsample="nearest")`` with other names
(``conv1.conv2d.weight`` ..., see :func:`convert_examples_state_dict`) and works on 0..255
pixels, so :func:`load_pretrained` returns it with ``pixel_scale = 255``: it takes and returns
[0, 1] images like every other nstlib network.

Cache layout (``NSTLIB_CACHE``, see :mod:`nstlib.config`)::

    <cache>/pretrained/saved_models.zip              the downloaded archive (kept)
    <cache>/pretrained/saved_models.zip.sha256.json  its recorded SHA-256 (trust on first use)
    <cache>/pretrained/saved_models/<style>.pth      the four extracted models
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path


import torch

from .. import config
from .archives import archive_members, safe_extract
from .download import DownloadError, download, sha256_file
from ..fileio import atomic_write_json
from ..checkpoints import CheckpointError, load_transform_net
from ..transform_net import TransformerNet
from ..vgg import WeightsError

__all__ = [
    "ARCHIVE_URL",
    "PRETRAINED_STYLES",
    "STAND_IN_SEED",
    "fetch_pretrained",
    "load_pretrained",
    "pretrained_dir",
]

PRETRAINED_STYLES = ("candy", "mosaic", "rain_princess", "udnie")
"""The styles of pytorch/examples' pretrained models."""

ARCHIVE_URL = "https://www.dropbox.com/s/lrvwfehqdcxoza8/saved_models.zip?dl=1"
"""The zip of the four models, as named by pytorch/examples' ``download_saved_models.py``."""

ARCHIVE_NAME = "saved_models.zip"
MODELS_FOLDER = "saved_models"
RECORD_SUFFIX = ".sha256.json"

MAX_MODELS_BYTES = 64 << 20
"""Cap (64 MiB) on the extracted size of the four models, about 6.7 MB each (27 MB in all): a member
declaring more (a decompression bomb, or another file behind the URL) is refused before it is written."""

STAND_IN_SEED = 0
"""Seed of the random stand-in network :func:`load_pretrained` returns in quick mode."""

def pretrained_dir() -> Path:
    """``<cache>/pretrained``: where the archive, its recorded SHA-256 and the models live (not created here)."""
    return config.cache_dir() / "pretrained"


def _check_style(style: str) -> str:
    if style not in PRETRAINED_STYLES:
        raise ValueError(f"style={style!r} is not a pretrained style: choose one of {', '.join(PRETRAINED_STYLES)}")
    return style


def _model_paths() -> dict[str, Path]:
    folder = pretrained_dir() / MODELS_FOLDER
    return {style: folder / f"{style}.pth" for style in PRETRAINED_STYLES}


def _cached() -> bool:
    return all(p.is_file() for p in _model_paths().values())


def _find_models(archive: Path) -> dict[str, str]:
    """Member name of each ``<style>.pth`` in the zip (by base name, in any folder); ValueError otherwise."""
    if not zipfile.is_zipfile(archive):
        with open(archive, "rb") as f:
            head = f.read(32)
        raise ValueError(f"{archive} is not a zip archive (it starts with {head!r}); expected pytorch/examples' "
                         "saved_models.zip")
    found: dict[str, list[str]] = {style: [] for style in PRETRAINED_STYLES}
    names = archive_members(archive)
    for name in names:
        base = name.rstrip("/").rsplit("/", 1)[-1]
        if base.endswith(".pth") and base[:-4] in found and not name.endswith("/"):
            found[base[:-4]].append(name)
    missing = [f"{s}.pth" for s, hits in found.items() if not hits]
    if missing:
        raise ValueError(f"{archive} lacks {', '.join(missing)}; expected the four models "
                         f"{', '.join(s + '.pth' for s in PRETRAINED_STYLES)} (it holds {names[:10]})")
    doubles = {s: hits for s, hits in found.items() if len(hits) > 1}
    if doubles:
        raise ValueError(f"{archive} holds several copies of a model: {doubles}; cannot tell which one to use")
    return {style: hits[0] for style, hits in found.items()}


def _record_path(archive: Path) -> Path:
    return archive.with_name(archive.name + RECORD_SUFFIX)


def _check_trust(archive: Path, url: str) -> str:
    """The archive's SHA-256; WeightsError when a recorded (first-trusted) SHA-256 differs."""
    digest = sha256_file(archive)
    record = _record_path(archive)
    if record.is_file():
        try:
            known = json.loads(record.read_text(encoding="utf-8"))["sha256"]
        except (ValueError, KeyError, TypeError) as error:
            raise WeightsError(f"{record} is damaged ({error}): delete it (the archive will be trusted anew "
                               "on the next call)") from error
        if known != digest:
            raise WeightsError(
                f"the pretrained-model archive from {url} has SHA-256 {digest}, but the one first downloaded "
                f"had {known} (recorded in {record}). The file changed upstream or was altered on the way, so "
                f"it was deleted and not used. If you trust the new file, delete {record} and call again.")
    return digest


def _record_trust(archive: Path, digest: str, url: str) -> None:
    """Trust on first use: write ``<archive>.sha256.json`` unless it exists."""
    record = _record_path(archive)
    if not record.is_file():
        atomic_write_json(record, {"sha256": digest, "size": archive.stat().st_size, "url": url,
                             "recorded": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                             "note": "trust on first use: a later archive with another sha256 is refused"})


def _install(archive: Path, url: str) -> None:
    """Check ``archive``, extract its four models into ``saved_models/`` atomically, check each loads."""
    members = _find_models(archive)
    digest = _check_trust(archive, url)
    folder = pretrained_dir() / MODELS_FOLDER
    work = Path(tempfile.mkdtemp(prefix=".saved_models.", suffix=".tmp", dir=folder.parent))
    try:
        extracted = safe_extract(archive, work / "extract", members=list(members.values()),
                                 max_bytes=MAX_MODELS_BYTES)
        by_style = {path.name[:-len(".pth")]: path for path in extracted}  # base names are unique (checked)
        ready = work / "ready"
        ready.mkdir()
        for style, member in members.items():
            target = ready / f"{style}.pth"
            os.replace(by_style[style], target)
            try:
                load_transform_net(target)
            except CheckpointError as error:
                raise ValueError(f"{archive}: member {member!r} is not a usable model: {error}") from error
        if folder.exists():
            shutil.rmtree(folder)
        os.rename(ready, folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _record_trust(archive, digest, url)


def fetch_pretrained(style: str, *, url: str = ARCHIVE_URL, progress: bool = True) -> Path:
    """The path of the cached ``<style>.pth`` of pytorch/examples, downloading the archive once.

    When the four models are already extracted, returns at once (no network). Otherwise:

    1. uses ``<cache>/pretrained/saved_models.zip`` if it is there (placed by hand, say),
       or downloads ``url`` to it with :func:`nstlib.data.download.download` (atomic; no checksum
       is published, so none is checked);
    2. checks it is a zip holding ``candy.pth``, ``mosaic.pth``, ``rain_princess.pth`` and
       ``udnie.pth`` (found by base name in any folder of the zip);
    3. trust on first use: when ``saved_models.zip.sha256.json`` records a SHA-256, an
       archive with another one is an **error** (a silently different model would change
       the course's results): the new archive is deleted and the message says how to
       accept it;
    4. extracts the four files with :func:`nstlib.data.archives.safe_extract` (at most
       :data:`MAX_MODELS_BYTES` in all, compressed at most 100-fold), checks that each
       loads as a :class:`TransformerNet`, and moves them together into
       ``<cache>/pretrained/saved_models/``;
    5. the first time, records the archive's SHA-256, size and URL in
       ``saved_models.zip.sha256.json``.

    A failed check deletes the bad archive and leaves no half-written model. In quick mode
    nothing is downloaded: a missing model raises (use :func:`load_pretrained`, which
    returns a stand-in there).

    Raises:
        ValueError: ``style`` is not one of :data:`PRETRAINED_STYLES`.
        WeightsError: the archive could not be downloaded, is not the expected zip, or
            differs from the one first trusted; the message says how to fix it.
    """
    _check_style(style)
    paths = _model_paths()
    if _cached():
        return paths[style]
    folder = pretrained_dir()
    archive = folder / ARCHIVE_NAME
    manual = (f"To install by hand, download {ARCHIVE_URL} on a machine with internet access and place it at "
              f"{archive}, then call again.")
    if not archive.is_file():
        if config.quick_mode():
            raise WeightsError(f"quick mode (NSTLIB_QUICK=1) never downloads, and the pretrained model "
                               f"{style!r} is not cached in {paths[style].parent}. Use load_pretrained(), which "
                               "returns a stand-in in quick mode, or unset NSTLIB_QUICK. " + manual)
        folder.mkdir(parents=True, exist_ok=True)
        try:
            download(url, archive, progress=progress)
        except DownloadError as error:
            raise WeightsError(f"could not download the pretrained fast style models:\n{error}\n{manual}") from error
    try:
        _install(archive, url)
    except (ValueError, WeightsError) as error:
        archive.unlink(missing_ok=True)
        if isinstance(error, WeightsError):
            raise
        raise WeightsError(f"the pretrained-model archive is not usable, so {archive} was deleted: {error}\n"
                           f"Check the URL ({url}); {manual}") from error
    return paths[style]


def _stand_in() -> TransformerNet:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(STAND_IN_SEED)
        net = TransformerNet(upsample="nearest")
    net.metadata = {"stand_in": True, "seed": STAND_IN_SEED}
    return net.eval()


def load_pretrained(style: str, *, url: str = ARCHIVE_URL, progress: bool = True) -> TransformerNet:
    """pytorch/examples' pretrained ``style`` model as a ``TransformerNet`` for [0, 1] images (CPU, eval mode).

    The network is ``TransformerNet(upsample="nearest", pixel_scale=255)`` loaded from
    :func:`fetch_pretrained` (``url`` downloaded once, then cached).

    Quick mode (``NSTLIB_QUICK=1``): nothing is downloaded. A cached model is loaded as
    usual; otherwise this prints the quick-mode banner and returns a **stand-in**: a
    ``TransformerNet(upsample="nearest")`` with PyTorch's default random initialisation,
    seeded with :data:`STAND_IN_SEED` (so runs repeat), ``pixel_scale = 1`` (so its
    output is visible noise rather than black) and ``net.metadata["stand_in"] = True``.
    Outside quick mode a stand-in is never returned: a failure raises ``WeightsError``.
    """
    _check_style(style)
    path = _model_paths()[style]
    if config.quick_mode():
        if path.is_file():
            return load_transform_net(path)
        config.announce()
        print(f"quick mode: pretrained style {style!r} is not cached; using a random stand-in network "
              f"(seed {STAND_IN_SEED}), not the real model.", flush=True)
        return _stand_in()
    return load_transform_net(fetch_pretrained(style, url=url, progress=progress))
