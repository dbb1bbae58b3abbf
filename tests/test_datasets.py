"""ImageFolderDataset, SyntheticDataset and open_dataset: pixels, order, bad files, quick mode, errors."""

from __future__ import annotations

import io
import pickle
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from nstlib import config
from nstlib.data import datasets
from nstlib.data.datasets import (
    DatasetNotFoundError,
    ImageFolderDataset,
    SyntheticDataset,
    center_crop,
    list_images,
    open_dataset,
    resize_shorter,
)

A, B, C, D = (250, 10, 10), (10, 240, 20), (20, 30, 230), (200, 200, 30)


@pytest.fixture(autouse=True)
def _not_quick(monkeypatch):
    """Real mode unless a test turns quick mode on (a caller's NSTLIB_QUICK=1 must not leak in)."""
    monkeypatch.delenv(config.ENV_QUICK, raising=False)


def stripes(colours, width, height, vertical=True) -> np.ndarray:
    """An [H, W, 3] uint8 array of equal stripes, left to right (vertical) or top to bottom."""
    k = len(colours)
    array = np.zeros((height, width, 3), np.uint8)
    for i, colour in enumerate(colours):
        if vertical:
            array[:, i * width // k:(i + 1) * width // k] = colour
        else:
            array[i * height // k:(i + 1) * height // k] = colour
    return array


def save_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def as_uint8(tensor) -> np.ndarray:
    return (tensor.permute(1, 2, 0).numpy() * 255).round().astype(np.int16)


def pil_oracle(array, size) -> np.ndarray:
    """Shorter side to size with Pillow's (antialiased) BICUBIC, then the centre crop, all by hand."""
    img = Image.fromarray(array)
    w, h = img.size
    scale = size / min(w, h)
    new = (round(w * scale), round(h * scale))
    img = img.resize(new, Image.Resampling.BICUBIC)
    left, top = (new[0] - size) // 2, (new[1] - size) // 2
    return np.asarray(img.crop((left, top, left + size, top + size))).astype(np.int16)


@pytest.fixture
def folder(tmp_path):
    """A folder of 4 good images in nested folders (created out of order), a corrupt JPEG,
    a text file with an image name, a non-image file, and hidden files."""
    root = tmp_path / "photos"
    save_png(root / "z_last.png", stripes([A, B], 30, 20))
    save_png(root / "sub" / "b.png", stripes([C, D], 20, 30, vertical=False))
    buffer = io.BytesIO()
    Image.fromarray(stripes([A, D], 32, 24)).save(buffer, format="JPEG", quality=95)
    (root / "a.JPG").write_bytes(buffer.getvalue())
    save_png(root / "sub" / "deeper" / "c.png", stripes([B, C], 16, 16))
    (root / "broken.jpg").write_bytes(buffer.getvalue()[:300])  # truncated JPEG
    (root / "sub" / "fake.png").write_text("<html>not an image</html>")
    (root / "notes.txt").write_text("hello")
    save_png(root / ".hidden.png", stripes([A], 8, 8))
    save_png(root / ".cache" / "x.png", stripes([A], 8, 8))
    return root


def test_list_images_is_sorted_recursive_and_skips_hidden(folder):
    names = [p.relative_to(folder).as_posix() for p in list_images(folder)]
    assert names == ["a.JPG", "broken.jpg", "sub/b.png", "sub/deeper/c.png", "sub/fake.png", "z_last.png"]
    assert [p.name for p in list_images(folder, (".png",))] == ["b.png", "c.png", "fake.png", "z_last.png"]


def test_items_shape_range_and_determinism(folder):
    data = ImageFolderDataset(folder, size=12)
    assert len(data) == 6
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        items = [data[i] for i in range(len(data))]
        again = [ImageFolderDataset(folder, size=12)[i] for i in range(len(data))]
    for x, y in zip(items, again):
        assert x.shape == (3, 12, 12) and x.dtype == torch.float32
        assert 0.0 <= x.min() and x.max() <= 1.0
        assert torch.equal(x, y)
    batch = next(iter(torch.utils.data.DataLoader(torch.utils.data.Subset(data, [0, 2, 3]), batch_size=3)))
    assert batch.shape == (3, 3, 12, 12)
    copy = pickle.loads(pickle.dumps(data))  # what DataLoader worker processes receive
    assert copy.files == data.files and torch.equal(copy[2], items[2])


def test_bad_files_are_skipped_once_with_a_warning(folder):
    data = ImageFolderDataset(folder, size=8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        broken = data[1]  # broken.jpg -> the next good file, sub/b.png
        again = data[1]
        fake = data[4]  # sub/fake.png -> z_last.png
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2
    assert "broken.jpg" in messages[0] and "fake.png" in messages[1]
    assert data.skipped == [folder / "broken.jpg", folder / "sub" / "fake.png"]
    assert torch.equal(broken, data[2]) and torch.equal(again, data[2])
    assert torch.equal(fake, data[5])


def test_shorter_side_resize_and_centre_crop_match_an_independent_computation(tmp_path):
    # 40 x 20 with four vertical stripes of 10 px: after 20 x 10, the centre 10 x 10 shows B then C
    wide = stripes([A, B, C, D], 40, 20)
    path = save_png(tmp_path / "wide.png", wide)
    out = datasets.load_square(path, 10)
    got = as_uint8(out)
    assert out.shape == (3, 10, 10)
    assert np.abs(got - pil_oracle(wide, 10)).max() <= 3
    # columns 2 and 7 are 2 px from every stripe edge: the kernel (4 input px each side) sees one colour
    assert (got[:, 2] == B).all() and (got[:, 7] == C).all()
    assert not (got == A).all(axis=2).any() and not (got == D).all(axis=2).any()
    # portrait: horizontal stripes, the crop shows the middle rows
    tall = stripes([A, B, C, D], 20, 40, vertical=False)
    got = as_uint8(datasets.load_square(save_png(tmp_path / "tall.png", tall), 10))
    assert np.abs(got - pil_oracle(tall, 10)).max() <= 3
    assert (got[2] == B).all() and (got[7] == C).all()
    # already the right size: the very pixels
    square = np.random.default_rng(0).integers(0, 256, (10, 10, 3), dtype=np.uint8)
    got = as_uint8(datasets.load_square(save_png(tmp_path / "sq.png", square), 10))
    assert (got == square).all()


def test_resize_shorter_and_center_crop_sizes():
    image = torch.rand(1, 3, 20, 41)
    resized = resize_shorter(image, 10)
    assert resized.shape == (1, 3, 10, 21)  # floor(41 * 10 / 20 + 0.5) = 21
    assert resize_shorter(torch.rand(1, 3, 30, 7), 5).shape == (1, 3, 21, 5)  # floor(21.93) = 21
    x = torch.arange(5 * 6.0).reshape(1, 1, 5, 6)
    # an odd excess drops the extra row/column at the bottom/right: rows 1..3, columns 1..4
    assert torch.equal(center_crop(x, 3), x[..., 1:4, 1:4])
    assert torch.equal(center_crop(x[..., :4, :4], 3), x[..., 0:3, 0:3])
    with pytest.raises(ValueError, match="cannot crop"):
        center_crop(x, 6)


def test_large_jpeg_uses_draft_and_still_matches(tmp_path):
    # a 400 x 300 JPEG at size 64 is decoded at 1/4 scale (100 x 75 >= 64): close to the full decode
    array = np.kron(stripes([A, B, C, D], 4, 3), np.ones((100, 100, 1), np.uint8))
    path = tmp_path / "big.jpg"
    Image.fromarray(array).save(path, quality=95)
    got = as_uint8(datasets.load_square(path, 64))
    full = pil_oracle(np.asarray(Image.open(path).convert("RGB")), 64)
    assert np.abs(got - full).mean() < 3


def test_n_limits_to_the_first_images(folder):
    data = open_dataset(folder, 8, n=3)
    assert [p.name for p in data.files] == ["a.JPG", "broken.jpg", "b.png"]


def test_all_files_broken_is_a_clear_error(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"nope")
    (tmp_path / "b.png").write_bytes(b"")
    data = ImageFolderDataset(tmp_path, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(RuntimeError, match=f"none of the 2 files in {tmp_path}"):
            data[0]
    assert len(data.skipped) == 2


def test_missing_or_empty_folder_errors_name_the_folder(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=f"{tmp_path / 'nope'} does not exist.*download_labelme"):
        ImageFolderDataset(tmp_path / "nope")
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "readme.txt").write_text("x")
    with pytest.raises(DatasetNotFoundError, match=f"{tmp_path / 'empty'} holds no image files.*download_coco"):
        open_dataset(tmp_path / "empty")
    with pytest.raises(NotADirectoryError, match="readme.txt"):
        ImageFolderDataset(tmp_path / "empty" / "sub" / "readme.txt")
    with pytest.raises(DatasetNotFoundError, match="neither an existing folder .* nor a dataset name; the names are"):
        open_dataset("cocoa")
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="size="):
            open_dataset("synthetic", bad)
    with pytest.raises(ValueError, match="n="):
        open_dataset("synthetic", 8, n=0)


def test_index_checks(folder):
    data = ImageFolderDataset(folder, 8)
    assert torch.equal(data[-1], data[5])
    with pytest.raises(IndexError):
        data[6]
    with pytest.raises(TypeError):
        data["0"]


def test_synthetic_dataset_is_deterministic():
    data = SyntheticDataset(length=5, size=32, seed=3)
    assert len(data) == 5
    x = data[2]
    assert x.shape == (3, 32, 32) and 0 <= x.min() and x.max() <= 1
    assert torch.equal(x, SyntheticDataset(length=5, size=32, seed=3)[2])
    # image i is exactly the named stand-in
    from nstlib.data.synthetic import content_standin
    expected = np.asarray(content_standin("synthetic-3-2", 32, 32))
    assert (as_uint8(x) == expected).all()
    assert not torch.equal(x, data[3]) and not torch.equal(x, SyntheticDataset(5, 32, seed=4)[2])
    with pytest.raises(IndexError):
        data[5]
    with pytest.raises(ValueError, match="length="):
        SyntheticDataset(0)


def test_named_dataset_missing_is_an_error_outside_quick_mode(cache_dir):
    with pytest.raises(DatasetNotFoundError) as info:
        open_dataset("labelme")
    message = str(info.value)
    assert str(cache_dir / "datasets" / "labelme") in message and "download_labelme(n=20000)" in message
    with pytest.raises(DatasetNotFoundError, match=r"download_coco\('train2014'\).*13.5 GB"):
        open_dataset("coco-train2014")
    with pytest.raises(DatasetNotFoundError, match=r"download_coco\('val2017'\).*815.6 MB"):
        open_dataset("coco-val2017")
    with pytest.raises(DatasetNotFoundError, match=r"download_labelme_12_50k\(\)"):
        open_dataset("labelme-12-50k")


def test_quick_mode_gives_synthetic_data_without_network(cache_dir, monkeypatch, capsys, no_network):
    monkeypatch.setenv(config.ENV_QUICK, "1")
    data = open_dataset("coco-val2017", 256, n=7)
    assert isinstance(data, SyntheticDataset) and len(data) == 7 and data.size == config.MAX_SIZE
    assert data[0].shape == (3, 64, 64)
    assert isinstance(open_dataset("labelme"), SyntheticDataset)
    out = capsys.readouterr().out
    assert out.count(config.BANNER) == 1 and "not on disk" in out
    assert not cache_dir.exists()


def test_quick_mode_uses_a_labelme_folder_that_is_there(cache_dir, monkeypatch, capsys):
    save_png(cache_dir / "datasets" / "labelme" / "f" / "x.png", stripes([A, B], 100, 80))
    monkeypatch.setenv(config.ENV_QUICK, "1")
    data = open_dataset("labelme", 256)
    assert isinstance(data, ImageFolderDataset) and data.size == 64 and data[0].shape == (3, 64, 64)
    monkeypatch.delenv(config.ENV_QUICK)
    data = open_dataset("labelme", 16)
    assert len(data) == 1 and data[0].shape == (3, 16, 16)


def test_synthetic_source(cache_dir):
    data = open_dataset("synthetic", 16, n=3)
    assert isinstance(data, SyntheticDataset) and len(data) == 3 and data[0].shape == (3, 16, 16)
