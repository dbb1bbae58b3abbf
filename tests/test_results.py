"""Where a run leaves its results: ``results_path`` and ``save_run`` (images and ``metrics.json``)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

import nstlib
from nstlib import config, results


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for var in ("NSTLIB_QUICK", "NSTLIB_CACHE", "NSTLIB_MIRROR", "NSTLIB_RESULTS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(config, "_announced", False)


def test_results_path(monkeypatch, tmp_path):
    # (the cache half of this test is tests/test_config.py::test_cache_folders)
    monkeypatch.setenv("NSTLIB_RESULTS", str(tmp_path / "r"))
    assert results.results_path("03_x") == tmp_path / "r" / "03_x" and (tmp_path / "r" / "03_x").is_dir()
    assert results.results_path("ignored", tmp_path / "own") == tmp_path / "own"


def test_results_path_defaults_to_results_in_the_current_folder(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    folder = results.results_path("01_images")
    assert folder.resolve() == (tmp_path / "results" / "01_images").resolve() and folder.is_dir()
    assert results.results_path("01_images") == folder  # asking again is fine: the folder exists


def test_save_run_writes_images_and_json(tmp_path):
    image = torch.rand(1, 3, 8, 10)
    folder = results.save_run(tmp_path / "run", {"loss": torch.tensor(0.5), "bad": float("nan"), "seconds": 1.5}, {"stylized": image})
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics == {"loss": 0.5, "bad": None, "seconds": 1.5, "images": ["stylized.png"], "quick": False}
    loaded = nstlib.load_image(folder / "stylized.png")
    assert torch.allclose(loaded, image, atol=1 / 255)
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]


def test_save_run_records_quick_mode_and_pixels_by_hand(tmp_path, monkeypatch):
    monkeypatch.setenv("NSTLIB_QUICK", "1")
    image = torch.tensor([0.0, 0.2, 1.0, 1.5]).view(1, 1, 1, 4).expand(1, 3, 1, 4)
    folder = results.save_run(tmp_path / "quick", {"steps": 5}, {"a": image, "b": image[0]})
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics == {"steps": 5, "images": ["a.png", "b.png"], "quick": True}
    with Image.open(folder / "a.png") as png:
        pixels = np.asarray(png.convert("RGB"))[0, :, 0]
    assert pixels.tolist() == [0, 51, 255, 255]  # round(255 * clamp(x, 0, 1)): 0.2 -> 51, 1.5 -> 255


def test_save_run_without_images_and_a_second_run_replaces_the_metrics(tmp_path):
    folder = results.save_run(tmp_path / "run", {"loss": 2.0, "where": tmp_path / "x", "curve": torch.tensor([3.0, 1.0])})
    assert json.loads((folder / "metrics.json").read_text()) == {
        "loss": 2.0, "where": str(tmp_path / "x"), "curve": [3.0, 1.0], "images": [], "quick": False}
    results.save_run(folder, {"loss": 1.0})
    assert json.loads((folder / "metrics.json").read_text()) == {"loss": 1.0, "images": [], "quick": False}
    assert sorted(p.name for p in folder.iterdir()) == ["metrics.json"]
