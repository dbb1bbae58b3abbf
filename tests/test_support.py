"""Settings, quick mode, device/seed helpers, exercise self-checks, run results, notebook stripping."""

import json
import random

import nbformat
import numpy as np
import pytest
import torch

import nstlib
from nstlib import config, results
from nstlib.course import book as course
from nstlib.exercises import check_exercise


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for var in ("NSTLIB_QUICK", "NSTLIB_CACHE", "NSTLIB_MIRROR", "NSTLIB_RESULTS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(config, "_announced", False)


@pytest.mark.parametrize("value, expected", [("1", True), ("yes", True), ("0", False), ("", False), ("off", False)])
def test_quick_mode_values(monkeypatch, value, expected):
    monkeypatch.setenv("NSTLIB_QUICK", value)
    assert config.quick_mode() is expected


def test_quick_mode_rejects_unclear_values(monkeypatch):
    monkeypatch.setenv("NSTLIB_QUICK", "maybe")
    with pytest.raises(ValueError, match="NSTLIB_QUICK"):
        config.quick_mode()


def test_caps_and_banner_once(monkeypatch, capsys):
    assert config.cap_size(512) == 512 and config.cap_steps(300) == 300
    assert capsys.readouterr().out == ""
    monkeypatch.setenv("NSTLIB_QUICK", "1")
    assert config.cap_size(512) == config.MAX_SIZE and config.cap_size(None) == config.MAX_SIZE and config.cap_size(10) == 10
    assert config.cap_steps(300) == config.MAX_STEPS and config.cap_steps(2) == 2
    assert capsys.readouterr().out.count("QUICK MODE") == 1


def test_cache_and_results_folders(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert config.cache_dir() == tmp_path / "xdg" / "nstlib"
    monkeypatch.setenv("NSTLIB_CACHE", str(tmp_path / "c"))
    assert config.cache_dir() == tmp_path / "c"
    monkeypatch.setenv("NSTLIB_RESULTS", str(tmp_path / "r"))
    assert results.results_path("03_x") == tmp_path / "r" / "03_x" and (tmp_path / "r" / "03_x").is_dir()
    assert results.results_path("ignored", tmp_path / "own") == tmp_path / "own"


def test_get_device_on_this_machine(capsys, monkeypatch):
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available() and config._mps_available():
        expected = "mps"
    assert config.get_device().type == expected
    assert config.get_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            config.get_device("cuda")
        config.get_device(verbose=True)
        assert "Change runtime type" in capsys.readouterr().out
    monkeypatch.setenv("NSTLIB_QUICK", "1")
    config.get_device(verbose=True)
    assert "QUICK MODE" in capsys.readouterr().out


def test_set_seed_makes_every_generator_repeat():
    def draw():
        return random.random(), np.random.rand(), torch.rand(1).item()

    config.set_seed(5)
    first = draw()
    config.set_seed(5)
    assert draw() == first
    with pytest.raises(ValueError, match="seed"):
        config.set_seed(-1)


def test_check_exercise_verdicts(capsys):
    x = torch.randn(2, 3, 4, 4)
    assert check_exercise(nstlib.gram_matrix, nstlib.gram_matrix, x) is None  # a cell shows only the verdict
    assert "✅" in capsys.readouterr().out

    def unfinished(features):
        raise NotImplementedError

    check_exercise(unfinished, nstlib.gram_matrix, x)
    assert "not implemented yet" in capsys.readouterr().out
    check_exercise(lambda f: nstlib.gram_matrix(f) * 2, nstlib.gram_matrix, x, name="doubled")
    assert "❌ doubled differs" in capsys.readouterr().out
    check_exercise(lambda f: f.missing, nstlib.gram_matrix, x)
    assert "AttributeError" in capsys.readouterr().out


def test_check_exercise_cannot_be_fooled_by_changing_the_input(capsys):
    x = torch.ones(1, 2, 2, 2)

    def sneaky(features):
        features.zero_()
        return nstlib.gram_matrix(features)

    check_exercise(sneaky, nstlib.gram_matrix, x)
    assert "❌" in capsys.readouterr().out
    assert torch.equal(x, torch.ones(1, 2, 2, 2))


def test_save_run_writes_images_and_json(tmp_path):
    image = torch.rand(1, 3, 8, 10)
    folder = results.save_run(tmp_path / "run", {"loss": torch.tensor(0.5), "bad": float("nan"), "seconds": 1.5}, {"stylized": image})
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics == {"loss": 0.5, "bad": None, "seconds": 1.5, "images": ["stylized.png"], "quick": False}
    loaded = nstlib.load_image(folder / "stylized.png")
    assert torch.allclose(loaded, image, atol=1 / 255)
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]


def test_strip_outputs_keeps_only_checked_cells():
    nb = nbformat.v4.new_notebook()
    checked = nbformat.v4.new_code_cell("# NBVAL_CHECK_OUTPUT\nprint(1)", execution_count=3)
    checked.outputs = [nbformat.v4.new_output("stream", text="1\n")]
    other = nbformat.v4.new_code_cell("print(2)", execution_count=4)
    other.outputs = [nbformat.v4.new_output("stream", text="2\n")]
    nb.cells = [nbformat.v4.new_markdown_cell("# T"), checked, other]
    course.strip_outputs(nb)
    assert checked.outputs and not other.outputs and other.execution_count is None
    assert course.is_checked(checked) and not course.is_checked(other) and not course.is_checked(nb.cells[0])
