"""Tests for nstlib.images: every expected value comes from the pixels the test wrote itself."""

from __future__ import annotations

import os
import resource
import struct
import sys
import time
import types
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nstlib import images
from nstlib.images import ImageError, load_image, save_image, target_size, to_pil, to_uint8


@pytest.fixture(autouse=True)
def _no_quick(monkeypatch):
    monkeypatch.delenv("NSTLIB_QUICK", raising=False)


def as_hwc(tensor: torch.Tensor) -> np.ndarray:
    assert tensor.dim() == 4 and tensor.shape[:2] == (1, 3)
    assert tensor.dtype == torch.float32 and tensor.is_contiguous()
    return tensor[0].permute(1, 2, 0).numpy()


def random_rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


# ----------------------------------------------------------------------------- sources


def test_png_exact_values_and_pathlike(tmp_path):
    pixels = random_rgb(5, 7)
    path = tmp_path / "known.png"
    Image.fromarray(pixels).save(path)
    for source in (path, str(path)):
        out = load_image(source)
        assert out.shape == (1, 3, 5, 7)
        np.testing.assert_array_equal(as_hwc(out), pixels.astype(np.float32) / 255)
        assert 0 <= out.min() and out.max() <= 1


def test_exif_orientation_6_rotates_clockwise(tmp_path):
    pixels = random_rgb(2, 3, seed=1)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "rotated.png"
    Image.fromarray(pixels).save(path, exif=exif)
    out = as_hwc(load_image(path))
    np.testing.assert_array_equal(out, np.rot90(pixels, k=-1).astype(np.float32) / 255)


def test_grayscale_modes(tmp_path):
    gray = np.array([[0, 100], [200, 255]], dtype=np.uint8)
    Image.fromarray(gray).save(tmp_path / "l.png")
    out = as_hwc(load_image(tmp_path / "l.png"))
    for channel in range(3):
        np.testing.assert_array_equal(out[..., channel], gray / np.float32(255))
    bits = Image.new("1", (2, 1))
    bits.putpixel((1, 0), 1)
    bits.save(tmp_path / "one.png")
    np.testing.assert_array_equal(as_hwc(load_image(tmp_path / "one.png"))[0, :, 0], [0.0, 1.0])


def test_alpha_is_composited_on_white(tmp_path):
    rgba = np.array([[[200, 40, 0, 64], [10, 20, 30, 255], [90, 90, 90, 0]]], dtype=np.uint8)
    Image.fromarray(rgba).save(tmp_path / "a.png")
    alpha = rgba[..., 3:].astype(np.float64) / 255
    expected = alpha * rgba[..., :3] / 255 + (1 - alpha) * 1.0
    np.testing.assert_allclose(as_hwc(load_image(tmp_path / "a.png")), expected, atol=1e-6)
    la = np.array([[[50, 128]]], dtype=np.uint8)
    Image.fromarray(la).save(tmp_path / "la.png")
    a = 128 / 255
    np.testing.assert_allclose(as_hwc(load_image(tmp_path / "la.png"))[0, 0], [a * 50 / 255 + 1 - a] * 3, atol=1e-6)


def test_palette_with_transparency(tmp_path):
    palette = Image.new("P", (2, 1))
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * (254 * 3))
    palette.putpixel((0, 0), 0)
    palette.putpixel((1, 0), 1)
    for name in ("p.png", "p.gif"):
        palette.save(tmp_path / name, transparency=0)  # index 0 (red) is transparent
        out = as_hwc(load_image(tmp_path / name))
        np.testing.assert_allclose(out[0, 0], [1, 1, 1], atol=1e-6)  # transparent -> white
        np.testing.assert_allclose(out[0, 1], [0, 0, 1], atol=1e-6)  # opaque blue


def test_cmyk_cyan_is_cyan(tmp_path):
    Image.new("CMYK", (3, 2), (255, 0, 0, 0)).save(tmp_path / "cyan.tif")
    out = as_hwc(load_image(tmp_path / "cyan.tif"))
    np.testing.assert_allclose(out, np.broadcast_to([0.0, 1.0, 1.0], out.shape), atol=0.02)


def test_ycbcr_and_lab_red_and_white():
    # JPEG YCbCr of pure red: Y = 0.299 * 255, Cb = 128 - 0.1687 * 255, Cr = 128 + 0.5 * 255.
    red = as_hwc(load_image(Image.new("YCbCr", (1, 1), (76, 85, 255))))[0, 0]
    np.testing.assert_allclose(red, [1, 0, 0], atol=0.02)
    # CIE L*a*b* white is L = 100 (stored as 255), a = b = 0 (stored as 128).
    white = as_hwc(load_image(Image.new("LAB", (1, 1), (255, 128, 128))))[0, 0]
    np.testing.assert_allclose(white, [1, 1, 1], atol=0.02)


def test_16bit_precision_finer_than_8bit(tmp_path):
    values = np.array([[32767, 32768, 65535, 1]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    out = as_hwc(load_image(tmp_path / "deep.png"))[..., 0]
    np.testing.assert_allclose(out, values / 65535, atol=1e-6)
    assert abs(out[0, 0] - 0.5) < 1e-4 and out[0, 0] < out[0, 1]  # 1/65535 steps survive


def test_16bit_precision_survives_resizing(tmp_path):
    constant = np.full((40, 20), 30001, dtype=np.uint16)
    Image.fromarray(constant).save(tmp_path / "flat16.png")
    out = load_image(tmp_path / "flat16.png", size=10)
    assert out.shape == (1, 3, 10, 5)
    # 8-bit rounding would be off by up to 1/510; float resizing is exact to float32 error.
    np.testing.assert_allclose(out.numpy(), 30001 / 65535, atol=1e-6)


def test_mode_i_and_mode_f_rules():
    in_range = Image.fromarray(np.array([[0, 65535, 13107]], dtype=np.int32))
    np.testing.assert_allclose(as_hwc(load_image(in_range))[0, :, 1], [0, 1, 0.2], atol=1e-6)
    wide = Image.fromarray(np.array([[-100, 0, 100]], dtype=np.int32))
    np.testing.assert_allclose(as_hwc(load_image(wide))[0, :, 2], [0, 0.5, 1], atol=1e-6)  # min-max stretch
    floats = Image.fromarray(np.array([[-0.5, 0.25, 1.5]], dtype=np.float32))
    assert (in_range.mode, wide.mode, floats.mode) == ("I", "I", "F")  # Pillow infers them from the dtypes
    np.testing.assert_allclose(as_hwc(load_image(floats))[0, :, 0], [0, 0.25, 1], atol=1e-6)


def test_animated_files_give_first_frame(tmp_path):
    frames = [Image.new("RGB", (4, 4), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    for name in ("anim.gif", "anim.png", "anim.webp"):
        options = {"lossless": True} if name.endswith("webp") else {}
        frames[0].save(tmp_path / name, save_all=True, append_images=frames[1:], duration=100, loop=0, **options)
        with Image.open(tmp_path / name) as check:
            assert getattr(check, "n_frames", 1) == 3
        out = as_hwc(load_image(tmp_path / name))
        np.testing.assert_allclose(out, np.broadcast_to([1.0, 0.0, 0.0], out.shape), atol=0.02, err_msg=name)


def test_numpy_sources():
    pixels = random_rgb(3, 4, seed=2)
    np.testing.assert_array_equal(as_hwc(load_image(pixels)), pixels / np.float32(255))
    gray = np.array([[0.0, 0.25]], dtype=np.float64)
    np.testing.assert_allclose(as_hwc(load_image(gray))[0, 1], [0.25] * 3)
    rgba = np.array([[[1.0, 0.0, 0.0, 0.5]]])
    np.testing.assert_allclose(as_hwc(load_image(rgba))[0, 0], [1.0, 0.5, 0.5], atol=1e-6)
    deep = np.array([[65535, 0]], dtype=np.uint16)
    np.testing.assert_allclose(as_hwc(load_image(deep))[0, :, 0], [1, 0])
    with pytest.raises(ImageError, match="divide by 255"):
        load_image(pixels.astype(np.float32))
    with pytest.raises(ImageError, match=r"shape \(3, 4, 5\)"):
        load_image(np.zeros((3, 4, 5)))
    with pytest.raises(ImageError, match="int64"):
        load_image(np.zeros((3, 4), dtype=np.int64))


def test_tensor_sources_are_copied_and_detached():
    source = torch.rand(3, 5, 6, requires_grad=True)
    out = load_image(source)
    assert out.shape == (1, 3, 5, 6) and not out.requires_grad
    torch.testing.assert_close(out[0], source.detach())
    out.zero_()
    assert source.detach().abs().sum() > 0  # a copy, not a view
    batch = torch.rand(1, 3, 20, 30)
    assert load_image(batch, size=15).shape == (1, 3, 10, 15)
    as_bytes = torch.tensor([[[0, 255]]], dtype=torch.uint8).expand(3, 1, 2)
    torch.testing.assert_close(load_image(as_bytes)[0, :, 0], torch.tensor([[0.0, 1.0]] * 3))
    torch.testing.assert_close(load_image(torch.full((3, 1, 1), 1.0005)), torch.ones(1, 3, 1, 1))
    with pytest.raises(ImageError, match=r"clamp\(0, 1\)"):
        load_image(torch.full((3, 2, 2), 1.5))
    with pytest.raises(ImageError, match=r"x\[i:i\+1\]"):
        load_image(torch.rand(2, 3, 4, 4))
    with pytest.raises(ImageError, match="NaN"):
        load_image(torch.full((3, 2, 2), float("nan")))


def test_pil_source_is_not_modified():
    picture = Image.new("RGBA", (2, 2), (255, 0, 0, 0))
    out = as_hwc(load_image(picture))
    np.testing.assert_allclose(out, 1.0)
    assert picture.mode == "RGBA" and picture.getpixel((0, 0)) == (255, 0, 0, 0)


# ----------------------------------------------------------------------------- resizing


def test_target_size_rule():
    assert target_size(300, 200, 60) == (60, 40)
    assert target_size(200, 300, 60) == (40, 60)
    assert target_size(1000, 1, 10) == (10, 1)  # never 0
    assert target_size(300, 200, None) == (300, 200)
    assert target_size(3, 2, 7) == (7, 5)  # 2 * 7 / 3 = 4.67 rounds to 5


def test_resizing_keeps_aspect_up_and_down(tmp_path):
    Image.fromarray(random_rgb(200, 300)).save(tmp_path / "wide.png")
    assert load_image(tmp_path / "wide.png", size=60).shape == (1, 3, 40, 60)
    Image.fromarray(random_rgb(30, 20)).save(tmp_path / "tall.png")
    up = load_image(tmp_path / "tall.png", size=90)
    assert up.shape == (1, 3, 90, 60)
    assert 0 <= up.min() and up.max() <= 1


def test_downscaling_is_antialiased(tmp_path):
    board = (np.indices((64, 64)).sum(axis=0) % 2 * 255).astype(np.uint8)
    Image.fromarray(board).save(tmp_path / "board.png")
    from_file = load_image(tmp_path / "board.png", size=8)
    from_tensor = load_image(torch.from_numpy(board / 255.0).float().expand(3, 64, 64), size=8)
    for out in (from_file, from_tensor):
        assert out.shape == (1, 3, 8, 8)
        # Point sampling would give pure 0 or 1; an antialiasing filter averages to grey.
        np.testing.assert_allclose(out.numpy(), 0.5, atol=0.03)


def test_large_jpeg_draft_matches_full_decode(tmp_path):
    smooth = np.indices((600, 800)).sum(axis=0)
    pixels = np.stack([smooth % 256, (smooth // 4) % 256, np.full_like(smooth, 100)], axis=2).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "big.jpg", quality=95)
    fast = load_image(tmp_path / "big.jpg", size=100)
    reference = load_image(load_image(tmp_path / "big.jpg"), size=100)  # full decode, then resize
    assert fast.shape == reference.shape == (1, 3, 75, 100)
    assert (fast - reference).abs().mean() < 0.03


def test_size_validation():
    for bad in (0, -3, 1.5, True, "64"):
        with pytest.raises(ValueError, match="size"):
            load_image(torch.rand(3, 4, 4), size=bad)
    with pytest.raises(ValueError, match="max_pixels"):
        load_image(torch.rand(3, 4, 4), max_pixels=0)


def test_quick_mode_caps_at_64(tmp_path, monkeypatch):
    Image.fromarray(random_rgb(200, 300)).save(tmp_path / "wide.png")
    monkeypatch.setenv("NSTLIB_QUICK", "1")
    assert load_image(tmp_path / "wide.png").shape == (1, 3, 43, 64)  # 200 * 64 / 300 = 42.7
    assert load_image(tmp_path / "wide.png", size=512).shape == (1, 3, 43, 64)
    assert load_image(tmp_path / "wide.png", size=30).shape == (1, 3, 20, 30)


# ----------------------------------------------------------------------------- names, URLs


@pytest.fixture
def fake_sources(tmp_path, monkeypatch):
    """Replace nstlib.data.samples and nstlib.data.download by fakes that serve local files."""
    import nstlib.data  # the real package first (``import nstlib`` is lazy): its __init__ needs the real modules

    red = tmp_path / "cache" / "red.png"
    red.parent.mkdir()
    Image.new("RGB", (4, 2), (255, 0, 0)).save(red)
    calls = []

    samples = types.ModuleType("nstlib.data.samples")
    samples.is_sample = lambda name: name == "style/red"
    samples.fetch_sample = lambda name: calls.append(("sample", name)) or red
    samples.sample_names = lambda: ["style/red", "content/cat"]
    download = types.ModuleType("nstlib.data.download")
    download.fetch_url = lambda url, *, sha256=None: calls.append(("url", url)) or red
    for name, module in (("samples", samples), ("download", download)):
        monkeypatch.setitem(sys.modules, f"nstlib.data.{name}", module)
        monkeypatch.setattr(nstlib.data, name, module)
    return calls


def test_sample_names_and_urls_use_the_fetchers(fake_sources):
    out = as_hwc(load_image("style/red", size=2))
    assert out.shape == (1, 2, 3)
    np.testing.assert_allclose(out, np.broadcast_to([1.0, 0.0, 0.0], out.shape), atol=1e-6)
    load_image("https://example.org/red.png")
    assert fake_sources == [("sample", "style/red"), ("url", "https://example.org/red.png")]


def test_unknown_string_lists_the_sample_names(fake_sources):
    with pytest.raises(ImageError) as info:
        load_image("style/nope")
    message = str(info.value)
    assert "'style/nope'" in message and "style/red, content/cat" in message
    assert "existing file" in message and "URL" in message and "sample name" in message
    assert fake_sources == []


def test_missing_path_object(tmp_path):
    with pytest.raises(ImageError, match="no such file") as info:
        load_image(tmp_path / "missing.png")
    assert "missing.png" in str(info.value)
    with pytest.raises(ImageError, match="folder"):
        load_image(tmp_path)
    with pytest.raises(ImageError, match="list"):
        load_image([1, 2, 3])


# ----------------------------------------------------------------------------- broken files


def test_empty_file(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError, match="empty") as info:
        load_image(tmp_path / "empty.png")
    assert "empty.png" in str(info.value)


def test_text_file(tmp_path):
    (tmp_path / "page.jpg").write_text("<html>404 Not Found</html>")
    with pytest.raises(ImageError, match="not an image") as info:
        load_image(tmp_path / "page.jpg")
    assert "page.jpg" in str(info.value)
    assert info.value.__cause__ is not None  # chained, not swallowed


def test_truncated_jpeg(tmp_path):
    Image.fromarray(random_rgb(64, 64)).save(tmp_path / "whole.jpg")
    data = (tmp_path / "whole.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="truncated") as info:
        load_image(tmp_path / "cut.jpg")
    assert "cut.jpg" in str(info.value)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def test_huge_header_png_fails_fast_without_allocating(tmp_path):
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)  # 10^10 RGB pixels = 30 GB
    data = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
    data += _png_chunk(b"IDAT", zlib.compress(b"\x00" * 301)) + _png_chunk(b"IEND", b"")
    (tmp_path / "bomb.png").write_bytes(data)
    limit_before = Image.MAX_IMAGE_PIXELS
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    for max_pixels in (images.DEFAULT_MAX_PIXELS, 10**10 - 1):  # PIL's error and PIL's warning paths
        with pytest.raises(ImageError, match="too large") as info:
            load_image(tmp_path / "bomb.png", max_pixels=max_pixels)
        assert "bomb.png" in str(info.value) and "max_pixels" in str(info.value)
    assert time.perf_counter() - start < 2.0
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before
    assert grown_kib < 100 * 1024  # far below the 30 GB a decode would need
    assert Image.MAX_IMAGE_PIXELS == limit_before  # Pillow's global limit is restored


def test_max_pixels_is_checked_and_overridable(tmp_path, monkeypatch):
    Image.fromarray(random_rgb(100, 100)).save(tmp_path / "hundred.png")
    with pytest.raises(ImageError, match=r"too large \(10000 pixels; the limit is max_pixels=5000\)"):
        load_image(tmp_path / "hundred.png", max_pixels=5000)
    # nstlib's own header check stands even where Pillow's check is not made.
    monkeypatch.setattr(Image, "_decompression_bomb_check", lambda *args, **kwargs: None)
    with pytest.raises(ImageError, match=r"100x100 = 10000 pixels"):
        load_image(tmp_path / "hundred.png", max_pixels=5000)
    assert load_image(tmp_path / "hundred.png", max_pixels=10000).shape == (1, 3, 100, 100)
    assert load_image(tmp_path / "hundred.png", max_pixels=None).shape == (1, 3, 100, 100)


# ----------------------------------------------------------------------------- saving


def test_png_round_trip_is_exact(tmp_path):
    pixels = random_rgb(9, 11, seed=3)
    image = torch.from_numpy(pixels).permute(2, 0, 1).float().div(255).unsqueeze(0).requires_grad_()
    path = save_image(image, tmp_path / "deep" / "folder" / "out.png")
    assert path == tmp_path / "deep" / "folder" / "out.png"
    np.testing.assert_array_equal(np.asarray(Image.open(path)), pixels)
    torch.testing.assert_close(load_image(path), image.detach(), atol=0, rtol=0)
    assert os.listdir(path.parent) == ["out.png"]  # no temporary file left


def test_save_clamps_and_rounds(tmp_path):
    image = torch.tensor([-1.0, 0.2, 2.0, 0.5 / 255]).reshape(1, 4).expand(3, 1, 4)
    expected = [0, 51, 255, 0]  # round(255 * clamp(x, 0, 1)); 0.5 rounds half to even
    np.testing.assert_array_equal(to_uint8(image)[0, :, 0], expected)
    save_image(image, tmp_path / "c.png")
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "c.png"))[0, :, 1], expected)
    assert to_pil(image).size == (4, 1) and to_pil(image).mode == "RGB"


@pytest.mark.parametrize(("suffix", "pil_format"), [(".jpg", "JPEG"), (".JPEG", "JPEG"), (".webp", "WEBP"),
                                                    (".bmp", "BMP"), (".tif", "TIFF"), (".tiff", "TIFF")])
def test_save_formats_from_extension(tmp_path, suffix, pil_format):
    smooth = torch.linspace(0, 1, 16).reshape(1, 1, 16).expand(1, 3, 8, 16)
    path = save_image(smooth, tmp_path / f"out{suffix}")
    with Image.open(path) as written:
        assert written.format == pil_format and written.size == (16, 8)
    assert (load_image(path) - smooth).abs().max() < 0.05


def test_save_rejects_unknown_extension_and_bad_input(tmp_path):
    with pytest.raises(ValueError, match=r"out\.gif.*\.png") as info:
        save_image(torch.rand(3, 2, 2), tmp_path / "out.gif")
    assert ".jpg" in str(info.value) and ".tiff" in str(info.value)
    with pytest.raises(ValueError, match="quality"):
        save_image(torch.rand(3, 2, 2), tmp_path / "out.jpg", quality=0)
    with pytest.raises(ValueError, match="NaN"):
        save_image(torch.full((3, 2, 2), float("nan")), tmp_path / "out.png")
    with pytest.raises(ValueError, match=r"\(2, 3, 2, 2\)"):
        save_image(torch.rand(2, 3, 2, 2), tmp_path / "out.png")
    assert list(tmp_path.iterdir()) == []


def test_failed_save_leaves_no_temporary_and_keeps_the_old_file(tmp_path, monkeypatch):
    path = save_image(torch.zeros(3, 2, 2), tmp_path / "keep.png")
    old = path.read_bytes()

    def broken_save(self, handle, *args, **kwargs):
        handle.write(b"half an image")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_image(torch.ones(3, 2, 2), path)
    assert path.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["keep.png"]


def test_unreadable_file_and_broken_exif(tmp_path, monkeypatch):
    path = tmp_path / "locked.png"
    Image.new("RGB", (3, 2), (0, 0, 255)).save(path)

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied")

    with monkeypatch.context() as patch:
        patch.setattr(Path, "open", refuse)
        with pytest.raises(ImageError, match=r"locked\.png: cannot read the file \(Permission denied\)"):
            load_image(path)

    def broken_exif(image, **kwargs):
        raise SyntaxError("not a TIFF file")

    monkeypatch.setattr(images.ImageOps, "exif_transpose", broken_exif)
    with pytest.warns(UserWarning, match=r"locked\.png: ignoring its unreadable EXIF orientation"):
        out = as_hwc(load_image(path))
    np.testing.assert_array_equal(out, np.broadcast_to([0.0, 0.0, 1.0], (2, 3, 3)))


_MEMORY_PROBE = """
import resource, sys
import nstlib
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = nstlib.load_image(sys.argv[1], 256)
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(tuple(out.shape), grown * 1024, float(out.mean()))
"""


@pytest.mark.parametrize("mode", ["LA", "RGBA", "I;16"])
def test_large_alpha_and_16bit_images_are_shrunk_before_float_conversion(tmp_path, mode):
    """A 4000x4000 image loaded at 256 px: the old path converted it to float32 RGBA at full size
    (16e6 px x 4 channels x 4 bytes = 256 MB per copy, several copies: 0.8 GB for 'LA'). Now the
    process grows by less than one such copy, and the picture is what a full-size load gives."""
    import subprocess

    side = 4000
    if mode == "I;16":
        values = (np.arange(side, dtype=np.int64)[None, :] * 16 % 65536).astype(np.uint16).repeat(side, 0)
        Image.fromarray(values).save(tmp_path / "big.png")
    else:
        colour = (90, 255) if mode == "LA" else (200, 10, 10, 128)
        Image.new(mode, (side, side), colour).save(tmp_path / "big.png")
    run = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, str(tmp_path / "big.png")],
                         capture_output=True, text=True, check=True)
    shape, grown, mean = run.stdout.split(") ")[0] + ")", *map(float, run.stdout.split(") ")[1].split())
    assert shape == "(1, 3, 256, 256)"
    assert grown < side * side * 4 * 4, f"{mode}: the process grew by {grown / 2**20:.0f} MiB"
    # oracle: the same picture from a small copy of the file, loaded the old (unreduced) way
    small = Image.open(tmp_path / "big.png").resize((256, 256), Image.Resampling.NEAREST)
    small.save(tmp_path / "small.png")
    assert abs(mean - float(load_image(tmp_path / "small.png").mean())) < 2e-3


def test_reducing_first_matches_a_full_size_load_for_alpha_images(tmp_path):
    """Premultiplied averaging: a transparent red half must not tint the white composite."""
    rgba = np.zeros((400, 600, 4), dtype=np.uint8)
    rgba[:, :300] = (255, 0, 0, 0)            # invisible red: white once composited
    rgba[:, 300:] = (0, 0, 255, 255)          # opaque blue
    ramp = np.linspace(0, 255, 600).astype(np.uint8)
    rgba[..., 3] = np.where(np.arange(600) < 300, 0, np.maximum(ramp, 1))[None, :]
    Image.fromarray(rgba).save(tmp_path / "alpha.png")
    reduced = load_image(tmp_path / "alpha.png", 60)            # factor 600 // 120 = 5, then bicubic
    full = images.resize(load_image(tmp_path / "alpha.png"), 60)  # float composite at full size, then resize
    assert reduced.shape == full.shape == (1, 3, 40, 60)
    assert float((reduced - full).abs().max()) < 0.03
    assert float(reduced[0, :, :, :25].min()) > 0.99             # the transparent half stays white


def test_loading_and_saving_emit_no_deprecation_warning(tmp_path):
    """No deprecated Pillow call (``Image.fromarray(..., mode=...)`` warns from Pillow 11.3, Colab's version):
    any DeprecationWarning from loading, converting or saving is an error here. The round trip through a
    lossless PNG gives back the pixels the test wrote (the oracle)."""
    from nstlib.data.synthetic import content_standin, style_standin

    pixels = random_rgb(6, 9)
    Image.fromarray(pixels).save(tmp_path / "in.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        image = load_image(tmp_path / "in.png")
        picture = to_pil(image)
        save_image(image, tmp_path / "out.png")
        save_image(image, tmp_path / "out.jpg")
        again = load_image(tmp_path / "out.png")
        standins = [content_standin("test", 12, 8), style_standin("test", 12, 8)]
    assert picture.mode == "RGB" and np.array_equal(np.asarray(picture), pixels)
    assert torch.equal(again, image) and np.array_equal(to_uint8(again), pixels)
    assert [(s.mode, s.size) for s in standins] == [("RGB", (12, 8))] * 2
