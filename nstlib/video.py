"""Stylise a video frame by frame, measure its temporal flicker, and damp it by blending.

A fast style network (or any image -> image function) applied to each frame of a video on its
own knows nothing of the frames around it: two almost identical input frames can get visibly
different brush strokes, and the result *flickers*. This module runs such a function over a
video file and puts a number on that.

Flicker. For frames ``x_0 .. x_{T-1}`` with values in [0, 1] (``[3, H, W]`` each)::

    d_t     = mean over channels and pixels of |x_t - x_{t-1}|        (t = 1 .. T-1)
    flicker = (1 / (T - 1)) * sum_t d_t

the mean absolute change between consecutive frames (:func:`frame_differences` gives the
``d_t``, :func:`flicker` their mean). It is measured on the input frames and on the
stylised frames: motion in the input changes both, so the number to read is the output's
flicker *next to* the input's (their ratio, :attr:`VideoResult.flicker_ratio`).

The remedy shown here is temporal blending (an exponential moving average of the outputs)::

    y_0 = f(x_0),     y_t = (1 - blend) * f(x_t) + blend * y_{t-1}

with ``0 <= blend < 1`` (:func:`temporal_blend`). Frame-to-frame jitter is averaged away: a
stylised sequence that alternates between two frames ``A, B, A, B, ...`` (pure flicker)
keeps, once settled, only ``(1 - blend) / (1 + blend)`` of its change per frame. The price is
**ghosting**: the output remembers about ``1 / (1 - blend)`` past frames, so anything that
moves leaves a fading trail behind it, and a steady motion is followed with a lag (its change
per frame is not reduced at all, only delayed). Real video stylisation (Ruder et al. 2016)
warps the previous output along the optical flow instead, which removes flicker without
trails; blending is the one-line version that shows the trade-off.

Files. :func:`stylize_video` decodes with PyAV (FFmpeg's libraries), writes H.264 in
``.mp4`` / ``.mov`` / ``.mkv`` or VP9 in ``.webm`` (``yuv420p``, so the width and height are
made even), keeps the frame rate and the number of frames, and copies the audio stream
packet for packet (or re-encodes it when the output container cannot hold its codec, or
drops it). The output is written atomically (:func:`nstlib.fileio.atomic_write`): an error
half-way leaves no file behind. PyAV is an optional dependency: ``pip install "nstlib[video]"``.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import config
from .fileio import atomic_write
from .validate import optional_positive_int

__all__ = [
    "AUDIO_MODES",
    "VIDEO_SUFFIXES",
    "VideoInfo",
    "VideoResult",
    "flicker",
    "frame_differences",
    "is_video_path",
    "make_synthetic_clip",
    "plot_flicker",
    "read_frames",
    "stylize_video",
    "temporal_blend",
    "video_info",
]

INSTALL_HINT = 'pip install "nstlib[video]"  (or: pip install av)'

AUDIO_MODES = ("copy", "drop")
"""``audio=`` choices of :func:`stylize_video`."""

VIDEO_SUFFIXES = {".mp4": ("mp4", "h264"), ".m4v": ("mp4", "h264"), ".mov": ("mov", "h264"),
                  ".mkv": ("matroska", "h264"), ".webm": ("webm", "libvpx-vp9")}
"""Output file suffix -> (container format, video encoder) that :func:`stylize_video` writes."""

READ_SUFFIXES = frozenset(VIDEO_SUFFIXES) | {".avi", ".ogv", ".ogg", ".gif", ".mpg", ".mpeg", ".ts", ".flv"}
"""Suffixes :func:`is_video_path` recognises (anything FFmpeg reads can be an input)."""

DEFAULT_CRF = 18
"""Constant rate factor of the H.264 / VP9 encoder: about visually lossless (lower: larger, closer)."""


def _require_av():
    """The ``av`` module (PyAV), or ImportError saying how to install it."""
    try:
        import av
    except ImportError as error:
        raise ImportError(f"video needs PyAV (the 'av' package), which is not installed: {INSTALL_HINT}") from error
    return av


def is_video_path(path: str | os.PathLike) -> bool:
    """True when ``path``'s suffix is a video one (:data:`READ_SUFFIXES`), e.g. to tell videos from images."""
    return Path(path).suffix.lower() in READ_SUFFIXES


# --------------------------------------------------------------------------------------
# flicker and temporal blending (plain tensors: no PyAV needed)


def _as_frame(frame: Any, what: str) -> torch.Tensor:
    if not isinstance(frame, torch.Tensor):
        raise TypeError(f"{what} must be a tensor [3, H, W] or [1, 3, H, W] in [0, 1], got {type(frame).__name__}")
    if frame.dim() == 4 and frame.shape[0] == 1:
        frame = frame[0]
    if frame.dim() != 3 or frame.shape[0] != 3:
        raise ValueError(f"{what} has shape {tuple(frame.shape)}: expected [3, H, W] or [1, 3, H, W]")
    return frame.detach().to("cpu", torch.float64)


def _frames(frames: Any) -> list[torch.Tensor]:
    if isinstance(frames, torch.Tensor):
        if frames.dim() != 4:
            raise ValueError(f"frames has shape {tuple(frames.shape)}: expected [T, 3, H, W] or a list of frames")
        frames = list(frames)
    elif isinstance(frames, (str, bytes)) or not isinstance(frames, Sequence):
        raise TypeError(f"frames must be a tensor [T, 3, H, W] or a list of [3, H, W] tensors, got {type(frames).__name__}")
    return [_as_frame(frame, f"frames[{t}]") for t, frame in enumerate(frames)]


def frame_differences(frames: Sequence[torch.Tensor] | torch.Tensor) -> list[float]:
    """``d_t = mean |x_t - x_{t-1}|`` over channels and pixels, for ``t = 1 .. T-1`` (``T - 1`` floats).

    ``frames``: a tensor ``[T, 3, H, W]`` or a list of ``[3, H, W]`` / ``[1, 3, H, W]`` tensors of
    one size, values in [0, 1]. Computed in float64.
    """
    items = _frames(frames)
    for t in range(1, len(items)):
        if items[t].shape != items[0].shape:
            raise ValueError(f"frames[{t}] has shape {tuple(items[t].shape)} but frames[0] has "
                             f"{tuple(items[0].shape)}: all frames must have one size")
    return [float((items[t] - items[t - 1]).abs().mean()) for t in range(1, len(items))]


def flicker(frames: Sequence[torch.Tensor] | torch.Tensor) -> float:
    """Temporal flicker: ``(1 / (T - 1)) * sum_{t=1}^{T-1} mean |x_t - x_{t-1}|`` (see the module docstring).

    0 for a still video; for frames in [0, 1] at most 1. Needs at least two frames.
    """
    differences = frame_differences(frames)
    if not differences:
        raise ValueError("flicker needs at least two frames (it measures the change between consecutive frames)")
    return sum(differences) / len(differences)


def _blend_value(blend: Any) -> float:
    try:
        value = float(blend)
    except (TypeError, ValueError):
        raise ValueError(f"blend={blend!r} must be a number in [0, 1)") from None
    if not 0.0 <= value < 1.0:
        raise ValueError(f"blend={blend!r} must be in [0, 1): 0 is no blending, 0.3 a mild one; 1 would repeat "
                         "the first frame for ever")
    return value


def temporal_blend(frames: Sequence[torch.Tensor] | torch.Tensor, blend: float) -> list[torch.Tensor]:
    """``y_0 = f_0``, ``y_t = (1 - blend) * f_t + blend * y_{t-1}``: the blended frames (``[3, H, W]`` float64).

    ``frames`` are the stylised frames ``f_t`` (as for :func:`frame_differences`); ``0 <= blend < 1``.
    Unrolled, ``y_t = (1 - blend) * sum_{k<t} blend^k f_{t-k} + blend^t f_0``: a weighted mean of
    the past outputs whose weights fall by ``blend`` per frame (hence the ghosting).
    """
    value = _blend_value(blend)
    out: list[torch.Tensor] = []
    for frame in _frames(frames):
        out.append(frame if not out else (1 - value) * frame + value * out[-1])
    return out


# --------------------------------------------------------------------------------------
# reading and describing videos


@dataclass
class VideoInfo:
    """What :func:`video_info` reads from a video file.

    ``frames`` (video packets, i.e. frames), ``fps`` (frames per second, a Fraction),
    ``width``, ``height``, ``duration`` (``frames / fps`` seconds), ``video_codec``,
    ``audio_codec`` (None without an audio stream), ``audio_duration`` (seconds, None
    without audio).
    """

    path: Path
    frames: int
    fps: Fraction
    width: int
    height: int
    duration: float
    video_codec: str
    audio_codec: str | None = None
    audio_duration: float | None = None


def _open_input(av, path: str | os.PathLike, argument: str):
    """``(container, video stream)`` of ``path``; clear errors for a missing or unreadable file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{argument}={str(path)!r}: no such file" + (" (it is a folder)" if path.is_dir() else ""))
    try:
        container = av.open(str(path))
    except av.FFmpegError as error:
        raise ValueError(f"{argument}={str(path)!r} is not a video file FFmpeg can read ({error})") from error
    if not container.streams.video:
        container.close()
        raise ValueError(f"{argument}={str(path)!r} has no video stream (is it an audio file?)")
    return container, container.streams.video[0]


def _frame_rate(stream, path) -> Fraction:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and rate > 0:
            return Fraction(rate).limit_denominator(1001 * 1000)
    raise ValueError(f"{path}: the video stream has no frame rate (neither average, guessed nor base rate)")


def _stream_end(packets: list, stream) -> float | None:
    """Seconds from the stream's first to its last timestamp plus the last packet's duration."""
    times = [(p.pts, p.duration or 0) for p in packets if p.pts is not None]
    if not times:
        return None
    start = min(pts for pts, _ in times)
    end = max(pts + duration for pts, duration in times)
    return float((end - start) * stream.time_base)


def video_info(path: str | os.PathLike) -> VideoInfo:
    """Frame count, frame rate, size and codecs of a video file (its packets are counted, not decoded)."""
    av = _require_av()
    container, stream = _open_input(av, path, "path")
    with container:
        audio = container.streams.audio[0] if container.streams.audio else None
        video_packets, audio_packets = 0, []
        for packet in container.demux(*([stream] + ([audio] if audio else []))):
            if packet.size == 0:
                continue
            if packet.stream is stream:
                video_packets += 1
            else:
                audio_packets.append(packet)
        fps = _frame_rate(stream, path)
        return VideoInfo(path=Path(path), frames=video_packets, fps=fps, width=stream.codec_context.width,
                         height=stream.codec_context.height, duration=float(video_packets / fps),
                         video_codec=stream.codec_context.name,
                         audio_codec=audio.codec_context.name if audio else None,
                         audio_duration=_stream_end(audio_packets, audio) if audio else None)


def _even_size(width: int, height: int, size: int | None) -> tuple[int, int]:
    """``(width, height)`` with the longer side ``size`` (aspect kept), each rounded down to an even number."""
    if size is not None:
        scale = size / max(width, height)
        width, height = max(2, math.floor(width * scale + 0.5)), max(2, math.floor(height * scale + 0.5))
    return max(2, width - width % 2), max(2, height - height % 2)


def _to_tensor(frame, width: int, height: int) -> torch.Tensor:
    """A decoded frame as ``[1, 3, height, width]`` float32 in [0, 1] (resized by FFmpeg when needed)."""
    if (frame.width, frame.height) != (width, height):
        frame = frame.reformat(width=width, height=height, interpolation="AREA")
    array = frame.to_ndarray(format="rgb24")
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)


def read_frames(path: str | os.PathLike, *, max_frames: int | None = None, size: int | None = None) -> torch.Tensor:
    """The decoded frames of a video as ``[T, 3, H, W]`` float32 in [0, 1] (all in memory: short clips).

    ``size``: resize so the longer side is ``size`` (even width and height, as :func:`stylize_video`
    makes them); None keeps the size. ``max_frames``: the first frames only.
    """
    av = _require_av()
    max_frames = optional_positive_int(max_frames, "max_frames")
    size = optional_positive_int(size, "size", " (the longer side in pixels)")
    container, stream = _open_input(av, path, "path")
    frames = []
    with container:
        width, height = stream.codec_context.width, stream.codec_context.height
        if size is not None:
            width, height = _even_size(width, height, size)
        for frame in container.decode(stream):
            frames.append(_to_tensor(frame, width, height))
            if max_frames is not None and len(frames) >= max_frames:
                break
    if not frames:
        raise ValueError(f"{path}: the video stream holds no frame")
    return torch.cat(frames)


# --------------------------------------------------------------------------------------
# writing


def _output_format(path: Path) -> tuple[str, str]:
    suffix = path.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise ValueError(f"output_path={str(path)!r}: cannot write {suffix or 'a file without suffix'!r}; use one "
                         f"of {', '.join(VIDEO_SUFFIXES)} (.mp4 plays almost everywhere)")
    return VIDEO_SUFFIXES[suffix]


def _add_video_stream(container, codec: str, rate: Fraction, width: int, height: int, crf: int):
    stream = container.add_stream(codec, rate=rate)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    if stream.codec_context.name == "libx264":
        stream.options = {"crf": str(crf), "preset": "medium"}
    elif stream.codec_context.name == "libvpx-vp9":
        stream.options = {"crf": str(crf + 13), "b": "0", "row-mt": "1"}
    return stream


def _to_video_frame(av, image: torch.Tensor, pts: int):
    array = image.clamp(0, 1).mul(255).round_().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
    frame = av.VideoFrame.from_ndarray(array, format="rgb24")
    frame.pts = pts
    return frame


def _encode_audio(av, container, seconds: float, *, rate: int = 48000, tone: float = 440.0):
    """A sine of ``tone`` Hz, ``seconds`` long, amplitude 0.3, in the container's default audio codec."""
    stream = container.add_stream(container.default_audio_codec, rate=rate, layout="mono")
    total = int(round(seconds * rate))
    samples = (0.3 * np.sin(2 * np.pi * tone * np.arange(total) / rate)).astype(np.float32)
    chunk = stream.codec_context.frame_size or 1024
    packets = []
    for start in range(0, total, chunk):
        frame = av.AudioFrame.from_ndarray(samples[None, start:start + chunk], format="flt", layout="mono")
        frame.sample_rate, frame.pts = rate, start
        packets += stream.encode(frame)
    return stream, packets + stream.encode()


def _synthetic_frame(t: int, frames: int, width: int, height: int) -> np.ndarray:
    """Frame ``t``: a colour gradient, a red disc moving left to right and a blue square moving down."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    phase = t / max(1, frames - 1)
    image = np.stack([0.35 + 0.3 * x / width, 0.45 + 0.25 * y / height, 0.55 - 0.2 * x / width], axis=-1)
    cx, cy, r = (0.15 + 0.7 * phase) * width, 0.35 * height, 0.18 * min(width, height)
    image[(x - cx) ** 2 + (y - cy) ** 2 <= r * r] = (0.9, 0.2, 0.15)
    side, sx, sy = 0.25 * min(width, height), 0.65 * width, (0.1 + 0.5 * phase) * height
    image[(x >= sx) & (x < sx + side) & (y >= sy) & (y < sy + side)] = (0.1, 0.25, 0.85)
    return np.round(image * 255).astype(np.uint8)


def make_synthetic_clip(path: str | os.PathLike, frames: int = 24, size: int | tuple[int, int] = (64, 48),
                        fps: int | Fraction = 12, with_audio: bool = False) -> Path:
    """Write a small deterministic test clip to ``path`` (atomically) and return ``Path(path)``.

    ``frames`` frames of ``size`` = ``(width, height)`` (or one int for a square; both even) at
    ``fps`` frames per second: a colour gradient with a red disc moving left to right and a blue
    square moving down (frame ``t`` is ``_synthetic_frame(t, ...)``). ``with_audio`` adds a 440 Hz
    sine (mono, 48 kHz) as long as the video, in the container's default audio codec (AAC in
    ``.mp4``, Opus in ``.webm``). The video is H.264 (VP9 in ``.webm``), crf 12.
    """
    av = _require_av()
    frames = optional_positive_int(frames, "frames")
    width, height = (size, size) if isinstance(size, int) else tuple(size)
    for name, value in (("width", width), ("height", height)):
        if not isinstance(value, int) or value < 2 or value % 2:
            raise ValueError(f"size={size!r}: the {name} must be an even whole number >= 2 (yuv420p video)")
    rate = Fraction(fps)
    if rate <= 0:
        raise ValueError(f"fps={fps!r} must be positive")
    path = Path(path)
    container_format, codec = _output_format(path)

    def write(handle) -> None:
        with av.open(handle, "w", format=container_format) as container:
            stream = _add_video_stream(container, codec, rate, width, height, crf=12)
            audio = _encode_audio(av, container, float(frames / rate)) if with_audio else None
            for t in range(frames):
                image = torch.from_numpy(_synthetic_frame(t, frames, width, height)).permute(2, 0, 1).float() / 255
                container.mux(stream.encode(_to_video_frame(av, image, t)))
            container.mux(stream.encode())
            if audio:
                container.mux(audio[1])

    return atomic_write(path, write)


# --------------------------------------------------------------------------------------
# stylising a video


@dataclass
class VideoResult:
    """What :func:`stylize_video` did.

    Attributes:
        path: the written video.
        frames: frames written (= frames read, up to ``max_frames``).
        fps: frame rate of input and output (a Fraction; ``float(result.fps)`` for a number).
        width, height: size of the output frames (even numbers).
        seconds: wall-clock time the whole call took.
        flicker_in, flicker_out: :func:`flicker` of the input frames (after resizing) and of
            the frames handed to the encoder (stylised, blended, rounded to 8 bits, before the
            lossy compression); NaN for a one-frame video.
        differences_in, differences_out: the per-frame changes ``d_t`` behind those two means
            (``frames - 1`` values each, for plotting: :func:`plot_flicker`).
        blend: the blending weight used.
        audio: ``"copied"``, ``"re-encoded (<codec>)"``, ``"dropped"`` or ``"none"`` (the
            input had no audio stream).
    """

    path: Path
    frames: int
    fps: Fraction
    width: int
    height: int
    seconds: float
    flicker_in: float
    flicker_out: float
    differences_in: list[float] = field(repr=False)
    differences_out: list[float] = field(repr=False)
    blend: float = 0.0
    audio: str = "none"

    @property
    def duration(self) -> float:
        """Length of the output video in seconds: ``frames / fps``."""
        return float(self.frames / self.fps)

    @property
    def flicker_ratio(self) -> float:
        """``flicker_out / flicker_in``: how much more the output changes per frame than the input."""
        return self.flicker_out / self.flicker_in if self.flicker_in > 0 else math.inf


class _Audio:
    """The output's audio: input packets copied as they are, decoded and re-encoded, or none."""

    def __init__(self, container, source, mode: str):
        self.container, self.source, self.stream, self.copy = container, source, None, False
        if source is None:
            self.status = "none"
        elif mode == "drop":
            self.status = "dropped"
        elif source.codec_context.codec.canonical_name in container.supported_codecs:
            self.stream, self.copy, self.status = container.add_stream_from_template(source), True, "copied"
        else:  # e.g. AAC into .webm: re-encode to the container's own audio codec
            codec = container.default_audio_codec
            rate = 48000 if codec in ("opus", "libopus") else source.codec_context.sample_rate
            self.stream = container.add_stream(codec, rate=rate, layout=source.codec_context.layout.name)
            self.status = f"re-encoded ({self.stream.codec_context.name})"

    def write(self, packet) -> None:
        if self.stream is None:
            return
        if self.copy:
            if packet.dts is not None:  # not the empty packet that ends the stream
                packet.stream = self.stream
                self.container.mux(packet)
            return
        for frame in packet.decode():
            frame.pts = None  # the encoder's resampler renumbers the samples
            self.container.mux(self.stream.encode(frame))

    def finish(self) -> None:
        if self.stream is not None and not self.copy:
            self.container.mux(self.stream.encode())


class _Output:
    """The output container; its streams are added once the first stylised frame gives the size."""

    def __init__(self, av, container, codec: str, rate: Fraction, crf: int, audio_source, audio_mode: str):
        self.av, self.container, self.codec, self.rate, self.crf = av, container, codec, rate, crf
        self.audio_source, self.audio_mode = audio_source, audio_mode
        self.video = self.audio = None
        self.pending: list = []  # audio packets read before the first frame was stylised
        self.pts0 = 0

    def start(self, width: int, height: int, first_time: float | None) -> None:
        self.video = _add_video_stream(self.container, self.codec, self.rate, width, height, self.crf)
        self.audio = _Audio(self.container, self.audio_source, self.audio_mode)
        self.pts0 = max(0, round((first_time or 0.0) * self.rate))  # keeps the copied audio in sync
        for packet in self.pending:
            self.audio.write(packet)
        self.pending = []

    def write_audio(self, packet) -> None:
        if self.audio is None:
            self.pending.append(packet)
        else:
            self.audio.write(packet)

    def write_frame(self, image: torch.Tensor, index: int) -> None:
        self.container.mux(self.video.encode(_to_video_frame(self.av, image, self.pts0 + index)))

    def finish(self) -> str:
        if self.video is None:
            raise ValueError("the input video holds no frame: nothing to stylise")
        self.container.mux(self.video.encode())
        self.audio.finish()
        return self.audio.status


def _styled(output: Any, index: int, shape: tuple[int, int] | None) -> torch.Tensor:
    """``stylize_frame``'s result for frame ``index`` as ``[3, H, W]`` float32 in [0, 1], cropped to even sides."""
    if not isinstance(output, torch.Tensor):
        raise TypeError(f"stylize_frame returned a {type(output).__name__} for frame {index}: it must return an "
                        "image tensor [1, 3, H, W] or [3, H, W] in [0, 1]")
    shape_in = tuple(output.shape)
    if output.dim() == 4 and output.shape[0] == 1:
        output = output[0]
    if output.dim() != 3 or output.shape[0] != 3 or min(output.shape[1:]) < 2:
        raise ValueError(f"stylize_frame returned shape {shape_in} for frame {index}: expected "
                         "[1, 3, H, W] or [3, H, W] with H, W >= 2")
    output = output.detach().to("cpu", torch.float32)
    if not torch.isfinite(output).all():
        raise ValueError(f"stylize_frame returned NaN or infinite values for frame {index}")
    height, width = output.shape[1] - output.shape[1] % 2, output.shape[2] - output.shape[2] % 2
    if shape is not None and (height, width) != shape:
        raise ValueError(f"stylize_frame returned {height}x{width} px for frame {index} but {shape[0]}x{shape[1]} "
                         "for frame 0: every frame of a video must have one size")
    return output[:, :height, :width].clamp(0, 1)


def _quantised(image: torch.Tensor) -> torch.Tensor:
    return image.mul(255).round_().div_(255)


def _stylize_frames(inp, source, output: _Output, stylize_frame: Callable, *, size: int | None, blend: float,
                    max_frames: int | None, bar) -> tuple[int, list[float], list[float]]:
    """Decode, stylise, blend and encode every frame; returns ``(frames, d_t of input, d_t of output)``."""
    width, height = _even_size(source.codec_context.width, source.codec_context.height, size)
    audio_source = output.audio_source if output.audio_mode == "copy" else None
    rate = output.rate
    limit = None  # with max_frames: the time after which no audio is copied
    index, previous_in, previous_out, blended, shape = 0, None, None, None, None
    differences_in: list[float] = []
    differences_out: list[float] = []
    for packet in inp.demux(*([source] + ([audio_source] if audio_source is not None else []))):
        if packet.stream is not source:
            if limit is not None and packet.pts is not None and packet.pts * packet.time_base >= limit:
                break
            output.write_audio(packet)
            continue
        if max_frames is not None and index >= max_frames:
            continue
        for frame in packet.decode():
            x = _to_tensor(frame, width, height)[0]
            y = _styled(stylize_frame(x.unsqueeze(0)), index, shape)
            if shape is None:
                shape = tuple(y.shape[1:])
                output.start(shape[1], shape[0], frame.time)
            blended = y if blended is None else (1 - blend) * y + blend * blended
            written = _quantised(blended)
            output.write_frame(written, index)
            if previous_in is not None:
                differences_in.append(float((x - previous_in).abs().double().mean()))
                differences_out.append(float((written - previous_out).abs().double().mean()))
            previous_in, previous_out = x, written
            index += 1
            bar.update(1)
            if max_frames is not None and index >= max_frames:
                limit = (frame.time or 0.0) + 1 / rate
                if audio_source is None:
                    return index, differences_in, differences_out
                break
    return index, differences_in, differences_out


def _check_arguments(input_path, output_path, stylize_frame, blend, audio, max_frames, size, crf):
    if not callable(stylize_frame):
        raise TypeError(f"stylize_frame must be a function image -> image (e.g. lambda x: nstlib.stylize_image(net, x)), "
                        f"got {type(stylize_frame).__name__}")
    if audio not in AUDIO_MODES:
        raise ValueError(f"audio={audio!r} must be one of {AUDIO_MODES}: 'copy' keeps the soundtrack, 'drop' removes it")
    max_frames = optional_positive_int(max_frames, "max_frames")
    size = optional_positive_int(size, "size", " (the longer side in pixels)")
    if isinstance(crf, bool) or not isinstance(crf, int) or not 0 <= crf <= 51:
        raise ValueError(f"crf={crf!r} must be a whole number from 0 (lossless) to 51 (worst); 18 is about visually lossless")
    input_path, output_path = Path(input_path), Path(output_path)
    formats = _output_format(output_path)
    if output_path.is_dir():
        raise IsADirectoryError(f"output_path={str(output_path)!r} is a folder: pass the file to write, e.g. "
                                f"{output_path / 'stylized.mp4'}")
    if input_path.exists() and output_path.exists() and input_path.resolve() == output_path.resolve():
        raise ValueError(f"output_path is the input {str(input_path)!r}: write the stylised video to another file")
    return input_path, output_path, formats, _blend_value(blend), max_frames, size


def stylize_video(input_path: str | os.PathLike, output_path: str | os.PathLike,
                  stylize_frame: Callable[[torch.Tensor], torch.Tensor], *, blend: float = 0.0,
                  audio: str = "copy", max_frames: int | None = None, size: int | None = None,
                  progress: bool = True, crf: int = DEFAULT_CRF) -> VideoResult:
    """Stylise every frame of a video with ``stylize_frame`` and write the result to ``output_path``.

    Args:
        input_path: any video FFmpeg reads (.mp4, .webm, .ogv, .mkv, .mov, .gif, ...).
        output_path: ``.mp4`` / ``.m4v`` / ``.mov`` / ``.mkv`` (H.264) or ``.webm`` (VP9); written
            atomically: an error (in ``stylize_frame`` too) leaves no file, and an existing file is
            replaced only by the complete new one.
        stylize_frame: image -> image. It receives each frame as a ``[1, 3, H, W]`` float32 CPU
            tensor in [0, 1] and returns ``[1, 3, H', W']`` or ``[3, H', W']`` (clamped to [0, 1];
            the first frame's size, cropped to even numbers, is the video's). For example
            ``lambda x: nstlib.stylize_image(net, x)``.
        blend: temporal blending ``y_t = (1 - blend) * f(x_t) + blend * y_{t-1}`` (0 = none;
            see the module docstring for its effect on flicker and its ghosting).
        audio: ``"copy"`` keeps the input's first audio stream (packets copied unchanged; re-encoded
            when the output container cannot hold its codec); ``"drop"`` writes video only.
        max_frames: stylise only the first ``max_frames`` frames (the audio is cut to match).
        size: resize the frames so the longer side is ``size`` pixels (even sides) before
            stylising; None keeps the size. Quick mode (``NSTLIB_QUICK=1``) caps it at 64.
        progress: show a progress bar (frames).
        crf: the encoder's quality (H.264 constant rate factor; VP9 gets ``crf + 13``).

    The frame rate and the number of frames are kept (a variable-rate input is written at its
    average rate). Returns a :class:`VideoResult` with the input's and the output's flicker.

    Raises:
        ImportError: PyAV is not installed (``pip install "nstlib[video]"``).
        FileNotFoundError / ValueError: a missing or unreadable input, a bad argument, or a
            ``stylize_frame`` result that is not an image; the message names which.
    """
    av = _require_av()
    input_path, output_path, (container_format, codec), blend, max_frames, size = _check_arguments(
        input_path, output_path, stylize_frame, blend, audio, max_frames, size, crf)
    size = config.cap_size(size)
    started = time.perf_counter()
    inp, source = _open_input(av, input_path, "input_path")
    with inp:
        rate = _frame_rate(source, input_path)
        audio_source = inp.streams.audio[0] if inp.streams.audio else None
        total = source.frames or None
        if max_frames is not None:
            total = min(total or max_frames, max_frames)
        counts: dict[str, Any] = {}

        def write(handle) -> None:
            with av.open(handle, "w", format=container_format) as container, \
                    config.progress_bar(total=total, desc="stylize video", unit="frame", disable=not progress) as bar:
                output = _Output(av, container, codec, rate, crf, audio_source, audio)
                counts["run"] = _stylize_frames(inp, source, output, stylize_frame, size=size, blend=blend,
                                                max_frames=max_frames, bar=bar)
                counts["audio"] = output.finish()
                counts["size"] = (output.video.width, output.video.height)

        atomic_write(output_path, write)
    frames, differences_in, differences_out = counts["run"]
    mean = (lambda values: sum(values) / len(values) if values else math.nan)
    return VideoResult(path=output_path, frames=frames, fps=rate, width=counts["size"][0], height=counts["size"][1],
                       seconds=time.perf_counter() - started, flicker_in=mean(differences_in),
                       flicker_out=mean(differences_out), differences_in=differences_in,
                       differences_out=differences_out, blend=blend, audio=counts["audio"])


def plot_flicker(results: dict[str, VideoResult] | VideoResult, *, ax=None, title: str | None = None):
    """Plot the per-frame change ``d_t`` of the input and of each output (one line each); returns the figure.

    ``results``: one :class:`VideoResult` or ``{label: result}`` (e.g. one per ``blend`` value).
    The legend gives each curve's mean, the :func:`flicker`.
    """
    import matplotlib.pyplot as plt

    if isinstance(results, VideoResult):
        results = {f"output (blend={results.blend:g})": results}
    if not results:
        raise ValueError("results is empty: pass a VideoResult or {label: VideoResult}")
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 3.5))
    else:
        fig = ax.figure
    first = next(iter(results.values()))
    ax.plot(range(1, first.frames), first.differences_in, color="black", linestyle="--",
            label=f"input (flicker {first.flicker_in:.4f})")
    for label, result in results.items():
        ax.plot(range(1, result.frames), result.differences_out, label=f"{label} (flicker {result.flicker_out:.4f})")
    ax.set_xlabel("frame t")
    ax.set_ylabel("mean |x_t - x_(t-1)|")
    ax.set_title(title or "temporal flicker: change between consecutive frames")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig
