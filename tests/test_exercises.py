"""The notebooks' self-checks: a verdict is printed, nothing is raised, the input cannot be changed."""

import pytest
import torch

import nstlib
from nstlib.exercises import check_exercise


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


def test_a_correct_student_version_written_differently_passes(capsys):
    def my_gram(features):  # the einsum form of G = F F^T / (C H W), in float64
        b, c, h, w = features.shape
        return torch.einsum("bchw,bdhw->bcd", features.double(), features.double()) / (c * h * w)

    check_exercise(my_gram, nstlib.gram_matrix, torch.randn(1, 4, 3, 3))
    assert capsys.readouterr().out.strip() == "✅ my_gram matches nstlib.losses.gram_matrix"


@pytest.mark.parametrize("error, verdict", [(5e-7, "✅"), (5e-6, "❌")])
def test_tolerances_decide_the_verdict(capsys, error, verdict):
    # reference 0: only atol counts (rtol * 0 = 0); atol = 1e-6 by default
    x = torch.zeros(3)
    check_exercise(lambda t: t + error, lambda t: t, x)
    assert capsys.readouterr().out.startswith(verdict)
    check_exercise(lambda t: t + error, lambda t: t, x, atol=1e-5)
    assert capsys.readouterr().out.startswith("✅")


def test_wrong_shapes_and_types_are_verdicts_not_crashes(capsys):
    x = torch.randn(1, 2, 3, 3)
    check_exercise(lambda f: nstlib.gram_matrix(f)[0], nstlib.gram_matrix, x, name="no_batch")
    out = capsys.readouterr().out
    assert out.startswith("❌ no_batch differs") and "shape" in out.lower()
    check_exercise(lambda f: None, nstlib.gram_matrix, x, name="returns_nothing")
    assert capsys.readouterr().out.startswith("❌ returns_nothing differs")
    check_exercise(lambda a, b: a * b, lambda a, b: a * b, 3.0, torch.tensor([1.0, 2.0]))  # several inputs, not all tensors
    assert capsys.readouterr().out.startswith("✅")
