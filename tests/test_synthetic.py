"""Synthetic stand-ins: deterministic, per-name, right shape, and content-like or style-like."""

from __future__ import annotations

import io

import numpy as np
import pytest

from nstlib.data import samples, synthetic

STYLES = samples.sample_names("style")
CONTENTS = samples.sample_names("content")


@pytest.fixture(scope="module")
def standins():
    return {name: np.asarray(samples.standin(name), dtype=np.float64) for name in samples.SAMPLES}


def _png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def high_frequency_fraction(rgb: np.ndarray, cutoff: float = 0.05) -> float:
    """Share of the grey image's spectral energy (mean removed) above ``cutoff`` cycles per pixel."""
    grey = rgb @ np.array([0.299, 0.587, 0.114])
    power = np.abs(np.fft.fft2(grey - grey.mean())) ** 2
    radius = np.hypot(np.fft.fftfreq(grey.shape[0])[:, None], np.fft.fftfreq(grey.shape[1])[None, :])
    return float(power[radius > cutoff].sum() / power.sum())


def flat_fraction(rgb: np.ndarray, tolerance: float = 2.0) -> float:
    """Share of pixels whose right and lower neighbours differ by at most ``tolerance`` in every channel."""
    dx = np.abs(np.diff(rgb, axis=1)).max(axis=-1)[:-1, :]
    dy = np.abs(np.diff(rgb, axis=0)).max(axis=-1)[:, :-1]
    return float((np.maximum(dx, dy) <= tolerance).mean())


@pytest.mark.parametrize("make", [synthetic.content_standin, synthetic.style_standin])
def test_same_name_same_bytes_and_no_global_rng_use(make):
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    a, b = make("alpha", 97, 61), make("alpha", 97, 61)
    assert a.tobytes() == b.tobytes() and _png(a) == _png(b)
    assert np.array_equal(np.random.get_state()[1], before)  # the global generator was not touched
    assert a.mode == "RGB" and a.size == (97, 61)


@pytest.mark.parametrize("make", [synthetic.content_standin, synthetic.style_standin])
def test_different_names_differ(make):
    images = [np.asarray(make(name, 128, 96), dtype=np.float64) for name in ("alpha", "beta", "gamma")]
    for i in range(3):
        for j in range(i + 1, 3):
            assert np.abs(images[i] - images[j]).mean() > 5.0


def test_style_palettes_differ_per_sample(standins):
    means = np.array([standins[name].reshape(-1, 3).mean(axis=0) for name in STYLES])
    gaps = np.linalg.norm(means[:, None] - means[None, :], axis=-1)
    assert gaps[np.triu_indices(len(STYLES), 1)].min() > 5.0  # every pair has a visibly different mean colour


def test_standin_keeps_the_manifest_aspect_ratio(standins):
    for name, pixels in standins.items():
        sample = samples.get_sample(name)
        height, width, channels = pixels.shape
        assert channels == 3 and max(width, height) == synthetic.STANDIN_SIZE
        if sample.width is None:  # pixel size recorded on first use (not known yet): a square stand-in
            assert width == height
            continue
        # the shorter side is the rounded exact value
        if sample.width >= sample.height:
            assert height == round(256 * sample.height / sample.width)
        else:
            assert width == round(256 * sample.width / sample.height)
    assert samples.standin_size(samples.get_sample("wave"), 100) == (100, 55)  # 928 x 514 -> 100 x 55.4
    assert samples.standin_size(samples.get_sample("the_scream"), 100) == (79, 100)  # 1200 x 1528
    assert samples.standin("wave", longer_side=64).size == (64, 35)


def test_standin_dispatches_on_kind():
    wave = samples.get_sample("wave")
    amber = samples.get_sample("amber")
    assert samples.standin("wave").tobytes() == synthetic.style_standin("wave", 256, 142).tobytes()
    assert samples.standin(amber).tobytes() == synthetic.content_standin("amber", 256, 256).tobytes()
    assert wave.kind == "style" and amber.kind == "content"
    with pytest.raises(ValueError, match="known samples"):
        samples.standin("mona_lisa")


def test_content_is_flat_regions_with_sharp_edges_style_is_texture(standins):
    for name in CONTENTS:
        pixels = standins[name]
        assert flat_fraction(pixels) > 0.8, name  # mostly flat areas (sky, hills, walls) ...
        grad = np.abs(np.diff(pixels, axis=1)).max()
        assert grad > 100, name  # ... bounded by sharp edges (outlines, sun, river)
    for name in STYLES:
        assert flat_fraction(standins[name]) < 0.2, name  # textured everywhere


def test_style_has_more_high_frequency_energy_than_content(standins):
    style = [high_frequency_fraction(standins[name]) for name in STYLES]
    content = [high_frequency_fraction(standins[name]) for name in CONTENTS]
    assert min(style) > 1.3 * max(content)


def test_style_is_more_colourful_than_content(standins):
    """Hasler and Suesstrunk's colourfulness: sqrt(var rg + var yb) + 0.3 sqrt(mean rg^2 + mean yb^2)."""

    def colourfulness(rgb):
        r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
        rg, yb = r - g, 0.5 * (r + g) - b
        return np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())

    assert min(colourfulness(standins[n]) for n in STYLES) > 30  # "moderately colourful" and above
    assert np.mean([colourfulness(standins[n]) for n in STYLES]) > np.mean(
        [colourfulness(standins[n]) for n in CONTENTS])


def test_content_scene_has_sky_above_ground(standins):
    for name in CONTENTS:
        pixels = standins[name]
        top, bottom = pixels[: len(pixels) // 10], pixels[-len(pixels) // 10:]
        # the top rows are sky (blue dominates except on the sun), the bottom rows ground or river (darker)
        assert (top[..., 2] > top[..., 0]).mean() > 0.7, name
        assert top.mean() > bottom.mean() + 30, name


@pytest.mark.parametrize("width, height", [(1, 1), (2, 7), (13, 5)])
def test_tiny_sizes_work(width, height):
    for make in (synthetic.content_standin, synthetic.style_standin):
        image = make("tiny", width, height)
        assert image.size == (width, height) and image.mode == "RGB"


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "64"])
def test_bad_sizes_are_refused(bad):
    with pytest.raises(ValueError, match="width"):
        synthetic.style_standin("x", bad, 10)
    with pytest.raises(ValueError, match="height"):
        synthetic.content_standin("x", 10, bad)
    with pytest.raises(ValueError, match="longer_side"):
        samples.standin_size(samples.get_sample("wave"), bad)
