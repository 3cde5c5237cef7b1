"""Long procedural videos (hundreds to thousands of frames) with exact per-pixel object identities.

A streaming tokenizer cuts a long video into chunks of ``chunk_size`` frames (8–16) and must give an object the
same trajectory from one chunk to the next. These videos test that: the shapes, colours, textures and
backgrounds of :mod:`trajtok_hf.data.synthetic` (and its renderer), in three scenarios that stress identity
linking in different ways:

* ``"static"`` — a fixed camera and a few objects that stay still for the whole video: the easy case, every
  object is present in every chunk.
* ``"panning"`` — the camera pans continuously in one direction: the background slides, and the objects, which
  are still in the scene, slide across the image with it; objects leave the frame on one side while new ones
  enter on the other, each visible for many chunks.
* ``"busy"`` — many objects at once that enter from the borders, leave across them, appear and disappear in
  place, stay still or move and bounce off the borders, and pass behind each other, with lifetimes of tens to
  hundreds of frames.

In every scenario with ``occlusion_probability > 0``, objects are also *occluded across chunk boundaries*: a
larger object passes in front of a smaller one and hides it completely for a few frames, and the hidden
interval contains a frame index that is a multiple of ``chunk_size``, so the object must be linked across both
the occlusion and the boundary. Objects visible at the same time have distinct colours (a colour comes back only
after the object that wore it has gone), so identity is well defined for a viewer too.

Ground truth (objects are painted in z-order, so occlusions are exact and a pixel's id is the visible object):

* ``segmentation`` ``(T, H, W)`` int64 — ``0`` background, ``1..M`` objects; ids are global over the video and
  never reused, numbered in order of first appearance.
* ``segmentation_labels`` ``(T, H/s, W/s)`` int64 on the mask grid, by
  :func:`trajtok_hf.data.pseudo_labels.downsample_labels`.
* ``objects`` — per object: ``id``, ``shape``, ``colour``, ``size``, ``texture``, ``radius`` (pixels),
  ``motion`` (a key of :data:`LONG_VIDEO_MOTIONS`), ``speed`` (pixels per frame; an occluder's is relative to the
  object it hides), ``z`` (painting order, higher in front), ``first_frame`` / ``last_frame`` (first and last
  frame with at least one visible pixel, inclusive) and ``passes_in_front_of`` (the id of the object an occluder
  hides, else ``None``).
* ``events`` — what a tracker must survive, read off the rendered segmentation: ``{"kind", "id", "start",
  "end"}`` with inclusive frame ranges, sorted by ``start``. Kinds: ``"enter"`` (cut by the border in its first
  visible frame: from then until it is wholly inside the frame), ``"exit"`` (cut by the border in its last
  visible frame: from when it starts to cross the border until then), ``"appear"`` / ``"disappear"`` (first /
  last seen wholly inside the frame: it pops in or out in place, or comes out from behind another object; one
  frame), and ``"occluded"`` (a run of frames between its first and last visible frame where none of it is
  visible). Occlusions also carry ``by`` (the id of the object planted to hide it, ``None`` for a chance
  occlusion) and ``across_chunk_boundary`` (the run contains a multiple of ``chunk_size``). An object visible in
  the first / last frame has no event there.
* ``background`` — ``{"kind", "pan", "speed"}``: the background texture, the direction the background drifts in
  the image (``"none"``, ``"left"``, ``"right"``, ``"up"``, ``"down"``) and its speed in pixels per frame.

Video ``(config, seed)`` is a pure function of both: ``numpy.random.default_rng([seed, ...])`` drives all
sampling. Object paths are planned for all ``T`` frames up front (cheap: a few numbers per frame of each object's
lifetime) and only rendering is done per block of frames, so :func:`iter_long_video` and :func:`write_long_video`
produce videos of any length without holding their frames, block for block identical to
:func:`generate_long_video`. Rendering reuses the vectorised renderer of :mod:`~trajtok_hf.data.synthetic` (a
loop over frames and objects, none over pixels).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .pseudo_labels import downsample_labels
from .synthetic import (
    BACKGROUNDS,
    COLOURS,
    SHAPES,
    SIZES,
    TEXTURES,
    Mp4Writer,
    SyntheticVideoConfig,
    _background_texture,
    _Object,
    _reflect,
    _render_object,
)

__all__ = [
    "LONG_VIDEO_SCENARIOS",
    "LONG_VIDEO_MOTIONS",
    "LongVideoConfig",
    "generate_long_video",
    "iter_long_video",
    "write_long_video",
]

LONG_VIDEO_SCENARIOS = ("static", "panning", "busy")

LONG_VIDEO_MOTIONS: dict[str, str] = {
    "static": "stays still in the image",
    "bounce": "moves in straight lines and bounces off the borders (between entering and leaving)",
    "static_in_scene": "stays still in the scene, so it slides across the image with the camera pan",
    "passes_in_front": "passes in front of another object, hiding it completely for a few frames",
}
"""The ``motion`` of an object in a long video → what it does."""

EVENT_KINDS = ("enter", "exit", "appear", "disappear", "occluded")

_SCENARIO_DEFAULTS: dict[str, dict[str, Any]] = {
    "static": {"objects_on_screen": 3, "pan_speed": 0.0, "occlusion_probability": 0.0},
    "panning": {"objects_on_screen": 4, "pan_speed": 0.01, "occlusion_probability": 0.2},
    "busy": {"objects_on_screen": 6, "pan_speed": 0.0, "occlusion_probability": 0.35},
}

_PAN_DIRECTIONS = ("left", "right", "up", "down")
_OCCLUDER_SHAPES = {"circle": 1.0, "square": 1.0 / math.sqrt(2.0), "diamond": 1.0 / math.sqrt(2.0)}
"""Shapes that can hide another object completely → radius of their inscribed circle / circumradius."""
_MAX_OCCLUDER_RADIUS = 0.2  # circumradius of an occluder, at most, as a fraction of min(height, width)
_COVER_MARGIN = 0.75  # pixels of slack between a hidden object's circumcircle and its occluder's inscribed circle
_RNG_STREAM = 1_000_003  # keeps long videos apart from generate_clip's (seed, index) streams


@dataclass
class LongVideoConfig:
    """Parameters of the long-video generator.

    Speeds are in frame sizes per frame (fractions of ``min(height, width)``), like :data:`SIZES`, so a video
    looks the same at any resolution; the metadata reports them in pixels per frame.

    Args:
        num_frames: frames of the video (``T``).
        height, width: frame size in pixels; both must be divisible by ``mask_stride`` and at least 16.
        mask_stride, mask_downsample: the mask grid of ``segmentation_labels`` (as in
            :class:`~trajtok_hf.data.synthetic.SyntheticVideoConfig`).
        scenario: one of :data:`LONG_VIDEO_SCENARIOS`.
        chunk_size: the streaming tokenizer's chunk length; only used to plant occlusions across chunk boundaries
            (multiples of ``chunk_size``).
        objects_on_screen: how many objects are in view at once (``None``: 3 static, 4 panning, 6 busy). In
            ``"panning"`` it sets the spacing of the objects in the scene; in ``"busy"`` there are that many
            object slots, each showing one object after another. At most ``len(colours)``.
        min_lifetime, max_lifetime: ``"busy"`` only: frames an object spends in the scene before it starts to
            leave or vanishes (entering and leaving take extra frames).
        max_speed: ``"busy"`` only: the fastest object speed (frame sizes per frame); objects move at 25–100 %
            of it and enter / leave at 60–100 % of it.
        still_probability: ``"busy"`` only: chance an object rests between entering and leaving instead of
            bouncing around.
        pop_probability: ``"busy"`` only: chance an object appears in place instead of entering from a border,
            drawn again for disappearing in place instead of leaving.
        pan_speed: camera pan speed (frame sizes per frame); ``None``: 0.01 for ``"panning"``, which needs a
            positive value, and 0 for the other scenarios, which need 0.
        occlusion_probability: chance that a chunk boundary gets a planted occlusion (an object hidden behind a
            larger one for a few frames around it); ``None``: 0 static, 0.2 panning, 0.35 busy. When positive, at
            least one is planted if any boundary allows it.
        occlusion_frames: ``(min, max)`` frames a planted occlusion hides its object completely, at least (at
            least 2, so the hidden interval spans the boundary: the last frame of one chunk and the first of the
            next). The plan bounds the shapes by circles, so on the pixel grid the object often stays covered a few
            frames longer; the ``"occluded"`` events hold the exact runs.
        shapes, colours, sizes, textures, backgrounds, texture_probability: as in
            :class:`~trajtok_hf.data.synthetic.SyntheticVideoConfig`. Occluders are circles, squares or diamonds
            (those in ``shapes``, else circles), which hide what is behind them without gaps.
    """

    num_frames: int = 256
    height: int = 64
    width: int = 64
    mask_stride: int = 4
    mask_downsample: str = "mode"
    scenario: str = "busy"
    chunk_size: int = 16
    objects_on_screen: int | None = None
    min_lifetime: int = 24
    max_lifetime: int = 160
    max_speed: float = 0.02
    still_probability: float = 0.2
    pop_probability: float = 0.3
    pan_speed: float | None = None
    occlusion_probability: float | None = None
    occlusion_frames: tuple[int, int] = (3, 6)
    shapes: Sequence[str] = SHAPES
    colours: Sequence[str] = tuple(COLOURS)
    sizes: Sequence[str] = tuple(SIZES)
    textures: Sequence[str] = TEXTURES
    backgrounds: Sequence[str] = BACKGROUNDS
    texture_probability: float = 0.25

    def __post_init__(self):
        if self.scenario not in LONG_VIDEO_SCENARIOS:
            raise ValueError(f"`scenario` must be one of {LONG_VIDEO_SCENARIOS}, got {self.scenario!r}")
        for name in ("num_frames", "chunk_size", "min_lifetime", "max_lifetime"):
            _require_positive_int(getattr(self, name), name)
        if self.min_lifetime > self.max_lifetime:
            raise ValueError(f"`min_lifetime` ({self.min_lifetime}) must be <= `max_lifetime` ({self.max_lifetime})")
        # The frame size, mask grid and vocabularies mean the same as for the short clips: their checks (and
        # error messages, which name the same fields) are SyntheticVideoConfig's.
        checked = SyntheticVideoConfig(
            num_frames=1,
            height=self.height,
            width=self.width,
            mask_stride=self.mask_stride,
            mask_downsample=self.mask_downsample,
            shapes=self.shapes,
            colours=self.colours,
            sizes=self.sizes,
            textures=self.textures,
            backgrounds=self.backgrounds,
            texture_probability=self.texture_probability,
            motions=("static",),
            max_objects=1,
        )
        for name in ("shapes", "colours", "sizes", "textures", "backgrounds"):
            setattr(self, name, getattr(checked, name))
        if self.objects_on_screen is not None:
            _require_positive_int(self.objects_on_screen, "objects_on_screen")
            if self.objects_on_screen > len(self.colours):
                raise ValueError(
                    f"`objects_on_screen` ({self.objects_on_screen}) exceeds the {len(self.colours)} available "
                    "`colours`; objects visible at the same time get distinct colours"
                )
        for name in ("still_probability", "pop_probability", "occlusion_probability"):
            value = getattr(self, name)
            if value is not None and not (_is_number(value) and 0.0 <= float(value) <= 1.0):
                raise ValueError(f"`{name}` must be in [0, 1], got {value!r}")
        if not (_is_number(self.max_speed) and self.max_speed > 0):
            raise ValueError(f"`max_speed` must be a positive number, got {self.max_speed!r}")
        if self.pan_speed is not None:
            if not (_is_number(self.pan_speed) and self.pan_speed >= 0):
                raise ValueError(f"`pan_speed` must be a non-negative number, got {self.pan_speed!r}")
            if self.scenario == "panning" and self.pan_speed == 0:
                raise ValueError("`pan_speed` must be positive for scenario 'panning'")
            if self.scenario != "panning" and self.pan_speed != 0:
                raise ValueError(f"`pan_speed` must be 0 for scenario {self.scenario!r}; only 'panning' pans")
        frames = tuple(self.occlusion_frames) if isinstance(self.occlusion_frames, (tuple, list)) else ()
        if len(frames) != 2 or not all(_is_int(v) for v in frames) or not 2 <= frames[0] <= frames[1]:
            raise ValueError(
                f"`occlusion_frames` must be two ints (min, max) with 2 <= min <= max, got {self.occlusion_frames!r}"
            )
        self.occlusion_frames = (int(frames[0]), int(frames[1]))

    @property
    def mask_size(self) -> tuple[int, int]:
        """``(h, w)`` of ``segmentation_labels``."""
        return self.height // self.mask_stride, self.width // self.mask_stride

    def resolved(self) -> LongVideoConfig:
        """A copy with the scenario-dependent knobs left at ``None`` replaced by the scenario's defaults."""
        defaults = _SCENARIO_DEFAULTS[self.scenario]
        return dataclasses.replace(self, **{k: v for k, v in defaults.items() if getattr(self, k) is None})

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _require_positive_int(value: Any, name: str) -> None:
    if not _is_int(value) or value < 1:
        raise ValueError(f"`{name}` must be a positive int, got {value!r}")


# --------------------------------------------------------------------------------------------------------------
# Planning: every object's path over its lifetime, for the whole video


@dataclass
class _Track:
    """One planned object: its path over frames ``start .. start + len(cx) - 1`` (the frames where it exists)."""

    shape: str
    size: str
    texture: str
    radius: float
    motion: str
    speed: float
    start: int
    cx: np.ndarray
    cy: np.ndarray
    angle: np.ndarray
    occludes: int | None = None  # index (in the plan's track list) of the object this one hides
    hidden_frames: tuple[int, int] | None = None  # first and last frame it hides that object completely
    colour: str = ""

    @property
    def stop(self) -> int:
        return self.start + self.cx.size

    def window_in_view(self, height: int, width: int) -> np.ndarray:
        """Per frame of the path: does the object's rendering window touch the image (the renderer's test)?"""
        half = int(math.ceil(self.radius)) + 1
        x0 = np.floor(self.cx).astype(np.int64) - half
        y0 = np.floor(self.cy).astype(np.int64) - half
        size = 2 * half + 1
        return (x0 < width) & (x0 + size > 0) & (y0 < height) & (y0 + size > 0)

    def wholly_inside(self, height: int, width: int) -> np.ndarray:
        """Per frame of the path: is the object's circumcircle inside the image (pixel edges at -0.5, size-0.5)?"""
        r = self.radius
        return (
            (self.cx - r >= -0.5) & (self.cx + r <= width - 0.5) & (self.cy - r >= -0.5) & (self.cy + r <= height - 0.5)
        )


def _spans(tracks: list[_Track]) -> np.ndarray:
    """``(len(tracks), 2)`` int64: first frame and end (exclusive) of every track's path."""
    return np.array([(t.start, t.stop) for t in tracks], dtype=np.int64).reshape(-1, 2)


def _draw_look(cfg: LongVideoConfig, rng: np.random.Generator) -> tuple[str, str, str, float]:
    """Shape, size word, texture and circumradius (pixels) of a new object."""
    shape = cfg.shapes[rng.integers(len(cfg.shapes))]
    size = cfg.sizes[rng.integers(len(cfg.sizes))]
    texture = "plain"
    if cfg.textures and rng.random() < cfg.texture_probability:
        texture = cfg.textures[rng.integers(len(cfg.textures))]
    lo, hi = SIZES[size]
    radius = float(rng.uniform(lo, hi) * min(cfg.height, cfg.width))
    return shape, size, texture, radius


def _static_tracks(cfg: LongVideoConfig, rng: np.random.Generator) -> list[_Track]:
    """``objects_on_screen`` objects that stay still for the whole video, placed without overlap when possible."""
    T, H, W = cfg.num_frames, cfg.height, cfg.width
    tracks: list[_Track] = []
    for _ in range(cfg.objects_on_screen):
        shape, size, texture, r = _draw_look(cfg, rng)
        for _attempt in range(100):
            x, y = rng.uniform(r, W - 1 - r), rng.uniform(r, H - 1 - r)
            if all(math.hypot(x - t.cx[0], y - t.cy[0]) >= r + t.radius + 2 for t in tracks):
                break
        angle = rng.uniform(-0.25, 0.25)
        tracks.append(
            _Track(shape, size, texture, r, "static", 0.0, 0, np.full(T, x), np.full(T, y), np.full(T, angle))
        )
    return tracks


def _pan_offsets(cfg: LongVideoConfig, rng: np.random.Generator) -> tuple[str, float, np.ndarray, int]:
    """Pan direction, speed (px/frame), per-frame integer camera offset along the pan axis, and total travel."""
    direction = _PAN_DIRECTIONS[rng.integers(len(_PAN_DIRECTIONS))]
    speed = float(cfg.pan_speed) * min(cfg.height, cfg.width)
    travel = int(math.ceil(speed * (cfg.num_frames - 1)))
    steps = np.round(speed * np.arange(cfg.num_frames)).astype(np.int64)
    # The camera window slides over the scene; a window moving towards +x shows content drifting left.
    offsets = steps if direction in ("left", "up") else travel - steps
    return direction, speed, offsets, travel


def _panning_tracks(
    cfg: LongVideoConfig, rng: np.random.Generator, direction: str, speed: float, offsets: np.ndarray, travel: int
) -> list[_Track]:
    """Objects still in the scene, spread along the strip the camera sweeps, seen through the moving window."""
    H, W = cfg.height, cfg.width
    horizontal = direction in ("left", "right")
    extent, across = (W, H) if horizontal else (H, W)
    reach = SIZES["large"][1] * min(H, W) + 2  # beyond this an object is out of view at either end of the strip
    spacing = extent / cfg.objects_on_screen
    count = int(math.ceil((extent + travel + 2 * reach) / spacing))
    tracks: list[_Track] = []
    for k in range(count):
        shape, size, texture, r = _draw_look(cfg, rng)
        # One object per stretch of `spacing`, away from the stretch's ends: neighbours never sit on top of
        # each other, whatever their distance across the pan.
        along_scene = -reach + (k + rng.uniform(0.2, 0.8)) * spacing
        across_pos = rng.uniform(r, across - 1 - r)
        angle = rng.uniform(-0.25, 0.25)
        # Frames where the rendering window can touch the image (a superset, from the monotone offsets; refined
        # below): the path is kept only there, so memory grows with lifetimes, not with T x objects.
        half = int(math.ceil(r)) + 2
        low, high = along_scene - extent - half, along_scene + half
        if direction in ("left", "up"):  # offsets never decrease
            a, b = np.searchsorted(offsets, low, "left"), np.searchsorted(offsets, high, "right")
        else:  # offsets never increase
            a, b = np.searchsorted(-offsets, -high, "left"), np.searchsorted(-offsets, -low, "right")
        if a >= b:
            continue
        along_image = along_scene - offsets[a:b]
        cx, cy = along_image, np.full_like(along_image, across_pos)
        if not horizontal:
            cx, cy = cy, cx
        track = _Track(shape, size, texture, r, "static_in_scene", speed, int(a), cx, cy, np.full(b - a, angle))
        seen = np.flatnonzero(track.window_in_view(H, W))
        if seen.size:
            _trim(track, track.start + int(seen[0]), track.start + int(seen[-1]) + 1)
            tracks.append(track)
    return tracks


def _trim(track: _Track, first: int, stop: int) -> None:
    """Restrict a track's path to absolute frames ``first .. stop - 1``."""
    a, b = first - track.start, stop - track.start
    track.cx, track.cy, track.angle = track.cx[a:b], track.cy[a:b], track.angle[a:b]
    track.start = first


def _heading(rng: np.random.Generator, normal: np.ndarray, spread: float) -> np.ndarray:
    """A unit vector within ``spread`` radians of the unit vector ``normal``."""
    phi = math.atan2(normal[1], normal[0]) + rng.uniform(-spread, spread)
    return np.array([math.cos(phi), math.sin(phi)])


_SIDES = {  # border → (axis, outward unit normal)
    "left": (0, np.array([-1.0, 0.0])),
    "right": (0, np.array([1.0, 0.0])),
    "top": (1, np.array([0.0, -1.0])),
    "bottom": (1, np.array([0.0, 1.0])),
}


def _busy_track(cfg: LongVideoConfig, rng: np.random.Generator, birth: int, initial: bool) -> _Track:
    """One busy-scene object born at frame ``birth``: enters (or appears, or is there from frame 0), rests or
    bounces inside the frame, then leaves (or vanishes); the path ends where it has left or vanished, or at ``T``."""
    T, H, W = cfg.num_frames, cfg.height, cfg.width
    shape, size, texture, r = _draw_look(cfg, rng)
    unit = min(H, W)
    lo, hi = np.array([r, r]), np.array([W - 1 - r, H - 1 - r])  # the box where the object is wholly inside
    lifetime = int(rng.integers(cfg.min_lifetime, cfg.max_lifetime + 1))
    if initial:  # staggered: objects present at frame 0 leave at different times
        lifetime = max(1, int(round(lifetime * rng.uniform(0.3, 1.0))))
    pieces = []
    if initial or rng.random() < cfg.pop_probability:
        p_in = rng.uniform(lo, hi)
        d_in = 0
    else:
        side = list(_SIDES)[rng.integers(4)]
        axis, normal = _SIDES[side]
        velocity = rng.uniform(0.6, 1.0) * cfg.max_speed * unit * _heading(rng, -normal, math.radians(35))
        p_in = rng.uniform(lo, hi)
        p_in[axis] = lo[axis] if normal[axis] < 0 else hi[axis]
        d_in = int(math.ceil((2 * r + 1) / abs(velocity[axis])))  # from wholly outside to wholly inside
        pieces.append(p_in + velocity * np.arange(-d_in, 0)[:, None])
    still = rng.random() < cfg.still_probability
    speed = 0.0 if still else float(rng.uniform(0.25, 1.0) * cfg.max_speed * unit)
    theta = rng.uniform(0, 2 * math.pi)
    velocity = speed * np.array([math.cos(theta), math.sin(theta)])
    middle = max(1, lifetime - d_in)
    steps = np.arange(min(middle, T - birth - d_in))[:, None]
    free = p_in + velocity * steps
    pieces.append(np.stack([_reflect(free[:, 0], lo[0], hi[0]), _reflect(free[:, 1], lo[1], hi[1])], axis=1))
    if birth + d_in + middle < T and rng.random() >= cfg.pop_probability:
        p_out = pieces[-1][-1]
        # Leave through the nearest border, heading roughly outwards.
        gaps = {"left": p_out[0], "right": W - 1 - p_out[0], "top": p_out[1], "bottom": H - 1 - p_out[1]}
        side = min(gaps, key=gaps.get)
        axis, normal = _SIDES[side]
        exit_velocity = rng.uniform(0.6, 1.0) * cfg.max_speed * unit * _heading(rng, normal, math.radians(35))
        d_out = int(math.ceil((gaps[side] + r + 1) / abs(exit_velocity[axis])))  # until wholly outside
        pieces.append(p_out + exit_velocity * np.arange(1, d_out + 1)[:, None])
    path = np.concatenate(pieces)[: T - birth]
    angle = np.full(path.shape[0], rng.uniform(-0.25, 0.25))
    return _Track(shape, size, texture, r, "static" if still else "bounce", speed, birth, path[:, 0], path[:, 1], angle)


def _busy_tracks(cfg: LongVideoConfig, rng: np.random.Generator) -> list[_Track]:
    """``objects_on_screen`` slots, each showing one object after another (so at most that many at once)."""
    tracks: list[_Track] = []
    for _slot in range(cfg.objects_on_screen):
        birth, initial = 0, True
        while birth < cfg.num_frames:
            track = _busy_track(cfg, rng, birth, initial)
            tracks.append(track)
            birth, initial = track.stop + int(rng.integers(0, 9)), False
    # Random painting order, so objects pass behind each other both ways.
    return [tracks[i] for i in rng.permutation(len(tracks))]


def _occluder_inscribed_radius(radius: float) -> float:
    """Inscribed radius of an occluder that can hide an object of circumradius ``radius`` with some slack."""
    return max(1.4 * radius, radius + 2.5)


def _plant_occlusion(
    cfg: LongVideoConfig,
    rng: np.random.Generator,
    tracks: list[_Track],
    spans: np.ndarray,
    boundary: int,
    hidden_until: dict[int, int],
) -> _Track | None:
    """An occluder that completely hides an object over a few frames spanning ``boundary``, or ``None`` when no
    object is wholly inside the frame around it (and not hidden shortly before: ``hidden_until`` maps a track to
    the last frame of its latest planted occlusion).

    The occluder moves relative to the hidden object along a straight line through its centre. While the
    distance between the centres plus the hidden object's circumradius stays below the occluder's inscribed
    radius (less a margin), the occluder's pixels contain all of the hidden object's pixels: the relative speed
    is chosen so that this holds on exactly the planned frames."""
    T, H, W = cfg.num_frames, cfg.height, cfg.width
    hidden = int(rng.integers(cfg.occlusion_frames[0], cfg.occlusion_frames[1] + 1))
    first = int(rng.integers(boundary - hidden + 1, boundary))  # hidden in the frames either side of the boundary
    last = first + hidden - 1
    lo, hi = first - 2, last + 2  # wholly inside (so visible, barring chance occlusions) just before and after
    if lo < 0 or hi >= T:
        return None
    shapes = [s for s in cfg.shapes if s in _OCCLUDER_SHAPES] or ["circle"]
    largest = _MAX_OCCLUDER_RADIUS * min(H, W) * max(_OCCLUDER_SHAPES[s] for s in shapes)  # inscribed radius
    candidates = []
    for index in np.flatnonzero((spans[:, 0] <= lo) & (hi < spans[:, 1])).tolist():
        track = tracks[index]
        if _occluder_inscribed_radius(track.radius) > largest:
            continue
        if lo <= hidden_until.get(index, -T) + 8:
            continue
        if track.wholly_inside(H, W)[lo - track.start : hi + 1 - track.start].all():
            candidates.append(index)
    if not candidates:
        return None
    weights = 1.0 / np.array([tracks[i].radius for i in candidates]) ** 2  # small objects hide more naturally
    target_index = candidates[rng.choice(len(candidates), p=weights / weights.sum())]
    target = tracks[target_index]
    inscribed = _occluder_inscribed_radius(target.radius)
    shapes = [s for s in shapes if inscribed / _OCCLUDER_SHAPES[s] <= _MAX_OCCLUDER_RADIUS * min(H, W)]
    shape = shapes[rng.integers(len(shapes))]
    slack = inscribed - target.radius - _COVER_MARGIN
    # |offset| <= slack on the `hidden` frames around the middle one and beyond it on the next frames out.
    relative_speed = slack / ((hidden - 1) / 2 + 0.25)
    before, after = (int(v) for v in rng.integers(6, 17, size=2))
    start, stop = max(target.start, first - before), min(target.stop, last + after + 1)
    direction = _heading(rng, np.array([1.0, 0.0]), math.pi)
    offset = relative_speed * (np.arange(start, stop) - (first + last) / 2)[:, None] * direction
    on_target = slice(start - target.start, stop - target.start)
    texture = "plain"
    if cfg.textures and rng.random() < cfg.texture_probability:
        texture = cfg.textures[rng.integers(len(cfg.textures))]
    return _Track(
        shape,
        "large",
        texture,
        inscribed / _OCCLUDER_SHAPES[shape],
        "passes_in_front",
        float(relative_speed),
        start,
        target.cx[on_target] + offset[:, 0],
        target.cy[on_target] + offset[:, 1],
        np.full(stop - start, rng.uniform(-0.25, 0.25)),
        occludes=target_index,
        hidden_frames=(first, last),
    )


def _occluders(cfg: LongVideoConfig, rng: np.random.Generator, tracks: list[_Track]) -> list[_Track]:
    """Planted occlusions at chunk boundaries: each boundary gets one with probability ``occlusion_probability``;
    when that draws none, the first boundary (in random order) that allows one gets one."""
    boundaries = list(range(cfg.chunk_size, cfg.num_frames, cfg.chunk_size))
    planted: list[_Track] = []
    if not cfg.occlusion_probability or not boundaries:
        return planted
    spans = _spans(tracks)
    hidden_until: dict[int, int] = {}
    draws = rng.random(len(boundaries)) < cfg.occlusion_probability
    chosen = [b for b, draw in zip(boundaries, draws, strict=True) if draw]  # in increasing order
    fallback = [boundaries[i] for i in rng.permutation(len(boundaries))]
    for k, boundary in enumerate(chosen + fallback):
        if k >= len(chosen) and planted:
            break
        occluder = _plant_occlusion(cfg, rng, tracks, spans, boundary, hidden_until)
        if occluder is not None:
            planted.append(occluder)
            hidden_until[occluder.occludes] = occluder.hidden_frames[1]
    return planted


def _assign_colours(cfg: LongVideoConfig, rng: np.random.Generator, tracks: list[_Track]) -> np.ndarray:
    """Colour every track differently from the tracks in view at any of the same frames; returns which tracks got
    a colour.

    Greedy interval colouring in order of the first frame in view never needs more colours than objects in view
    at once, so the scene objects always get one (``objects_on_screen <= len(colours)``) except in crowded pans;
    occluders are coloured after them and are dropped when no colour is free."""
    H, W = cfg.height, cfg.width
    spans = np.full((len(tracks), 2), -1, dtype=np.int64)
    for i, track in enumerate(tracks):
        seen = np.flatnonzero(track.window_in_view(H, W))
        if seen.size:
            spans[i] = track.start + seen[0], track.start + seen[-1]
    order = sorted(np.flatnonzero(spans[:, 0] >= 0), key=lambda i: (tracks[i].occludes is not None, spans[i, 0], i))
    coloured = np.zeros(len(tracks), dtype=bool)
    for i in order:
        overlapping = coloured & (spans[:, 0] <= spans[i, 1]) & (spans[i, 0] <= spans[:, 1])
        taken = {tracks[j].colour for j in np.flatnonzero(overlapping)}
        free = [c for c in cfg.colours if c not in taken]
        if free:
            tracks[i].colour = free[rng.integers(len(free))]
            coloured[i] = True
    return coloured


@dataclass
class _Plan:
    cfg: LongVideoConfig  # resolved
    tracks: list[_Track]  # in painting order; plan id = index + 1 while rendering
    texture: np.ndarray  # background texture, (H + travel, W, 3) or (H, W + travel, 3) when panning
    offsets: np.ndarray | None  # (T,) camera offset along the pan axis, None without a pan
    background: dict[str, Any]
    spans: np.ndarray = dataclasses.field(init=False)  # (num_tracks, 2): first frame and end of every path

    def __post_init__(self):
        self.spans = _spans(self.tracks)


def _plan(cfg: LongVideoConfig, seed: int) -> _Plan:
    cfg = cfg.resolved()
    rng = np.random.default_rng([int(seed), _RNG_STREAM, LONG_VIDEO_SCENARIOS.index(cfg.scenario) + 1])
    H, W = cfg.height, cfg.width
    kind = cfg.backgrounds[rng.integers(len(cfg.backgrounds))]
    background = {"kind": kind, "pan": "none", "speed": 0.0}
    offsets = None
    if cfg.scenario == "panning":
        direction, speed, offsets, travel = _pan_offsets(cfg, rng)
        horizontal = direction in ("left", "right")
        texture = _background_texture(kind, H + (0 if horizontal else travel), W + (travel if horizontal else 0), rng)
        background.update(pan=direction, speed=speed)
        tracks = _panning_tracks(cfg, rng, direction, speed, offsets, travel)
    else:
        texture = _background_texture(kind, H, W, rng)
        tracks = _static_tracks(cfg, rng) if cfg.scenario == "static" else _busy_tracks(cfg, rng)
    tracks = tracks + _occluders(cfg, rng, tracks)  # occluders are painted last, in front of everything
    coloured = _assign_colours(cfg, rng, tracks)
    keep = [i for i, t in enumerate(tracks) if coloured[i] and (t.occludes is None or coloured[t.occludes])]
    new_index = {old: new for new, old in enumerate(keep)}
    for i in keep:
        if tracks[i].occludes is not None:
            tracks[i].occludes = new_index[tracks[i].occludes]
    return _Plan(cfg, [tracks[i] for i in keep], texture, offsets, background)


# --------------------------------------------------------------------------------------------------------------
# Rendering a block of frames and reading the metadata off the rendered ids


def _block_object(track: _Track, plan_id: int, start: int, stop: int) -> _Object:
    """The track as a renderer object over frames ``start .. stop - 1`` (invisible outside its path)."""
    a, b = max(start, track.start), min(stop, track.stop)
    arrays = {name: np.zeros(stop - start) for name in ("cx", "cy", "angle")}
    for name, array in arrays.items():
        array[a - start : b - start] = getattr(track, name)[a - track.start : b - track.start]
    visible = np.zeros(stop - start, dtype=bool)
    visible[a - start : b - start] = True
    return _Object(
        id=plan_id,
        shape=track.shape,
        colour=track.colour,
        size=track.size,
        texture=track.texture,
        motion=track.motion,
        radius=track.radius,
        visible=visible,
        texture_period=max(3.0, track.radius / 3.0),
        **arrays,
    )


def _render(plan: _Plan, start: int, stop: int, video: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Frames ``start .. stop - 1``: ``(video, ids)`` with plan ids (track index + 1). With ``video`` given (a
    scratch buffer) the background is not drawn: only the ids are wanted."""
    cfg = plan.cfg
    H, W = cfg.height, cfg.width
    ids = np.zeros((stop - start, H, W), dtype=np.uint16 if len(plan.tracks) < 2**16 else np.uint32)
    if video is None:
        video = np.empty((stop - start, H, W, 3), dtype=np.uint8)
        if plan.offsets is None:
            video[:] = plan.texture
        else:
            horizontal = plan.background["pan"] in ("left", "right")
            for k, off in enumerate(plan.offsets[start:stop]):
                video[k] = plan.texture[:, off : off + W] if horizontal else plan.texture[off : off + H]
    for index in np.flatnonzero((plan.spans[:, 0] < stop) & (start < plan.spans[:, 1])).tolist():
        _render_object(video, ids, _block_object(plan.tracks[index], index + 1, start, stop))
    return video, ids


def _visible_pairs(ids: np.ndarray, start: int, num_ids: int) -> tuple[np.ndarray, np.ndarray]:
    """``(frames, plan ids)`` of every object with at least one visible pixel in a block of rendered ids."""
    codes = ids.reshape(ids.shape[0], -1) + (np.arange(ids.shape[0], dtype=np.int64) * num_ids)[:, None]
    present = np.bincount(codes.reshape(-1), minlength=ids.shape[0] * num_ids).reshape(ids.shape[0], num_ids)
    present[:, 0] = 0  # background
    frames, plan_ids = np.nonzero(present)
    return frames + start, plan_ids


def _first_true(mask: np.ndarray, default: int) -> int:
    hits = np.flatnonzero(mask)
    return int(hits[0]) if hits.size else default


def _metadata(plan: _Plan, frames: np.ndarray, plan_ids: np.ndarray):
    """Final ids (by first appearance), object records and events from the visible (frame, plan id) pairs.

    Returns ``(lookup, objects, events)``; ``lookup[plan id]`` is the final id (``0`` for a never-visible object,
    which is left out)."""
    cfg = plan.cfg
    T, H, W, chunk = cfg.num_frames, cfg.height, cfg.width, cfg.chunk_size
    order = np.lexsort((frames, plan_ids))
    plan_ids, frames = plan_ids[order], frames[order]
    new_object = np.r_[True, plan_ids[1:] != plan_ids[:-1]] if plan_ids.size else np.zeros(0, bool)
    heads = np.flatnonzero(new_object)
    tails = np.r_[heads[1:], plan_ids.size] - 1
    present, first, last = plan_ids[heads], frames[heads], frames[tails]
    by_appearance = np.lexsort((present, first))
    lookup = np.zeros(len(plan.tracks) + 1, dtype=np.int64)
    lookup[present[by_appearance]] = np.arange(1, present.size + 1)
    # Runs of frames without a visible pixel between two visible frames of the same object.
    gap = np.flatnonzero(~new_object[1:] & (np.diff(frames) > 1)) if frames.size else np.zeros(0, np.int64)
    gaps = list(zip(plan_ids[gap].tolist(), (frames[gap] + 1).tolist(), (frames[gap + 1] - 1).tolist(), strict=True))

    objects, events = [], []
    occluders = {}
    for plan_id, track in enumerate(plan.tracks, start=1):
        if track.occludes is not None and lookup[plan_id]:
            occluders.setdefault(track.occludes + 1, []).append((int(lookup[plan_id]), track.hidden_frames))
    for k in by_appearance:
        plan_id, seen, gone = int(present[k]), int(first[k]), int(last[k])
        track = plan.tracks[plan_id - 1]
        oid = int(lookup[plan_id])
        hider = track.occludes
        objects.append(
            {
                "id": oid,
                "shape": track.shape,
                "colour": track.colour,
                "size": track.size,
                "texture": track.texture,
                "radius": round(track.radius, 3),
                "motion": track.motion,
                "speed": round(track.speed, 3),
                "z": plan_id - 1,
                "first_frame": seen,
                "last_frame": gone,
                "passes_in_front_of": None if hider is None else int(lookup[hider + 1]) or None,
            }
        )
        inside = track.wholly_inside(H, W)
        in_scene = track.motion == "static_in_scene"  # exists outside the view too
        if seen > 0:
            existed = in_scene or seen - 1 >= track.start
            if existed and not inside[seen - track.start]:
                end = seen + _first_true(inside[seen - track.start : gone + 1 - track.start], gone - seen)
                events.append({"kind": "enter", "id": oid, "start": seen, "end": end})
            else:
                events.append({"kind": "appear", "id": oid, "start": seen, "end": seen})
        if gone < T - 1:
            exists = in_scene or gone + 1 < track.stop
            if exists and not inside[gone - track.start]:
                back = _first_true(inside[seen - track.start : gone + 1 - track.start][::-1], gone - seen + 1)
                events.append({"kind": "exit", "id": oid, "start": gone - back + 1, "end": gone})
            else:
                events.append({"kind": "disappear", "id": oid, "start": gone, "end": gone})
    for plan_id, a, b in gaps:
        by = [o for o, (h0, h1) in occluders.get(plan_id, []) if a <= h0 and h1 <= b]
        events.append(
            {
                "kind": "occluded",
                "id": int(lookup[plan_id]),
                "start": a,
                "end": b,
                "by": by[0] if by else None,
                "across_chunk_boundary": (b // chunk) * chunk >= a,
            }
        )
    events.sort(key=lambda e: (e["start"], e["id"], EVENT_KINDS.index(e["kind"])))
    return lookup, objects, events


# --------------------------------------------------------------------------------------------------------------
# Public API


def _check_call(config: LongVideoConfig | None, seed: int) -> LongVideoConfig:
    cfg = LongVideoConfig() if config is None else config
    if not isinstance(cfg, LongVideoConfig):
        raise TypeError(f"`config` must be a LongVideoConfig, got {type(cfg).__name__}")
    if not _is_int(seed) or seed < 0:
        raise ValueError(f"`seed` must be a non-negative int, got {seed!r}")
    return cfg


def _block_output(plan: _Plan, video: np.ndarray, ids: np.ndarray, lookup: np.ndarray) -> dict[str, Any]:
    segmentation = lookup[ids]
    labels = downsample_labels(segmentation, plan.cfg.mask_stride, plan.cfg.mask_downsample)
    return {"video": video, "segmentation": segmentation, "segmentation_labels": labels}


def iter_long_video(
    config: LongVideoConfig | None = None, seed: int = 0, block_frames: int = 256
) -> Iterator[dict[str, Any]]:
    """Render video ``(config, seed)`` in blocks of ``block_frames`` consecutive frames, in bounded memory.

    Yields dicts with the keys of :func:`generate_long_video` plus ``start`` (the block's first frame): the
    arrays hold that block's frames (the last block may be shorter), the metadata (``objects``, ``events``,
    ``scenario``, ``seed``, ``background``) is the whole video's. Concatenating the blocks' arrays gives exactly
    :func:`generate_long_video`'s. The metadata is read off the rendered ids, so with more than one block every
    block is rendered twice (first the ids alone, for the metadata).
    """
    cfg = _check_call(config, seed)
    _require_positive_int(block_frames, "block_frames")
    plan = _plan(cfg, seed)
    T, num_ids = cfg.num_frames, len(plan.tracks) + 1
    starts = range(0, T, block_frames)
    if block_frames >= T:
        rendered = _render(plan, 0, T)
        pairs = [_visible_pairs(rendered[1], 0, num_ids)]
    else:
        scratch = np.empty((block_frames, cfg.height, cfg.width, 3), dtype=np.uint8)
        pairs = []
        for start in starts:
            stop = min(start + block_frames, T)
            pairs.append(_visible_pairs(_render(plan, start, stop, scratch[: stop - start])[1], start, num_ids))
    lookup, objects, events = _metadata(
        plan, np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])
    )
    metadata = {
        "objects": objects,
        "events": events,
        "scenario": cfg.scenario,
        "seed": int(seed),
        "background": plan.background,
    }
    for start in starts:
        if block_frames < T:
            rendered = _render(plan, start, min(start + block_frames, T))
        yield {**_block_output(plan, *rendered, lookup), **metadata, "start": start}


def generate_long_video(config: LongVideoConfig | None = None, seed: int = 0) -> dict[str, Any]:
    """Render long video ``(config, seed)`` in one piece.

    Returns a dict with ``video`` uint8 ``(T, H, W, 3)``; ``segmentation`` int64 ``(T, H, W)`` (``0``
    background, objects ``1..M``); ``segmentation_labels`` int64 ``(T, H/s, W/s)``; ``objects`` and ``events``
    (see the module docstring); ``background`` (``{"kind", "pan", "speed"}``); ``scenario``; ``seed``. For long or
    large videos use :func:`iter_long_video` or :func:`write_long_video`.
    """
    cfg = _check_call(config, seed)
    block = next(iter_long_video(cfg, seed, block_frames=cfg.num_frames))
    del block["start"]
    return block


def write_long_video(
    path: str | os.PathLike,
    config: LongVideoConfig | None = None,
    seed: int = 0,
    block_frames: int = 256,
    fps: int = 24,
    *,
    codec: str | None = None,
) -> dict[str, Any]:
    """Encode long video ``(config, seed)`` to an mp4 at ``path`` block by block (PyAV, yuv420p, near-lossless
    settings as :func:`~trajtok_hf.data.synthetic.write_mp4`), never holding more than ``block_frames`` frames.

    ``codec`` defaults to :func:`~trajtok_hf.data.synthetic.default_video_codec`. The ground truth ids are not
    written: :func:`iter_long_video` with the same ``(config, seed)`` reproduces them block by block.

    Returns the metadata: ``objects``, ``events``, ``background``, ``scenario``, ``seed``, ``num_frames``,
    ``height``, ``width``, ``fps``, ``codec``.
    """
    cfg = _check_call(config, seed)
    _require_positive_int(block_frames, "block_frames")
    _require_positive_int(fps, "fps")
    metadata: dict[str, Any] = {}
    with Mp4Writer(path, fps=int(fps), codec=codec) as writer:
        for block in iter_long_video(cfg, seed, block_frames):
            writer.write(block["video"])
            metadata = {key: block[key] for key in ("objects", "events", "background", "scenario", "seed")}
    metadata.update(num_frames=cfg.num_frames, height=cfg.height, width=cfg.width, fps=int(fps), codec=writer.codec)
    return metadata
