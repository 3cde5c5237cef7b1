"""Procedural videos with exact per-pixel trajectory ground truth and motion-aware captions.

Every clip shows 1..N coloured shapes (circle, square, triangle, diamond, star, cross, ring; small or large;
plain, striped or checkered) moving over a textured background (value noise, gradient, stripes or checker, which
may pan slowly). Motions: linear (moves left/right, rises, falls), bouncing off the walls, rotating in place
(clockwise / counterclockwise), entering or leaving the frame, appearing / disappearing mid-clip, and staying
still. Objects are painted in z-order (object ``k`` over objects ``< k``), so occlusions are exact: the ground
truth of a pixel is the object actually visible there.

Ground truth per clip (the label convention of the segmentation supervision, paper Sec. 3):

* ``segmentation`` ``(T, H, W)`` int64 — ``0`` background, ``k`` = object ``k`` (``1..n``); with
  ``background_as_trajectory=False`` the background is ``-100`` (unlabeled) instead of trajectory 0.
* ``segmentation_labels`` ``(T, H/s, W/s)`` int64 on the mask grid (``s = mask_stride``, default 4), by
  majority vote inside each ``s × s`` cell (``mask_downsample="mode"``, ties → smaller id) or the cell's
  centre pixel (``"nearest"``); see :func:`trajtok_hf.data.pseudo_labels.downsample_labels`.
* ``caption`` names every object with its attributes *and* motion, e.g. ``"a large red circle moves left while
  a small blue square falls"``; the phrasing is a deterministic function of the attributes, and two clips with
  the same objects but different motions get different captions, so text-video retrieval needs more than one
  frame.

Clip ``(seed, index)`` is a pure function of the config: ``numpy.random.default_rng([seed, index])`` drives all
sampling, so ``generate_clip(cfg, seed, index)`` is reproducible anywhere and datasets built with different seeds
do not overlap by construction (``seed + index`` arithmetic would).

Rendering is vectorised: each object is rasterised once for all ``T`` frames inside a small window that follows
it (``(T, S, S)`` coordinate grids, ``S ≈ 2 × radius``), then scattered into the frame with one fancy-index
assignment, so cost scales with object area, not frame area
(``tests/data/test_synthetic.py::test_throughput_at_16x224x224`` measures the throughput at 16×224×224).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .pseudo_labels import DOWNSAMPLE_MODES, IGNORE_INDEX, downsample_labels

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 38, 38),
    "green": (34, 177, 76),
    "blue": (40, 90, 230),
    "yellow": (245, 215, 30),
    "purple": (150, 60, 200),
    "orange": (255, 140, 20),
    "white": (245, 245, 245),
    "cyan": (30, 210, 225),
    "pink": (250, 120, 190),
}
"""Named object colours (RGB). Saturated or bright, while backgrounds stay grey-ish, so objects stand out."""

SHAPES = ("circle", "square", "triangle", "diamond", "star", "cross", "ring")
# A rotating circle/ring is invisible as motion; such draws are re-drawn (see _sample_object).
_ROTATION_INVARIANT_SHAPES = ("circle", "ring")

SIZES: dict[str, tuple[float, float]] = {"small": (0.07, 0.09), "large": (0.13, 0.16)}
"""Circumradius range of each size word, as a fraction of ``min(height, width)``."""

TEXTURES = ("striped", "checkered")
BACKGROUNDS = ("noise", "gradient", "stripes", "checker")

MOTIONS: dict[str, str] = {
    "static": "stays still",
    "move_left": "moves left",
    "move_right": "moves right",
    "move_up": "rises",
    "move_down": "falls",
    "bounce": "bounces around",
    "rotate_cw": "rotates clockwise",
    "rotate_ccw": "rotates counterclockwise",
    "enter_left": "enters from the left",
    "enter_right": "enters from the right",
    "enter_top": "enters from the top",
    "enter_bottom": "enters from the bottom",
    "exit_left": "leaves to the left",
    "exit_right": "leaves to the right",
    "exit_top": "leaves through the top",
    "exit_bottom": "leaves through the bottom",
    "appear": "appears",
    "disappear": "disappears",
}
"""Motion name → caption phrase (the verb phrase that follows the object's description)."""

MOTION_WORDINGS: dict[str, tuple[str, ...]] = {
    "static": ("stays still", "does not move", "stands still", "rests in place", "holds its position"),
    "move_left": ("moves left", "slides to the left", "travels leftward", "heads left", "drifts to the left"),
    "move_right": ("moves right", "slides to the right", "travels rightward", "heads right", "drifts to the right"),
    "move_up": ("rises", "moves up", "climbs upward", "goes up", "floats upward"),
    "move_down": ("falls", "moves down", "sinks downward", "goes down", "drops downward"),
    "bounce": ("bounces around", "bounces off the edges", "zigzags around", "ricochets around", "keeps rebounding"),
    "rotate_cw": ("rotates clockwise", "spins clockwise", "turns clockwise", "revolves clockwise", "twirls clockwise"),
    "rotate_ccw": (
        "rotates counterclockwise",
        "spins counterclockwise",
        "turns counterclockwise",
        "revolves counterclockwise",
        "twirls counterclockwise",
    ),
    "enter_left": (
        "enters from the left",
        "comes in from the left",
        "arrives from the left",
        "slides in from the left",
        "emerges from the left edge",
    ),
    "enter_right": (
        "enters from the right",
        "comes in from the right",
        "arrives from the right",
        "slides in from the right",
        "emerges from the right edge",
    ),
    "enter_top": (
        "enters from the top",
        "comes in from the top",
        "arrives from the top",
        "slides in from the top",
        "emerges from the top edge",
    ),
    "enter_bottom": (
        "enters from the bottom",
        "comes in from the bottom",
        "arrives from the bottom",
        "slides in from the bottom",
        "emerges from the bottom edge",
    ),
    "exit_left": (
        "leaves to the left",
        "exits to the left",
        "goes out on the left",
        "slides out to the left",
        "vanishes past the left edge",
    ),
    "exit_right": (
        "leaves to the right",
        "exits to the right",
        "goes out on the right",
        "slides out to the right",
        "vanishes past the right edge",
    ),
    "exit_top": (
        "leaves through the top",
        "exits through the top",
        "goes out at the top",
        "slides out through the top",
        "vanishes past the top edge",
    ),
    "exit_bottom": (
        "leaves through the bottom",
        "exits through the bottom",
        "goes out at the bottom",
        "slides out through the bottom",
        "vanishes past the bottom edge",
    ),
    "appear": ("appears", "shows up", "comes into view", "pops into view", "materialises"),
    "disappear": ("disappears", "vanishes", "goes out of view", "pops out of view", "dematerialises"),
}
"""Motion → its wordings: the first is :data:`MOTIONS`' (``caption_wording="fixed"``); the last is held out of
training captions (``caption_wording="held_out"`` uses only it), a fifth of the wordings. Mirrored motions have
mirrored wordings at the same position, so flipping a motion keeps the wording."""

SHAPE_WORDS: dict[str, tuple[str, str]] = {
    "circle": ("circle", "disc"),
    "square": ("square", "box"),
    "triangle": ("triangle", "wedge"),
    "diamond": ("diamond", "rhombus"),
    "star": ("star", "starburst"),
    "cross": ("cross", "plus sign"),
    "ring": ("ring", "hoop"),
}
"""Shape → (the training word, a held-out word that no ``"fixed"`` or ``"train"`` caption contains)."""

CLAUSE_TEMPLATES: tuple[tuple[str, str, str], ...] = (
    ("{} while {}", ", ", " and "),
    ("{} as {}", ", ", ", and "),
    ("{}, and {}", "; ", "; and "),
    ("{}; meanwhile, {}", ", ", ", while "),
    ("{} and at the same time {}", "; ", ", and also "),
)
"""How the object clauses are joined: (two clauses, between clauses of a longer list, before its last clause). The
first is the ``"fixed"`` template; the last is held out like the last wording."""

SPEED_WORDINGS: dict[str, tuple[str, ...]] = {
    "slowly": ("slowly", "at a slow pace", "unhurriedly", "gently", "at a crawl"),
    "quickly": ("quickly", "at a fast pace", "rapidly", "swiftly", "at high speed"),
}
"""Speed class → its wordings, indexed like :data:`MOTION_WORDINGS` (the object's ``wording``; the last is held out).
Captioned with ``SyntheticVideoConfig(caption_speed=True)`` for the straight moves (``move_*``)."""

OCCLUSION_WORDINGS: tuple[str, ...] = ("in front of", "covering part of", "passing over", "on top of", "hiding part of")
"""How a clause names an object it covers, indexed like :data:`MOTION_WORDINGS` (the last is held out): "a red circle
rises, in front of the blue square". Captioned with ``SyntheticVideoConfig(caption_occlusion=True)``."""

SPEED_FLIPS = {"slowly": "quickly", "quickly": "slowly"}

CAPTION_FACTS = ("speed", "occlusion")
"""The facts a caption can state besides motion and direction: the ``caption_facts`` of the scripts
(:func:`caption_fact_options`)."""


def caption_fact_options(caption_facts: Sequence[str] = (), shuffle_clauses: bool = False) -> dict[str, bool]:
    """The :class:`SyntheticVideoConfig` fields for the facts ``caption_facts`` (entries of :data:`CAPTION_FACTS`)
    and the clause order: ``{"caption_speed", "caption_occlusion", "shuffle_clauses"}``, what the scripts'
    ``--caption_facts`` / ``--shuffle_clauses`` turn on."""
    if isinstance(caption_facts, str) or any(fact not in CAPTION_FACTS for fact in caption_facts):
        raise ValueError(f"`caption_facts` must be a sequence of entries of {CAPTION_FACTS}, got {caption_facts!r}")
    return {
        "caption_speed": "speed" in caption_facts,
        "caption_occlusion": "occlusion" in caption_facts,
        "shuffle_clauses": shuffle_clauses,
    }


CAPTION_WORDINGS = ("fixed", "train", "held_out")

_MIRRORED_MOVES = {
    "move_left": "move_right",
    "move_right": "move_left",
    "move_up": "move_down",
    "move_down": "move_up",
    "rotate_cw": "rotate_ccw",
    "rotate_ccw": "rotate_cw",
}

DIRECTION_FLIPS: dict[str, str] = {
    **_MIRRORED_MOVES,
    "enter_left": "enter_right",
    "enter_right": "enter_left",
    "enter_top": "enter_bottom",
    "enter_bottom": "enter_top",
    "exit_left": "exit_right",
    "exit_right": "exit_left",
    "exit_top": "exit_bottom",
    "exit_bottom": "exit_top",
}
"""Motion → the same motion in the mirrored direction (left ↔ right, up ↔ down, clockwise ↔ counterclockwise); motions
without a direction (static, bounce, appear, disappear) are not keys."""

TIME_REVERSALS: dict[str, str] = {
    "static": "static",
    "bounce": "bounce",
    **_MIRRORED_MOVES,
    "enter_left": "exit_left",
    "exit_left": "enter_left",
    "enter_right": "exit_right",
    "exit_right": "enter_right",
    "enter_top": "exit_top",
    "exit_top": "enter_top",
    "enter_bottom": "exit_bottom",
    "exit_bottom": "enter_bottom",
    "appear": "disappear",
    "disappear": "appear",
}
"""Motion → what the clip played backwards shows (entering ↔ leaving through the same side, appearing ↔
disappearing); static and bounce map to themselves."""

HORIZONTAL_MIRRORS: dict[str, str] = {
    "move_left": "move_right",
    "move_right": "move_left",
    "rotate_cw": "rotate_ccw",
    "rotate_ccw": "rotate_cw",
    "enter_left": "enter_right",
    "enter_right": "enter_left",
    "exit_left": "exit_right",
    "exit_right": "exit_left",
}
"""Motion → what a left-right mirrored clip shows (other motions are unchanged)."""

VERTICAL_MIRRORS: dict[str, str] = {
    "move_up": "move_down",
    "move_down": "move_up",
    "rotate_cw": "rotate_ccw",
    "rotate_ccw": "rotate_cw",
    "enter_top": "enter_bottom",
    "enter_bottom": "enter_top",
    "exit_top": "exit_bottom",
    "exit_bottom": "exit_top",
}
"""Motion → what an upside-down mirrored clip shows (other motions are unchanged)."""

CLIP_TRANSFORMS: dict[str, tuple[dict[str, str], str]] = {
    "reverse": (TIME_REVERSALS, "played backwards"),
    "mirror_horizontal": (HORIZONTAL_MIRRORS, "mirrored left to right"),
    "mirror_vertical": (VERTICAL_MIRRORS, "mirrored upside down"),
}
"""Name → (motion mapping, description) of the clip transforms of :func:`transform_clip`."""


def motion_kind(motion: str) -> str:
    """The kind of a motion of :data:`MOTIONS`, without its direction: ``"move_left"`` → ``"move"``,
    ``"rotate_cw"`` → ``"rotate"``, ``"enter_top"`` → ``"enter"``, ``"exit_bottom"`` → ``"exit"``; a motion without a
    direction (``"static"``, ``"bounce"``, ``"appear"``, ``"disappear"``) is its own kind. Two objects of one clip
    whose motions share a kind differ only in direction: the hardest case of the object-swap probe."""
    if motion not in MOTIONS:
        raise ValueError(f"`motion` must be one of {tuple(MOTIONS)}, got {motion!r}")
    return motion.split("_", 1)[0]


_MAX_ATTEMPTS = 50


@dataclass
class SyntheticVideoConfig:
    """Parameters of the procedural video generator.

    Args:
        num_frames: frames per clip (``T``). With ``num_frames=1`` only ``"static"`` makes sense and the other
            motions are dropped from the draw.
        height, width: frame size in pixels; both must be divisible by ``mask_stride``.
        min_objects, max_objects: number of objects per clip, drawn uniformly; objects in one clip get distinct
            colours, so ``max_objects <= len(colours)``.
        mask_stride: downsampling factor of ``segmentation_labels`` (the model's mask grid, 1/4 in TrajTok).
        mask_downsample: ``"mode"`` (majority per cell) or ``"nearest"`` (cell-centre pixel).
        shapes, colours, sizes, textures, motions, backgrounds: the vocabularies to draw from (subsets of
            :data:`SHAPES`, :data:`COLOURS`, :data:`SIZES`, :data:`TEXTURES`, :data:`MOTIONS`, :data:`BACKGROUNDS`).
        texture_probability: chance an object is striped/checkered instead of plain.
        background_pan_probability: chance the background drifts (a slow camera pan).
        max_pan_speed: largest background drift in pixels per frame.
        background_as_trajectory: ``True`` — background is trajectory ``0``; ``False`` — background pixels are
            ``-100`` (unlabeled) in both ``segmentation`` and ``segmentation_labels``.
        caption_background: append the background description (``"on a striped background drifting left"``).
        caption_wording: ``"fixed"`` — one wording per fact (:data:`MOTIONS`); ``"train"`` — paraphrases drawn from
            all but the last wording of each motion (:data:`MOTION_WORDINGS`) and of the clause templates
            (:data:`CLAUSE_TEMPLATES`), shape words from :data:`SHAPE_WORDS`' training words; ``"held_out"`` — only
            the held-out wordings, templates and shape words. The video does not depend on it.
        min_visible_cells: every object must cover at least this many mask-grid cells over the clip (clips
            where an object is hidden or never enters are re-drawn), so each captioned object is really seen.
        same_kind_motion_probability: chance that each object after the first takes a motion of the first object's
            kind (:func:`motion_kind`) in another direction, when ``motions`` holds one (a first object that moves
            left, a second that rises or falls). Such clips are the hard cases of the object-swap probe; more of
            them make the swap negatives of training (:func:`swap_motions_caption`) harder. ``0`` (the default)
            draws every motion independently and leaves the random stream, hence every clip, as it was.
        caption_speed: straight moves (``move_*``) go slowly (travelling 15–30 % of the frame over the clip) or
            quickly (55–80 %, less where a large object has no room), drawn evenly, and the caption says which
            (:data:`SPEED_WORDINGS`; the object's ``speed``: the class its actual travel falls in, "quickly" from
            45 %). Changes the random stream (clips differ from a config without it).
        caption_occlusion: each clause also names the objects its object covers in some frame (z-order: object
            ``k`` over objects ``< k``; :data:`OCCLUSION_WORDINGS`), e.g. "…, in front of the blue square"; the
            object's ``in_front_of`` lists their ids. The video does not depend on it.
        shuffle_clauses: name the objects in a random order instead of painting (z) order. With
            ``caption_occlusion`` the painting order is a text-only cue ("in front of" would always point back to an
            object named earlier); shuffled, only the video tells. Each object's ``caption_rank`` is its place in
            the caption, and every caption rebuilt from the objects (transforms, swaps, paraphrases, probes) keeps
            it. Drawn from its own random stream: the video is the same with or without it.
    """

    num_frames: int = 16
    height: int = 224
    width: int = 224
    min_objects: int = 1
    max_objects: int = 3
    mask_stride: int = 4
    mask_downsample: str = "mode"
    shapes: Sequence[str] = SHAPES
    colours: Sequence[str] = tuple(COLOURS)
    sizes: Sequence[str] = tuple(SIZES)
    textures: Sequence[str] = TEXTURES
    motions: Sequence[str] = tuple(MOTIONS)
    backgrounds: Sequence[str] = BACKGROUNDS
    texture_probability: float = 0.25
    background_pan_probability: float = 0.3
    max_pan_speed: float = 1.5
    background_as_trajectory: bool = True
    caption_background: bool = False
    caption_wording: str = "fixed"
    min_visible_cells: int = 4
    same_kind_motion_probability: float = 0.0
    caption_speed: bool = False
    caption_occlusion: bool = False
    shuffle_clauses: bool = False

    def __post_init__(self):
        for name in ("num_frames", "height", "width", "min_objects", "max_objects", "mask_stride"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"`{name}` must be a positive int, got {value!r}")
        if self.min_objects > self.max_objects:
            raise ValueError(f"`min_objects` ({self.min_objects}) must be <= `max_objects` ({self.max_objects})")
        if self.height < 16 or self.width < 16:
            raise ValueError(f"`height` and `width` must be >= 16, got {self.height}x{self.width}")
        if self.height % self.mask_stride or self.width % self.mask_stride:
            raise ValueError(
                f"`height` ({self.height}) and `width` ({self.width}) must be divisible by "
                f"`mask_stride` ({self.mask_stride})"
            )
        if self.mask_downsample not in DOWNSAMPLE_MODES:
            raise ValueError(f"`mask_downsample` must be one of {DOWNSAMPLE_MODES}, got {self.mask_downsample!r}")
        if self.caption_wording not in CAPTION_WORDINGS:
            raise ValueError(f"`caption_wording` must be one of {CAPTION_WORDINGS}, got {self.caption_wording!r}")
        vocabularies = {
            "shapes": SHAPES,
            "colours": tuple(COLOURS),
            "sizes": tuple(SIZES),
            "textures": TEXTURES,
            "motions": tuple(MOTIONS),
            "backgrounds": BACKGROUNDS,
        }
        for name, allowed in vocabularies.items():
            value = getattr(self, name)
            if isinstance(value, str):
                raise TypeError(f"`{name}` must be a sequence of names, not a single string {value!r}")
            value = tuple(value)
            unknown = [v for v in value if v not in allowed]
            if unknown:
                raise ValueError(f"`{name}` has unknown entries {unknown}; allowed: {list(allowed)}")
            if not value and name != "textures":
                raise ValueError(f"`{name}` must not be empty")
            # Tuples keep the config hashable and its repr stable (the dataset fingerprint uses it).
            setattr(self, name, value)
        if self.max_objects > len(self.colours):
            raise ValueError(
                f"`max_objects` ({self.max_objects}) exceeds the {len(self.colours)} available `colours`; objects "
                "in a clip get distinct colours so captions stay unambiguous"
            )
        if not self.available_motions():
            raise ValueError("`motions` has no motion usable with `num_frames`=1; include 'static'")
        for name in ("texture_probability", "background_pan_probability", "same_kind_motion_probability"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise TypeError(f"`{name}` must be a number in [0, 1], got {type(value).__name__}")
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"`{name}` must be in [0, 1], got {value!r}")
        if self.max_pan_speed < 0:
            raise ValueError(f"`max_pan_speed` must be >= 0, got {self.max_pan_speed!r}")
        for name in ("caption_speed", "caption_occlusion", "shuffle_clauses"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"`{name}` must be a bool, got {type(getattr(self, name)).__name__}")
        if self.min_visible_cells < 0:
            raise ValueError(f"`min_visible_cells` must be >= 0, got {self.min_visible_cells!r}")

    @property
    def mask_size(self) -> tuple[int, int]:
        """``(h, w)`` of ``segmentation_labels``."""
        return self.height // self.mask_stride, self.width // self.mask_stride

    def available_motions(self) -> tuple[str, ...]:
        """Motions that can be shown with ``num_frames`` frames (a single frame cannot show any motion)."""
        if self.num_frames >= 2:
            return tuple(self.motions)
        return tuple(m for m in self.motions if m == "static")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


# --------------------------------------------------------------------------------------------------------------
# Layout sampling


@dataclass
class _Object:
    id: int
    shape: str
    colour: str
    size: str
    texture: str
    motion: str
    radius: float
    cx: np.ndarray  # (T,) centre x in pixels (pixel centres sit at integer coordinates)
    cy: np.ndarray
    angle: np.ndarray  # (T,) radians; image coordinates (y down), so increasing = visually clockwise
    visible: np.ndarray  # (T,) bool, False while the object has not appeared / has vanished
    texture_period: float = 0.0
    speed: str | None = None  # "slowly" / "quickly" with caption_speed, for straight moves
    in_front_of: list[int] | None = None  # with caption_occlusion: ids of the objects it covers in some frame

    def to_dict(self) -> dict[str, Any]:
        out = {
            "id": self.id,
            "shape": self.shape,
            "colour": self.colour,
            "size": self.size,
            "texture": self.texture,
            "motion": self.motion,
        }
        if self.speed is not None:
            out["speed"] = self.speed
        if self.in_front_of is not None:
            out["in_front_of"] = list(self.in_front_of)
        return out


_STRAIGHT_MOVES = ("move_left", "move_right", "move_up", "move_down")
_QUICK_TRAVEL = 0.45  # travel over the clip, as a fraction of the frame side, from which a move is "quickly"


def _time(num_frames: int) -> np.ndarray:
    return np.linspace(0.0, 1.0, num_frames) if num_frames > 1 else np.zeros(1)


def _motion_path(motion: str, r: float, cfg: SyntheticVideoConfig, rng: np.random.Generator):
    """Centre, angle and visibility per frame for one motion; (piecewise) linear in normalised time ``tau``."""
    T, H, W = cfg.num_frames, cfg.height, cfg.width
    tau = _time(T)
    ones = np.ones(T)
    visible = np.ones(T, dtype=bool)
    # Non-rotating objects keep a near-upright pose: a square turned by 45° would read as a diamond.
    angle = rng.uniform(-0.25, 0.25) * ones

    def inside(extent: float) -> float:
        return rng.uniform(r, extent - r)

    if motion in ("static", "rotate_cw", "rotate_ccw", "appear", "disappear"):
        cx, cy = inside(W) * ones, inside(H) * ones
        if motion.startswith("rotate"):
            turn = rng.uniform(0.5 * math.pi, 2.0 * math.pi)
            angle = angle + (turn if motion == "rotate_cw" else -turn) * tau
        elif motion in ("appear", "disappear"):
            lo, hi = max(1, round(T / 4)), max(1, min(T - 1, round(3 * T / 4)))
            switch = int(rng.integers(lo, hi + 1))
            visible = np.arange(T) >= switch if motion == "appear" else np.arange(T) < switch
    elif motion in ("move_left", "move_right", "move_up", "move_down"):
        horizontal = motion in ("move_left", "move_right")
        extent = W if horizontal else H
        if cfg.caption_speed:  # two speed classes far apart, so the caption's speed word is visible
            travel = rng.uniform(0.55, 0.8) if rng.random() < 0.5 else rng.uniform(0.15, 0.3)
            dist = min(travel * extent, extent - 2 * r)
        else:
            dist = min(rng.uniform(0.35, 0.6) * extent, extent - 2 * r)
        start = rng.uniform(r, max(r, extent - r - dist))  # max: the clamp above may round below r
        forward = start + dist * tau  # towards +x (right) or +y (down)
        along = forward if motion in ("move_right", "move_down") else (extent - forward)
        across = inside(H if horizontal else W) * ones
        cx, cy = (along, across) if horizontal else (across, along)
    elif motion == "bounce":
        speed = rng.uniform(1.0, 2.0) * min(H, W)
        # Keep clear of the axes: the dominant component then exceeds one wall-to-wall span, so at least one
        # bounce happens within the clip.
        heading = rng.uniform(math.radians(20), math.radians(70)) + 0.5 * math.pi * rng.integers(4)
        cx = _reflect(inside(W) + speed * math.cos(heading) * tau, r, W - r)
        cy = _reflect(inside(H) + speed * math.sin(heading) * tau, r, H - r)
    elif motion.startswith("enter_") or motion.startswith("exit_"):
        side = motion.split("_")[1]
        horizontal = side in ("left", "right")
        extent = W if horizontal else H
        # Outside = centre one circumradius beyond the border: the object is then exactly out of view.
        outside = -r if side in ("left", "top") else extent + r
        inner = rng.uniform(0.3 * extent, extent - r) if side in ("left", "top") else rng.uniform(r, 0.7 * extent)
        start, end = (outside, inner) if motion.startswith("enter_") else (inner, outside)
        along = start + (end - start) * tau
        across = inside(H if horizontal else W) * ones
        cx, cy = (along, across) if horizontal else (across, along)
    else:  # pragma: no cover - config validation rejects unknown motions
        raise ValueError(f"unknown motion {motion!r}")
    return cx.astype(np.float64), cy.astype(np.float64), angle.astype(np.float64), visible


def _reflect(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Fold a free path into ``[lo, hi]`` as elastic bounces off both walls (a triangle wave)."""
    span = hi - lo
    if span <= 0:
        return np.full_like(x, lo)
    q = np.mod(x - lo, 2 * span)
    return lo + span - np.abs(span - q)


def _sample_object(
    obj_id: int, colour: str, cfg: SyntheticVideoConfig, rng: np.random.Generator, first_motion: str | None = None
) -> _Object:
    motion = cfg.available_motions()[rng.integers(len(cfg.available_motions()))]
    if first_motion is not None and cfg.same_kind_motion_probability > 0:
        # Drawn only when asked for, so a config without it keeps its random stream.
        if rng.random() < cfg.same_kind_motion_probability:
            kind = motion_kind(first_motion)
            same_kind = [m for m in cfg.available_motions() if m != first_motion and motion_kind(m) == kind]
            if same_kind:
                motion = same_kind[rng.integers(len(same_kind))]
    shape = cfg.shapes[rng.integers(len(cfg.shapes))]
    size = cfg.sizes[rng.integers(len(cfg.sizes))]
    texture = "plain"
    if cfg.textures and rng.random() < cfg.texture_probability:
        texture = cfg.textures[rng.integers(len(cfg.textures))]
    if motion.startswith("rotate") and shape in _ROTATION_INVARIANT_SHAPES:
        turnable = [s for s in cfg.shapes if s not in _ROTATION_INVARIANT_SHAPES]
        if turnable:
            shape = turnable[rng.integers(len(turnable))]
        else:
            # Only round shapes allowed: stripes make the rotation visible.
            texture = "striped"
    lo, hi = SIZES[size]
    radius = rng.uniform(lo, hi) * min(cfg.height, cfg.width)
    cx, cy, angle, visible = _motion_path(motion, radius, cfg, rng)
    speed = None
    if cfg.caption_speed and motion in _STRAIGHT_MOVES:
        horizontal = motion in ("move_left", "move_right")
        travel = abs(cx[-1] - cx[0]) / cfg.width if horizontal else abs(cy[-1] - cy[0]) / cfg.height
        speed = "quickly" if travel >= _QUICK_TRAVEL else "slowly"
    return _Object(
        id=obj_id,
        shape=shape,
        colour=colour,
        size=size,
        texture=texture,
        motion=motion,
        radius=radius,
        cx=cx,
        cy=cy,
        angle=angle,
        visible=visible,
        texture_period=max(3.0, radius / 3.0),
        speed=speed,
    )


# --------------------------------------------------------------------------------------------------------------
# Rendering


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    """Inside-test in object coordinates (``u`` right, ``v`` down); ``r`` = circumradius of every shape."""
    if shape == "circle":
        return u * u + v * v <= r * r
    if shape == "ring":
        rho2 = u * u + v * v
        return (rho2 <= r * r) & (rho2 >= (0.5 * r) ** 2)
    if shape == "square":
        half = r / math.sqrt(2.0)
        return (np.abs(u) <= half) & (np.abs(v) <= half)
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= r
    if shape == "triangle":
        # Upright equilateral triangle: inside iff within the inradius (r/2) of all three edge normals.
        inside = v <= 0.5 * r
        for phi in (math.radians(210), math.radians(330)):
            inside &= u * math.cos(phi) + v * math.sin(phi) <= 0.5 * r
        return inside
    if shape == "cross":
        arm = 0.3 * r
        reach = math.sqrt(r * r - arm * arm)
        au, av = np.abs(u), np.abs(v)
        return ((au <= arm) & (av <= reach)) | ((av <= arm) & (au <= reach))
    if shape == "star":
        # Regular pentagram, point up. Its five edge lines each join outer vertices k and k+2 and lie r*cos(72°)
        # from the centre; a point is in the filled star iff it is on the inner side of at least 4 of the 5
        # lines (inner pentagon: 5, spikes: 4, notches between spikes: <= 3). No arctan2 needed.
        limit = r * math.cos(math.radians(72))
        inside_count = np.zeros(u.shape, dtype=np.uint8)
        for k in range(5):
            phi = math.radians(-18 + 72 * k)
            inside_count += (u * math.cos(phi) + v * math.sin(phi)) <= limit
        return inside_count >= 4
    raise ValueError(f"unknown shape {shape!r}")  # pragma: no cover


def _texture_pattern(texture: str, u: np.ndarray, v: np.ndarray, period: float) -> np.ndarray:
    """True where the texture uses the shaded colour. Object-fixed, so it moves and turns with the object."""
    if texture == "striped":
        return np.floor(u / period).astype(np.int64) % 2 == 1
    if texture == "checkered":
        return (np.floor(u / period).astype(np.int64) + np.floor(v / period).astype(np.int64)) % 2 == 1
    raise ValueError(f"unknown texture {texture!r}")  # pragma: no cover


def shade(colour: str | tuple[int, int, int]) -> tuple[int, int, int]:
    """The second colour of a textured object (a darker version of its colour)."""
    rgb = COLOURS[colour] if isinstance(colour, str) else colour
    return tuple(int(c * 0.55) for c in rgb)


def _render_object(video: np.ndarray, seg: np.ndarray, obj: _Object, covered: np.ndarray | None = None) -> None:
    """Paints ``obj`` over ``video`` and its id over ``seg``; ``covered`` (an int64 array indexed by id), when given,
    gains the number of pixels of each earlier object that this one paints over."""
    T, H, W = seg.shape
    half = int(math.ceil(obj.radius)) + 1
    x0 = np.floor(obj.cx).astype(np.int64) - half  # window top-left per frame; window is S x S
    y0 = np.floor(obj.cy).astype(np.int64) - half
    size = 2 * half + 1
    # Only frames where the object is shown and its window touches the image cost anything.
    active = obj.visible & (x0 < W) & (x0 + size > 0) & (y0 < H) & (y0 + size > 0)
    frames = np.flatnonzero(active)
    if frames.size == 0:
        return
    offsets = np.arange(size)
    # float32 halves the memory traffic of the (T, S, S) window math; sub-pixel error is irrelevant here.
    dx = ((x0[frames, None] + offsets) - obj.cx[frames, None]).astype(np.float32)[:, None, :]
    dy = ((y0[frames, None] + offsets) - obj.cy[frames, None]).astype(np.float32)[:, :, None]
    cos = np.cos(obj.angle[frames]).astype(np.float32)[:, None, None]
    sin = np.sin(obj.angle[frames]).astype(np.float32)[:, None, None]
    u = cos * dx + sin * dy  # rotate the world offset by -angle into object coordinates
    v = cos * dy - sin * dx
    mask = _shape_mask(obj.shape, u, v, obj.radius)
    rgb = np.asarray(COLOURS[obj.colour], dtype=np.uint8)
    if obj.texture == "plain":
        colours = None
    else:
        dark = _texture_pattern(obj.texture, u, v, obj.texture_period)
        colours = np.stack([rgb, np.asarray(shade(obj.colour), dtype=np.uint8)])[dark.astype(np.intp)]
    # A loop over frames (not pixels): each frame is one clipped rectangle and a masked copy, which avoids the
    # index arrays of a flat scatter (nonzero + fancy indexing cost more at these sizes).
    for k, t in enumerate(frames):
        ya, xa = y0[t], x0[t]
        top, left = max(0, -ya), max(0, -xa)
        bottom, right = min(size, H - ya), min(size, W - xa)
        m = mask[k, top:bottom, left:right]
        region = (t, slice(ya + top, ya + bottom), slice(xa + left, xa + right))
        if covered is not None:
            covered += np.bincount(seg[region][m], minlength=covered.size)[: covered.size]
        np.copyto(seg[region], obj.id, where=m)
        src = rgb if colours is None else colours[k, top:bottom, left:right]
        np.copyto(video[region], src, where=m[..., None])


def _bilinear_weights(out_size: int, in_size: int) -> np.ndarray:
    pos = np.linspace(0.0, in_size - 1.0, out_size)
    lo = np.minimum(np.floor(pos).astype(np.int64), in_size - 2)
    frac = pos - lo
    weights = np.zeros((out_size, in_size))
    weights[np.arange(out_size), lo] = 1.0 - frac
    weights[np.arange(out_size), lo + 1] = frac
    return weights


def _background_texture(kind: str, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """``(height, width, 3)`` uint8; muted colours so saturated objects stay the salient regions."""
    grey = rng.uniform(50, 150)
    c1 = np.clip(grey + rng.uniform(-25, 25, 3), 0, 255)
    c2 = np.clip(c1 + rng.choice([-1, 1]) * rng.uniform(30, 60) + rng.uniform(-15, 15, 3), 0, 255)
    yy = np.arange(height, dtype=np.float32)[:, None]
    xx = np.arange(width, dtype=np.float32)[None, :]
    if kind == "noise":
        gh, gw = int(rng.integers(3, 8)), int(rng.integers(3, 8))
        coarse = rng.random((gh, gw))
        mix = (_bilinear_weights(height, gh) @ coarse @ _bilinear_weights(width, gw).T).astype(np.float32)
    elif kind == "gradient":
        theta = rng.uniform(0, 2 * math.pi)
        proj = xx * math.cos(theta) + yy * math.sin(theta)
        mix = (proj - proj.min()) / max(float(proj.max() - proj.min()), 1e-6)
    elif kind == "stripes":
        theta = rng.uniform(0, math.pi)
        period = rng.uniform(12, 40)
        mix = (np.sin((2 * math.pi / period) * (xx * math.cos(theta) + yy * math.sin(theta))) > 0).astype(np.float32)
    elif kind == "checker":
        period = int(rng.integers(16, 49))
        mix = (((yy // period) + (xx // period)) % 2).astype(np.float32)
    else:  # pragma: no cover
        raise ValueError(f"unknown background {kind!r}")
    # Fine grain keeps flat regions from being trivially uniform (a model should not key on exact RGB);
    # random bytes are the cheapest noise source numpy has.
    grain = np.frombuffer(rng.bytes(height * width), dtype=np.uint8).reshape(height, width) >> 2
    levels = (mix * 255.0).astype(np.int16) + grain.astype(np.int16) - 32
    levels = np.clip(levels, 0, 255).astype(np.uint8)
    # Colour through a 256-entry palette: one row gather instead of several float passes over (H, W, 3).
    ramp = np.linspace(0.0, 1.0, 256)[:, None]
    palette = np.clip(c1 * (1.0 - ramp) + c2 * ramp, 0, 255).astype(np.uint8)
    return np.take(palette, levels, axis=0)


def _render_background(cfg: SyntheticVideoConfig, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    T, H, W = cfg.num_frames, cfg.height, cfg.width
    kind = cfg.backgrounds[rng.integers(len(cfg.backgrounds))]
    pan = None
    speed = 0.0
    if T > 1 and cfg.max_pan_speed > 0 and rng.random() < cfg.background_pan_probability:
        pan = ("left", "right", "up", "down")[rng.integers(4)]
        speed = rng.uniform(0.5, 1.0) * cfg.max_pan_speed
    travel = int(math.ceil(speed * (T - 1)))
    horizontal = pan in ("left", "right")
    tex = _background_texture(kind, H + (0 if horizontal else travel), W + (travel if horizontal else 0), rng)
    video = np.empty((T, H, W, 3), dtype=np.uint8)
    if pan is None:
        video[:] = tex
    else:
        # A window sliding towards +x shows content drifting left, hence the sign flip for "right"/"down".
        steps = np.round(speed * np.arange(T)).astype(np.int64)
        offsets = steps if pan in ("left", "up") else travel - steps
        for t, off in enumerate(offsets):
            video[t] = tex[:, off : off + W] if horizontal else tex[off : off + H, :]
    return video, {"kind": kind, "pan": pan or "none"}


def caption_from_objects(
    objects: Sequence[dict[str, Any]], background: dict[str, str] | None = None, template: int = 0
) -> str:
    """The generator's caption of objects described by their metadata dicts (``shape``, ``colour``, ``size``,
    ``texture``, ``motion`` and, for paraphrased captions, ``wording`` and ``shape_word``: the ``objects`` of
    :func:`generate_clip`), joined by :data:`CLAUSE_TEMPLATES` ``[template]`` (the clip's ``caption_template``), with
    the background clause when ``background`` (``{"kind", "pan"}``) is given. An object's optional ``speed``
    (:data:`SPEED_WORDINGS`) follows its motion, and its optional ``in_front_of`` (ids of other objects of the list)
    adds "…, in front of the blue square" (:data:`OCCLUSION_WORDINGS`), both in the object's ``wording``. When every
    object has a ``caption_rank`` (``SyntheticVideoConfig.shuffle_clauses``), the clauses come in that order instead
    of the list's. Edit the dicts (another motion, swapped objects) to build the altered captions of the motion
    probes."""
    if isinstance(template, bool) or not isinstance(template, int) or not 0 <= template < len(CLAUSE_TEMPLATES):
        raise ValueError(
            f"`template` must be an index into CLAUSE_TEMPLATES (0..{len(CLAUSE_TEMPLATES) - 1}), got {template!r}"
        )
    if not objects:
        raise ValueError("`objects` must hold at least one object")
    by_id = {obj.get("id"): obj for obj in objects}
    clauses = []
    for obj in objects:
        missing = [key for key in ("shape", "colour", "size", "texture", "motion") if key not in obj]
        if missing:
            raise ValueError(
                f"`objects` entries need the keys shape, colour, size, texture and motion; missing {missing}"
            )
        wordings = MOTION_WORDINGS.get(obj["motion"])
        if wordings is None or not 0 <= obj.get("wording", 0) < len(wordings):
            raise ValueError(
                f"unknown motion {obj['motion']!r} or wording {obj.get('wording', 0)!r}: motions are the keys of "
                f"MOTION_WORDINGS, wordings index their tuples"
            )
        texture = "" if obj["texture"] == "plain" else f"{obj['texture']} "
        shape = obj.get("shape_word", obj["shape"])
        motion = wordings[obj.get("wording", 0)]
        clause = f"a {obj['size']} {texture}{obj['colour']} {shape} {motion}"
        if obj.get("speed") is not None:
            if obj["speed"] not in SPEED_WORDINGS:
                raise ValueError(f"unknown speed {obj['speed']!r}: speeds are the keys of SPEED_WORDINGS")
            clause += " " + SPEED_WORDINGS[obj["speed"]][obj.get("wording", 0)]
        covered = obj.get("in_front_of") or ()
        if any(other not in by_id for other in covered):
            raise ValueError(f"`in_front_of` {list(covered)} names ids that are not in `objects` ({list(by_id)})")
        if covered:
            names = [
                f"the {by_id[other]['colour']} {by_id[other].get('shape_word', by_id[other]['shape'])}"
                for other in covered
            ]
            clause += f", {OCCLUSION_WORDINGS[obj.get('wording', 0)]} " + " and ".join(names)
        clauses.append(clause)
    ranks = [obj.get("caption_rank") for obj in objects]
    if any(rank is not None for rank in ranks):
        valid = all(isinstance(r, (int, np.integer)) and not isinstance(r, bool) for r in ranks)
        if not valid or sorted(ranks) != list(range(len(objects))):
            raise ValueError(
                f"`caption_rank` must be given for every object or for none, as a permutation of 0..{len(objects) - 1}"
                f"; got {ranks}"
            )
        clauses = [clauses[i] for i in np.argsort(ranks, kind="stable")]
    pair, between, before_last = CLAUSE_TEMPLATES[template]
    if len(clauses) == 1:
        text = clauses[0]
    elif len(clauses) == 2:
        text = pair.format(*clauses)
    else:
        text = between.join(clauses[:-1]) + before_last + clauses[-1]
    if background is not None:
        text += f" on a {background['kind']} background"
        if background["pan"] != "none":
            text += f" drifting {background['pan']}"
    return text


def transform_clip(clip: dict[str, Any], transform: str, caption_background: bool = False) -> dict[str, Any]:
    """A rendered clip played backwards (``"reverse"``) or mirrored (``"mirror_horizontal"``,
    ``"mirror_vertical"``), with its ground truth moved alike and its caption rewritten for what the new clip shows,
    in the same wording (:data:`TIME_REVERSALS`, :data:`HORIZONTAL_MIRRORS`, :data:`VERTICAL_MIRRORS`). Paired with
    the original in one batch, the two differ only in time order or direction: a hard negative for each other.
    ``caption_background`` adds the background clause as the generator's config would (a pan reverses with time and
    mirrors with the frame)."""
    if transform not in CLIP_TRANSFORMS:
        raise ValueError(f"`transform` must be one of {tuple(CLIP_TRANSFORMS)}, got {transform!r}")
    mapping, _ = CLIP_TRANSFORMS[transform]
    axis = {"reverse": 0, "mirror_horizontal": 2, "mirror_vertical": 1}[transform]
    out = dict(clip)
    for key in ("video", "segmentation", "segmentation_labels"):
        if key in clip:
            out[key] = np.ascontiguousarray(np.flip(clip[key], axis=axis))
    out["objects"] = [{**obj, "motion": mapping.get(obj["motion"], obj["motion"])} for obj in clip["objects"]]
    background = None
    if caption_background and "background" in clip:
        pan = clip["background"]["pan"]
        pan_map = {"reverse": {**_OPPOSITE_PANS}, "mirror_horizontal": {"left": "right", "right": "left"}}
        pan_map["mirror_vertical"] = {"up": "down", "down": "up"}
        background = {**clip["background"], "pan": pan_map[transform].get(pan, pan)}
        out["background"] = background
    out["caption"] = caption_from_objects(out["objects"], background, clip.get("caption_template", 0))
    return out


def swap_motions_caption(clip: dict[str, Any], caption_background: bool = False) -> str | None:
    """The caption of a rendered clip with the motions of its first two objects exchanged, in the clip's own wording:
    a caption that names the right objects and the right motions, bound to the wrong objects (the object-swap probe
    of ``benchmarks/motion_probes.py``, and a hard negative caption for training). ``None`` when the clip has fewer
    than two objects or its first two move alike. ``caption_background`` adds the background clause as the
    generator's config would."""
    objects = clip.get("objects")
    if not isinstance(objects, (list, tuple)):
        raise ValueError("`clip` must be a rendered clip with an `objects` list (generate_clip's output)")
    if len(objects) < 2 or objects[0]["motion"] == objects[1]["motion"]:
        return None
    swapped = [dict(obj) for obj in objects]
    for key in ("motion", "speed"):  # a speed word belongs to its motion
        if key in objects[0] or key in objects[1]:
            swapped[0][key], swapped[1][key] = objects[1].get(key), objects[0].get(key)
    background = clip.get("background") if caption_background else None
    return caption_from_objects(swapped, background, clip.get("caption_template", 0))


def shape_negative_caption(
    clip: dict[str, Any], rng: np.random.Generator, caption_background: bool = False, shapes: Sequence[str] = SHAPES
) -> str | None:
    """The caption of a rendered clip with the shape of one of its objects (drawn by ``rng``) replaced by another of
    ``shapes``, in the clip's own wording (training or held-out shape words, :data:`SHAPE_WORDS`): a caption that
    only the shape tells apart from the truth, a hard negative for training (colours and motions alone identify
    most clips of a batch, so a contrastive model can ignore shapes). ``None`` when ``shapes`` offers no other
    shape. ``caption_background`` adds the background clause as the generator's config would."""
    objects = clip.get("objects")
    if not isinstance(objects, (list, tuple)) or not objects:
        raise ValueError("`clip` must be a rendered clip with an `objects` list (generate_clip's output)")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"`rng` must be a numpy Generator, got {type(rng).__name__}")
    k = int(rng.integers(len(objects)))
    others = [shape for shape in shapes if shape != objects[k]["shape"]]
    if not others:
        return None
    new_shape = others[int(rng.integers(len(others)))]
    changed = [dict(obj) for obj in objects]
    changed[k]["shape"] = new_shape
    if "shape_word" in objects[k]:
        word = SHAPE_WORDS[objects[k]["shape"]].index(objects[k]["shape_word"])
        changed[k]["shape_word"] = SHAPE_WORDS[new_shape][word]
    background = clip.get("background") if caption_background else None
    return caption_from_objects(changed, background, clip.get("caption_template", 0))


def flipped_speeds(objects: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Copies of the objects with every ``speed`` flipped (slowly ↔ quickly, :data:`SPEED_FLIPS`)."""
    unknown = [obj["speed"] for obj in objects if obj.get("speed") and obj["speed"] not in SPEED_FLIPS]
    if unknown:
        raise ValueError(f"`objects` have unknown speeds {unknown}: speeds are the keys of SPEED_FLIPS")
    return [{**obj, "speed": SPEED_FLIPS[obj["speed"]]} if obj.get("speed") else dict(obj) for obj in objects]


def reversed_occlusions(objects: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Copies of the objects with every "A in front of B" (``in_front_of``) turned into "B in front of A"."""
    if any("id" not in obj for obj in objects):
        raise ValueError("`objects` entries need an `id` (generate_clip's objects) to reverse `in_front_of`")
    covered_by = {obj["id"]: [] for obj in objects}
    for obj in objects:
        for other in obj.get("in_front_of") or ():
            if other not in covered_by:
                raise ValueError(f"`in_front_of` of object {obj['id']} names id {other!r}, not in `objects`")
            covered_by[other].append(obj["id"])
    return [{**obj, "in_front_of": covered_by[obj["id"]]} for obj in objects]


def fact_negative_caption(
    clip: dict[str, Any], rng: np.random.Generator, caption_background: bool = False
) -> str | None:
    """The caption of a rendered clip with one of its speed and occlusion facts turned around, in the clip's own
    wording: every speed word flipped (:func:`flipped_speeds`) or every "in front of" reversed
    (:func:`reversed_occlusions`), drawn by ``rng`` when the clip has both. A caption that only how fast things move,
    or which is in front, tells apart from the truth: a hard negative for training with ``caption_speed`` /
    ``caption_occlusion``. ``None`` when the clip states neither."""
    objects = clip.get("objects")
    if not isinstance(objects, (list, tuple)) or not objects:
        raise ValueError("`clip` must be a rendered clip with an `objects` list (generate_clip's output)")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"`rng` must be a numpy Generator, got {type(rng).__name__}")
    changes = []
    if any(obj.get("speed") for obj in objects):
        changes.append(flipped_speeds)
    if any(obj.get("in_front_of") for obj in objects):
        changes.append(reversed_occlusions)
    if not changes:
        return None
    change = changes[int(rng.integers(len(changes)))]
    background = clip.get("background") if caption_background else None
    return caption_from_objects(change(objects), background, clip.get("caption_template", 0))


def paraphrase_clip(clip: dict[str, Any], rng: np.random.Generator, caption_background: bool = False) -> dict[str, Any]:
    """A copy of a rendered clip whose caption says the same facts in another training wording: each object's motion
    in a training wording other than its own (:data:`MOTION_WORDINGS` without the held-out last one), its training
    shape word, and a training clause template other than the clip's (:data:`CLAUSE_TEMPLATES` without the last).
    No held-out wording, template or shape word is ever drawn, so a paraphrase loss keeps the held-out wordings
    unseen. ``objects``, ``caption_template`` and ``caption`` are new; everything else is shared with ``clip``.
    Pass the copy to :func:`swap_motions_caption` for the paraphrase with two objects' motions exchanged.
    ``caption_background`` adds the background clause as the generator's config would."""
    objects = clip.get("objects")
    if not isinstance(objects, (list, tuple)) or not objects:
        raise ValueError("`clip` must be a rendered clip with an `objects` list (generate_clip's output)")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"`rng` must be a numpy Generator, got {type(rng).__name__}")

    def other_than(own: int, count: int) -> int:  # uniform over 0..count−1 without `own` (when `own` is one of them)
        choices = [i for i in range(count) if i != own]
        return choices[int(rng.integers(len(choices)))]

    reworded = []
    for obj in objects:
        training_wordings = len(MOTION_WORDINGS[obj["motion"]]) - 1
        reworded.append(
            {
                **obj,
                "wording": other_than(obj.get("wording", 0), training_wordings),
                "shape_word": SHAPE_WORDS[obj["shape"]][0],
            }
        )
    template = other_than(clip.get("caption_template", 0), len(CLAUSE_TEMPLATES) - 1)
    background = clip.get("background") if caption_background else None
    return {
        **clip,
        "objects": reworded,
        "caption_template": template,
        "caption": caption_from_objects(reworded, background, template),
    }


_OPPOSITE_PANS = {"left": "right", "right": "left", "up": "down", "down": "up"}


def _reword(clip: dict[str, Any], cfg: SyntheticVideoConfig, seed: int, index: int) -> None:
    """Paraphrases the caption of a rendered clip (``caption_wording`` "train" / "held_out") from its own random
    stream, so the video is the same in every wording mode; records each object's ``wording`` and ``shape_word``
    and the clip's ``caption_template``."""
    rng = np.random.default_rng([int(seed), int(index), 1])
    held_out = cfg.caption_wording == "held_out"
    for obj in clip["objects"]:
        choices = len(MOTION_WORDINGS[obj["motion"]]) - 1
        obj["wording"] = choices if held_out else int(rng.integers(choices))
        obj["shape_word"] = SHAPE_WORDS[obj["shape"]][1 if held_out else 0]
    template = len(CLAUSE_TEMPLATES) - 1 if held_out else int(rng.integers(len(CLAUSE_TEMPLATES) - 1))
    clip["caption_template"] = template
    clip["caption"] = caption_from_objects(
        clip["objects"], clip["background"] if cfg.caption_background else None, template
    )


def _caption(objects: list[_Object], background: dict, cfg: SyntheticVideoConfig) -> str:  # the "fixed" wording
    return caption_from_objects([obj.to_dict() for obj in objects], background if cfg.caption_background else None)


def generate_clip(config: SyntheticVideoConfig | None = None, seed: int = 0, index: int = 0) -> dict[str, Any]:
    """Render clip ``(seed, index)``.

    Returns a dict with
        ``video`` uint8 ``(T, H, W, 3)``; ``segmentation`` int64 ``(T, H, W)``; ``segmentation_labels`` int64
        ``(T, H/s, W/s)``; ``caption`` str; ``objects`` — one dict per object (``id`` = its label, ``shape``,
        ``colour``, ``size``, ``texture`` (``"plain"``/``"striped"``/``"checkered"``), ``motion`` (a key of
        :data:`MOTIONS`)), in z-order; ``background`` — ``{"kind", "pan"}``; ``seed``, ``index``.
    """
    cfg = SyntheticVideoConfig() if config is None else config
    clip, _ = _generate(cfg, seed, index)
    return clip


def generate_swapped_clip(
    config: SyntheticVideoConfig | None = None, seed: int = 0, index: int = 0
) -> dict[str, Any] | None:
    """Clip ``(seed, index)`` rendered again with the paths of its first two objects exchanged: the same background
    and objects (shape, colour, size, texture, painting order), the first moving as the second did and the second as
    the first did (motion, speed and every frame's position, angle and visibility), with the caption of what it shows
    in the clip's own wording (the same phrase per object, template and clause order). Paired with
    :func:`generate_clip`'s clip, the two show the same motions bound to the other objects: a hard negative *video*
    for binding motions to objects, where :func:`swap_motions_caption` gives the hard negative caption (the two
    captions differ only where the re-rendered clip's "in front of" changes with the new paths).

    An exit or entry path keeps its on-screen end and moves its off-screen end to one radius of the new object beyond
    the border, so that a larger object also ends (or starts) out of view; the other paths are kept as they are, so a
    larger object may be cut by the frame border by at most the difference of the two radii. ``None`` when the clip
    has fewer than two objects, its first two move alike, a plain round shape would take a rotation (which it could
    not show), or an object would cover fewer than ``min_visible_cells`` mask cells. Same dict as
    :func:`generate_clip`, plus ``swapped_from`` = ``(seed, index)``."""
    cfg = SyntheticVideoConfig() if config is None else config
    clip, layout = _generate(cfg, seed, index)
    background_video, objects = layout
    if len(objects) < 2 or objects[0].motion == objects[1].motion:
        return None
    swapped = [dataclasses.replace(obj) for obj in objects]
    for own, other in ((swapped[0], objects[1]), (swapped[1], objects[0])):
        if own.shape in _ROTATION_INVARIANT_SHAPES and own.texture == "plain" and other.motion.startswith("rotate"):
            return None
        own.motion, own.speed, own.angle, own.visible = other.motion, other.speed, other.angle, other.visible
        own.cx, own.cy = _refit_path(other, own.radius, cfg)
        own.in_front_of = None
    out = _paint(cfg, background_video.copy(), clip["background"], swapped)
    if out is None:
        return None
    for key in ("caption_rank", "wording", "shape_word"):  # each object keeps its place and words in the caption
        for new, old in zip(out["objects"], clip["objects"], strict=True):
            if key in old:
                new[key] = old[key]
    if "caption_template" in clip:
        out["caption_template"] = clip["caption_template"]
    if cfg.caption_wording != "fixed" or cfg.shuffle_clauses:
        out["caption"] = caption_from_objects(
            out["objects"],
            out["background"] if cfg.caption_background else None,
            out.get("caption_template", 0),
        )
    out["seed"], out["index"] = clip["seed"], clip["index"]
    out["swapped_from"] = (clip["seed"], clip["index"])
    return out


def _refit_path(obj: _Object, radius: float, cfg: SyntheticVideoConfig) -> tuple[np.ndarray, np.ndarray]:
    """``obj``'s centre path for an object of another ``radius``: an entry or exit keeps its on-screen end and puts
    its off-screen end one new radius beyond the border (linear in time, as :func:`_motion_path` draws it)."""
    cx, cy = obj.cx.copy(), obj.cy.copy()
    entering, leaving = obj.motion.startswith("enter_"), obj.motion.startswith("exit_")
    if not (entering or leaving) or cx.size < 2:
        return cx, cy
    side = obj.motion.split("_")[1]
    horizontal = side in ("left", "right")
    along = cx if horizontal else cy
    extent = cfg.width if horizontal else cfg.height
    outside = -radius if side in ("left", "top") else extent + radius
    inner = along[-1] if entering else along[0]
    start, end = (outside, inner) if entering else (inner, outside)
    along[:] = start + (end - start) * _time(along.size)
    return cx, cy


def _generate(cfg: SyntheticVideoConfig, seed: int, index: int) -> tuple[dict[str, Any], tuple]:
    """Clip ``(seed, index)`` and its layout: the background before any object is painted and the objects."""
    if not isinstance(cfg, SyntheticVideoConfig):
        raise TypeError(f"`config` must be a SyntheticVideoConfig, got {type(cfg).__name__}")
    for name, value in (("seed", seed), ("index", index)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"`{name}` must be a non-negative int, got {value!r}")
    rng = np.random.default_rng([int(seed), int(index)])
    for _ in range(_MAX_ATTEMPTS):
        video, background, objects = _sample_layout(cfg, rng)
        background_video = video.copy()
        clip = _paint(cfg, video, background, objects)
        if clip is not None:
            if cfg.shuffle_clauses:
                order = np.random.default_rng([int(seed), int(index), 2]).permutation(len(clip["objects"]))
                for obj, rank in zip(clip["objects"], order, strict=True):
                    obj["caption_rank"] = int(rank)
            if cfg.caption_wording != "fixed":
                _reword(clip, cfg, seed, index)
            elif cfg.shuffle_clauses:
                clip["caption"] = caption_from_objects(
                    clip["objects"], clip["background"] if cfg.caption_background else None
                )
            clip["seed"], clip["index"] = int(seed), int(index)
            return clip, (background_video, objects)
    raise RuntimeError(
        f"could not place {cfg.min_objects}..{cfg.max_objects} objects so that each covers "
        f"`min_visible_cells`={cfg.min_visible_cells} mask cells in {_MAX_ATTEMPTS} attempts; lower it or use "
        "fewer objects"
    )


def _sample_layout(cfg: SyntheticVideoConfig, rng: np.random.Generator) -> tuple[np.ndarray, dict, list[_Object]]:
    video, background = _render_background(cfg, rng)
    num_objects = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    colour_ids = rng.choice(len(cfg.colours), size=num_objects, replace=False)
    objects = [_sample_object(1, cfg.colours[colour_ids[0]], cfg, rng)]
    objects += [
        _sample_object(k + 1, cfg.colours[c], cfg, rng, objects[0].motion) for k, c in enumerate(colour_ids) if k
    ]
    return video, background, objects


def _paint(
    cfg: SyntheticVideoConfig, video: np.ndarray, background: dict, objects: list[_Object]
) -> dict[str, Any] | None:
    """Paints ``objects`` over ``video`` (in place) in their order; ``None`` when one covers too few mask cells."""
    T, H, W = cfg.num_frames, cfg.height, cfg.width
    num_objects = len(objects)
    # uint8 while painting: 8× less memory traffic than int64; ids are < len(COLOURS) + 1.
    seg = np.zeros((T, H, W), dtype=np.uint8)
    min_covered = max(4, H * W // 256)  # pixels over the clip (one 4×4 mask cell at 64²) for "in front of"
    for obj in objects:
        covered = np.zeros(num_objects + 1, dtype=np.int64) if cfg.caption_occlusion else None
        _render_object(video, seg, obj, covered)
        if covered is not None:
            obj.in_front_of = [j for j in range(1, obj.id) if covered[j] >= min_covered]
    labels = downsample_labels(seg, cfg.mask_stride, cfg.mask_downsample)
    cells = np.bincount(labels.ravel(), minlength=num_objects + 1)
    if cfg.min_visible_cells and np.any(cells[1:] < cfg.min_visible_cells):
        return None
    segmentation = seg.astype(np.int64)
    if not cfg.background_as_trajectory:
        segmentation[segmentation == 0] = IGNORE_INDEX
        labels[labels == 0] = IGNORE_INDEX
    return {
        "video": video,
        "segmentation": segmentation,
        "segmentation_labels": labels,
        "caption": _caption(objects, background, cfg),
        "objects": [obj.to_dict() for obj in objects],
        "background": background,
    }


def iter_clips(
    config: SyntheticVideoConfig | None = None, seed: int = 0, num_clips: int | None = None, start: int = 0
) -> Iterator[dict[str, Any]]:
    """Yield clips ``(seed, start)``, ``(seed, start + 1)``, ... (forever if ``num_clips`` is None)."""
    index = start
    while num_clips is None or index < start + num_clips:
        yield generate_clip(config, seed, index)
        index += 1


# --------------------------------------------------------------------------------------------------------------
# datasets builder and on-disk export


def _source_fingerprint() -> str:
    # Dataset.from_generator caches by generator *name*, so an edit to the renderer would silently reuse a stale
    # cache; hashing this package's source makes any code change a new cache entry.
    digest = hashlib.sha256()
    here = Path(__file__).resolve().parent
    for name in ("synthetic.py", "pseudo_labels.py"):
        digest.update((here / name).read_bytes())
    return digest.hexdigest()


def _features(cfg: SyntheticVideoConfig, with_segmentation: bool):
    import datasets

    T, H, W = cfg.num_frames, cfg.height, cfg.width
    h, w = cfg.mask_size
    columns = {
        "video": datasets.Array4D((T, H, W, 3), "uint8"),
        "segmentation_labels": datasets.Array3D((T, h, w), "int64"),
    }
    if with_segmentation:
        columns["segmentation"] = datasets.Array3D((T, H, W), "int64")
    columns.update(
        {
            "caption": datasets.Value("string"),
            "objects": datasets.List(
                {
                    "id": datasets.Value("int64"),
                    "shape": datasets.Value("string"),
                    "colour": datasets.Value("string"),
                    "size": datasets.Value("string"),
                    "texture": datasets.Value("string"),
                    "motion": datasets.Value("string"),
                    **(
                        {"wording": datasets.Value("int64"), "shape_word": datasets.Value("string")}
                        if cfg.caption_wording != "fixed"
                        else {}
                    ),
                    **({"speed": datasets.Value("string")} if cfg.caption_speed else {}),
                    **({"in_front_of": datasets.List(datasets.Value("int64"))} if cfg.caption_occlusion else {}),
                    **({"caption_rank": datasets.Value("int64")} if cfg.shuffle_clauses else {}),
                }
            ),
            "seed": datasets.Value("int64"),
            "index": datasets.Value("int64"),
        }
    )
    if cfg.caption_wording != "fixed":
        columns["caption_template"] = datasets.Value("int64")
    return datasets.Features(columns)


def _dataset_rows(
    config: SyntheticVideoConfig, seed: int, indices: list[int], with_segmentation: bool, fingerprint: str
):
    del fingerprint  # only part of gen_kwargs so that it enters the builder's cache key
    for index in indices:
        clip = generate_clip(config, seed, index)
        clip.pop("background")
        if not with_segmentation:
            clip.pop("segmentation")
        yield clip


def make_synthetic_dataset(
    num_clips: int,
    config: SyntheticVideoConfig | None = None,
    seed: int = 0,
    *,
    with_segmentation: bool = False,
    cache_dir: str | os.PathLike | None = None,
    keep_in_memory: bool = False,
    num_proc: int | None = None,
    streaming: bool = False,
):
    """Build a ``datasets.Dataset`` of ``num_clips`` synthetic clips; row ``i`` is ``generate_clip(config, seed, i)``.

    With ``streaming=True`` returns a ``datasets.IterableDataset`` that renders clips on the fly (nothing written
    to disk; about as fast as the generator itself, and ``DataLoader`` workers each get a shard of the indices)
    — the better choice for long training runs, since materialising 16×224² clips costs ~2.4 MB each on disk.

    Columns: ``video`` (Array4D uint8 ``(T, H, W, 3)``), ``segmentation_labels`` (Array3D int64 ``(T, h, w)``),
    optionally ``segmentation`` (Array3D int64 ``(T, H, W)``; off by default, it is 6.4 MB per 16×224² clip),
    ``caption``, ``objects`` (list of ``{id, shape, colour, size, texture, motion}``), ``seed``, ``index``.
    The array columns are formatted as numpy with their stored dtypes (other columns stay Python objects); feed
    rows to :class:`VideoTextCollator` for tensors (``.with_format("torch")`` would widen video to int64).
    Arrow files go to ``cache_dir`` (default: the ``datasets`` cache); the cache key includes the config, seed,
    count and a hash of the generator source, so stale caches are never reused.
    """
    import datasets

    cfg = SyntheticVideoConfig() if config is None else config
    if not isinstance(cfg, SyntheticVideoConfig):
        raise TypeError(f"`config` must be a SyntheticVideoConfig, got {type(cfg).__name__}")
    if isinstance(num_clips, bool) or not isinstance(num_clips, (int, np.integer)) or num_clips < 1:
        raise ValueError(f"`num_clips` must be a positive int, got {num_clips!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"`seed` must be a non-negative int, got {seed!r}")
    key = json.dumps(
        {
            "config": cfg.to_dict(),
            "seed": int(seed),
            "n": int(num_clips),
            "seg": with_segmentation,
            "src": _source_fingerprint(),
        },
        sort_keys=True,
    )
    fingerprint = hashlib.sha256(key.encode()).hexdigest()[:32]
    gen_kwargs = {
        "config": cfg,
        "seed": int(seed),
        # A list in gen_kwargs is what datasets shards across num_proc / DataLoader workers.
        "indices": list(range(int(num_clips))),
        "with_segmentation": with_segmentation,
        "fingerprint": fingerprint,
    }
    if streaming:
        # Python format: rows come out as generated (numpy, uint8 video); a numpy format would widen to int64.
        return datasets.IterableDataset.from_generator(
            _dataset_rows, features=_features(cfg, with_segmentation), gen_kwargs=gen_kwargs
        )
    dataset = datasets.Dataset.from_generator(
        _dataset_rows,
        features=_features(cfg, with_segmentation),
        gen_kwargs=gen_kwargs,
        cache_dir=None if cache_dir is None else str(cache_dir),
        keep_in_memory=keep_in_memory,
        num_proc=num_proc,
        fingerprint=fingerprint,
    )
    array_columns = ["video", "segmentation_labels"] + (["segmentation"] if with_segmentation else [])
    # dtype=None: datasets' numpy/torch formatters otherwise widen every integer array to int64 (8x the bytes
    # for uint8 video).
    dataset.set_format("numpy", columns=array_columns, output_all_columns=True, dtype=None)
    return dataset


_CODEC_CACHE: list[str] = []


def default_video_codec() -> str:
    """``"libx264"`` when this PyAV build can encode H.264, else ``"mpeg4"`` (always built into FFmpeg)."""
    if not _CODEC_CACHE:
        import av

        for name in ("libx264", "mpeg4"):
            try:
                av.codec.Codec(name, "w")
            except Exception:  # av raises UnknownCodecError (a ValueError subclass) or FFmpegError by version
                continue
            _CODEC_CACHE.append(name)
            break
        else:
            raise RuntimeError("this PyAV build has neither a libx264 nor an mpeg4 encoder")
    return _CODEC_CACHE[0]


class Mp4Writer:
    """Encode uint8 RGB frames to an mp4 with PyAV (yuv420p, near-lossless settings), a few frames at a time, so
    that a video of any length is written in memory bounded by what one :meth:`write` call holds. A context manager;
    the file is complete once it is closed.

    ``codec`` defaults to :func:`default_video_codec`; ``faststart`` puts the index (moov atom) first, as streaming
    sites do.
    """

    def __init__(self, path: str | os.PathLike, fps: int = 8, codec: str | None = None, faststart: bool = False):
        import av

        if isinstance(fps, bool) or not isinstance(fps, (int, np.integer)) or fps < 1:
            raise ValueError(f"`fps` must be a positive int, got {fps!r}")
        self._av = av
        self.fps = int(fps)
        self.codec = codec or default_video_codec()
        self._container = av.open(str(path), mode="w", options={"movflags": "faststart"} if faststart else {})
        self._stream = None
        self.num_frames = 0

    def _open_stream(self, height: int, width: int) -> None:
        if height % 2 or width % 2:
            raise ValueError(f"frame height and width must be even for yuv420p, got {(height, width)}")
        stream = self._container.add_stream(self.codec, rate=self.fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        if self.codec == "libx264":
            stream.options = {"crf": "12", "preset": "veryfast"}
        else:
            stream.bit_rate = 8_000_000
            stream.options = {"qscale": "2"}
        self._stream = stream

    def write(self, frames: np.ndarray) -> None:
        """Append uint8 ``(t, H, W, 3)`` RGB frames (every call the same ``H × W``, both even)."""
        frames = np.asarray(frames)
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"`video` must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
        if self._stream is None:
            self._open_stream(frames.shape[1], frames.shape[2])
        elif frames.shape[1:3] != (self._stream.height, self._stream.width):
            raise ValueError(
                f"frames are {frames.shape[1:3]}, the video is {(self._stream.height, self._stream.width)}"
            )
        for frame in frames:
            for packet in self._stream.encode(self._av.VideoFrame.from_ndarray(frame, format="rgb24")):
                self._container.mux(packet)
        self.num_frames += frames.shape[0]

    def close(self) -> None:
        if self._container is None:
            return
        try:
            if self._stream is not None:
                for packet in self._stream.encode():
                    self._container.mux(packet)
        finally:
            self._container.close()
            self._container = None

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_mp4(
    path: str | os.PathLike, video: np.ndarray, fps: int = 8, codec: str | None = None, faststart: bool = False
) -> None:
    """Encode a uint8 ``(T, H, W, 3)`` RGB clip to ``path`` with PyAV (yuv420p, near-lossless settings); see
    :class:`Mp4Writer`."""
    frames = np.asarray(video)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"`video` must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    if frames.shape[1] % 2 or frames.shape[2] % 2:
        raise ValueError(f"`video` height and width must be even for yuv420p, got {frames.shape[1:3]}")
    if isinstance(fps, bool) or not isinstance(fps, (int, np.integer)) or fps < 1:
        raise ValueError(f"`fps` must be a positive int, got {fps!r}")
    with Mp4Writer(path, fps=fps, codec=codec, faststart=faststart) as writer:
        writer.write(frames)


def write_video_folder(
    out_dir: str | os.PathLike,
    num_clips: int,
    config: SyntheticVideoConfig | None = None,
    seed: int = 0,
    fps: int = 8,
    *,
    codec: str | None = None,
    save_full_segmentation: bool = False,
) -> Path:
    """Write clips as a video folder readable by :func:`trajtok_hf.data.load_video_text_dataset`.

    Layout: ``clip_000000.mp4``, ``clip_000000.npz`` (``segmentation_labels`` and, if ``save_full_segmentation``,
    ``segmentation``; stored int16, read back as int64) and ``metadata.jsonl`` with one row per clip:
    ``{"file_name", "caption", "masks_file", "objects"}`` — the same layout MSR-VTT/VATEX users produce.

    Returns the path of ``metadata.jsonl``.
    """
    cfg = SyntheticVideoConfig() if config is None else config
    if isinstance(num_clips, bool) or not isinstance(num_clips, (int, np.integer)) or num_clips < 1:
        raise ValueError(f"`num_clips` must be a positive int, got {num_clips!r}")
    return write_clip_folder(
        out_dir, iter_clips(cfg, seed, num_clips), fps=fps, codec=codec, save_full_segmentation=save_full_segmentation
    )


def write_clip_folder(
    out_dir: str | os.PathLike,
    clips: Iterable[dict[str, Any]],
    fps: int = 8,
    *,
    codec: str | None = None,
    save_full_segmentation: bool = False,
    metadata_keys: Sequence[str] = ("objects",),
) -> Path:
    """Write any generator's clips (dicts with ``video``, ``segmentation_labels``, ``caption``, ``index`` and,
    with ``save_full_segmentation``, ``segmentation``) in the layout of :func:`write_video_folder`.

    ``metadata_keys`` name the JSON-serialisable clip entries copied into each ``metadata.jsonl`` row. Returns
    the path of ``metadata.jsonl``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metadata = out / "metadata.jsonl"
    with metadata.open("w", encoding="utf-8") as handle:
        for clip in clips:
            stem = f"clip_{clip['index']:06d}"
            write_mp4(out / f"{stem}.mp4", clip["video"], fps=fps, codec=codec)
            arrays = {"segmentation_labels": clip["segmentation_labels"].astype(np.int16)}
            if save_full_segmentation:
                arrays["segmentation"] = clip["segmentation"].astype(np.int16)
            np.savez_compressed(out / f"{stem}.npz", **arrays)
            row = {"file_name": f"{stem}.mp4", "caption": clip["caption"], "masks_file": f"{stem}.npz"}
            row.update({key: clip[key] for key in metadata_keys})
            handle.write(json.dumps(row) + "\n")
    return metadata
