"""Atomic writes (the old file or the complete new one, never half of one; no temporary files left)
and ``plain``, which makes values JSON-friendly."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from nstlib import fileio
from nstlib.fileio import atomic_write, atomic_write_json, atomic_write_text, plain


def test_atomic_write_creates_folders_and_returns_the_path(tmp_path):
    target = tmp_path / "a" / "b" / "out.bin"
    assert atomic_write(str(target), lambda f: f.write(b"\x00\x01payload")) == target
    assert target.read_bytes() == b"\x00\x01payload"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.bin"]


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_bytes(b"old contents")

    def half_then_fail(f):
        f.write(b"new, but only half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, half_then_fail)
    assert target.read_bytes() == b"old contents"
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_interrupted_write_of_a_new_file_leaves_nothing(tmp_path):
    def interrupted(f):
        f.write(b"partial")
        raise KeyboardInterrupt  # Ctrl-C in a notebook: not an Exception, still cleaned up

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "new.png", interrupted)
    assert os.listdir(tmp_path) == []


def test_failed_rename_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "model.pth"
    target.write_bytes(b"old")

    def refuse(src, dst):
        raise PermissionError("file is open in another program")

    monkeypatch.setattr(fileio.os, "replace", refuse)
    with pytest.raises(PermissionError):
        atomic_write_text(target, "new")
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["model.pth"]


def test_the_new_file_replaces_the_old_one_whole(tmp_path):
    target = tmp_path / "notes.txt"
    atomic_write_text(target, "a much longer first version\n")
    atomic_write_text(target, "ünïcode ✓")
    assert target.read_bytes() == "ünïcode ✓".encode("utf-8")  # UTF-8, nothing of the longer old text left


def test_plain_converts_to_json_friendly_values():
    value = {
        "tensor": torch.tensor([[1.0, 2.0], [3.0, float("nan")]]),
        "scalar": torch.tensor(0.5),
        "array": np.array([1, 2]),
        "numpy_nan": np.float64("nan"),
        "path": Path("results") / "run",
        "tuple": (1, float("inf"), -float("inf")),
        3: "int key",
        "nested": {"ok": True, "none": None, "text": "x"},
    }
    assert plain(value) == {
        "tensor": [[1.0, 2.0], [3.0, None]],
        "scalar": 0.5,
        "array": [1, 2],
        "numpy_nan": None,
        "path": os.path.join("results", "run"),
        "tuple": [1, None, None],
        "3": "int key",
        "nested": {"ok": True, "none": None, "text": "x"},
    }
    assert type(plain(torch.tensor(2))) is int and plain("text") == "text" and plain(b"raw") == b"raw"


def test_atomic_write_json_is_sorted_indented_and_strict(tmp_path):
    path = atomic_write_json(tmp_path / "m.json", {"b": torch.tensor([1.5]), "a": float("nan")})
    text = path.read_text()
    assert text == '{\n  "a": null,\n  "b": [\n    1.5\n  ]\n}\n'

    def strict(token):
        raise AssertionError(f"not standard JSON: {token}")

    assert json.loads(text, parse_constant=strict) == {"a": None, "b": [1.5]}
    assert os.listdir(tmp_path) == ["m.json"]
