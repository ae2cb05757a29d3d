"""Synthetic fruit photos for local runs and tests: Pillow + numpy only, no network.

Each label has its own colour, outline and surface texture, so the features and PCA the
pipeline computes have real differences to find. Geometry is given in fractions of the
fruit's size, so a 1280x960 phone-size photo shows the same scene as a 100x100 Fruits-360
one, only sharper. All randomness comes from the caller's numpy Generator: same state,
same image.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

Colour = tuple[int, int, int]
Point = tuple[float, float]

# Lighting and shadow maps are computed on this coarse grid and scaled up: they are smooth,
# so full-resolution maths would only cost time.
_GRID = 48
_PAD = 6  # empty grid cells around the fruit in the lighting maps


class _Canvas:
    """The fruit's own RGBA layer; coordinates are fractions of its width and height."""

    def __init__(self, w: int, h: int) -> None:
        self.w, self.h = w, h
        self.image = Image.new("RGBA", (w, h), (0, 0, 0, 0))

    def _px(self, points: Sequence[Point]) -> list[Point]:
        return [(x * self.w, y * self.h) for x, y in points]

    def ellipse(self, cx: float, cy: float, rx: float, ry: float, fill: Colour) -> None:
        box = self._px([(cx - rx, cy - ry), (cx + rx, cy + ry)])
        ImageDraw.Draw(self.image).ellipse(box, fill=(*fill, 255))

    def polygon(self, points: Sequence[Point], fill: Colour) -> None:
        ImageDraw.Draw(self.image).polygon(self._px(points), fill=(*fill, 255))

    def line(self, points: Sequence[Point], fill: Colour, width: float) -> None:
        px = max(1, round(width * self.w))
        ImageDraw.Draw(self.image).line(self._px(points), fill=(*fill, 255), width=px)

    def pixels(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Float RGB copy plus unit x (1, w) and y (h, 1) coordinates for textures."""
        rgb = np.asarray(self.image.convert("RGB"), dtype=np.float32)
        u = ((np.arange(self.w, dtype=np.float32) + 0.5) / self.w)[None, :]
        v = ((np.arange(self.h, dtype=np.float32) + 0.5) / self.h)[:, None]
        return rgb, u, v

    def set_pixels(self, rgb: np.ndarray) -> None:
        rgb_image = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))
        rgb_image.putalpha(self.image.getchannel("A"))
        self.image = rgb_image

    def noise(self, rng: np.random.Generator, cells: int) -> np.ndarray:
        """Smooth unit noise with `cells` bumps across the fruit, whatever its pixel size."""
        grid = rng.standard_normal((cells, cells)).astype(np.float32)
        smooth = Image.fromarray(grid).resize((self.w, self.h), Image.Resampling.BICUBIC)
        return np.asarray(smooth)


def _jitter(rng: np.random.Generator, colour: Colour, spread: float = 10.0) -> Colour:
    r, g, b = np.clip(np.asarray(colour) + rng.normal(0.0, spread, 3), 0, 255)
    return int(r), int(g), int(b)


def _mix(start: Colour, end: Colour, t: float) -> Colour:
    r, g, b = (round(x + (y - x) * t) for x, y in zip(start, end, strict=True))
    return r, g, b


def _tint(rgb: np.ndarray, colour: Colour, weight: np.ndarray) -> np.ndarray:
    """Blend towards `colour` by a per-pixel weight in [0, 1]."""
    return rgb + (np.asarray(colour, np.float32) - rgb) * weight[..., None]


def _dots(c: _Canvas, rng: np.random.Generator, points: np.ndarray, r: float, fill: Colour) -> None:
    for x, y in points:
        c.ellipse(x, y, r, r * rng.uniform(0.8, 1.3), fill)


def _disc(rng: np.random.Generator, n: int, centre: Point, r: float) -> np.ndarray:
    """`n` points spread evenly over a disc, so speckles stay on the skin."""
    radius, angle = r * np.sqrt(rng.random(n)), rng.uniform(0, 2 * np.pi, n)
    return np.stack([centre[0] + radius * np.cos(angle), centre[1] + radius * np.sin(angle)], 1)


def _leaf(c: _Canvas, base: Point, length: float, angle: float, fill: Colour) -> None:
    """A pointed lens-shaped leaf from `base`, `angle` radians from +x (y down)."""
    t = np.linspace(0.0, 1.0, 9)
    half = 0.3 * length * np.sin(np.pi * t)
    along, across = np.concatenate([t, t[::-1]]) * length, np.concatenate([half, -half[::-1]])
    cos, sin = math.cos(angle), math.sin(angle)
    xs = base[0] + along * cos - across * sin
    ys = base[1] + along * sin + across * cos
    c.polygon(list(zip(xs.tolist(), ys.tolist(), strict=True)), fill)


def _berry(c: _Canvas, cx: float, cy: float, r: float, fill: Colour) -> None:
    """A small glossy sphere: dark rim, body, specular spot; gives clusters their depth."""
    c.ellipse(cx, cy, r, r, _mix(fill, (0, 0, 0), 0.45))
    c.ellipse(cx - 0.12 * r, cy - 0.12 * r, 0.84 * r, 0.84 * r, fill)
    c.ellipse(cx - 0.4 * r, cy - 0.4 * r, 0.18 * r, 0.15 * r, _mix(fill, (255, 255, 255), 0.7))


def _dimpled(c: _Canvas, rng: np.random.Generator, cells: int, depth: float) -> None:
    """Citrus peel: small smooth bumps in brightness."""
    rgb, _, _ = c.pixels()
    c.set_pixels(rgb * (1.0 + depth * c.noise(rng, cells))[..., None])


def _apple(c: _Canvas, rng: np.random.Generator) -> None:
    red = _jitter(rng, (160, 18, 42))
    # Two upper lobes and a wide lower one: round, with the dimple at the stem.
    for cx, cy, rx, ry in ((0.37, 0.5, 0.3, 0.34), (0.63, 0.5, 0.3, 0.34), (0.5, 0.6, 0.38, 0.32)):
        c.ellipse(cx, cy, rx, ry, red)
    rgb, u, _ = c.pixels()
    # Thin yellow streaks from stem to base, slightly bent, over a mottled skin.
    waves = np.sin((u - 0.5) * 110.0 + 1.2 * c.noise(rng, 6) + rng.uniform(0, 2 * np.pi))
    rgb *= (1.0 + 0.07 * c.noise(rng, 12))[..., None]
    c.set_pixels(_tint(rgb, _jitter(rng, (215, 150, 60)), 0.3 * np.clip(waves, 0, 1) ** 4))
    c.line([(0.5, 0.24), (0.52 + rng.uniform(-0.04, 0.04), 0.04)], (92, 58, 28), 0.035)
    if rng.random() < 0.5:
        c_leaf = _jitter(rng, (70, 135, 45))
        _leaf(c, (0.53, 0.12), 0.26, rng.uniform(-0.7, 0.2), c_leaf)


def _banana(c: _Canvas, rng: np.random.Generator) -> None:
    yellow, green = _jitter(rng, (232, 188, 38)), (150, 165, 50)
    ripe = rng.uniform(0.0, 1.0)  # how far the green has left the tips
    t = np.linspace(-1.0, 1.0, 33)
    a, radius, centre = t * 0.85, 0.62, (0.5, 0.14)
    half = 0.11 * (1.0 - t**2) ** 0.6 + 0.012  # thick middle, thin tips
    xs, ys = np.sin(a), np.cos(a)

    def edge(r: np.ndarray, i: int) -> Point:
        return centre[0] + r[i] * xs[i], centre[1] + r[i] * ys[i]

    outer, inner = radius + half, radius - half
    # Quads along the arc, each coloured by its distance from the middle: green tips.
    for i in range(len(t) - 1):
        quad = [edge(outer, i), edge(outer, i + 1), edge(inner, i + 1), edge(inner, i)]
        greenness = max(0.0, abs(t[i]) - 0.5 - 0.4 * ripe) * 1.6
        c.polygon(quad, _mix(yellow, green, min(1.0, greenness)))
    tip, stem = edge(np.full_like(t, radius), 0), edge(np.full_like(t, radius), -1)
    c.ellipse(*tip, 0.018, 0.018, (70, 50, 25))
    c.line([stem, (stem[0] + 0.03, stem[1] - 0.07)], (105, 110, 50), 0.035)
    pick = rng.integers(0, len(t), 20 + int(40 * ripe))
    jitter = rng.uniform(-0.7, 0.7, pick.size) * half[pick]
    r = radius + jitter
    spots = np.stack([centre[0] + r * xs[pick], centre[1] + r * ys[pick]], 1)
    _dots(c, rng, spots, 0.008, (105, 70, 30))


def _orange(c: _Canvas, rng: np.random.Generator) -> None:
    c.ellipse(0.5, 0.5, 0.45, 0.45, _jitter(rng, (244, 138, 22)))
    _dimpled(c, rng, 36, 0.1)
    x, y = rng.uniform(0.35, 0.65, 2)
    c.ellipse(x, y, 0.025, 0.025, (125, 110, 45))  # stem scar


def _lemon(c: _Canvas, rng: np.random.Generator) -> None:
    yellow = _jitter(rng, (250, 232, 82))
    c.ellipse(0.5, 0.5, 0.4, 0.3, yellow)
    # Pointed ends make the lemon outline, not just an oval.
    c.ellipse(0.1, 0.5, 0.07, 0.055, yellow)
    c.ellipse(0.9, 0.5, 0.07, 0.055, yellow)
    _dimpled(c, rng, 30, 0.07)


def _lime(c: _Canvas, rng: np.random.Generator) -> None:
    green = _jitter(rng, (104, 170, 42))
    c.ellipse(0.5, 0.5, 0.42, 0.4, green)
    c.ellipse(0.92, 0.5, 0.035, 0.035, _mix(green, (0, 0, 0), 0.2))
    _dimpled(c, rng, 40, 0.08)


def _grape(c: _Canvas, rng: np.random.Generator) -> None:
    purple = _jitter(rng, (92, 38, 98))
    c.line([(0.5, 0.02), (0.5 + rng.uniform(-0.05, 0.05), 0.2)], (100, 90, 40), 0.03)
    # Rows narrowing to a tip: the bunch's triangle, drawn back to front.
    for row, count in enumerate((4, 3, 3, 2, 1)):
        for j in range(count):
            x = 0.5 + (j - (count - 1) / 2) * 0.19 + rng.uniform(-0.02, 0.02)
            y = 0.2 + row * 0.16 + rng.uniform(-0.02, 0.02)
            _berry(c, x, y, 0.095, _jitter(rng, purple, 8.0))


def _strawberry(c: _Canvas, rng: np.random.Generator) -> None:
    red = _jitter(rng, (228, 40, 42))
    c.ellipse(0.33, 0.36, 0.2, 0.18, red)
    c.ellipse(0.67, 0.36, 0.2, 0.18, red)
    c.polygon([(0.14, 0.4), (0.86, 0.4), (0.56, 0.86), (0.44, 0.86)], red)
    c.ellipse(0.5, 0.84, 0.07, 0.06, red)
    _dimpled(c, rng, 16, 0.06)
    # Seeds on a jittered grid: fewer per row as the body narrows to its tip.
    seeds = []
    for y in np.linspace(0.3, 0.8, 8):
        width = 0.36 * (1.0 - 0.85 * (y - 0.3) / 0.5)
        count = max(1, round(width / 0.07))
        seeds += [(0.5 + x, y) for x in np.linspace(-width, width, count + 1)]
    seeds_arr = np.asarray(seeds) + rng.uniform(-0.015, 0.015, (len(seeds), 2))
    _dots(c, rng, seeds_arr, 0.011, _jitter(rng, (238, 205, 95), 6.0))
    green = _jitter(rng, (50, 135, 45))
    for angle in np.linspace(-2.9, -0.25, 6) + rng.uniform(-0.15, 0.15, 6):
        _leaf(c, (0.5, 0.24), 0.2, float(angle), green)


def _kiwi(c: _Canvas, rng: np.random.Generator) -> None:
    c.ellipse(0.5, 0.5, 0.44, 0.35, _jitter(rng, (142, 98, 50), 6.0))
    rgb, _, _ = c.pixels()
    # Fuzz: fine hairs over a patchy skin.
    shade = 1.0 + 0.2 * c.noise(rng, 90) + 0.07 * c.noise(rng, 10)
    c.set_pixels(rgb * shade[..., None])
    c.ellipse(0.07, 0.5, 0.02, 0.03, (70, 50, 30))


def _blueberry(c: _Canvas, rng: np.random.Generator) -> None:
    blue, count = _jitter(rng, (56, 66, 125)), int(rng.integers(3, 7))
    angles = rng.uniform(0, 2 * np.pi) + np.arange(count - 1) * 2 * np.pi / (count - 1)
    centres = [(0.5, 0.5)] + [(0.5 + 0.3 * math.cos(a), 0.5 + 0.3 * math.sin(a)) for a in angles]
    radii = rng.uniform(0.16, 0.19, count)
    for (x, y), r in zip(centres[::-1], radii, strict=True):
        _berry(c, x, y, r, _jitter(rng, blue, 6.0))
    rgb, _, _ = c.pixels()
    # The dusty bloom: a patchy pale film over the dark skin.
    bloom = np.clip(0.3 + 0.15 * c.noise(rng, 10), 0, 1)
    c.set_pixels(_tint(rgb, (130, 140, 175), bloom))
    for (x, y), r in zip(centres[::-1], radii, strict=True):
        star = [
            (x + 0.3 * r + s * math.cos(k * np.pi / 5), y - 0.3 * r + s * math.sin(k * np.pi / 5))
            for k, s in zip(range(10), [0.22 * r, 0.09 * r] * 5, strict=True)
        ]
        c.polygon(star, (35, 30, 60))


def _pear(c: _Canvas, rng: np.random.Generator) -> None:
    green = _jitter(rng, (165, 196, 74))
    c.ellipse(0.5, 0.66, 0.3, 0.3, green)
    c.ellipse(0.5, 0.34, 0.17, 0.18, green)
    c.polygon([(0.335, 0.36), (0.665, 0.36), (0.79, 0.6), (0.21, 0.6)], green)
    rgb, u, _ = c.pixels()
    # A warm blush on one side and brown lenticel speckles all over.
    blush = np.clip(0.35 * c.noise(rng, 4) + 0.3 * (u - 0.5) * rng.choice([-1, 1]), 0, 0.45)
    c.set_pixels(_tint(rgb, (205, 150, 60), blush))
    spots = np.concatenate([_disc(rng, 50, (0.5, 0.66), 0.27), _disc(rng, 15, (0.5, 0.34), 0.14)])
    _dots(c, rng, spots, 0.006, (140, 120, 55))
    c.line([(0.5, 0.18), (0.47 + rng.uniform(-0.03, 0.03), 0.03)], (92, 62, 30), 0.03)


def _cherry(c: _Canvas, rng: np.random.Generator) -> None:
    red, stem, top = _jitter(rng, (125, 12, 30)), (88, 118, 40), (0.56, 0.08)
    c.line([(0.34, 0.55), (0.4, 0.3), top], stem, 0.022)
    c.line([(0.68, 0.57), (0.64, 0.3), top], stem, 0.022)
    _berry(c, 0.34, 0.7, 0.19, red)
    _berry(c, 0.68, 0.72, 0.18, _jitter(rng, red, 6.0))
    if rng.random() < 0.4:
        _leaf(c, top, 0.3, rng.uniform(-0.6, 0.0), _jitter(rng, (60, 130, 45)))


def _watermelon(c: _Canvas, rng: np.random.Generator) -> None:
    c.ellipse(0.5, 0.5, 0.47, 0.36, _jitter(rng, (130, 178, 82)))
    rgb, u, v = c.pixels()
    # Stripes run pole to pole: latitude squeezed towards the ends, edges made ragged.
    x, y = (u - 0.5) / 0.47, (v - 0.5) / 0.36
    lat = y / np.sqrt(np.clip(1.0 - x * x, 0.05, 1.0))
    waves = np.sin(lat * np.pi * 3.5 + rng.uniform(0, 2 * np.pi) + 1.2 * c.noise(rng, 14))
    c.set_pixels(_tint(rgb, _jitter(rng, (34, 82, 36), 6.0), np.clip(waves * 3.0, 0, 1)))
    c.ellipse(0.04, 0.5, 0.025, 0.03, (120, 110, 60))


@dataclass(frozen=True)
class _Kind:
    paint: Callable[[_Canvas, np.random.Generator], None]
    max_turn: float  # degrees; fruit with a stem mostly sits upright


_KINDS: dict[str, _Kind] = {
    "apple_red": _Kind(_apple, 30),
    "banana": _Kind(_banana, 180),
    "orange": _Kind(_orange, 180),
    "lemon": _Kind(_lemon, 180),
    "lime": _Kind(_lime, 180),
    "grape": _Kind(_grape, 30),
    "strawberry": _Kind(_strawberry, 35),
    "kiwi": _Kind(_kiwi, 180),
    "blueberry": _Kind(_blueberry, 180),
    "pear": _Kind(_pear, 30),
    "cherry": _Kind(_cherry, 35),
    "watermelon": _Kind(_watermelon, 180),
}
LABELS: tuple[str, ...] = tuple(_KINDS)


def _light_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(195, 245) + rng.normal(0, 6, 3)


def _background(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """Plain light colour, a gradient, or mild blotchy noise, each built on a coarse grid."""
    w, h = size
    kind, base = int(rng.integers(3)), _light_colour(rng)
    if kind == 0:
        return Image.new("RGB", size, tuple(int(x) for x in np.clip(base, 0, 255)))
    gw, gh = max(2, round(24 * w / min(size))), max(2, round(24 * h / min(size)))
    if kind == 1:
        turn = rng.uniform(0, 2 * np.pi)
        ys, xs = np.mgrid[0:gh, 0:gw] / (max(gw, gh) - 1)
        t = xs * math.cos(turn) + ys * math.sin(turn)
        t = ((t - t.min()) / np.ptp(t))[..., None]
        grid = base * (1 - t) + _light_colour(rng) * t
    else:
        grid = base + rng.normal(0, 7, (gh, gw, 1)) + rng.normal(0, 2, (gh, gw, 3))
    small = Image.fromarray(np.clip(grid, 0, 255).astype(np.uint8))
    # Blurring at 4x the grid hides its cells cheaply; the last step up is then smooth.
    finer = small.resize((gw * 4, gh * 4), Image.Resampling.BICUBIC)
    return finer.filter(ImageFilter.GaussianBlur(2)).resize(size, Image.Resampling.BILINEAR)


def _lighting_maps(
    alpha: Image.Image, light: Point, strength: float
) -> tuple[np.ndarray, np.ndarray]:
    """Shade factor (edges away from the light darken) and highlight weight, on a coarse grid."""
    # An empty margin lets the blur and the shift see the fruit's edge as an edge.
    small = Image.new("L", (_GRID, _GRID), 0)
    small.paste(alpha.resize((_GRID - 2 * _PAD,) * 2, Image.Resampling.BOX), (_PAD, _PAD))
    blurred = small.filter(ImageFilter.GaussianBlur(_GRID * 0.1))
    # Shade at p is the blurred mask at p - light*d: bright towards the light, dim away.
    shifted = Image.new("L", small.size, 0)
    shifted.paste(blurred, (round(light[0] * _GRID * 0.12), round(light[1] * _GRID * 0.12)))
    shade = 0.5 + 0.5 * np.asarray(shifted, np.float32) / 255.0
    a = np.asarray(small, np.float32) / 255.0
    ys, xs = np.mgrid[0:_GRID, 0:_GRID].astype(np.float32) + 0.5
    mass = a.sum() + 1e-6
    cx, cy = (a * xs).sum() / mass, (a * ys).sum() / mass
    reach = 0.3 * math.sqrt(mass)  # ~ half the fruit's radius, in grid cells
    hx, hy = cx + light[0] * reach, cy + light[1] * reach
    spot = np.exp(-((xs - hx) ** 2 + (ys - hy) ** 2) / (2 * (0.09 * _GRID) ** 2))
    glow = strength * spot * np.asarray(blurred, np.float32) / 255.0
    return shade, glow


def _light_fruit(fruit: Image.Image, light: Point, strength: float) -> Image.Image:
    """Apply shade and highlight to an RGBA cut-out with Pillow's C blends, not numpy."""
    alpha = fruit.getchannel("A")
    inner = (_PAD, _PAD, _GRID - _PAD, _GRID - _PAD)
    shade, glow = (
        Image.fromarray(np.clip(m * 255.0, 0, 255).astype(np.uint8)).resize(
            fruit.size, Image.Resampling.BILINEAR, box=inner
        )
        for m in _lighting_maps(alpha, light, strength)
    )
    lit = ImageChops.multiply(fruit.convert("RGB"), Image.merge("RGB", (shade,) * 3))
    lit = Image.composite(Image.new("RGB", fruit.size, (255, 255, 255)), lit, glow)
    lit.putalpha(alpha)
    return lit


def _paint_fruit(
    label: str, rng: np.random.Generator, side: float, light_angle: float
) -> Image.Image:
    """The lit, rotated fruit as a tight RGBA cut-out, about `side` pixels across."""
    kind = _KINDS[label]
    # Small fruit is drawn larger and reduced: ImageDraw has no anti-aliasing of its own.
    ss = int(min(3, max(1, math.ceil(160 / side))))
    stretch = rng.uniform(0.9, 1.1, 2)
    c = _Canvas(*(max(8, round(side * ss * s)) for s in stretch))
    kind.paint(c, rng)
    fruit = c.image.crop(c.image.getbbox())
    fruit = fruit.reduce(ss) if ss > 1 else fruit
    turn = rng.uniform(-kind.max_turn, kind.max_turn)
    # Light is fixed in the scene, so express its direction in the unrotated fruit's frame.
    t = math.radians(turn) + light_angle
    fruit = _light_fruit(fruit, (math.sin(t), -math.cos(t)), rng.uniform(0.15, 0.45))
    # Lighting and rotating after the reduction: as smooth, and far cheaper for small photos.
    fruit = fruit.rotate(turn, Image.Resampling.BICUBIC, expand=True)
    return fruit.crop(fruit.getbbox())


def _place(rng: np.random.Generator, frame: int, extent: int) -> int:
    """An offset keeping at least ~92% of the fruit's extent inside the frame."""
    lo, hi = -0.08 * extent, frame - 0.92 * extent
    return round(rng.uniform(lo, hi)) if hi > lo else (frame - extent) // 2


def _adjust(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Scene exposure: brightness, contrast and a slight colour cast, as one lookup table."""
    brightness, contrast = rng.uniform(0.82, 1.12), rng.uniform(0.85, 1.15)
    gains = 1.0 + rng.normal(0, 0.03, 3)
    levels = np.arange(256, dtype=np.float32)
    lut = [((levels - 128) * contrast + 128) * brightness * g for g in gains]
    return image.point(np.clip(np.concatenate(lut), 0, 255).astype(np.uint8).tolist())


def _check_label(label: str) -> None:
    if label not in _KINDS:
        raise ValueError(f"unknown fruit label {label!r}; valid labels: {', '.join(LABELS)}")


def _drop_shadow(
    scene: Image.Image,
    alpha: Image.Image,
    at: tuple[int, int],
    light_angle: float,
    rng: np.random.Generator,
) -> None:
    """A soft shadow cast away from the light, so the fruit sits on the surface."""
    # A margin around the cut-out leaves the blur room to fade out before the edge.
    margin = round(0.15 * max(alpha.size))
    padded = Image.new("L", (alpha.width + 2 * margin, alpha.height + 2 * margin), 0)
    padded.paste(alpha, (margin, margin))
    small = padded.resize((_GRID, _GRID), Image.Resampling.BOX)
    blurred = np.asarray(small.filter(ImageFilter.GaussianBlur(_GRID * 0.05)), np.float32)
    darkness = rng.uniform(0.2, 0.45)
    soft = Image.fromarray((blurred * darkness).astype(np.uint8)).resize(padded.size)
    reach = 0.06 * max(alpha.size)
    dx, dy = -reach * math.sin(light_angle), reach * math.cos(light_angle)
    scene.paste((40, 35, 30), (round(at[0] + dx - margin), round(at[1] + dy - margin)), soft)


def render_fruit_with_mask(
    label: str, rng: np.random.Generator, size: tuple[int, int] = (100, 100)
) -> tuple[Image.Image, Image.Image]:
    """The photo and an L mask of the fruit's pixels (255 = fruit), drawn from the same rng."""
    _check_label(label)
    w, h = size
    scene = _background(rng, size)
    side = min(size) * rng.uniform(0.5, 0.85)
    light_angle = rng.uniform(-0.7, 0.7)  # radians from straight up; mostly from above
    fruit = _paint_fruit(label, rng, side, light_angle)
    alpha = fruit.getchannel("A")
    x, y = _place(rng, w, fruit.width), _place(rng, h, fruit.height)
    _drop_shadow(scene, alpha, (x, y), light_angle, rng)
    scene.paste(fruit, (x, y), alpha)
    mask = Image.new("L", size, 0)
    mask.paste(alpha, (x, y))
    return _adjust(scene, rng), mask


def render_fruit(
    label: str, rng: np.random.Generator, size: tuple[int, int] = (100, 100)
) -> Image.Image:
    """A synthetic RGB photo of `label`, `size` = (width, height); same rng state, same image."""
    return render_fruit_with_mask(label, rng, size)[0]


def encode_jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
