"""Pseudo-labels from appearance and motion: a trajectory id for every pixel of unlabeled real footage.

The paper's segmentation targets cover the whole frame: SAM / SAM2 masks of every object and region, linked into
trajectories (Sec. 3, segmentation supervision). :func:`~trajtok_hf.data.motion_pseudo_labels` finds only what
moves; this module labels everything, with classical cues that need no trained model:

1. **Regions.** Each frame is cut into colour-coherent regions by Felzenszwalb and Huttenlocher's graph-based
   segmentation (``skimage.segmentation.felzenszwalb``; ``scale``, ``sigma``, and a smallest region of
   ``min_region_fraction`` of the frame).
2. **Motion groups parts.** The moving instances of the motion labels (camera motion removed, see
   :mod:`~trajtok_hf.data.motion_labels`) join the regions they cover: a region with at least ``merge_fraction``
   of its pixels inside one moving instance becomes part of that instance, so a cyclist in a dark jacket and light
   trousers is one object while he moves.
3. **Trajectories.** Regions are linked frame to frame by the flow
   (:func:`~trajtok_hf.data.motion_labels.link_instances`), into the release's label format (per-frame instance
   masks and a trajectory graph).
4. **Doubt.** Pixels within ``boundary_width`` of a region boundary, and pixels whose forward and backward flows
   disagree by more than ``max_consistency_error``, are unlabeled (``-100``); so is every trajectory beyond the
   ``max_trajectories`` largest (a segmenter with ``K`` slots can hold at most ``K`` of them).

How it differs from the paper's labels: regions follow colour, not objects — a textured object splits along its
texture, and two touching surfaces of one colour merge — and a region that changes shape from frame to frame may
break its trajectory in two. The procedural clips, whose truth is known, measure these errors (see the tests).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .motion_labels import (
    MotionLabelConfig,
    _moving_instances,
    camera_residual,
    consistency_error,
    link_instances,
    real_number,
    video_and_flow,
)
from .pseudo_labels import IGNORE_INDEX, trajectories_to_pixel_labels


@dataclass
class RegionLabelConfig:
    """Parameters of :func:`region_pseudo_labels`.

    Args:
        scale: Felzenszwalb's scale (larger: fewer, larger regions), at the clip's own resolution.
        sigma: width of the Gaussian that smooths a frame before it is cut.
        min_region_fraction: smallest region, as a fraction of the frame's area (at least 4 pixels).
        motion: thresholds of the moving instances that join regions (``None``: appearance only).
        merge_fraction: share of a region's pixels that must lie inside one moving instance for it to join that
            instance.
        min_link_overlap: fraction of a region's area that the flow must bring from a region of the previous frame
            to continue its trajectory.
        boundary_width: pixels on each side of a region boundary that are unlabeled (``0``: none).
        max_consistency_error: forward-backward flow disagreement (pixels) above which a pixel is unlabeled
            (``None``: no check).
        max_trajectories: only the largest trajectories (by labelled pixels over the clip) keep their ids; ``None``
            keeps all.
    """

    scale: float = 300.0
    sigma: float = 0.8
    min_region_fraction: float = 0.005
    motion: MotionLabelConfig | None = field(default_factory=MotionLabelConfig)
    merge_fraction: float = 0.5
    min_link_overlap: float = 0.3
    boundary_width: int = 1
    max_consistency_error: float | None = 1.0
    max_trajectories: int | None = 31

    def __post_init__(self):
        for name in ("scale", "sigma"):
            if not real_number(getattr(self, name), name) >= 0:
                raise ValueError(f"`{name}` must be >= 0, got {getattr(self, name)!r}")
        for name in ("min_region_fraction", "merge_fraction", "min_link_overlap"):
            if not 0.0 <= real_number(getattr(self, name), name) <= 1.0:
                raise ValueError(f"`{name}` must be in [0, 1], got {getattr(self, name)!r}")
        if self.motion is not None and not isinstance(self.motion, MotionLabelConfig):
            raise TypeError(f"`motion` must be a MotionLabelConfig or None, got {type(self.motion).__name__}")
        if isinstance(self.boundary_width, bool) or not isinstance(self.boundary_width, int) or self.boundary_width < 0:
            raise ValueError(f"`boundary_width` must be an int >= 0, got {self.boundary_width!r}")
        if (
            self.max_consistency_error is not None
            and not real_number(self.max_consistency_error, "max_consistency_error") > 0
        ):
            raise ValueError(f"`max_consistency_error` must be None or > 0, got {self.max_consistency_error!r}")
        limit = self.max_trajectories
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ValueError(f"`max_trajectories` must be None or a positive int, got {limit!r}")


def frame_regions(frame: np.ndarray, cfg: RegionLabelConfig) -> np.ndarray:
    """``(H, W)`` region ids ``1..n`` of one ``(H, W, 3)`` uint8 frame (Felzenszwalb)."""
    from skimage.segmentation import felzenszwalb

    min_size = max(4, round(cfg.min_region_fraction * frame.shape[0] * frame.shape[1]))
    return felzenszwalb(frame, scale=cfg.scale, sigma=cfg.sigma, min_size=min_size).astype(np.int64) + 1


def join_moving_regions(regions: np.ndarray, moving: np.ndarray, merge_fraction: float) -> np.ndarray:
    """Regions ``(H, W)`` (ids ``1..n``) with those lying mostly (``≥ merge_fraction``) inside one moving instance
    of ``moving`` (ids ``1..m``, ``0`` static) replaced by that instance; ids renumbered ``1..n'``."""
    n, m = int(regions.max()), int(moving.max())
    if m == 0:
        return regions
    table = np.bincount((regions * (m + 1) + moving).ravel(), minlength=(n + 1) * (m + 1)).reshape(n + 1, m + 1)
    area = table.sum(axis=1)
    best = table[:, 1:].argmax(axis=1) + 1
    inside = table[np.arange(n + 1), best] >= merge_fraction * np.maximum(area, 1)
    joined = np.where(inside & (area > 0), n + best, np.arange(n + 1))
    joined[0] = 0
    _, compact = np.unique(joined, return_inverse=True)  # 0 stays 0 (the smallest value); ids become 1..n'
    return compact.reshape(-1)[regions]


def boundary_band(ids: np.ndarray, width: int) -> np.ndarray:
    """``(H, W)`` bool: pixels within ``width`` pixels of a change of id (both sides of every boundary)."""
    edge = np.zeros(ids.shape, dtype=bool)
    horizontal = ids[:, 1:] != ids[:, :-1]
    vertical = ids[1:, :] != ids[:-1, :]
    edge[:, 1:] |= horizontal
    edge[:, :-1] |= horizontal
    edge[1:, :] |= vertical
    edge[:-1, :] |= vertical
    if width > 1:
        import cv2

        size = 2 * width - 1
        edge = cv2.dilate(edge.view(np.uint8), np.ones((size, size), np.uint8)).astype(bool)
    return edge


def region_pseudo_labels(
    video: np.ndarray, config: RegionLabelConfig | None = None, flow: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Trajectory pseudo-labels for every pixel of an unlabeled clip (see the module docstring).

    Args:
        video: ``(T, H, W, 3)`` uint8 frames.
        config: parameters (defaults: :class:`RegionLabelConfig`).
        flow: ``(T, H, W, 2)`` flow to use instead of DIS (then no forward-backward check).

    Returns:
        ``{"segmentation": (T, H, W) int64, "instance_masks": (T, H, W) int64, "trajectory_graph": (N, T) int64}``:
        per-pixel trajectory ids ``0..N'-1`` (``N' ≤ max_trajectories``; id 0 is the largest trajectory, and so
        on; ``-100`` unlabeled), and the release-format labels of all ``N`` trajectories they come from.
    """
    cfg = config or RegionLabelConfig()
    if not isinstance(cfg, RegionLabelConfig):
        raise TypeError(f"`config` must be a RegionLabelConfig, got {type(cfg).__name__}")
    video, flow, backward = video_and_flow(video, flow)
    num_frames = video.shape[0]
    instances = np.zeros(video.shape[:3], dtype=np.int64)
    doubt = np.zeros(video.shape[:3], dtype=bool)
    for t in range(num_frames):  # per frame: OpenCV and scikit-image work on one image at a time
        regions = frame_regions(video[t], cfg)
        if cfg.motion is not None:
            moving, _ = _moving_instances(camera_residual(flow[t], cfg.motion.grid_step), cfg.motion)
            regions = join_moving_regions(regions, moving, cfg.merge_fraction)
        instances[t] = regions
        if cfg.boundary_width:
            doubt[t] = boundary_band(regions, cfg.boundary_width)
        if backward is not None and cfg.max_consistency_error is not None and t < num_frames - 1:
            doubt[t] |= consistency_error(flow[t], backward[t]) > cfg.max_consistency_error
    graph = link_instances(instances, flow, cfg.min_link_overlap)
    trajectories = np.asarray(trajectories_to_pixel_labels(instances, graph, ignore_index=IGNORE_INDEX))
    labelled = (trajectories >= 0) & ~doubt
    area = np.bincount(trajectories[labelled], minlength=len(graph))
    order = np.argsort(-area, kind="stable")
    kept = len(order) if cfg.max_trajectories is None else min(cfg.max_trajectories, len(order))
    new_id = np.full(len(graph) + 1, IGNORE_INDEX, dtype=np.int64)  # last entry: the unlabeled pixels
    new_id[order[:kept]] = np.arange(kept)
    segmentation = new_id[np.where(labelled, trajectories, len(graph))]
    return {"segmentation": segmentation, "instance_masks": instances, "trajectory_graph": graph}
