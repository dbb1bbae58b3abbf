"""Configuration: environment settings, quick mode (caps and its banner), the device, the seed.

The device choice is checked on every machine by making CUDA and MPS present or absent
(monkeypatched), against the documented order CUDA, then MPS, then the CPU.
"""

import os
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nstlib import config


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for var in ("NSTLIB_QUICK", "NSTLIB_CACHE", "NSTLIB_MIRROR", "NSTLIB_RESULTS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(config, "_announced", False)


# ---- settings --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [("1", True), ("yes", True), ("0", False), ("", False), ("off", False)])
def test_quick_mode_values(monkeypatch, value, expected):
    monkeypatch.setenv("NSTLIB_QUICK", value)
    assert config.quick_mode() is expected


@pytest.mark.parametrize("value, expected", [(" TRUE ", True), ("On", True), ("No", False), (" false", False)])
def test_quick_mode_ignores_case_and_spaces(monkeypatch, value, expected):
    monkeypatch.setenv("NSTLIB_QUICK", value)
    assert config.quick_mode() is expected


def test_quick_mode_rejects_unclear_values(monkeypatch):
    monkeypatch.setenv("NSTLIB_QUICK", "maybe")
    with pytest.raises(ValueError, match="NSTLIB_QUICK"):
        config.quick_mode()


def test_quick_mode_is_off_when_unset_and_read_at_each_call(monkeypatch):
    assert config.quick_mode() is False
    monkeypatch.setenv("NSTLIB_QUICK", "1")
    assert config.quick_mode() is True  # a change after import takes effect at once
    monkeypatch.setenv("NSTLIB_QUICK", "2")
    with pytest.raises(ValueError, match=r"NSTLIB_QUICK='2'.*set it to 1"):
        config.quick_mode()


def test_cache_folders(monkeypatch, tmp_path):
    # (the results half of this test is tests/test_results.py::test_results_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert config.cache_dir() == tmp_path / "xdg" / "nstlib"
    monkeypatch.setenv("NSTLIB_CACHE", str(tmp_path / "c"))
    assert config.cache_dir() == tmp_path / "c"


def test_cache_falls_back_to_the_home_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert config.cache_dir() == tmp_path / "home" / ".cache" / "nstlib"
    monkeypatch.setenv("NSTLIB_CACHE", "~/elsewhere")
    assert config.cache_dir() == tmp_path / "home" / "elsewhere"  # ~ is expanded
    assert not (tmp_path / "home").exists()  # asking does not create anything


def _old_formula() -> Path:
    """The cache folder as nstlib computed it before platformdirs (the oracle for Linux)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "nstlib"


@pytest.fixture
def platform_calls(monkeypatch):
    """Record the calls of platformdirs.user_cache_dir (the real function still answers)."""
    import platformdirs

    calls = []
    real = platformdirs.user_cache_dir
    monkeypatch.setattr(platformdirs, "user_cache_dir", lambda *a, **k: calls.append((a, k)) or real(*a, **k))
    return calls


def test_linux_cache_folder_is_unchanged(monkeypatch, tmp_path, platform_calls):
    import platformdirs.unix

    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for xdg in (None, str(tmp_path / "xdg"), "relative/xdg", "~/xdg"):
        if xdg is None:
            monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
        else:
            monkeypatch.setenv("XDG_CACHE_HOME", xdg)
        assert config.cache_dir() == _old_formula(), xdg
    assert platform_calls == []  # Linux never asks platformdirs
    # where both apply, platformdirs agrees with it (an absolute XDG_CACHE_HOME, or none)
    for xdg in (None, str(tmp_path / "xdg")):
        if xdg is None:
            monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
        else:
            monkeypatch.setenv("XDG_CACHE_HOME", xdg)
        assert Path(platformdirs.unix.Unix("nstlib", appauthor=False).user_cache_dir) == _old_formula()


def test_macos_cache_folder_follows_the_platform(monkeypatch, tmp_path, platform_calls):
    import platformdirs
    import platformdirs.macos

    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setattr(platformdirs, "PlatformDirs", platformdirs.macos.MacOS)  # what macOS's import picks
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert config.cache_dir() == tmp_path / "home" / "Library" / "Caches" / "nstlib"  # Apple's convention
    assert platform_calls == [(("nstlib",), {"appauthor": False})]
    monkeypatch.setenv("NSTLIB_CACHE", str(tmp_path / "mine"))
    assert config.cache_dir() == tmp_path / "mine"  # NSTLIB_CACHE still wins
    monkeypatch.delenv("NSTLIB_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert config.cache_dir() == tmp_path / "xdg" / "nstlib"  # and so does an XDG_CACHE_HOME set on purpose
    assert len(platform_calls) == 1 and not (tmp_path / "home").exists()


def test_windows_cache_folder_follows_the_platform(monkeypatch, tmp_path, platform_calls):
    import platformdirs
    import platformdirs.windows

    local = tmp_path / "AppData" / "Local"  # %LOCALAPPDATA%, as Windows' shell folders API would answer
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(platformdirs, "PlatformDirs", platformdirs.windows.Windows)
    monkeypatch.setattr(platformdirs.windows, "get_win_folder", lambda name: {"CSIDL_LOCAL_APPDATA": str(local)}[name])
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert config.cache_dir() == local / "nstlib" / "Cache"  # %LOCALAPPDATA%\nstlib\Cache
    assert platform_calls == [(("nstlib",), {"appauthor": False})]
    monkeypatch.setenv("NSTLIB_CACHE", str(tmp_path / "mine"))
    assert config.cache_dir() == tmp_path / "mine"
    assert not local.exists()  # asking does not create anything


def test_mirror_and_results_dir(monkeypatch, tmp_path):
    assert config.mirror() is None
    monkeypatch.setenv("NSTLIB_MIRROR", "   ")
    assert config.mirror() is None  # blank counts as unset
    monkeypatch.setenv("NSTLIB_MIRROR", " https://mirror.example/images/ ")
    assert config.mirror() == "https://mirror.example/images/"
    assert str(config.results_dir()) == "results"
    monkeypatch.setenv("NSTLIB_RESULTS", str(tmp_path / "r"))
    assert config.results_dir() == tmp_path / "r" and not (tmp_path / "r").exists()


# ---- quick mode: caps and the banner ---------------------------------------------------------------------------

def test_caps_and_banner_once(monkeypatch, capsys):
    assert config.cap_size(512) == 512 and config.cap_steps(300) == 300
    assert capsys.readouterr().out == ""
    monkeypatch.setenv("NSTLIB_QUICK", "1")
    assert config.cap_size(512) == config.MAX_SIZE and config.cap_size(None) == config.MAX_SIZE and config.cap_size(10) == 10
    assert config.cap_steps(300) == config.MAX_STEPS and config.cap_steps(2) == 2
    assert capsys.readouterr().out.count("QUICK MODE") == 1


def test_caps_are_the_documented_numbers_and_the_banner_states_them(monkeypatch, capsys):
    assert (config.MAX_SIZE, config.MAX_STEPS) == (64, 5)
    assert config.cap_size(None) is None  # outside quick mode, None (the caller's default) stays None
    monkeypatch.setenv("NSTLIB_QUICK", "1")
    assert [config.cap_size(s) for s in (1, 63, 64, 65, 4096)] == [1, 63, 64, 64, 64]
    assert [config.cap_steps(s) for s in (1, 5, 6, 300)] == [1, 5, 5, 5]
    out = capsys.readouterr().out
    assert out.strip() == config.BANNER.strip()
    assert "<= 64 px" in out and "at most 5 optimisation/training steps" in out and "RANDOM VGG19 weights" in out
    # what replaces images: a cached copy where there is one, a stand-in otherwise (not "stand-ins" unconditionally)
    assert "the cached (or NSTLIB_MIRROR) copy where\n  there is one, otherwise a synthetic stand-in" in out
    assert max(len(line) for line in config.BANNER.splitlines()) <= 70  # fits the book's column unwrapped


# ---- the device ----------------------------------------------------------------------------------------------

@pytest.fixture
def machine(monkeypatch):
    """Make CUDA and MPS present or absent: ``machine(cuda=True, mps=False)``."""

    def make(cuda: bool, mps: bool):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Test GPU 9000")
        monkeypatch.setattr(config, "_mps_available", lambda: mps)

    return make


@pytest.mark.parametrize("cuda, mps, expected", [(True, True, "cuda"), (True, False, "cuda"), (False, True, "mps"),
                                                 (False, False, "cpu")])
def test_get_device_prefers_cuda_then_mps_then_cpu(machine, cuda, mps, expected):
    machine(cuda=cuda, mps=mps)
    assert config.get_device().type == expected
    assert config.get_device("cpu").type == "cpu"  # asking for the CPU always works


def test_asking_for_a_missing_device_says_what_to_do(machine):
    machine(cuda=False, mps=False)
    with pytest.raises(ValueError, match="no CUDA GPU"):
        config.get_device("cuda")
    with pytest.raises(ValueError, match="MPS is not available; use device='cpu'"):
        config.get_device("mps")
    for bad in ("tpu", "meta"):
        with pytest.raises(ValueError, match="is not one of 'cuda', 'mps', 'cpu'"):
            config.get_device(bad)
    machine(cuda=True, mps=True)
    assert config.get_device("cuda").type == "cuda" and config.get_device("mps").type == "mps"


def test_verbose_says_which_device_and_how_to_get_a_gpu(machine, capsys, monkeypatch):
    machine(cuda=False, mps=False)
    config.get_device(verbose=True)
    assert "Change runtime type" in capsys.readouterr().out
    machine(cuda=True, mps=False)
    config.get_device(verbose=True)
    out = capsys.readouterr().out
    assert out == "Using GPU: Test GPU 9000\n"
    machine(cuda=False, mps=True)
    config.get_device(verbose=True)
    assert capsys.readouterr().out == "Using Apple GPU (MPS)\n"
    config.get_device()
    assert capsys.readouterr().out == ""  # quiet unless asked
    monkeypatch.setenv("NSTLIB_QUICK", "1")
    config.get_device(verbose=True)
    out = capsys.readouterr().out
    assert "QUICK MODE" in out and out.index("QUICK MODE") < out.index("Using Apple GPU")


# ---- the seed ----------------------------------------------------------------------------------------------------

def test_set_seed_makes_every_generator_repeat():
    def draw():
        return random.random(), np.random.rand(), torch.rand(1).item()

    config.set_seed(5)
    first = draw()
    config.set_seed(5)
    assert draw() == first
    with pytest.raises(ValueError, match="seed"):
        config.set_seed(-1)


def test_set_seed_is_each_library_seeded_with_that_number():
    # second computation: seeding each library by hand gives the same draws
    assert config.set_seed(7) == 7
    ours = random.random(), np.random.rand(), torch.rand(1).item()
    random.seed(7)
    np.random.seed(7)
    torch.manual_seed(7)
    assert ours == (random.random(), np.random.rand(), torch.rand(1).item())
    config.set_seed(8)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) != ours


def test_set_seed_takes_large_integers_and_refuses_the_rest():
    config.set_seed(2**40 + 3)  # NumPy takes seeds below 2**32: the seed is reduced modulo 2**32
    numpy_draw = np.random.rand()
    np.random.seed(3)
    assert np.random.rand() == numpy_draw
    for bad in (True, 1.5, "3", None):
        with pytest.raises(ValueError, match=r"seed=.* must be a non-negative integer"):
            config.set_seed(bad)
