"""Images in, images out: everything becomes a ``[1, 3, H, W]`` float tensor in [0, 1].

>>> content = load_image("content/tubingen", size=512)   # a sample name, a path or a URL
>>> save_image(content, "results/content.png")

:func:`load_image` reads almost anything Pillow reads and turns it into plain RGB:

* EXIF orientation is applied (phone photos come out the right way up);
* grayscale, palette, CMYK, YCbCr, LAB and HSV images become RGB;
* transparency is composited on white: ``rgb = alpha * colour + (1 - alpha) * 1``;
* 16-bit images (``I;16`` modes) keep their precision: ``value / 65535``;
  mode ``I`` (32-bit integers) is read as 16-bit data (``value / 65535``) when every
  value lies in [0, 65535], otherwise it is stretched to [0, 1] by its own minimum and
  maximum; mode ``F`` (32-bit float) is taken as [0, 1] and clipped;
* animated GIF/PNG/WebP files give their first frame;
* embedded ICC colour profiles are not applied: colours are taken as sRGB.

Broken input (a missing, empty, truncated or non-image file, or one whose header
claims more than ``max_pixels`` pixels) raises :class:`ImageError`, which names
the file, the reason and the fix. The pixel count is checked from the header, before
anything is decoded, so a decompression bomb never allocates memory.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
import re
import struct
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from . import config
from .fileio import atomic_write
from .validate import optional_positive_int

DEFAULT_MAX_PIXELS = 100_000_000
"""Largest image (width * height, read from the file header) that :func:`load_image` decodes."""

SAVE_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}
"""File extensions :func:`save_image` writes, and the Pillow format of each."""

_RANGE_TOLERANCE = 1e-3  # float inputs may stray this far outside [0, 1]; they are clamped
_ALPHA_MODES = {"RGBA", "LA", "PA", "La", "RGBa"}
_UINT16_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}
_PIL_LIMIT_LOCK = threading.Lock()


class ImageError(ValueError):
    """An image that cannot be used; the message names the file or argument, the reason and the fix."""


# --------------------------------------------------------------------------------------
# loading


def load_image(source: Any, size: int | None = None, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> torch.Tensor:
    """Load ``source`` as a ``[1, 3, H, W]`` float32 tensor with values in [0, 1].

    ``source`` may be

    * a path (``str`` or :class:`os.PathLike`) to an image file,
    * an ``http://`` or ``https://`` URL (downloaded into the cache by
      :func:`nstlib.data.download.fetch_url`; a failed download raises its ``DownloadError``),
    * the name of a sample image (see :func:`nstlib.data.samples.sample_names`),
    * a PIL image,
    * a NumPy array ``[H, W]`` or ``[H, W, C]`` with C = 1 (gray), 2 (gray + alpha),
      3 (RGB) or 4 (RGBA); ``uint8`` is divided by 255, ``uint16`` by 65535, floats
      must lie in [0, 1],
    * a tensor ``[3, H, W]`` or ``[1, 3, H, W]`` (floats in [0, 1], or ``uint8``):
      a detached float32 copy on the same device is returned.

    Floats that stray less than 1e-3 outside [0, 1] are clamped; values further out
    raise :class:`ImageError` (an array in [0, 255] is a bug, not an image).

    ``size`` is the length of the *longer* side after resizing (the aspect ratio is
    kept; the shorter side is rounded and at least 1 px). Both down- and up-scaling
    use antialiased bicubic interpolation. ``None`` keeps the original size. In quick
    mode (``NSTLIB_QUICK=1``) ``size`` is capped at 64 and ``None`` becomes 64.

    ``max_pixels`` is the largest width * height accepted from a file, checked from
    its header before decoding (default 100 megapixels); ``None`` removes the limit
    (only for files you trust).
    """
    size = optional_positive_int(size, "size", " (the longer side in pixels)")
    if max_pixels is not None and (
        not isinstance(max_pixels, numbers.Integral) or isinstance(max_pixels, bool) or max_pixels <= 0
    ):
        raise ValueError(f"max_pixels={max_pixels!r} must be a positive integer (or None for no limit)")
    size = config.cap_size(size)

    if isinstance(source, torch.Tensor):
        return _from_tensor(source, size)
    if isinstance(source, np.ndarray):
        return _from_array(source, size)
    if isinstance(source, Image.Image):
        try:
            return _from_pil(source, size, "the PIL image")
        except ImageError:
            raise
        except Exception as error:
            raise ImageError(f"cannot convert the PIL image (mode {source.mode!r}) to RGB: {error}") from error
    if isinstance(source, (str, os.PathLike)):
        return _load_file(image_path(source), size, max_pixels)
    raise ImageError(
        f"source has type {type(source).__name__}: pass a file path, a URL, a sample name, "
        "a PIL image, a NumPy array or a tensor"
    )


def target_size(width: int, height: int, size: int | None) -> tuple[int, int]:
    """``(width, height)`` scaled so that the longer side is ``size`` (aspect kept).

    The shorter side is ``round(short * size / long)``, at least 1. ``None`` keeps
    the size. Example: ``target_size(300, 200, 60) == (60, 40)``.
    """
    if size is None:
        return width, height
    if width >= height:
        return size, max(1, math.floor(height * size / width + 0.5))
    return max(1, math.floor(width * size / height + 0.5)), size


def image_path(source: str | os.PathLike) -> Path:
    """The local file behind a path, URL or sample name (downloading or fetching it when needed).

    Raises :class:`ImageError` naming the source when it is none of the three.
    """
    if not isinstance(source, str):
        path = Path(source).expanduser()
        if not path.exists():
            raise ImageError(f"{path}: no such file (the current folder is {Path.cwd()}); check the path")
        return path
    path = Path(source).expanduser()
    if path.exists():
        return path
    if source.lower().startswith(("http://", "https://")):
        from .data.download import fetch_url

        return Path(fetch_url(source))
    from .data.samples import fetch_sample, is_sample, sample_names

    if is_sample(source):
        return Path(fetch_sample(source))
    try:
        names = ", ".join(sample_names())
    except Exception:  # the list is only a hint
        names = "(see nstlib.sample_names())"
    raise ImageError(
        f"{source!r} is neither an existing file (the current folder is {Path.cwd()}), "
        f"an http(s) URL nor a known sample name; the sample names are: {names}"
    )


@contextlib.contextmanager
def _pil_pixel_limit(max_pixels: int | None):
    """Set Pillow's own decompression-bomb limit to ``max_pixels`` and make its warning an error.

    Pillow reads this limit from a module global, so it is set under a lock and restored.
    """
    with _PIL_LIMIT_LOCK, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        old = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = max_pixels
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = old


def _too_large(name: str, detail: str, max_pixels: int | None) -> ImageError:
    return ImageError(
        f"{name}: the image is too large ({detail}; the limit is max_pixels={max_pixels}). "
        "Resize the file, or if you trust it pass a larger max_pixels= to load_image"
    )


def _load_file(path: Path, size: int | None, max_pixels: int | None) -> torch.Tensor:
    name = str(path)
    if path.is_dir():
        raise ImageError(f"{name} is a folder, not an image file")
    try:
        handle = path.open("rb")
    except OSError as error:
        raise ImageError(f"{name}: cannot read the file ({error.strerror or error}); check its permissions") from error
    with handle:
        if os.fstat(handle.fileno()).st_size == 0:
            raise ImageError(f"{name}: the file is empty (0 bytes); download or copy it again")
        return _decode_file(handle, name, size, max_pixels)


def _decode_file(handle, name: str, size: int | None, max_pixels: int | None) -> torch.Tensor:
    try:
        with _pil_pixel_limit(max_pixels), Image.open(handle) as img:
            width, height = img.size
            if max_pixels is not None and width * height > max_pixels:
                raise _too_large(name, f"{width}x{height} = {width * height} pixels", max_pixels)
            if size is not None and img.format == "JPEG" and size < max(width, height):
                # Decode at 1/2, 1/4 or 1/8 scale (DCT scaling) when that still leaves
                # at least the requested size; the exact resize happens afterwards.
                scale = size / max(width, height)
                img.draft(None, (math.ceil(width * scale), math.ceil(height * scale)))
            return _from_pil(img, size, name)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        found = re.search(r"\((\d+) pixels\)", str(error))  # Pillow's check, at open, before ours
        raise _too_large(name, f"{found.group(1)} pixels" if found else str(error), max_pixels) from error
    except UnidentifiedImageError as error:
        raise ImageError(
            f"{name}: not an image file that Pillow can read (unknown format: is it an HTML error page, "
            "a text file or an unsupported format?); download it again or convert it to PNG or JPEG"
        ) from error
    except MemoryError as error:
        raise ImageError(f"{name}: not enough memory to decode the image; pass a smaller max_pixels=") from error
    except Exception as error:  # Pillow raises many types for broken files
        raise ImageError(
            f"{name}: cannot decode the image ({type(error).__name__}: {error}); "
            "the file is probably truncated or corrupt: download or export it again"
        ) from error


def _from_pil(img: Image.Image, size: int | None, name: str) -> torch.Tensor:
    """A PIL image (first frame, any mode) as a resized ``[1, 3, H, W]`` tensor."""
    img.load()  # decode errors surface here, before the EXIF is read
    try:
        img = ImageOps.exif_transpose(img)
    except (SyntaxError, ValueError, KeyError, TypeError, struct.error) as error:  # broken EXIF, not pixels
        warnings.warn(f"{name}: ignoring its unreadable EXIF orientation ({error})", stacklevel=3)
    extrema = img.getextrema() if img.mode == "I" else None  # of the full image, for the stretch below
    img = _reduce(img, size)
    mode = img.mode
    if mode in _UINT16_MODES:
        return _from_float_hwc(np.asarray(img).astype(np.float32)[..., None] / 65535.0, size)
    if mode == "I":
        values = np.asarray(img).astype(np.float64)
        low, high = extrema if extrema is not None else (float(values.min()), float(values.max()))
        if low >= 0 and high <= 65535:
            values = values / 65535.0
        else:
            values = (values - low) / (high - low) if high > low else np.zeros_like(values)
        return _from_float_hwc(values.astype(np.float32)[..., None], size)
    if mode == "F":
        values = np.asarray(img).astype(np.float32)
        if not np.isfinite(values).all():
            raise ImageError(f"{name}: the floating-point image contains NaN or infinite values")
        return _from_float_hwc(np.clip(values, 0.0, 1.0)[..., None], size)

    if mode == "LAB":
        transform = ImageCms.buildTransform(ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB")
        img, mode = ImageCms.applyTransform(img, transform), "RGB"
    if mode in _ALPHA_MODES or "transparency" in img.info:
        rgba = np.asarray(img.convert("RGBA")).astype(np.float32) / 255.0
        return _from_float_hwc(rgba, size)
    # Plain 8-bit colour: resize in Pillow (antialiased bicubic, uint8: 4x less memory).
    rgb = img.convert("RGB")
    new_size = target_size(*rgb.size, size)
    if new_size != rgb.size:
        rgb = rgb.resize(new_size, Image.Resampling.BICUBIC)
    array = np.asarray(rgb).astype(np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).contiguous()


def _reduce(img: Image.Image, size: int | None) -> Image.Image:
    """``img`` shrunk in Pillow by an integer factor ``f = long // (2 * size)`` when ``f >= 2``.

    Memory then stays near the decoded image plus the output, whatever the mode: 16-bit, alpha and
    float images are otherwise converted to float32 at full size before resizing (a 9999x9999 'LA'
    PNG took 5 GB). The box average keeps at least twice ``size`` pixels on the longer side, and the
    exact antialiased resize still happens afterwards in float (:func:`resize`). Alpha is averaged
    premultiplied (``La``/``RGBa``), so fully transparent pixels give no colour to their neighbours.
    """
    if size is None or max(img.size) // (2 * size) < 2:
        return img
    factor = max(img.size) // (2 * size)
    if img.mode in _UINT16_MODES:
        img = img.convert("I")  # exact: 16-bit values fit in int32, and Pillow reduces "I"
    elif img.mode in ("P", "PA", "1") or ("transparency" in img.info and img.mode not in _ALPHA_MODES):
        has_alpha = img.mode == "PA" or "transparency" in img.info
        img = img.convert("RGBA" if has_alpha else ("L" if img.mode == "1" else "RGB"))
    premultiplied = {"RGBA": "RGBa", "LA": "La"}.get(img.mode)
    if premultiplied:
        return img.convert(premultiplied).reduce(factor).convert(img.mode)
    return img.reduce(factor)


def _from_array(array: np.ndarray, size: int | None) -> torch.Tensor:
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4) or 0 in array.shape:
        raise ImageError(
            f"the NumPy array has shape {array.shape}: expected [H, W] or [H, W, C] with C = 1, 2, 3 or 4 "
            "(channels last; for [C, H, W] use array.transpose(1, 2, 0))"
        )
    if array.dtype == np.uint8:
        values = array.astype(np.float32) / 255.0
    elif array.dtype == np.uint16:
        values = array.astype(np.float32) / 65535.0
    elif array.dtype == np.bool_:
        values = array.astype(np.float32)
    elif np.issubdtype(array.dtype, np.floating):
        values = _check_range(array.astype(np.float32), "the NumPy array", "np.clip(array, 0, 1)")
    else:
        raise ImageError(
            f"the NumPy array has dtype {array.dtype}: use uint8 (0-255), uint16 (0-65535) or floats in [0, 1]"
        )
    return _from_float_hwc(values, size)


def _check_range(values: np.ndarray, what: str, fix: str) -> np.ndarray:
    if not np.isfinite(values).all():
        raise ImageError(f"{what} contains NaN or infinite values")
    low, high = float(values.min()), float(values.max())
    if low < -_RANGE_TOLERANCE or high > 1 + _RANGE_TOLERANCE:
        hint = " (it looks like 0-255: divide by 255)" if high > 2 else ""
        raise ImageError(f"{what} has values in [{low:.4g}, {high:.4g}], not [0, 1]{hint}; or clamp it: {fix}")
    return np.clip(values, 0.0, 1.0)


def _from_float_hwc(values: np.ndarray, size: int | None) -> torch.Tensor:
    """``[H, W, C]`` floats in [0, 1] (C = 1..4) -> RGB tensor; alpha is composited on white."""
    channels = values.shape[2]
    if channels in (2, 4):
        alpha = values[..., -1:]
        values = values[..., :-1] * alpha + (1.0 - alpha)
    if values.shape[2] == 1:
        values = np.repeat(values, 3, axis=2)
    tensor = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)).permute(2, 0, 1).unsqueeze(0)
    return resize(tensor, size)


def _from_tensor(image: torch.Tensor, size: int | None) -> torch.Tensor:
    if image.dim() == 3:
        image = image.unsqueeze(0)
    if image.dim() != 4 or image.shape[0] != 1 or image.shape[1] != 3 or 0 in image.shape:
        hint = "; pick one image with x[i:i+1]" if image.dim() == 4 and image.shape[0] > 1 else ""
        raise ImageError(f"the image tensor has shape {tuple(image.shape)}: expected [3, H, W] or [1, 3, H, W]{hint}")
    image = image.detach()
    if image.dtype == torch.uint8:
        image = image.float() / 255.0
    elif image.is_floating_point():
        image = image.float()
        if not torch.isfinite(image).all():
            raise ImageError("the image tensor contains NaN or infinite values")
        low, high = image.min().item(), image.max().item()
        if low < -_RANGE_TOLERANCE or high > 1 + _RANGE_TOLERANCE:
            hint = " (it looks like 0-255: divide by 255)" if high > 2 else ""
            raise ImageError(
                f"the image tensor has values in [{low:.4g}, {high:.4g}], not [0, 1]{hint}; "
                "or clamp it: image.clamp(0, 1)"
            )
        image = image.clamp(0.0, 1.0)
    else:
        raise ImageError(f"the image tensor has dtype {image.dtype}: use a float tensor in [0, 1] or uint8")
    return resize(image, size)


def resize(image: torch.Tensor, size: int | None) -> torch.Tensor:
    """A new ``[1, 3, h, w]`` tensor whose longer side is ``size`` (aspect kept, see :func:`target_size`).

    Antialiased bicubic interpolation (``F.interpolate(..., antialias=True)``), clamped
    to [0, 1]; works in float, so 16-bit precision survives. ``None`` or the current
    size returns a copy.
    """
    height, width = image.shape[-2:]
    new_width, new_height = target_size(width, height, size)
    if (new_width, new_height) == (width, height):
        return image.clone().contiguous()
    try:
        out = F.interpolate(image, size=(new_height, new_width), mode="bicubic", align_corners=False, antialias=True)
    except (NotImplementedError, RuntimeError):  # e.g. antialias missing on some backends
        out = F.interpolate(
            image.cpu(), size=(new_height, new_width), mode="bicubic", align_corners=False, antialias=True
        ).to(image.device)
    return out.clamp_(0.0, 1.0).contiguous()


# --------------------------------------------------------------------------------------
# converting and saving


def _as_chw(image: Any, what: str = "image") -> torch.Tensor:
    """A ``[1, 3, H, W]`` or ``[3, H, W]`` tensor as a detached CPU float32 ``[3, H, W]`` tensor."""
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"{what} must be a torch tensor [1, 3, H, W] or [3, H, W], not {type(image).__name__}")
    if image.dim() == 4 and image.shape[0] == 1:
        image = image[0]
    if image.dim() != 3 or image.shape[0] != 3 or 0 in image.shape:
        raise ValueError(f"{what} has shape {tuple(image.shape)}: expected [1, 3, H, W] or [3, H, W]")
    image = image.detach().to("cpu", torch.float32)
    if not torch.isfinite(image).all():
        raise ValueError(f"{what} contains NaN or infinite values (did the optimisation diverge?)")
    return image


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """A tensor as an ``[H, W, 3]`` uint8 array: ``round(255 * clamp(x, 0, 1))``."""
    return _as_chw(image).clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8).permute(1, 2, 0).numpy().copy()


def to_pil(image: torch.Tensor) -> Image.Image:
    """A tensor as an RGB PIL image, pixel = ``round(255 * clamp(x, 0, 1))`` (see :func:`to_uint8`)."""
    return Image.fromarray(to_uint8(image))  # [H, W, 3] uint8 is RGB (mode= is deprecated in Pillow 11.3)


def save_image(image: torch.Tensor, path: str | os.PathLike, *, quality: int = 95) -> Path:
    """Write ``image`` (``[1, 3, H, W]`` or ``[3, H, W]``, any device) to ``path``; returns the path.

    Pixels are ``round(255 * clamp(x, 0, 1))``. The format comes from the extension
    (.png .jpg .jpeg .webp .bmp .tif .tiff); ``quality`` (1-100) applies to JPEG
    (saved with full-resolution colour, 4:4:4) and WebP. Missing parent folders are
    made. The write is atomic: a temporary file in the same folder is renamed over
    ``path`` (``os.replace``), so ``path`` is never half-written and nothing is left
    behind on failure.
    """
    path = Path(path).expanduser()
    image_format = SAVE_FORMATS.get(path.suffix.lower())
    if image_format is None:
        allowed = " ".join(sorted(SAVE_FORMATS))
        raise ValueError(f"cannot save {path}: the extension {path.suffix!r} is not one of {allowed}")
    if not isinstance(quality, numbers.Integral) or isinstance(quality, bool) or not 1 <= quality <= 100:
        raise ValueError(f"quality={quality!r} must be an integer from 1 to 100")
    picture = to_pil(image)
    options: dict[str, Any] = {}
    if image_format == "JPEG":
        options = {"quality": int(quality), "subsampling": 0}
    elif image_format == "WEBP":
        options = {"quality": int(quality)}
    atomic_write(path, lambda handle: picture.save(handle, format=image_format, **options))
    return path
