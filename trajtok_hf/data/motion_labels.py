"""Pseudo-labels from motion: trajectory ids for unlabeled real footage, from dense optical flow.

The paper derives its segmentation targets from real videos with SAM / SAM2 and a trajectory graph (Sec. 3,
segmentation supervision). Without those models, motion is the classical cue that needs no training: what moves
unlike the camera is an object. Per clip:

1. **Flow.** OpenCV's DIS optical flow between consecutive frames (grey levels), forward ``t → t+1``; the last frame
   reuses the flow into it, reversed.
2. **Camera.** The background's motion is the dominant one: a similarity transform (``cv2.estimateAffinePartial2D``,
   RANSAC) fitted to the flow on a pixel grid. The *residual* flow is the flow minus the camera's.
3. **Moving pixels.** Residual speed above ``max(min_speed, relative_speed × median speed of the frame)`` pixels per
   frame, cleaned by a morphological opening and closing; per frame, each connected region of at least ``min_area``
   pixels is an instance.
4. **Trajectories.** Instances are linked frame to frame by the flow: every pixel of an instance in frame ``t - 1``
   is moved by its flow into frame ``t``, and an instance of frame ``t`` continues the earlier instance that brings
   it the most pixels (at least ``min_link_overlap`` of its area); otherwise it starts a new trajectory. The result
   is the release's own label format — per-frame instance masks plus a trajectory graph — converted to per-pixel
   trajectory ids by :func:`~trajtok_hf.data.pseudo_labels.trajectories_to_pixel_labels`.
5. **Doubt.** Flow is least reliable at motion boundaries and where a surface appears or disappears; pixels there are
   labelled ``-100`` (unlabeled): a band of ``boundary_width`` pixels around every moving region, and pixels whose
   forward and backward flows disagree by more than ``max_consistency_error`` pixels (the classical
   forward-backward check), where the flow is estimated here.

Objects that do not move relative to the camera stay background (``0``): motion labels miss them, so train on them
with the background as ignored (``background_as_trajectory=False`` in the generators' terms) when that matters. The
generator's clips, whose truth is known, measure how good the labels are (see the tests).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .pseudo_labels import IGNORE_INDEX, trajectories_to_pixel_labels


def real_number(value, name: str) -> float:
    """``value`` as a float; a ``TypeError`` naming the config field ``name`` when it is not a real number."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"`{name}` must be a number, got {type(value).__name__} {value!r}")
    return float(value)


@dataclass
class MotionLabelConfig:
    """Parameters of :func:`motion_pseudo_labels` (speeds in pixels per frame, areas in pixels).

    Args:
        min_speed: smallest residual speed that counts as moving.
        relative_speed: a pixel also needs ``relative_speed ×`` the frame's median residual speed (robust to flow
            noise on textured backgrounds).
        min_area: smallest instance, in pixels of one frame.
        min_link_overlap: fraction of an instance's area that the flow must bring from an earlier instance to link
            the two.
        boundary_width: width of the unlabeled band around moving regions (``0``: none).
        grid_step: pixel spacing of the points the camera motion is fitted on.
        max_consistency_error: forward-backward disagreement (pixels) above which a pixel is unlabeled (``None``:
            no check).
    """

    min_speed: float = 0.6
    relative_speed: float = 3.0
    min_area: int = 24
    min_link_overlap: float = 0.3
    boundary_width: int = 1
    grid_step: int = 4
    max_consistency_error: float | None = 1.0

    def __post_init__(self):
        for name in ("min_speed", "relative_speed"):
            if not real_number(getattr(self, name), name) >= 0:
                raise ValueError(f"`{name}` must be >= 0, got {getattr(self, name)!r}")
        for name in ("min_area", "grid_step"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive int, got {value!r}")
        if (
            self.max_consistency_error is not None
            and not real_number(self.max_consistency_error, "max_consistency_error") > 0
        ):
            raise ValueError(f"`max_consistency_error` must be None or > 0, got {self.max_consistency_error!r}")
        if not 0.0 <= real_number(self.min_link_overlap, "min_link_overlap") <= 1.0:
            raise ValueError(f"`min_link_overlap` must be in [0, 1], got {self.min_link_overlap!r}")
        if isinstance(self.boundary_width, bool) or not isinstance(self.boundary_width, int) or self.boundary_width < 0:
            raise ValueError(f"`boundary_width` must be an int >= 0, got {self.boundary_width!r}")


def dense_flow(video: np.ndarray, with_backward: bool = False):
    """``(T, H, W, 3)`` uint8 → ``(T, H, W, 2)`` float32 flow of every frame: DIS flow ``t → t+1``; the last frame
    gets the reversed flow into it (zeros for a one-frame clip). With ``with_backward``, also the flows
    ``t+1 → t`` (``(T - 1, H, W, 2)``) of the forward-backward check."""
    import cv2

    grey = [cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) for frame in video]
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    flows = np.zeros((*video.shape[:3], 2), dtype=np.float32)
    backward = np.zeros((max(len(grey) - 1, 0), *video.shape[1:3], 2), dtype=np.float32)
    for t in range(len(grey) - 1):
        flows[t] = dis.calc(grey[t], grey[t + 1], None)
        backward[t] = dis.calc(grey[t + 1], grey[t], None)
    if len(grey) > 1:
        flows[-1] = -backward[-1]
    return (flows, backward) if with_backward else flows


def video_and_flow(video: np.ndarray, flow: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Check a ``(T, H, W, 3)`` uint8 clip and an optional given flow; return ``(video, forward, backward)``: DIS
    flows both ways when ``flow`` is None, else the given flow and no backward flow."""
    video = np.asarray(video)
    if video.ndim != 4 or video.shape[-1] != 3 or video.dtype != np.uint8:
        raise ValueError(f"`video` must be a (T, H, W, 3) uint8 array, got {video.dtype} of shape {video.shape}")
    if flow is None:
        forward, backward = dense_flow(video, with_backward=True)
        return video, forward, backward
    if np.shape(flow) != (*video.shape[:3], 2):
        raise ValueError(f"`flow` must have shape {(*video.shape[:3], 2)}, got {np.shape(flow)}")
    return video, np.asarray(flow, dtype=np.float32), None


def consistency_error(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """``|f(x) + b(x + f(x))|`` per pixel of ``(H, W, 2)`` flows ``t → t+1`` and ``t+1 → t`` (nearest lookup)."""
    height, width = forward.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width]
    tx = np.clip(np.rint(xs + forward[..., 0]).astype(np.int64), 0, width - 1)
    ty = np.clip(np.rint(ys + forward[..., 1]).astype(np.int64), 0, height - 1)
    return np.linalg.norm(forward + backward[ty, tx], axis=-1)


def camera_residual(flow: np.ndarray, grid_step: int = 4) -> np.ndarray:
    """``(H, W, 2)`` flow minus the similarity transform (camera motion) that RANSAC fits to it on a grid."""
    import cv2

    height, width = flow.shape[:2]
    ys, xs = np.mgrid[0:height:grid_step, 0:width:grid_step]
    source = np.stack([xs.ravel(), ys.ravel()], axis=-1).astype(np.float32)
    target = source + flow[ys.ravel(), xs.ravel()]
    matrix, _ = cv2.estimateAffinePartial2D(source, target, method=cv2.RANSAC, ransacReprojThreshold=1.0)
    if matrix is None:  # degenerate (flat frame): the median flow is the camera's
        return flow - np.median(flow.reshape(-1, 2), axis=0)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    camera = np.stack(
        [
            matrix[0, 0] * xx + matrix[0, 1] * yy + matrix[0, 2] - xx,
            matrix[1, 0] * xx + matrix[1, 1] * yy + matrix[1, 2] - yy,
        ],
        axis=-1,
    )
    return flow - camera


def _moving_instances(residual: np.ndarray, cfg: MotionLabelConfig) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame instance ids (``0`` = static) and the doubt band of one frame."""
    import cv2

    speed = np.linalg.norm(residual, axis=-1)
    threshold = max(cfg.min_speed, cfg.relative_speed * float(np.median(speed)))
    moving = (speed > threshold).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    moving = cv2.morphologyEx(cv2.morphologyEx(moving, cv2.MORPH_OPEN, kernel), cv2.MORPH_CLOSE, kernel)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(moving, connectivity=8)
    keep = np.zeros(count, dtype=np.int64)
    large = np.flatnonzero(stats[1:, cv2.CC_STAT_AREA] >= cfg.min_area) + 1
    keep[large] = np.arange(1, len(large) + 1)
    instances = keep[labels]
    if cfg.boundary_width:
        size = 2 * cfg.boundary_width + 1
        band_kernel = np.ones((size, size), np.uint8)
        mask = (instances > 0).astype(np.uint8)
        doubt = cv2.dilate(mask, band_kernel).astype(bool) & ~cv2.erode(mask, band_kernel).astype(bool)
    else:
        doubt = np.zeros(instances.shape, dtype=bool)
    return instances, doubt


def _link(previous: np.ndarray, current: np.ndarray, flow: np.ndarray, min_overlap: float) -> np.ndarray:
    """For each instance of ``current`` (ids ``1..n``), the id of the ``previous`` instance it continues (or 0)."""
    n = int(current.max())
    if n == 0 or previous.max() == 0:
        return np.zeros(n + 1, dtype=np.int64)
    height, width = previous.shape
    ys, xs = np.nonzero(previous)
    tx = np.clip(np.rint(xs + flow[ys, xs, 0]).astype(np.int64), 0, width - 1)
    ty = np.clip(np.rint(ys + flow[ys, xs, 1]).astype(np.int64), 0, height - 1)
    landed = current[ty, tx]
    counts = np.zeros((n + 1, int(previous.max()) + 1), dtype=np.int64)
    np.add.at(counts, (landed, previous[ys, xs]), 1)
    counts[0] = 0
    best = counts.argmax(axis=1)
    area = np.bincount(current.ravel(), minlength=n + 1)
    enough = counts[np.arange(n + 1), best] >= min_overlap * np.maximum(area, 1)
    return np.where(enough, best, 0)


def link_instances(instances: np.ndarray, flow: np.ndarray, min_overlap: float) -> np.ndarray:
    """Link per-frame instances ``(T, H, W)`` (ids ``1..n`` per frame, ``0`` none) into a trajectory graph ``(N, T)``.

    An instance of frame ``t`` continues the trajectory of the frame ``t - 1`` instance whose pixels, moved by the
    flow ``flow[t - 1]``, bring it the most pixels (at least ``min_overlap`` of its area); when that trajectory
    already has an instance in frame ``t`` (a split), or nothing qualifies, it starts a new trajectory.
    """
    num_frames = instances.shape[0]
    counts = instances.reshape(num_frames, -1).max(axis=1) if instances.size else np.zeros(num_frames, np.int64)
    graph = np.zeros((int(counts.sum()), num_frames), dtype=np.int64)  # at most one row per instance
    num_rows = 0
    owner_of_previous = np.zeros(1, dtype=np.int64)  # previous frame's instance id → trajectory row (+1)
    for t in range(num_frames):  # frames depend on the previous one (linking), so this loop is sequential
        n = int(counts[t])
        owner = np.zeros(n + 1, dtype=np.int64)
        if t > 0:
            continued = _link(instances[t - 1], instances[t], flow[t - 1], min_overlap)
            owner = np.where(continued > 0, owner_of_previous[continued], 0)
        rows = owner[1:].copy()
        # Of the instances that continue the same trajectory, the lowest id keeps it; the others start new ones.
        first = np.zeros(n, dtype=bool)
        first[np.unique(rows, return_index=True)[1]] = True
        fresh = (rows == 0) | ~first
        rows[fresh] = num_rows + 1 + np.arange(int(fresh.sum()))
        num_rows += int(fresh.sum())
        graph[rows - 1, t] = np.arange(1, n + 1)
        owner[1:] = rows
        owner_of_previous = owner
    return graph[:num_rows]


def motion_pseudo_labels(
    video: np.ndarray, config: MotionLabelConfig | None = None, flow: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Trajectory pseudo-labels of an unlabeled clip from its motion (see the module docstring).

    Args:
        video: ``(T, H, W, 3)`` uint8 frames.
        config: thresholds (defaults: :class:`MotionLabelConfig`).
        flow: ``(T, H, W, 2)`` flow to use instead of DIS (for instance the exact flow a generator knows).

    Returns:
        ``{"segmentation": (T, H, W) int64, "instance_masks": (T, H, W) int64, "trajectory_graph": (N, T) int64}``:
        per-pixel trajectory ids (``0`` background, ``1..N`` trajectories, ``-100`` the doubt band), and the
        release-format labels they come from.
    """
    cfg = config or MotionLabelConfig()
    video, flow, backward = video_and_flow(video, flow)
    num_frames = video.shape[0]
    instances = np.zeros(video.shape[:3], dtype=np.int64)
    doubt = np.zeros(video.shape[:3], dtype=bool)
    for t in range(num_frames):
        instances[t], doubt[t] = _moving_instances(camera_residual(flow[t], cfg.grid_step), cfg)
        if backward is not None and cfg.max_consistency_error is not None and t < num_frames - 1:
            doubt[t] |= consistency_error(flow[t], backward[t]) > cfg.max_consistency_error
    graph = link_instances(instances, flow, cfg.min_link_overlap)
    # The converter numbers trajectories from 0 and marks uncovered pixels; here background is 0, trajectories 1..N.
    segmentation = np.asarray(trajectories_to_pixel_labels(instances, graph, ignore_index=-1), dtype=np.int64) + 1
    segmentation[doubt] = IGNORE_INDEX
    return {"segmentation": segmentation, "instance_masks": instances, "trajectory_graph": graph}
