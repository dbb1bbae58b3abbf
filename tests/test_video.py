"""Video: stylising a file frame by frame, temporal flicker, and blending.

Oracles: the decoded input (an identity stylizer must give it back within the codec's tolerance), a
constant colour, flicker computed by hand on hand-made frames, the unrolled and the closed-form
formulas of blending, the input's audio packets (copied byte for byte), and nstlib.stylize_image run on
the decoded frames one by one.
"""

from __future__ import annotations

import math
import re
import sys
from fractions import Fraction

import av
import pytest
import torch

import nstlib
from nstlib import config, video
from nstlib.transform_net import TransformerNet
from nstlib.video import (
    flicker,
    frame_differences,
    make_synthetic_clip,
    read_frames,
    stylize_video,
    temporal_blend,
    video_info,
)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """20 frames of 64x48 at 12 fps with a 440 Hz AAC soundtrack."""
    return make_synthetic_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", frames=20, size=(64, 48), fps=12,
                               with_audio=True)


@pytest.fixture(scope="module")
def silent(tmp_path_factory):
    """12 frames of 32x32 at 25 fps, no audio."""
    return make_synthetic_clip(tmp_path_factory.mktemp("silent") / "silent.mp4", frames=12, size=32, fps=25)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / ((a - b) ** 2).mean()))


def audio_packets(path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(container.streams.audio[0]) if p.size]


# ---- flicker and blending on plain tensors -------------------------------------------------------------------

def test_flicker_by_hand():
    x0 = torch.zeros(3, 2, 2)
    x1 = torch.full((3, 2, 2), 0.5)  # every value changes by 0.5
    x2 = x1.clone()
    x2[1, 0, 1] = 1.0  # one of 12 values changes by 0.5
    assert frame_differences([x0, x1, x2]) == pytest.approx([0.5, 0.5 / 12])
    assert flicker([x0, x1, x2]) == pytest.approx((0.5 + 0.5 / 12) / 2)
    assert flicker(torch.stack([x0, x1, x2])) == pytest.approx((0.5 + 0.5 / 12) / 2)  # [T, 3, H, W]
    assert flicker([x0[None], x1[None]]) == pytest.approx(0.5)  # [1, 3, H, W] frames
    assert flicker([x1, x1, x1]) == 0.0
    with pytest.raises(ValueError, match="at least two frames"):
        flicker([x0])
    with pytest.raises(ValueError, match=r"frames\[1\] has shape \(3, 2, 3\)"):
        flicker([x0, torch.zeros(3, 2, 3)])
    with pytest.raises(ValueError, match=r"frames\[0\] has shape \(2, 2\)"):
        flicker([torch.zeros(2, 2), x0])


def test_temporal_blend_equals_its_unrolled_sum():
    g = torch.Generator().manual_seed(0)
    frames = [torch.rand(3, 4, 5, generator=g, dtype=torch.float64) for _ in range(6)]
    b = 0.4
    got = temporal_blend(frames, b)
    for t in range(6):  # y_t = (1 - b) sum_{k<t} b^k f_{t-k} + b^t f_0
        want = sum((1 - b) * b ** k * frames[t - k] for k in range(t)) + b ** t * frames[0]
        torch.testing.assert_close(got[t], want)
    assert all(torch.equal(y, f) for y, f in zip(temporal_blend(frames, 0), frames))
    for bad in (1.0, -0.1, "half"):
        with pytest.raises(ValueError, match="blend="):
            temporal_blend(frames, bad)


@pytest.mark.parametrize("b", [0.3, 0.6])
def test_blending_damps_alternating_flicker_by_the_closed_form(b):
    # f_t alternates 0, 1, 0, 1, ...: the blended change per frame is (1 - b) / (1 + b) * (1 - (-b)^t)
    frames = [torch.full((3, 2, 2), float(t % 2)) for t in range(9)]
    assert flicker(frames) == 1.0
    closed = [(1 - b) / (1 + b) * (1 - (-b) ** t) for t in range(1, 9)]
    assert frame_differences(temporal_blend(frames, b)) == pytest.approx(closed)
    assert flicker(temporal_blend(frames, b)) == pytest.approx(sum(closed) / 8)
    # a steady drift (f_t = 0.05 t) is not damped, only delayed: the change per frame tends to 0.05
    ramp = [torch.full((3, 2, 2), 0.05 * t) for t in range(40)]
    assert frame_differences(temporal_blend(ramp, b))[-1] == pytest.approx(0.05, rel=1e-6)


# ---- stylising a file ----------------------------------------------------------------------------------------

def test_identity_keeps_frame_count_rate_and_pixels(clip, tmp_path):
    result = stylize_video(clip, tmp_path / "same.mp4", lambda x: x, progress=False)
    assert (result.frames, result.fps, result.width, result.height) == (20, Fraction(12), 64, 48)
    assert result.duration == pytest.approx(20 / 12) and result.path == tmp_path / "same.mp4"
    info = video_info(result.path)
    assert (info.frames, info.fps, info.width, info.height) == (20, Fraction(12), 64, 48)
    src, out = read_frames(clip), read_frames(result.path)
    assert out.shape == src.shape == (20, 3, 48, 64)
    assert psnr(out, src) > 32  # H.264 at crf 18 over 4:2:0 colour: close, not identical
    distances = torch.cdist(out.flatten(1), src.flatten(1))
    assert torch.equal(distances.argmin(1), torch.arange(20))  # every frame is nearest its own original
    # the flicker is measured on the frames given to the encoder: here the decoded input itself
    assert result.flicker_in == pytest.approx(flicker(src), abs=1e-6)
    assert result.flicker_out == pytest.approx(result.flicker_in, abs=1e-9) and result.flicker_ratio == pytest.approx(1)
    assert result.flicker_in > 0.005  # the disc and the square move


def test_constant_colour_stylizer_gives_that_colour(clip, tmp_path):
    colour = torch.tensor([0.8, 0.3, 0.1]).view(1, 3, 1, 1)
    result = stylize_video(clip, tmp_path / "flat.mp4", lambda x: colour.expand(1, 3, 24, 32), progress=False)
    assert (result.width, result.height, result.frames) == (32, 24, 20)  # the stylised frames' size is the video's
    assert result.flicker_out == 0.0
    out = read_frames(result.path)
    assert out.shape == (20, 3, 24, 32)
    assert float((out - colour).abs().max()) <= 3 / 255


def test_blending_in_a_file_matches_the_closed_form(silent, tmp_path):
    def alternating():
        count = [0]

        def stylize(x):
            count[0] += 1
            return torch.full_like(x, float((count[0] - 1) % 2))  # black, white, black, ...
        return stylize

    plain = stylize_video(silent, tmp_path / "plain.mp4", alternating(), progress=False)
    assert plain.flicker_out == 1.0 and plain.frames == 12 and plain.fps == 25 and plain.audio == "none"
    b = 0.5
    blended = stylize_video(silent, tmp_path / "blend.mp4", alternating(), blend=b, progress=False)
    closed = [(1 - b) / (1 + b) * (1 - (-b) ** t) for t in range(1, 12)]
    assert blended.differences_out == pytest.approx(closed, abs=1 / 255)  # written frames are rounded to 8 bits
    assert blended.flicker_out == pytest.approx(sum(closed) / 11, abs=1 / 255)
    assert blended.flicker_in == plain.flicker_in and blended.blend == b


def test_a_course_network_through_stylize_image(clip, tmp_path):
    torch.manual_seed(0)
    net = TransformerNet(base=4).eval()
    result = stylize_video(clip, tmp_path / "net.mp4", lambda x: nstlib.stylize_image(net, x), progress=False)
    want = torch.cat([nstlib.stylize_image(net, frame) for frame in read_frames(clip)])
    # what was handed to the encoder: those frames, rounded to 8 bits
    assert result.flicker_out == pytest.approx(flicker(want.mul(255).round().div(255)), abs=1e-6)
    got = read_frames(result.path)
    assert got.shape == want.shape
    # a random network's output is colour noise, which 4:2:0 video keeps only in its brightness (luma)
    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    assert psnr((got * luma).sum(1), (want * luma).sum(1)) > 30
    assert torch.equal(torch.cdist(got.flatten(1), want.flatten(1)).argmin(1), torch.arange(20))


def test_audio_is_copied_packet_for_packet(clip, tmp_path):
    result = stylize_video(clip, tmp_path / "loud.mp4", lambda x: 1 - x, progress=False)
    assert result.audio == "copied"
    src, out = video_info(clip), video_info(result.path)
    assert out.audio_codec == "aac" and out.audio_duration == pytest.approx(src.audio_duration, abs=0.01)
    assert audio_packets(result.path) == audio_packets(clip)
    assert src.audio_duration == pytest.approx(20 / 12, abs=0.1)  # the clip's sine is as long as its video


def test_audio_dropped_or_absent(clip, silent, tmp_path):
    result = stylize_video(clip, tmp_path / "mute.mp4", lambda x: x, audio="drop", progress=False)
    assert result.audio == "dropped" and video_info(result.path).audio_codec is None
    result = stylize_video(silent, tmp_path / "none.mp4", lambda x: x, audio="copy", progress=False)
    assert result.audio == "none" and video_info(result.path).audio_codec is None


def test_webm_output_reencodes_audio_it_cannot_hold(clip, tmp_path):
    result = stylize_video(clip, tmp_path / "web.webm", lambda x: x, progress=False)
    info = video_info(result.path)
    assert result.audio == "re-encoded (libopus)" and info.audio_codec == "opus" and info.video_codec == "vp9"
    assert info.frames == 20 and info.fps == 12
    assert info.audio_duration == pytest.approx(video_info(clip).audio_duration, abs=0.05)
    assert psnr(read_frames(result.path), read_frames(clip)) > 30


def test_max_frames_and_size_cut_video_and_audio(clip, tmp_path, monkeypatch):
    result = stylize_video(clip, tmp_path / "short.mp4", lambda x: x, max_frames=7, size=40, progress=False)
    info = video_info(result.path)
    assert (result.frames, info.frames, info.width, info.height) == (7, 7, 40, 30)  # 64x48 scaled to 40 long
    assert info.audio_duration == pytest.approx(7 / 12, abs=0.1)
    assert result.flicker_in == pytest.approx(flicker(read_frames(clip, max_frames=7, size=40)), abs=1e-6)
    # quick mode caps the longer side at 64 pixels, and keeps the sides even (96x66 -> 64x44)
    big = make_synthetic_clip(tmp_path / "big.mp4", frames=3, size=(96, 66), fps=10)
    monkeypatch.setenv(config.ENV_QUICK, "1")
    quick = stylize_video(big, tmp_path / "quick.mp4", lambda x: x, progress=False)
    assert (quick.width, quick.height, quick.frames) == (64, 44, 3)


def counting(change_at: int, change):
    """A stylizer returning its input, except ``change(x)`` from call number ``change_at`` (0-based) on."""
    calls = []

    def stylize(x):
        calls.append(1)
        return change(x) if len(calls) > change_at else x
    return stylize


def test_an_error_midway_leaves_no_file_and_keeps_the_old_one(clip, tmp_path):
    def out_of_memory(x):
        raise RuntimeError("the network ran out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        stylize_video(clip, tmp_path / "new" / "out.mp4", counting(5, out_of_memory), progress=False)
    assert list((tmp_path / "new").iterdir()) == []  # no video, no temporary file
    old = tmp_path / "old.mp4"
    old.write_bytes(b"the previous result")
    with pytest.raises(ValueError, match="returned 48x10 px for frame 3 but 48x64 for frame 0"):
        stylize_video(clip, old, counting(3, lambda x: x[..., :10]), progress=False)
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == ["old.mp4"]
    assert old.read_bytes() == b"the previous result"


def test_bad_arguments_are_named(clip, tmp_path):
    out = tmp_path / "o.mp4"
    with pytest.raises(ValueError, match="audio='mute'"):
        stylize_video(clip, out, lambda x: x, audio="mute")
    with pytest.raises(ValueError, match=r"blend=1\.0 must be in \[0, 1\)"):
        stylize_video(clip, out, lambda x: x, blend=1.0)
    with pytest.raises(ValueError, match=r"'\.avi'.*\.mp4"):
        stylize_video(clip, tmp_path / "o.avi", lambda x: x)
    with pytest.raises(ValueError, match="max_frames=0"):
        stylize_video(clip, out, lambda x: x, max_frames=0)
    with pytest.raises(TypeError, match="stylize_frame must be a function"):
        stylize_video(clip, out, "candy")
    with pytest.raises(FileNotFoundError, match="input_path=.*nothing.mp4"):
        stylize_video(tmp_path / "nothing.mp4", out, lambda x: x)
    (tmp_path / "notes.mp4").write_text("not a video")
    with pytest.raises(ValueError, match="notes.mp4.*not a video file"):
        stylize_video(tmp_path / "notes.mp4", out, lambda x: x)
    with pytest.raises(ValueError, match="output_path is the input"):
        stylize_video(clip, clip, lambda x: x)
    with pytest.raises(ValueError, match=r"returned shape \(1, 1, 48, 64\) for frame 0"):
        stylize_video(clip, out, lambda x: x[:, :1], progress=False)
    with pytest.raises(TypeError, match="returned a ndarray for frame 0"):
        stylize_video(clip, out, lambda x: x.numpy(), progress=False)
    assert not out.exists()


def test_missing_pyav_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "av", None)  # `import av` now raises ImportError
    hint = re.escape('pip install "nstlib[video]"')
    with pytest.raises(ImportError, match=hint):
        stylize_video(tmp_path / "in.mp4", tmp_path / "out.mp4", lambda x: x)
    with pytest.raises(ImportError, match=hint):
        make_synthetic_clip(tmp_path / "c.mp4")
    with pytest.raises(ImportError, match=hint):
        read_frames(tmp_path / "c.mp4")
    assert flicker([torch.zeros(3, 2, 2), torch.ones(3, 2, 2)]) == 1.0  # no PyAV needed for the measure
    assert list(tmp_path.iterdir()) == []


# ---- the synthetic clip, reading, plotting ---------------------------------------------------------------------

def test_synthetic_clip_shows_what_its_docstring_says(tmp_path):
    path = make_synthetic_clip(tmp_path / "c.mkv", frames=5, size=(48, 32), fps=Fraction(30000, 1001))
    info = video_info(path)
    assert (info.frames, info.fps, info.width, info.height, info.audio_codec) == (5, Fraction(30000, 1001), 48, 32, None)
    frames = read_frames(path)
    # frame 0: the red disc's centre at (0.15 w, 0.35 h); the last frame: the blue square's centre
    torch.testing.assert_close(frames[0, :, round(0.35 * 32), round(0.15 * 48)], torch.tensor([0.9, 0.2, 0.15]),
                               atol=0.08, rtol=0)
    side = 0.25 * 32
    torch.testing.assert_close(frames[4, :, round(0.6 * 32 + side / 2), round(0.65 * 48 + side / 2)],
                               torch.tensor([0.1, 0.25, 0.85]), atol=0.08, rtol=0)
    again = read_frames(make_synthetic_clip(tmp_path / "d.mkv", frames=5, size=(48, 32), fps=Fraction(30000, 1001)))
    assert torch.equal(frames, again)  # deterministic
    with pytest.raises(ValueError, match="even"):
        make_synthetic_clip(tmp_path / "odd.mp4", size=(33, 32))
    assert read_frames(path, max_frames=2, size=24).shape == (2, 3, 16, 24)


def test_plot_flicker_draws_input_and_each_output(silent, tmp_path):
    results = {f"blend={b}": stylize_video(silent, tmp_path / f"{b}.mp4", lambda x: 1 - x, blend=b, progress=False)
               for b in (0.0, 0.5)}
    fig = video.plot_flicker(results)
    lines = fig.axes[0].get_lines()
    assert len(lines) == 3 and [len(line.get_xdata()) for line in lines] == [11, 11, 11]
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels[1] == f"blend=0.0 (flicker {results['blend=0.0'].flicker_out:.4f})"
    assert video.plot_flicker(results["blend=0.5"]).axes[0].get_lines()[1].get_label().startswith("output (blend=0.5)")
    import matplotlib.pyplot as plt
    plt.close("all")


def test_is_video_path():
    assert video.is_video_path("a/b.MP4") and video.is_video_path("clip.ogv") and video.is_video_path("x.gif")
    assert not video.is_video_path("photo.jpg") and not video.is_video_path("model.pth")
    assert math.isinf(video.VideoResult(path=None, frames=2, fps=Fraction(1), width=2, height=2, seconds=0,
                                        flicker_in=0.0, flicker_out=0.1, differences_in=[0.0],
                                        differences_out=[0.1]).flicker_ratio)
