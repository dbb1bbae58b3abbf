"""Training images for Johnson et al.'s fast style transfer: folders, named datasets, downloads.

>>> data = open_dataset("coco-val2017", size=256)     # or "labelme", a folder path, "synthetic"
>>> loader = torch.utils.data.DataLoader(data, batch_size=4, shuffle=True)

Every dataset yields ``[3, size, size]`` float tensors in [0, 1] (no labels):

* :class:`ImageFolderDataset`: every image under a folder (recursive, sorted). Each
  image is resized so that its *shorter* side is ``size`` (antialiased bicubic) and
  the centre ``size x size`` square is cut out (:func:`resize_shorter`,
  :func:`center_crop`). Nothing is random, so training resumes exactly; shuffle in
  the ``DataLoader``. Files that do not decode are skipped with one warning each.
* :class:`SyntheticDataset`: deterministic painted scenes (:mod:`nstlib.data.synthetic`),
  for quick mode and tests.
* :func:`open_dataset`: a folder path or a dataset name (:data:`DATASETS`). A named
  dataset that is not on disk is an error telling how to download it, except in quick
  mode, which announces itself and uses a :class:`SyntheticDataset` (quick mode never
  downloads).

Downloads (:func:`download_coco`, :func:`download_labelme_12_50k`; LabelMe itself has
no archive, see :func:`nstlib.download_labelme`) fetch an archive with resume,
check it against its published size and checksum, extract it with
:func:`nstlib.data.archives.safe_extract`, record ``<dest>/<name>.manifest.json`` and delete
the archive. A second call finds the manifest and its files and does nothing.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
import posixpath
import shutil
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .. import config

from . import synthetic
from .archives import DEFAULT_MAX_BYTES, safe_extract
from .download import DownloadError, download, sha256_file
from ..fileio import atomic_write_json
from ..images import DEFAULT_MAX_PIXELS, ImageError, load_image
from .labelme import LABELME_URL, download_labelme
from ..validate import optional_positive_int, positive_int

__all__ = [
    "ARCHIVES",
    "DATASETS",
    "IMAGE_EXTENSIONS",
    "LABELME_URL",
    "Archive",
    "DatasetNotFoundError",
    "ImageFolderDataset",
    "SyntheticDataset",
    "center_crop",
    "dataset_dir",
    "download_archive",
    "download_coco",
    "download_labelme",
    "download_labelme_12_50k",
    "list_images",
    "load_square",
    "open_dataset",
    "resize_shorter",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
"""File extensions (case-insensitive) that :class:`ImageFolderDataset` reads."""


class DatasetNotFoundError(FileNotFoundError):
    """A dataset folder is missing or holds no images; the message says how to get data."""


# --------------------------------------------------------------------------------------
# archives and their published facts


@dataclass(frozen=True)
class Archive:
    """A dataset archive and what is published about it.

    ``folder`` is where the images are expected after extraction, relative to the
    destination folder (the manifest records the folder actually found). ``size``,
    ``sha256`` and ``md5`` are None when unpublished. ``fallback_urls`` are tried in
    order when ``url`` fails (another address of the same file; plain ``http`` ones only
    when a checksum is known, since the checksum then protects the file). ``max_bytes``
    caps the total size of the extracted files (see
    :func:`nstlib.data.archives.safe_extract`, which also refuses a compression ratio
    above 100): a little above the real contents, so that a different, much larger file
    (a decompression bomb from an unchecked address) is refused before it is written.
    """

    name: str
    url: str
    filename: str
    folder: str
    size: int | None
    sha256: str | None
    md5: str | None
    images: int | None
    allow_http: bool = False
    note: str = ""
    fallback_urls: tuple[str, ...] = ()
    max_bytes: int = DEFAULT_MAX_BYTES


def _coco_fallbacks(path: str) -> tuple[str, ...]:
    """The same COCO file elsewhere: S3's own https name (some clients see a certificate for
    s3.amazonaws.com on images.cocodataset.org), then plain http (checksummed)."""
    return (f"https://s3.amazonaws.com/images.cocodataset.org/{path}", f"http://images.cocodataset.org/{path}")


ARCHIVES = {
    "coco-val2017": Archive(
        name="coco-val2017", url="https://images.cocodataset.org/zips/val2017.zip", filename="val2017.zip",
        folder="val2017", size=815_585_330, md5="442b8da7639aecaf257c1dceb8ba8c80",
        sha256="4f7e2ccb2866ec5041993c9cf2a952bbed69647b115d0f74da7ce8f4bef82f05", images=5_000,
        note="COCO 2017 validation images (Flickr terms of use); size and checksums are community-derived",
        fallback_urls=_coco_fallbacks("zips/val2017.zip"),
        max_bytes=1_000_000_000),  # JPEGs barely compress: about 0.79 GB extracted
    "coco-train2014": Archive(
        name="coco-train2014", url="https://images.cocodataset.org/zips/train2014.zip", filename="train2014.zip",
        folder="train2014", size=13_510_573_713, md5="0da8c0bd3d6becc4dcb32757491aca88", sha256=None,
        images=82_783,
        note="COCO 2014 training images, Johnson et al.'s training set (Flickr terms of use); only a "
             "community-derived md5 is known, checked after the download",
        fallback_urls=_coco_fallbacks("zips/train2014.zip"),
        max_bytes=16_000_000_000),  # about 13.4 GB extracted
    "labelme-12-50k": Archive(
        name="labelme-12-50k", url="http://www.ais.uni-bonn.de/deep_learning/LabelMe-12-50k.tar.gz",
        filename="LabelMe-12-50k.tar.gz", folder="LabelMe-12-50k", size=None, sha256=None, md5=None,
        images=50_000, allow_http=True,
        note="LabelMe-12-50k (Uetz & Behnke, Uni Bonn): 50,000 JPEGs of 256x256; no size or checksum is "
             "published and the host serves plain http, so the file cannot be verified (its sha256 is recorded)",
        max_bytes=4_000_000_000),  # 50,000 JPEGs of 256x256: 80 KB each, far above their real size
}
"""The archives :func:`download_archive` knows, by dataset name."""

DATASETS = ("labelme", "labelme-12-50k", "coco-val2017", "coco-train2014", "synthetic")
"""The names :func:`open_dataset` accepts besides a folder path."""

_HOW_TO_GET = {
    "labelme": "nstlib.download_labelme(n=20000)  (crawls 20,000 JPEGs from labelme.csail.mit.edu; "
               "no size is published)",
    "labelme-12-50k": "nstlib.data.download_labelme_12_50k()  (50,000 small JPEGs; size not published)",
    "coco-val2017": "nstlib.download_coco('val2017')  (815.6 MB, 5,000 images)",
    "coco-train2014": "nstlib.download_coco('train2014')  (13.5 GB, 82,783 images; needs ~28 GB free "
                      "while extracting)",
}


def dataset_dir(name: str) -> Path:
    """Where a named dataset lives: ``<cache>/datasets/labelme`` for the crawl, else the archive's folder.

    ``labelme-12-50k`` extracts into ``<cache>/datasets/labelme-12-50k``; both COCO
    splits into ``<cache>/datasets/coco``. The image folder of an archive dataset is read
    from its manifest (see :func:`download_archive`).
    """
    root = config.cache_dir() / "datasets"
    if name == "labelme":
        return root / "labelme"
    if name.startswith("coco-"):
        return root / "coco"
    if name == "labelme-12-50k":
        return root / "labelme-12-50k"
    raise ValueError(f"unknown dataset name {name!r}; the names are {', '.join(DATASETS)}")


# --------------------------------------------------------------------------------------
# pixels: shorter side to size, then the centre square


_SIZE_HINT = " (the side of the square images in pixels)"
_N_HINT = " (how many images to use; None for all)"


def resize_shorter(image: torch.Tensor, size: int) -> torch.Tensor:
    """Resize ``[B, 3, H, W]`` so that the shorter side is ``size`` (aspect kept).

    The longer side becomes ``floor(long * size / short + 0.5)`` (at least ``size``).
    Antialiased bicubic interpolation (``F.interpolate(..., antialias=True)``, as Pillow's
    BICUBIC), clamped to [0, 1]. An image already of that size is returned as a copy.
    """
    height, width = image.shape[-2:]
    short, long = min(height, width), max(height, width)
    other = max(size, math.floor(long * size / short + 0.5))
    new = (size, other) if height <= width else (other, size)
    if new == (height, width):
        return image.clone()
    out = F.interpolate(image, size=new, mode="bicubic", align_corners=False, antialias=True)
    return out.clamp_(0.0, 1.0)


def center_crop(image: torch.Tensor, size: int) -> torch.Tensor:
    """The centre ``size x size`` square of ``[..., H, W]`` (both sides >= ``size``).

    Rows ``top = (H - size) // 2`` to ``top + size`` and columns
    ``left = (W - size) // 2`` to ``left + size``: when the excess is odd, the extra
    pixel is dropped at the bottom or right.
    """
    height, width = image.shape[-2:]
    if height < size or width < size:
        raise ValueError(f"cannot crop {size}x{size} from a {width}x{height} image")
    top, left = (height - size) // 2, (width - size) // 2
    return image[..., top:top + size, left:left + size]


def load_square(path: str | os.PathLike, size: int, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> torch.Tensor:
    """The image file ``path`` as a ``[3, size, size]`` tensor: shorter side to ``size``, centre crop.

    Decoding is :func:`nstlib.images.load_image` (EXIF orientation, any mode to RGB,
    transparency on white); a JPEG is first decoded at the smallest 1/2, 1/4 or 1/8
    scale whose shorter side is still >= ``size`` (Pillow's ``draft``), which is much
    faster for large photos. In quick mode ``load_image`` itself caps the longer side at
    64 px, so a non-square image may be upscaled slightly: quick mode is a smoke test.
    Raises :class:`~nstlib.images.ImageError` naming the file when it cannot be used.
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            width, height = img.size
            if max_pixels is not None and width * height > max_pixels:
                raise ImageError(f"{path}: the image is too large ({width}x{height} pixels, more than "
                                 f"max_pixels={max_pixels})")
            if img.format == "JPEG":
                scale = size / min(width, height)
                if scale < 1:
                    img.draft("RGB", (math.ceil(width * scale), math.ceil(height * scale)))
            image = load_image(img, None)
    except ImageError as error:
        message = str(error)
        raise ImageError(message if str(path) in message else f"{path}: {message}") from error
    except Exception as error:  # Pillow raises many types for broken files
        raise ImageError(f"{path}: cannot decode the image ({type(error).__name__}: {error})") from error
    return center_crop(resize_shorter(image, size), size)[0].contiguous()


# --------------------------------------------------------------------------------------
# datasets


def list_images(root: str | os.PathLike, extensions=IMAGE_EXTENSIONS) -> list[Path]:
    """Every file under ``root`` (recursively) whose extension is in ``extensions`` (case-insensitive).

    Sorted by the path relative to ``root`` written with ``/`` (the same order on every
    system). Hidden files and folders (names starting with ``.``: partial downloads,
    temporary files) are skipped; symbolic links to folders are not followed.
    """
    root = Path(root)
    suffixes = tuple(e.lower() for e in extensions)
    found: list[tuple[str, Path]] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if not name.startswith(".") and name.lower().endswith(suffixes):
                path = Path(folder) / name
                found.append((path.relative_to(root).as_posix(), path))
    return [path for _, path in sorted(found)]


def _no_images_message(root: Path, what: str) -> str:
    return (f"{root} {what}. Put photos in it (any folder of .jpg/.png images works), or download a dataset: "
            f"nstlib.download_labelme(n=20000) (the seed's data), download_coco('val2017') "
            f"or download_coco('train2014') (Johnson et al.'s), then open_dataset(...) its folder")


class ImageFolderDataset(torch.utils.data.Dataset):
    """Every image under ``root`` as ``[3, size, size]`` tensors in [0, 1] (see :func:`load_square`).

    Files are listed once by :func:`list_images` (recursive, sorted); ``n`` keeps the
    first ``n``. ``dataset[i]`` decodes file ``i``; a file that does not decode is
    skipped with one warning naming it, recorded in ``dataset.skipped``, and the next
    decodable file (wrapping around) is returned instead, so an epoch never stops half
    way. When no file decodes at all, ``RuntimeError``. (With ``DataLoader`` worker
    processes each worker keeps its own ``skipped`` list.) In quick mode ``size`` is
    capped at 64.

    Raises :class:`DatasetNotFoundError` when ``root`` is missing or holds no image
    file; the message says how to get images.
    """

    def __init__(self, root: str | os.PathLike, size: int = 256, *, extensions=IMAGE_EXTENSIONS,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS, n: int | None = None):
        self.root = Path(root).expanduser()
        self.size = config.cap_size(positive_int(size, "size", _SIZE_HINT))
        n = optional_positive_int(n, "n", _N_HINT)
        if isinstance(extensions, str) or not all(isinstance(e, str) and e.startswith(".") for e in extensions):
            raise ValueError(f"extensions={extensions!r} must be a tuple of suffixes such as ('.jpg', '.png')")
        self.extensions = tuple(e.lower() for e in extensions)
        if max_pixels is not None and (not isinstance(max_pixels, numbers.Integral) or max_pixels <= 0):
            raise ValueError(f"max_pixels={max_pixels!r} must be a positive integer or None")
        self.max_pixels = max_pixels
        if not self.root.exists():
            raise DatasetNotFoundError(_no_images_message(self.root, "does not exist"))
        if not self.root.is_dir():
            raise NotADirectoryError(f"{self.root} is a file, not a folder of images: pass the folder holding them")
        self.files = list_images(self.root, self.extensions)[:n]
        if not self.files:
            raise DatasetNotFoundError(_no_images_message(
                self.root, f"holds no image files (looked for {' '.join(self.extensions)}, recursively)"))
        self.skipped: list[Path] = []
        self._bad: set[int] = set()

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        if not isinstance(index, numbers.Integral) or isinstance(index, bool):
            raise TypeError(f"index must be an integer, not {type(index).__name__}")
        count = len(self.files)
        if not -count <= index < count:
            raise IndexError(f"index {index} is out of range for a dataset of {count} images")
        index %= count
        for k in range(count):
            j = (index + k) % count
            if j in self._bad:
                continue
            try:
                return load_square(self.files[j], self.size, max_pixels=self.max_pixels)
            except (ImageError, OSError) as error:
                self._bad.add(j)
                self.skipped.append(self.files[j])
                warnings.warn(f"skipping {self.files[j]}: {error} ({len(self.skipped)} file(s) skipped so far; "
                              "the next image is used instead)", stacklevel=2)
        raise RuntimeError(f"none of the {count} files in {self.root} could be decoded as an image (first: "
                           f"{', '.join(str(p) for p in self.skipped[:3])}); check that the folder holds photos")

    def __repr__(self) -> str:
        return f"ImageFolderDataset({str(self.root)!r}, size={self.size}, {len(self)} files)"


class SyntheticDataset(torch.utils.data.Dataset):
    """``length`` deterministic painted scenes as ``[3, size, size]`` tensors in [0, 1].

    Image ``i`` is ``nstlib.data.synthetic.content_standin(f"synthetic-{seed}-{i}", size, size)``
    (sky, sun, hills, a river, houses): the same ``(seed, i, size)`` always gives the same
    pixels. For quick mode and tests only: it teaches a network nothing about photos.
    In quick mode ``size`` is capped at 64.
    """

    def __init__(self, length: int = 64, size: int = 256, seed: int = 0):
        if not isinstance(length, numbers.Integral) or isinstance(length, bool) or length <= 0:
            raise ValueError(f"length={length!r} must be a positive integer")
        if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"seed={seed!r} must be a non-negative integer")
        self.length, self.seed = int(length), int(seed)
        self.size = config.cap_size(positive_int(size, "size", _SIZE_HINT))

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> torch.Tensor:
        if not isinstance(index, numbers.Integral) or isinstance(index, bool):
            raise TypeError(f"index must be an integer, not {type(index).__name__}")
        if not -self.length <= index < self.length:
            raise IndexError(f"index {index} is out of range for a dataset of {self.length} images")
        index %= self.length
        img = synthetic.content_standin(f"synthetic-{self.seed}-{index}", self.size, self.size)
        return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()

    def __repr__(self) -> str:
        return f"SyntheticDataset(length={self.length}, size={self.size}, seed={self.seed})"


def _manifest_path(dest: Path, name: str) -> Path:
    return dest / f"{name}.manifest.json"


def _read_manifest(dest: Path, name: str) -> dict | None:
    """The manifest of an extracted archive when it and every file it lists are present, else None."""
    path = _manifest_path(dest, name)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        folder, files = manifest["folder"], manifest["files"]
        if not isinstance(folder, str) or not isinstance(files, list):
            return None
        if all((dest / f).is_file() for f in files):
            return manifest
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def open_dataset(source: str | os.PathLike, size: int = 256, *, n: int | None = None) -> torch.utils.data.Dataset:
    """A dataset of ``[3, size, size]`` images from a folder path or a name in :data:`DATASETS`.

    * a folder path: :class:`ImageFolderDataset` (an error when it is missing or empty);
    * ``"labelme"``: the crawl of :func:`download_labelme` in ``<cache>/datasets/labelme``;
    * ``"labelme-12-50k"``, ``"coco-val2017"``, ``"coco-train2014"``: the folder recorded
      by :func:`download_labelme_12_50k` / :func:`download_coco`;
    * ``"synthetic"``: a :class:`SyntheticDataset` of ``n`` (default 64) images.

    A named dataset that is not on disk raises :class:`DatasetNotFoundError` telling which
    function downloads it and how big it is; in quick mode it prints the quick-mode banner
    and a note instead and returns ``SyntheticDataset(n or 64, size)`` (no network).
    ``n`` keeps the first ``n`` images (sorted order). In quick mode ``size`` is capped at 64.
    """
    size = positive_int(size, "size", _SIZE_HINT)
    n = optional_positive_int(n, "n", _N_HINT)
    if isinstance(source, str) and source in DATASETS:
        if source == "synthetic":
            return SyntheticDataset(n or 64, size)
        folder = _named_folder(source)
        if folder is not None:
            try:
                return ImageFolderDataset(folder, size, n=n)
            except DatasetNotFoundError:
                pass
        if config.quick_mode():
            config.announce()
            print(f"Quick mode: dataset {source!r} is not on disk; using {n or 64} synthetic stand-in images "
                  "(quick mode never downloads).")
            return SyntheticDataset(n or 64, size)
        where = dataset_dir(source)
        raise DatasetNotFoundError(
            f"dataset {source!r} is not in {where} (it is not downloaded yet, or the download did not finish). "
            f"Download it with {_HOW_TO_GET[source]}, or pass the path of any folder of photos to open_dataset")
    if isinstance(source, str) and not source.strip():
        raise ValueError(f"source={source!r} is empty: pass a folder path or one of {', '.join(DATASETS)}")
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"source must be a folder path or one of {', '.join(DATASETS)}, not {type(source).__name__}")
    path = Path(source).expanduser()
    if not path.exists() and isinstance(source, str) and os.sep not in source and "/" not in source:
        raise DatasetNotFoundError(f"{source!r} is neither an existing folder (the current folder is {Path.cwd()}) "
                                   f"nor a dataset name; the names are {', '.join(DATASETS)}")
    return ImageFolderDataset(path, size, n=n)


def _named_folder(name: str) -> Path | None:
    """The image folder of a named dataset when it was downloaded, else None."""
    dest = dataset_dir(name)
    if name == "labelme":
        return dest if dest.is_dir() else None
    manifest = _read_manifest(dest, name)
    return None if manifest is None else dest / manifest["folder"]


# --------------------------------------------------------------------------------------
# downloads


def _md5_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(archive: Archive, path: Path, url: str) -> None:
    """Check size and the strongest published checksum (sha256, else md5); delete ``path`` on a mismatch."""
    actual = path.stat().st_size
    if archive.size is not None and actual != archive.size:
        path.unlink()
        raise DownloadError(url, f"size mismatch: expected {archive.size} bytes, got {actual}",
                            f"the bad file {path} was deleted: call again to download it afresh")
    if archive.sha256 is not None:
        got, want, kind = sha256_file(path), archive.sha256.lower(), "sha256"
    elif archive.md5 is not None:
        got, want, kind = _md5_file(path), archive.md5.lower(), "md5"
    else:
        return
    if got != want:
        path.unlink()
        raise DownloadError(url, f"{kind} mismatch: expected {want}, got {got}",
                            f"the bad file {path} was deleted: call again; if it fails again the file changed "
                            "upstream or a proxy alters it: download it by hand from a trusted copy")


def _download_from_any(archive: Archive, path: Path, download_kwargs: dict) -> None:
    """Fetch ``archive`` into ``path`` from ``url``, else from each fallback in turn; check size and checksums.

    ``download`` checks size and sha256; md5 (when it is the only checksum) is checked
    here. A plain-http fallback is used only when a checksum is known. When every
    address fails, the error of a single address is raised as it is; with several, one
    ``DownloadError`` lists them all.
    """
    checked = archive.sha256 is not None or archive.md5 is not None
    urls = [archive.url] + [u for u in archive.fallback_urls if checked or not u.lower().startswith("http://")]
    errors: list[DownloadError] = []
    for k, url in enumerate(urls):
        allow_http = archive.allow_http or (checked and url.lower().startswith("http://"))
        try:
            download(url, path, sha256=archive.sha256, size=archive.size, allow_http=allow_http, **download_kwargs)
            if archive.sha256 is None and archive.md5 is not None:
                _verify(archive, path, url)
            return
        except DownloadError as error:
            errors.append(error)
            if k + 1 < len(urls) and download_kwargs.get("progress", True):
                print(f"{url} failed ({error.reason}); trying {urls[k + 1]}")
    if len(errors) == 1:
        raise errors[0]
    raise DownloadError(archive.url, "every address failed: " + "; ".join(f"{e.url}: {e.reason}" for e in errors),
                        errors[-1].fix)


def _common_folder(files: list[str]) -> str:
    """The deepest folder holding every path in ``files`` (``"."`` when they share none)."""
    folders = [posixpath.dirname(f) for f in files]
    common = posixpath.commonpath(folders) if folders and all(folders) else ""
    return common or "."


def _extract_or_delete(archive: Archive, path: Path, dest: Path) -> list[Path]:
    """:func:`safe_extract` with ``archive.max_bytes``; a refused archive is deleted and the error says so."""
    try:
        return safe_extract(path, dest, max_bytes=archive.max_bytes)
    except ValueError as error:
        path.unlink(missing_ok=True)
        raise ValueError(f"{error}\nThe refused archive {path} was deleted (nothing of it was extracted into "
                         f"{dest}). The limit for {archive.name} is max_bytes={archive.max_bytes:,}; to accept a "
                         f"larger file you trust, call download_archive(dataclasses.replace(ARCHIVES["
                         f"{archive.name!r}], max_bytes=...)).") from error


def download_archive(archive: Archive, dest: str | os.PathLike | None = None, *, keep_archive: bool = False,
                     progress: bool = True, timeout: float = 60.0, retries: int = 3, backoff: float = 1.0) -> Path:
    """Download, verify and extract ``archive`` into ``dest``; return its image folder.

    1. When ``dest/<name>.manifest.json`` exists and every file it lists is present,
       return at once (no network).
    2. In quick mode, print the banner and a note and return the expected folder
       without downloading anything.
    3. Refuse to start when the disk lacks room for the archive and its contents
       (twice ``size``, when known).
    4. Download ``dest/<filename>`` with :func:`nstlib.data.download.download` (resumes a
       ``.part`` file, checks ``size`` and ``sha256``) from ``url``, or when that fails
       from each of ``fallback_urls`` in turn; then check ``md5`` when it is the only
       checksum. An archive already there from an earlier run is checked instead of
       fetched. A mismatch deletes the archive and raises
       :class:`~nstlib.DownloadError`: nothing is left behind.
    5. Extract with :func:`nstlib.data.archives.safe_extract` (refuses members escaping
       ``dest``, and contents over ``archive.max_bytes`` or expanding more than 100-fold),
       write the manifest (name, url, archive size, sha256, md5, image folder, file list)
       atomically, delete the archive unless ``keep_archive``. A refused archive is
       deleted (the error names it) and nothing of it stays in ``dest``.

    The image folder is the deepest folder holding every extracted file (for COCO
    ``dest/val2017``). Default ``dest``: :func:`dataset_dir` of the archive's name.
    """
    dest = Path(dest).expanduser() if dest is not None else dataset_dir(archive.name)
    manifest = _read_manifest(dest, archive.name)
    if manifest is not None:
        return dest / manifest["folder"]
    if config.quick_mode():
        config.announce()
        print(f"Quick mode: not downloading {archive.name} (quick mode never uses the network); "
              f"open_dataset({archive.name!r}) uses synthetic stand-ins.")
        return dest / archive.folder
    if dest.exists() and not dest.is_dir():
        raise NotADirectoryError(f"dest={str(dest)!r} is a file: pass a folder to extract {archive.filename} into")
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / archive.filename
    if archive.size is not None and not path.is_file():
        partial = path.with_name(path.name + ".part")
        needed = 2 * archive.size - (partial.stat().st_size if partial.is_file() else 0)
        free = shutil.disk_usage(dest).free
        if free < needed:
            raise OSError(f"not enough free disk space in {dest}: {archive.name} needs about {needed / 1e9:.1f} GB "
                          f"(the {archive.size / 1e9:.1f} GB archive and its contents), {free / 1e9:.1f} GB are free. "
                          "Free some space or pass dest= on a larger disk")
    if archive.note and progress:
        print(f"{archive.name}: {archive.note}")
    if path.is_file():  # left by an earlier run (keep_archive, or stopped before the manifest): check it
        _verify(archive, path, archive.url)
    else:
        _download_from_any(archive, path, dict(timeout=timeout, retries=retries, backoff=backoff,
                                               progress=progress))
    # record a sha256 when nothing was checked, so a later copy can be compared (hashing 13 GB is skipped)
    archive_sha256 = archive.sha256 or (sha256_file(path) if archive.md5 is None else None)
    if progress:
        print(f"extracting {path} into {dest} ...")
    extracted = _extract_or_delete(archive, path, dest)
    files = sorted(p.relative_to(dest).as_posix() for p in extracted)
    folder = _common_folder(files)
    atomic_write_json(_manifest_path(dest, archive.name), {
        "name": archive.name, "url": archive.url, "archive": archive.filename, "bytes": path.stat().st_size,
        "sha256": archive_sha256, "md5": archive.md5, "folder": folder, "count": len(files), "files": files,
    })
    if not keep_archive:
        path.unlink()
    return dest / folder


def _override(archive: Archive, url, size, sha256, md5) -> Archive:
    changes = {k: v for k, v in dict(url=url, size=size, sha256=sha256, md5=md5).items() if v is not None}
    if url is not None:
        changes["fallback_urls"] = ()  # the caller's address only
        if url.lower().startswith("http://"):
            changes["allow_http"] = True  # the caller named a plain-http copy on purpose
    return replace(archive, **changes)


def download_coco(split: str = "val2017", dest: str | os.PathLike | None = None, *, url: str | None = None,
                  size: int | None = None, sha256: str | None = None, md5: str | None = None,
                  keep_archive: bool = False, progress: bool = True, timeout: float = 60.0, retries: int = 3,
                  backoff: float = 1.0) -> Path:
    """Download and extract COCO images; return the image folder (``<dest>/val2017`` ...).

    ``split``: ``"val2017"`` (5,000 images, 815,585,330 bytes, sha256 checked) or
    ``"train2014"`` (82,783 images, Johnson et al.'s training set, 13,510,573,713 bytes;
    only an md5 is known, checked after the download). Both come from
    ``https://images.cocodataset.org/zips/``; when that fails (some clients are shown a
    certificate for ``s3.amazonaws.com`` there), from
    ``https://s3.amazonaws.com/images.cocodataset.org/zips/``, then from plain
    ``http://images.cocodataset.org/zips/`` (safe because the checksum is verified).
    ``url`` (then the only address), ``size``, ``sha256``, ``md5`` replace the
    published values when given (a mirror, or a test server). Default
    ``dest``: ``<cache>/datasets/coco``. See :func:`download_archive` for the steps.
    """
    name = f"coco-{split}"
    if name not in ARCHIVES:
        raise ValueError(f"split={split!r} is not one of 'val2017', 'train2014'")
    return download_archive(_override(ARCHIVES[name], url, size, sha256, md5), dest, keep_archive=keep_archive,
                            progress=progress, timeout=timeout, retries=retries, backoff=backoff)


def download_labelme_12_50k(dest: str | os.PathLike | None = None, *, url: str | None = None,
                            size: int | None = None, sha256: str | None = None, keep_archive: bool = False,
                            progress: bool = True, timeout: float = 60.0, retries: int = 3,
                            backoff: float = 1.0) -> Path:
    """Download and extract LabelMe-12-50k (Uni Bonn); return the image folder.

    ``http://www.ais.uni-bonn.de/deep_learning/LabelMe-12-50k.tar.gz``: 50,000 JPEGs of
    256x256 (``train/`` and ``test/``). No size or checksum is published and the host
    serves plain http, so the download cannot be verified; its sha256 is recorded in the
    manifest, and ``size``/``sha256`` check it when you know them. ``url`` replaces the
    address. Default ``dest``: ``<cache>/datasets/labelme-12-50k``.
    """
    return download_archive(_override(ARCHIVES["labelme-12-50k"], url, size, sha256, None), dest,
                            keep_archive=keep_archive, progress=progress, timeout=timeout, retries=retries,
                            backoff=backoff)
