"""bfloat16 autocast on the CPU: detection, Gatys (precision=) and training (amp="bfloat16"), and the
float32 fallback with a warning where the CPU has no native bfloat16 (the detection is monkeypatched, so
these tests behave the same on any CPU)."""

from __future__ import annotations

import warnings

import pytest
import torch

from nstlib import precision, stylize, train_transform_net
from test_training import FAST, Tiny, style_image

SMALL = dict(weights=None, progress=False, content_layers=("conv2_2",), style_layers=("conv1_1", "conv2_1"))


@pytest.fixture
def native(monkeypatch):
    """Pretend this CPU computes bfloat16 natively (autocast works on any CPU, natively or emulated)."""
    monkeypatch.setattr(precision, "cpu_bfloat16", lambda: (True, "pretended native"))


@pytest.fixture
def not_native(monkeypatch):
    monkeypatch.setattr(precision, "cpu_bfloat16", lambda: (False, "this CPU (test) has no native bfloat16 instructions"))


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(3)
    smooth = torch.nn.functional.interpolate(torch.rand(2, 3, 8, 8, generator=g), size=(32, 32), mode="bilinear")
    return smooth[:1], smooth[1:]


def test_the_first_evaluation_in_bfloat16_is_within_its_rounding_of_float32(images, native):
    """One step: the losses at the start (before any update) differ by bfloat16's rounding (2**-8 = 0.4 % per
    operation; measured 0.04 %, bound 1 %); the content loss of the content image is exactly 0 in both,
    because the targets are computed in the same precision."""
    content, style = images
    fp32 = stylize(content, style, steps=1, **SMALL)
    bf16 = stylize(content, style, steps=1, precision="bfloat16", **SMALL)
    assert fp32.settings["precision"] == "float32" and bf16.settings["precision"] == "bfloat16"
    assert fp32.history["content"][0] == 0.0 and bf16.history["content"][0] == 0.0
    assert bf16.history["style"][0] == pytest.approx(fp32.history["style"][0], rel=0.01)


def test_a_bfloat16_run_reaches_the_float32_loss(images, native):
    """20 Adam steps from the content image: bfloat16 lowers the loss as float32 does, to within 2 % of its
    final total (measured 0.14 %), and the images agree to 2 8-bit levels on average (measured 0.7)."""
    content, style = images
    options = dict(steps=20, optimizer="adam", **SMALL)
    fp32 = stylize(content, style, **options)
    bf16 = stylize(content, style, precision="bfloat16", **options)
    assert fp32.history["total"][-1] < 0.5 * fp32.history["total"][0]  # the run did optimise
    assert bf16.history["total"][-1] == pytest.approx(fp32.history["total"][-1], rel=0.02)
    assert 255 * (bf16.image - fp32.image).abs().mean() < 2


def test_bfloat16_is_refused_with_a_warning_where_not_native(images, not_native):
    content, style = images
    fp32 = stylize(content, style, steps=2, **SMALL)
    with pytest.warns(UserWarning, match=r"precision='bfloat16' ignored: this CPU \(test\) has no native bfloat16 "
                                         r"instructions; computing in float32"):
        fallback = stylize(content, style, steps=2, precision="bfloat16", **SMALL)
    assert fallback.settings["precision"] == "float32" and torch.equal(fallback.image, fp32.image)


def test_auto_picks_bfloat16_where_native_and_float32_quietly_elsewhere(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "cpu_bfloat16", lambda: (True, "native"))
    assert precision.choose("auto", cpu) is torch.bfloat16 and precision.choose("float32", cpu) is None
    monkeypatch.setattr(precision, "cpu_bfloat16", lambda: (False, "emulated"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert precision.choose("auto", cpu) is None
    with pytest.raises(ValueError, match=r"precision='half' must be one of 'float32', 'bfloat16', 'auto'"):
        precision.choose("half", cpu)
    with pytest.warns(UserWarning, match="bfloat16 autocast is not offered on meta"):
        assert precision.choose("bfloat16", torch.device("meta")) is None


def test_detection_needs_a_native_flag_and_a_working_probe(monkeypatch):
    precision.cpu_bfloat16.cache_clear()
    try:
        monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx2", "avx512f"})
        native, why = precision.cpu_bfloat16()
        assert not native and "no native bfloat16 instructions (AVX512-BF16, AMX or Arm BF16)" in why
        precision.cpu_bfloat16.cache_clear()
        monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx2", "avx512_bf16"})
        assert precision.cpu_bfloat16() == (True, "this CPU computes bfloat16 natively (avx512_bf16; torch kernels: "
                                                  f"{torch.backends.cpu.get_cpu_capability()})")
        precision.cpu_bfloat16.cache_clear()
        monkeypatch.setattr(precision, "_probe", lambda: "autocast failed (test)")
        assert precision.cpu_bfloat16() == (False, "this CPU has avx512_bf16, but autocast failed (test)")
    finally:
        precision.cpu_bfloat16.cache_clear()


def test_the_probe_passes_where_autocast_works():
    assert precision._probe() is None  # CPU autocast to bfloat16 exists in every torch this course supports


def test_training_with_amp_bfloat16_on_the_cpu(native):
    """One step: the same start, losses within bfloat16's rounding of float32's (measured 0.6 %, bound 2 %)."""
    data = Tiny(n=4)
    fp32 = train_transform_net(style_image(), data, steps=1, amp=False, **FAST)
    bf16 = train_transform_net(style_image(), data, steps=1, amp="bfloat16", **FAST)
    assert fp32.settings["amp"] is None and bf16.settings["amp"] == "bfloat16"
    for key in ("content", "style", "total"):
        assert bf16.history[key][0] == pytest.approx(fp32.history[key][0], rel=0.02)
    # amp=True stays float32 on a CPU (the default path keeps its behaviour)
    auto = train_transform_net(style_image(), data, steps=1, amp=True, **FAST)
    assert auto.settings["amp"] is None and auto.history["total"] == fp32.history["total"]


def test_training_amp_bfloat16_falls_back_to_float32_with_a_warning(not_native):
    data = Tiny(n=4)
    fp32 = train_transform_net(style_image(), data, steps=1, amp=False, **FAST)
    with pytest.warns(UserWarning, match=r"amp='bfloat16' ignored: this CPU \(test\) has no native bfloat16"):
        fallback = train_transform_net(style_image(), data, steps=1, amp="bfloat16", **FAST)
    assert fallback.settings["amp"] is None and fallback.history["total"] == fp32.history["total"]
    assert all(torch.equal(a, b) for a, b in zip(fallback.net.state_dict().values(), fp32.net.state_dict().values()))
