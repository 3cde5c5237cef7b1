"""Procedural colour textures: an endless supply of appearances that no photograph shares.

A segmenter trained on the dozen training photographs of :mod:`trajtok_hf.data.photo_sources` learns which
textures it has seen as sprites; textures drawn from parametric families (smooth noise through a random palette,
warped stripes, rotated checks, dots, gradients with grain) have no such identity, so separating a sprite from its
background must come from the texture edge and, in a video, from the motion. :mod:`~trajtok_hf.data.photo_composites`
draws them with ``procedural_texture_probability`` for sprite textures and backgrounds.

Every texture is a pure function of ``rng``; rendering is vectorised (NumPy over the pixel grid, OpenCV resizes).
"""

from __future__ import annotations

import math

import numpy as np

PROCEDURAL_KINDS = ("noise", "stripes", "checks", "dots", "gradient")
"""The texture families of :func:`procedural_texture`."""


def _smooth_noise(height: int, width: int, cells: int, rng: np.random.Generator) -> np.ndarray:
    """Values in [0, 1]: a ``cells × cells`` random grid resized (bicubic) to ``height × width``, rescaled."""
    import cv2

    coarse = rng.random((cells, cells)).astype(np.float32)
    field = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    lo, hi = float(field.min()), float(field.max())
    return (field - lo) / max(hi - lo, 1e-6)


def random_palette(count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` random colours (float32 RGB in [0, 255]) of random saturation."""
    colours = rng.uniform(0, 255, (count, 3))
    grey = colours.mean(axis=1, keepdims=True)
    return (grey + rng.uniform(0.2, 1.0, (count, 1)) * (colours - grey)).astype(np.float32)


def through_palette(values: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """Maps values in [0, 1] piecewise-linearly through the colours (evenly spaced stops)."""
    position = values * (len(colours) - 1)
    low = np.clip(np.floor(position).astype(np.int64), 0, len(colours) - 2)
    frac = (position - low)[..., None]
    return colours[low] * (1.0 - frac) + colours[low + 1] * frac


def _coordinates(height: int, width: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates rotated by a random angle, ``(u, v)`` each ``(height, width)`` float32."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, math.pi)
    c, s = math.cos(angle), math.sin(angle)
    return x * c + y * s, -x * s + y * c


def _noise(height, width, rng):
    values = _smooth_noise(height, width, int(rng.integers(3, 12)), rng)
    if rng.random() < 0.5:  # a second octave
        detail = _smooth_noise(height, width, int(rng.integers(12, 32)), rng)
        values = np.clip(0.7 * values + 0.3 * detail, 0, 1)
    return through_palette(values, random_palette(int(rng.integers(2, 5)), rng))


def _stripes(height, width, rng):
    u, _ = _coordinates(height, width, rng)
    period = rng.uniform(3.0, 16.0)
    warp = rng.uniform(0, 2 * period) * (_smooth_noise(height, width, int(rng.integers(2, 6)), rng) - 0.5)
    wave = 0.5 + 0.5 * np.sin(2 * math.pi * (u + warp) / period)
    if rng.random() < 0.5:
        wave = (wave > 0.5).astype(np.float32)
    return through_palette(wave, random_palette(2, rng))


def _checks(height, width, rng):
    u, v = _coordinates(height, width, rng)
    pu, pv = rng.uniform(3.0, 14.0, 2)
    pattern = (np.floor(u / pu) + np.floor(v / pv)) % 2
    return through_palette(pattern.astype(np.float32), random_palette(2, rng))


def _dots(height, width, rng):
    import cv2

    colours = random_palette(int(rng.integers(2, 4)), rng)
    image = np.empty((height, width, 3), dtype=np.float32)
    image[:] = colours[0]
    count = int(rng.integers(4, 12) * max(1, height * width // 1024))
    radius = rng.uniform(1.0, 4.0)
    centres = rng.uniform(0, (width, height), (count, 2)).astype(np.int32)
    picks = rng.integers(1, len(colours), count)
    for (x, y), pick in zip(centres, picks, strict=True):  # a handful of circles per texture, drawn by OpenCV
        cv2.circle(image, (int(x), int(y)), max(1, round(radius * rng.uniform(0.6, 1.4))), colours[pick].tolist(), -1)
    return image


def _gradient(height, width, rng):
    u, _ = _coordinates(height, width, rng)
    lo, hi = float(u.min()), float(u.max())
    return through_palette((u - lo) / max(hi - lo, 1e-6), random_palette(2, rng))


_KINDS = {"noise": _noise, "stripes": _stripes, "checks": _checks, "dots": _dots, "gradient": _gradient}


def procedural_texture(
    height: int, width: int, rng: np.random.Generator, kinds: tuple[str, ...] = PROCEDURAL_KINDS, grain: float = 12.0
) -> np.ndarray:
    """A ``(height, width, 3)`` uint8 texture of a family drawn from ``kinds``, plus Gaussian grain of a random
    strength up to ``grain`` (grey levels), so that even flat families carry some high-frequency texture.

    Args:
        height, width: texture size in pixels (>= 1).
        rng: the generator every choice is drawn from.
        kinds: families to draw from (subset of :data:`PROCEDURAL_KINDS`).
        grain: largest standard deviation of the per-pixel grain (0: none).
    """
    if height < 1 or width < 1:
        raise ValueError(f"`height` and `width` must be >= 1, got {height}x{width}")
    unknown = [k for k in kinds if k not in _KINDS]
    if unknown or not kinds:
        raise ValueError(f"`kinds` must be a non-empty subset of {PROCEDURAL_KINDS}, got {kinds!r}")
    image = _KINDS[kinds[int(rng.integers(len(kinds)))]](height, width, rng)
    if grain > 0:
        image = image + rng.normal(0.0, rng.uniform(0.0, grain), image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)
