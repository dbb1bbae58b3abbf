"""The notebooks' self-checks: a verdict is printed, nothing is raised, the input cannot be changed."""

import numpy as np
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


# ---- the one-line verdicts: what differs, where, and a hint ---------------------------------------

def test_a_wrong_shape_names_both_shapes_and_the_likely_cause(capsys):
    x = torch.randn(2, 3, 4, 4)
    check_exercise(lambda f: nstlib.gram_matrix(f)[0], nstlib.gram_matrix, x, name="no_batch")
    out = capsys.readouterr().out
    assert out.count("\n") == 1  # one line
    assert "shape (3, 3) but expected (2, 3, 3)" in out and "unsqueeze(0)" in out
    check_exercise(lambda f: nstlib.gram_matrix(f).unsqueeze(1), nstlib.gram_matrix, x, name="extra_axis")
    out = capsys.readouterr().out
    assert "shape (2, 1, 3, 3) but expected (2, 3, 3)" in out and "squeeze" in out
    check_exercise(lambda f: nstlib.gram_matrix(f).transpose(0, 2), nstlib.gram_matrix, x, name="permuted")
    assert "reshape, permute or transpose" in capsys.readouterr().out


def test_wrong_values_give_the_largest_difference_where_it_is_and_a_hint(capsys):
    x = torch.zeros(2, 3)
    wrong = torch.zeros(2, 3)
    wrong[1, 2] = 0.25  # one wrong entry: the verdict must point at it
    check_exercise(lambda t: t + wrong, lambda t: t, x, name="one_off", hint="did you divide by C*H*W?")
    out = capsys.readouterr().out.strip()
    assert out == ("❌ one_off differs from test_wrong_values_give_the_largest_difference_where_it_is_and_a_hint.<locals>.<lambda>: "
                   "values differ: largest difference 0.25 at [1, 2] (got 0.25, expected 0); hint: did you divide by C*H*W?")


def test_a_constant_factor_is_recognised(capsys):
    x = torch.randn(1, 4, 3, 3)
    check_exercise(lambda f: nstlib.gram_matrix(f) * 9, nstlib.gram_matrix, x, name="times_nine")  # e.g. forgot 1/(H W)
    out = capsys.readouterr().out
    assert out.startswith("❌ times_nine differs") and "every value is 9 times the expected one" in out
    check_exercise(lambda f: nstlib.gram_matrix(f) + 1, nstlib.gram_matrix, x, name="shifted")  # not a factor
    assert "times the expected" not in capsys.readouterr().out


def test_dtype_is_checked_only_when_asked(capsys):
    array = np.random.default_rng(0).integers(0, 256, size=(4, 5, 3), dtype=np.uint8)

    def as_float64(a):  # right values, wrong dtype
        return torch.from_numpy(a).permute(2, 0, 1).double().div(255).unsqueeze(0)

    check_exercise(as_float64, nstlib.load_image, array)
    assert capsys.readouterr().out.startswith("✅")
    check_exercise(as_float64, nstlib.load_image, array, check_dtype=True)
    out = capsys.readouterr().out
    assert "dtype torch.float64 but expected torch.float32" in out and ".float()" in out
    check_exercise(lambda a: a / 255, nstlib.load_image, array, check_dtype=True, name="numpy")
    assert "numpy array" in capsys.readouterr().out  # not a tensor at all
    check_exercise(lambda a: as_float64(a).float(), nstlib.load_image, array, check_dtype=True, name="float32")
    assert capsys.readouterr().out.startswith("✅")


def test_numbers_tuples_nan_and_errors_are_one_line_verdicts(capsys):
    check_exercise(lambda name: 10, nstlib.receptive_field, "conv_4", name="rf")
    assert capsys.readouterr().out.strip() == "❌ rf differs from receptive_field: returned 10 but expected 14"
    check_exercise(lambda a, b: (a, 2 * b), lambda a, b: (a, b), torch.ones(2), torch.ones(3), name="pair")
    assert "item 1: values differ" in capsys.readouterr().out
    check_exercise(lambda a, b: a, lambda a, b: (a, b), torch.ones(2), torch.ones(3), name="half")
    assert "expected a tuple of 2 items" in capsys.readouterr().out
    check_exercise(lambda t: t / 0 * 0, lambda t: t, torch.ones(2), name="nan")
    assert "NaN" in capsys.readouterr().out

    def fails(t):
        raise ValueError("first line\nsecond line")

    check_exercise(fails, lambda t: t, torch.ones(2))
    assert capsys.readouterr().out == "❌ fails raised ValueError: first line\n"
