"""Pseudo-label trajectories (the release's training data) → per-pixel trajectory ids on the mask grid.

The official TrajTok training data stores, per clip,

* ``instance_masks`` — ``(T, H, W)`` integers: a *per-frame* instance id for every pixel (``0`` = no instance).
  Ids are only meaningful inside their own frame: instance 3 in frame 0 and instance 3 in frame 1 need not be the
  same object.
* ``trajectory_graph`` — ``(N, T)`` integers: row ``i`` links per-frame ids into trajectory ``i``; entry
  ``[i, t]`` is the instance id that trajectory ``i`` occupies in frame ``t`` (``0`` or ``-1`` = absent there).

The segmentation loss (paper Sec. 3, segmentation supervision) wants one trajectory id per pixel over all ``T``
frames, ``-100`` where unlabeled.
:func:`trajectories_to_pixel_labels` does that conversion with a ``(T, max_id + 1)`` lookup table and a single
gather (ids are compacted first when they are large), so its cost does not grow with the number of trajectories.
:func:`downsample_labels` then brings full-resolution labels to the model's ``1/stride`` mask grid
(``segmentation_labels (T, H/4, W/4)``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

IGNORE_INDEX = -100
"""Label of unlabeled pixels; the segmentation loss skips them (the ``ignore_index`` of torch losses)."""

DOWNSAMPLE_MODES = ("mode", "nearest")


def _to_numpy(value: Any, name: str) -> tuple[np.ndarray, bool]:
    """Return ``(array, was_torch)``; accepts numpy arrays, torch tensors and nested sequences."""
    was_torch = False
    if type(value).__module__.startswith("torch"):
        was_torch = True
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value)
    except Exception as err:  # ragged lists and the like
        raise TypeError(f"`{name}` must be array-like, got {type(value).__name__}: {err}") from err
    return array, was_torch


def _require_integer(array: np.ndarray, name: str) -> None:
    if array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"`{name}` must hold integers, got dtype {array.dtype}")


def _maybe_torch(array: np.ndarray, as_torch: bool):
    if not as_torch:
        return array
    import torch  # local: the numpy path must not require torch at import time

    return torch.from_numpy(np.ascontiguousarray(array))


def trajectories_to_pixel_labels(
    instance_masks: Any,
    trajectory_graph: Any,
    *,
    ignore_index: int = IGNORE_INDEX,
) -> Any:
    """Convert per-frame instance masks + a trajectory graph into per-pixel trajectory ids.

    Args:
        instance_masks: ``(T, H, W)`` integer array (numpy or torch); per-frame instance ids, ``0`` = none.
        trajectory_graph: ``(N, T)`` integer array; ``[i, t]`` is the instance id of trajectory ``i`` in frame
            ``t``; ``0`` or ``-1`` means the trajectory is absent from that frame. ``N`` may be ``0``.
        ignore_index: label written where no trajectory covers a pixel (background, and instances that no
            trajectory links).

    Returns:
        ``(T, H, W)`` int64 labels — trajectory ``i`` (row ``i`` of the graph) becomes id ``i``; a torch tensor
        if ``instance_masks`` was one, else a numpy array.

    Raises:
        TypeError: a non-integer input.
        ValueError: wrong rank, mismatched ``T``, negative instance ids, graph ids below ``-1``, or two
            trajectories claiming the same instance in the same frame (the conversion would be ambiguous).
    """
    masks, as_torch = _to_numpy(instance_masks, "instance_masks")
    graph, _ = _to_numpy(trajectory_graph, "trajectory_graph")
    _require_integer(masks, "instance_masks")
    if masks.ndim != 3:
        raise ValueError(f"`instance_masks` must have shape (T, H, W), got shape {masks.shape}")
    num_frames = masks.shape[0]
    if graph.size == 0 and graph.ndim <= 2:
        graph = np.zeros((0, num_frames), dtype=np.int64)
    _require_integer(graph, "trajectory_graph")
    if graph.ndim != 2:
        raise ValueError(f"`trajectory_graph` must have shape (N, T), got shape {graph.shape}")
    if graph.shape[1] != num_frames:
        raise ValueError(
            f"`trajectory_graph` has {graph.shape[1]} frame columns but `instance_masks` has {num_frames} frames"
        )
    if not isinstance(ignore_index, (int, np.integer)) or isinstance(ignore_index, bool):
        raise TypeError(f"`ignore_index` must be an int, got {type(ignore_index).__name__}")
    if masks.size and masks.min() < 0:
        raise ValueError(f"`instance_masks` must be >= 0 (0 = no instance), found {int(masks.min())}")
    if graph.size and graph.min() < -1:
        raise ValueError(f"`trajectory_graph` entries must be >= -1 (0 or -1 = absent), found {int(graph.min())}")

    masks = masks.astype(np.int64, copy=False)
    graph = graph.astype(np.int64, copy=False)

    traj_idx, frame_idx = np.nonzero(graph > 0)
    inst_ids = graph[traj_idx, frame_idx]
    # Two trajectories pointing at the same (frame, instance) would make the label of those pixels depend on
    # write order; the data is malformed and silently picking one would corrupt training.
    order = np.lexsort((inst_ids, frame_idx))
    same = (np.diff(frame_idx[order]) == 0) & (np.diff(inst_ids[order]) == 0)
    if np.any(same):
        first = order[np.argmax(same)]
        frame, inst = int(frame_idx[first]), int(inst_ids[first])
        owners = traj_idx[(frame_idx == frame) & (inst_ids == inst)].tolist()
        raise ValueError(
            f"`trajectory_graph` links instance {inst} of frame {frame} to several trajectories {owners}; "
            "each per-frame instance may belong to at most one trajectory"
        )

    max_id = max(int(masks.max()) if masks.size else 0, int(inst_ids.max()) if inst_ids.size else 0)
    if max_id < (1 << 16):
        codes, code_of = masks, inst_ids
        num_codes = max_id + 1
    else:
        # Ids such as packed RGB colours would make a (T, max_id + 1) table huge: compact them to ranks first.
        values, codes = np.unique(masks, return_inverse=True)
        codes = codes.reshape(masks.shape)
        code_of = np.searchsorted(values, inst_ids)
        hit = (code_of < len(values)) & (values[np.minimum(code_of, len(values) - 1)] == inst_ids)
        traj_idx, frame_idx, inst_ids, code_of = traj_idx[hit], frame_idx[hit], inst_ids[hit], code_of[hit]
        num_codes = len(values)
    lookup = np.full((num_frames, max(num_codes, 1)), ignore_index, dtype=np.int64)
    lookup[frame_idx, code_of] = traj_idx
    labels = lookup[np.arange(num_frames)[:, None, None], codes]
    # Instance id 0 means "no instance" in the masks whatever the graph says (graph ids are > 0 here anyway).
    labels[masks == 0] = ignore_index
    return _maybe_torch(labels, as_torch)


def downsample_labels(labels: Any, stride: int = 4, mode: str = "mode") -> Any:
    """Bring per-pixel labels ``(..., H, W)`` to the ``1/stride`` mask grid ``(..., H/stride, W/stride)``.

    Args:
        labels: integer array (numpy or torch), last two axes spatial; ``H`` and ``W`` must be divisible by
            ``stride`` (the mask grid of the model tiles the frame exactly).
        stride: cell size in pixels; ``1`` returns a copy.
        mode: ``"mode"`` — majority label of each ``stride × stride`` cell (ties go to the smallest label, so an
            exact tie between ``-100`` and a trajectory stays unlabeled); ``"nearest"`` — the pixel at offset
            ``stride // 2`` inside each cell, i.e. the pixel nearest the cell centre, rounded down-right.
            ``"mode"`` preserves thin/small regions better and is the default everywhere in this package.

    Returns:
        int64 labels on the mask grid, same container type as the input.
    """
    array, as_torch = _to_numpy(labels, "labels")
    _require_integer(array, "labels")
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
        raise ValueError(f"`stride` must be a positive int, got {stride!r}")
    if mode not in DOWNSAMPLE_MODES:
        raise ValueError(f"`mode` must be one of {DOWNSAMPLE_MODES}, got {mode!r}")
    if array.ndim < 2:
        raise ValueError(f"`labels` must have at least 2 (spatial) dimensions, got shape {array.shape}")
    height, width = array.shape[-2:]
    if height % stride or width % stride:
        raise ValueError(f"`labels` spatial size {(height, width)} is not divisible by `stride`={stride}")
    h, w = height // stride, width // stride
    if stride == 1:
        return _maybe_torch(array.astype(np.int64, copy=True), as_torch)
    if mode == "nearest":
        off = stride // 2
        return _maybe_torch(np.ascontiguousarray(array[..., off::stride, off::stride]).astype(np.int64), as_torch)
    return _maybe_torch(_mode_pool(array, stride, h, w), as_torch)


def _pool_sum(mask: np.ndarray, stride: int) -> np.ndarray:
    """Per-cell sums of a 0/1 ``(..., H, W)`` uint8 array via strided adds (much faster than a strided reduce)."""
    acc_dtype = np.uint8 if stride * stride <= 255 else np.int32
    cols = mask[..., 0::stride].astype(acc_dtype)
    for j in range(1, stride):
        cols += mask[..., j::stride]
    cells = cols[..., 0::stride, :].copy()
    for j in range(1, stride):
        cells += cols[..., j::stride, :]
    return cells


def _mode_pool(array: np.ndarray, stride: int, h: int, w: int) -> np.ndarray:
    lead = array.shape[:-2]
    if array.size == 0:
        return np.zeros(lead + (h, w), dtype=np.int64)
    values = np.unique(array) if array.size <= 4096 else None
    lo, hi = int(array.min()), int(array.max())
    if values is None and hi - lo < 16:
        values = np.arange(lo, hi + 1)
    if values is not None and len(values) <= 16:
        # Few distinct labels (synthetic clips: background + a handful of objects): one comparison and a
        # strided pooling pass per label; the first label's count is implied by the others.
        counts = [_pool_sum((array == value).view(np.uint8), stride) for value in values[1:]]
        first = np.full(lead + (h, w), stride * stride, dtype=np.int32)
        for count in counts:
            first -= count
        stacked = np.stack([first] + [c.astype(np.int32, copy=False) for c in counts], axis=-1)
        # argmax keeps the first maximum: ties go to the smallest label.
        return np.asarray(values, dtype=np.int64)[stacked.argmax(axis=-1)]
    values, codes = np.unique(array, return_inverse=True)
    codes = codes.reshape(array.shape)
    num_values = len(values)
    cells = codes.reshape(-1, h, stride, w, stride).transpose(0, 1, 3, 2, 4).reshape(-1, stride * stride)
    flat = (np.arange(cells.shape[0])[:, None] * num_values + cells).ravel()
    counts = np.bincount(flat, minlength=cells.shape[0] * num_values).reshape(lead + (h, w, num_values))
    return values[counts.argmax(axis=-1)].astype(np.int64)
