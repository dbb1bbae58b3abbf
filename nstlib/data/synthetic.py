"""Deterministic synthetic stand-ins for the sample images (quick mode only).

Quick mode never downloads, so it paints stand-ins instead, and nothing here
claims to be the real image:

* :func:`content_standin`: a simple scene (sky gradient, sun, two ranges of hills,
  a river, houses with windows and doors) made of flat regions and sharp edges,
  so a content reconstruction has edges and objects to keep;
* :func:`style_standin`: a colourful painterly texture: a palette picked from the
  name, laid over a domain-warped sum of sinusoids (swirls), with brush
  strokes bent by the same swirls;
* :func:`nstlib.data.samples.standin` picks the right one for a manifest sample, at its
  aspect ratio.

Every random choice comes from a local ``numpy.random.Generator`` seeded with
``zlib.crc32`` of the kind and the name: the same name always gives the same
pixels, and no global random state is used or changed.
"""

from __future__ import annotations

import colorsys
import zlib

import numpy as np
from PIL import Image, ImageDraw

from ..validate import positive_int

__all__ = ["STANDIN_SIZE", "content_standin", "style_standin"]

STANDIN_SIZE = 256
"""Longer side (pixels) of the stand-in made by :func:`standin`."""


def _rng(kind: str, name: str) -> np.random.Generator:
    """A generator seeded by ``crc32("<kind>:<name>")`` (stable across runs and platforms)."""
    return np.random.default_rng(zlib.crc32(f"{kind}:{name}".encode("utf-8")))


def content_standin(name: str, width: int, height: int) -> Image.Image:
    """A deterministic RGB scene of ``width`` x ``height`` pixels, varied by ``name``.

    Layers, back to front: a vertical sky gradient, a sun disc, a far and a near
    range of hills (sums of two sinusoids), a river widening towards the viewer,
    and one to three houses (wall, roof, door, lit windows, dark outlines) on the
    bank away from the river.
    """
    width, height = positive_int(width, "width", " (pixels)"), positive_int(height, "height", " (pixels)")
    rng = _rng("content", name)
    w, h = width, height
    horizon = rng.uniform(0.45, 0.6) * h

    # sky: linear blend from a deep blue at the top to a pale blue at the horizon
    top = np.array([rng.uniform(30, 80), rng.uniform(90, 140), rng.uniform(180, 235)])
    low = np.array([rng.uniform(175, 215), rng.uniform(205, 230), rng.uniform(235, 250)])
    t = np.clip(np.arange(h, dtype=np.float64) / max(horizon, 1.0), 0, 1)[:, None, None]
    sky = (1 - t) * top + t * low
    image = Image.fromarray(np.broadcast_to(sky, (h, w, 3)).round().astype(np.uint8))  # [H, W, 3] uint8 is RGB
    draw = ImageDraw.Draw(image)

    def ellipse(cx, cy, rx, ry, fill):
        draw.ellipse([cx - rx, cy - ry, cx + max(rx, 0.5), cy + max(ry, 0.5)], fill=fill)

    # sun
    radius = rng.uniform(0.05, 0.09) * max(w, h)
    ellipse(rng.uniform(0.12, 0.88) * w, rng.uniform(0.1, 0.3) * horizon, radius, radius,
            (255, int(rng.uniform(200, 235)), int(rng.uniform(60, 110))))

    # hills: far (lighter, higher) then near (darker, lower)
    xs = np.linspace(0, w, max(w // 4, 2) + 1)
    for depth, (base, amp, colour) in enumerate(
        [(horizon - 0.06 * h, 0.08 * h, (110, 160, 95)), (horizon + 0.02 * h, 0.05 * h, (60, 120, 55))]
    ):
        f1, f2 = rng.uniform(0.6, 1.6), rng.uniform(2.0, 4.0)
        p1, p2 = rng.uniform(0, 2 * np.pi, size=2)
        ridge = base - amp * (np.sin(2 * np.pi * f1 * xs / w + p1) + 0.35 * np.sin(2 * np.pi * f2 * xs / w + p2))
        shade = rng.uniform(-15, 15)
        fill = tuple(int(np.clip(c + shade, 0, 255)) for c in colour)
        draw.polygon([*zip(xs, ridge), (w, h), (0, h)], fill=fill)

    # river: a band from the horizon to the bottom edge, widening and winding
    river_left = rng.random() < 0.5
    centre = rng.uniform(0.15, 0.3) if river_left else rng.uniform(0.7, 0.85)
    ys = np.linspace(horizon + 0.02 * h, h, 24)
    s = (ys - ys[0]) / max(ys[-1] - ys[0], 1e-9)
    mid = w * (centre + 0.06 * np.sin(2 * np.pi * rng.uniform(0.8, 1.5) * s + rng.uniform(0, 2 * np.pi)))
    half = w * (0.01 + 0.12 * s)
    draw.polygon([*zip(mid - half, ys), *zip((mid + half)[::-1], ys[::-1])],
                 fill=(int(rng.uniform(40, 80)), int(rng.uniform(95, 130)), int(rng.uniform(175, 215))))

    # houses on the other bank
    outline = (35, 30, 30)
    line = max(1, round(max(w, h) / 200))
    lo, hi = (0.42, 0.9) if river_left else (0.05, 0.55)
    for _ in range(int(rng.integers(1, 4))):
        bw = rng.uniform(0.1, 0.17) * w
        bh = bw * rng.uniform(0.6, 0.95)
        x0 = rng.uniform(lo, hi) * w - bw / 2
        ground = horizon + rng.uniform(0.18, 0.38) * (h - horizon)
        x1, y0 = x0 + bw, ground - bh
        wall = tuple(int(v) for v in rng.uniform([200, 170, 130], [245, 225, 190]))
        roof = tuple(int(v) for v in rng.uniform([140, 40, 30], [190, 80, 60]))
        draw.rectangle([x0, y0, x1, ground], fill=wall, outline=outline, width=line)
        draw.polygon([(x0 - 0.08 * bw, y0), (x1 + 0.08 * bw, y0), ((x0 + x1) / 2, y0 - 0.55 * bh)],
                     fill=roof, outline=outline)
        door_w, door_h = 0.2 * bw, 0.45 * bh
        dx = x0 + rng.uniform(0.35, 0.45) * bw
        draw.rectangle([dx, ground - door_h, dx + door_w, ground], fill=(90, 55, 35), outline=outline)
        for fx in (0.12, 0.68):
            wx, wy, ws = x0 + fx * bw, y0 + 0.18 * bh, 0.2 * bw
            draw.rectangle([wx, wy, wx + ws, wy + ws], fill=(255, 235, 140), outline=outline, width=line)
    return image


def _palette(rng: np.random.Generator) -> np.ndarray:
    """4 to 6 saturated colours (float RGB 0..255) with hues spread around a random base hue."""
    k = int(rng.integers(4, 7))
    base = rng.uniform(0, 1)
    hues = (base + rng.uniform(-0.3, 0.3, size=k)) % 1.0
    sats = rng.uniform(0.55, 1.0, size=k)
    vals = rng.uniform(0.35, 1.0, size=k)
    return 255 * np.array([colorsys.hsv_to_rgb(hh, ss, vv) for hh, ss, vv in zip(hues, sats, vals)])


def style_standin(name: str, width: int, height: int) -> Image.Image:
    """A deterministic colourful, painterly RGB texture of ``width`` x ``height`` pixels, varied by ``name``.

    With ``(x, y)`` in units of the longer side, the coordinates are warped,
    ``u = x + sum_j a_j sin(2 pi (f_j . (x, y)) + phi_j)`` (and ``v`` alike), a field
    ``t = mean_k sin(2 pi (f_k . (u, v)) + phi_k)`` picks colours from a cyclic
    palette, and brush strokes modulate the brightness by
    ``1 + 0.25 sin(2 pi F (u cos theta + v sin theta) + 3 t)`` with ``F`` 22-32 cycles
    per longer side: parallel strokes bent by the same swirls.
    """
    width, height = positive_int(width, "width", " (pixels)"), positive_int(height, "height", " (pixels)")
    rng = _rng("style", name)
    side = max(width, height)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64) / side

    def waves(n, fmin, fmax, u, v):
        freqs = rng.uniform(fmin, fmax, size=(n, 2)) * rng.choice([-1, 1], size=(n, 2))
        phases = rng.uniform(0, 2 * np.pi, size=n)
        return sum(np.sin(2 * np.pi * (fx * u + fy * v) + p) for (fx, fy), p in zip(freqs, phases)) / n

    strength = rng.uniform(0.08, 0.16)
    u = x + strength * waves(3, 0.5, 2.5, x, y)
    v = y + strength * waves(3, 0.5, 2.5, x, y)
    t = waves(4, 1.0, 4.0, u, v)  # in [-1, 1]

    palette = _palette(rng)
    k = len(palette)
    pos = ((t + 1) / 2 * rng.uniform(1.0, 2.0)) % 1.0 * k  # cycles through the palette
    i = np.floor(pos).astype(int) % k
    frac = (pos - np.floor(pos))[..., None]
    colour = palette[i] * (1 - frac) + palette[(i + 1) % k] * frac

    theta = rng.uniform(0, np.pi)
    freq = rng.uniform(22, 32)
    strokes = np.sin(2 * np.pi * freq * (u * np.cos(theta) + v * np.sin(theta)) + 3.0 * t)
    colour = colour * (1 + 0.25 * strokes[..., None])
    return Image.fromarray(np.clip(colour, 0, 255).round().astype(np.uint8))  # [H, W, 3] uint8 is RGB
