"""Identity (tracking) metrics on dense per-pixel id maps of whole videos.

A streaming tokenizer that cuts a long video into chunks must keep giving an object the same trajectory id from
one chunk to the next. These metrics score that the way multi-object tracking (MOT) benchmarks do, with the
objects' pixel masks as detections. Inputs are one video's predicted and GT id maps ``(T, h, w)`` (integer numpy
arrays or torch tensors); pixels whose GT equals ``ignore_index`` (default ``-100``; ``None`` = none) are dropped
everywhere.

* **Detections.** A *GT detection* is a pair (frame ``t``, GT id ``g``) for every GT id other than
  ``background_id`` (default ``0``; ``None`` = no background) present in frame ``t``. A *predicted detection* is
  a pair (``t``, predicted id ``p``) for every predicted id present in frame ``t``, **except** that a predicted
  id whose pixels in that frame are more than half GT background is a *background prediction*, not a detection.
  A tokenizer that also gives the background trajectories is thus not penalised for them (FG-ARI likewise
  leaves background pixels out); background predictions are counted separately.
* **Per-frame matching.** ``g`` and ``p`` match in frame ``t`` when their IoU in that frame (over the valid
  pixels of the frame) is greater than ``iou_threshold`` (default ``0.5``). Both maps are partitions of the
  frame, so with a threshold ``>= 0.5`` every GT detection matches at most one predicted detection and vice
  versa: no per-frame assignment is needed.
* **IDF1 / IDP / IDR** (Ristani et al., 2016). The one-to-one mapping between GT ids and predicted ids over the
  whole video that maximises ``IDTP``, the number of frames in which a mapped pair matches
  (``scipy.optimize.linear_sum_assignment`` on the matched-frame counts). ``IDFN = GT detections - IDTP``,
  ``IDFP = predicted detections - IDTP``::

      IDF1 = 2 IDTP / (2 IDTP + IDFP + IDFN)     IDP = IDTP / (IDTP + IDFP)     IDR = IDTP / (IDTP + IDFN)

  An object that keeps its id through the whole video scores 1; one whose id changes at every chunk boundary
  keeps only its longest stretch.
* **ID switches and MOTA** (CLEAR-MOT, Bernardin & Stiefelhagen, 2008). For each GT id, over the frames where it
  is matched, ``IDSW`` counts the times its predicted id differs from the one it was last matched to (a gap in
  between does not reset it). ``FN`` = unmatched GT detections, ``FP`` = unmatched predicted detections::

      MOTA = 1 - (FN + FP + IDSW) / GT detections

* **FG-ARI** over the whole video (space and time), from
  :func:`trajtok_hf.metrics.segmentation.foreground_adjusted_rand_index`: one id per object over all frames is
  required, unlike per-chunk FG-ARI.

:func:`tracking_metrics` combines several videos as MOT benchmarks do: the counts are summed and IDF1 / IDP /
IDR / MOTA are recomputed from the sums (a long video weighs more than a short one); FG-ARI is the mean over
videos. Undefined values (no GT detection, no detection at all) are ``NaN``.

How: everything comes from one sparse contingency over (frame, GT id, predicted id) triples, built with
``np.unique`` on combined codes and ``np.bincount`` — no Python loops over pixels or frames; ID switches come
from the matches sorted by (GT id, frame) and compared with their neighbours.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from .segmentation import foreground_adjusted_rand_index, to_numpy

__all__ = ["identity_metrics", "tracking_metrics"]

COUNT_KEYS = (
    "IDTP",
    "IDFP",
    "IDFN",
    "IDSW",
    "FP",
    "FN",
    "gt_detections",
    "pred_detections",
    "matches",
    "gt_tracks",
    "pred_tracks",
    "background_predictions",
)
"""Integer outputs of :func:`identity_metrics`; :func:`tracking_metrics` sums them over videos."""


def _id_map(x: Any, name: str) -> np.ndarray:
    try:
        a = to_numpy(x)
    except (ValueError, TypeError) as error:
        raise TypeError(f"`{name}` must be an integer id array of shape (T, h, w): {error}") from error
    if a.dtype == bool or not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"`{name}` must hold integer ids, got dtype {a.dtype}")
    if a.ndim != 3:
        raise ValueError(f"`{name}` must have shape (T, h, w), got {a.shape}")
    return a.astype(np.int64, copy=False)


def _optional_int(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"`{name}` must be an int or None, got {value!r}")
    return int(value)


def _check_threshold(iou_threshold: Any) -> float:
    if isinstance(iou_threshold, bool) or not isinstance(iou_threshold, (int, float, np.integer, np.floating)):
        raise TypeError(f"`iou_threshold` must be a number, got {iou_threshold!r}")
    value = float(iou_threshold)
    # Below 0.5 a GT mask could match two predicted masks (and vice versa), which would need a per-frame
    # assignment; at 1 nothing can match (IoU > 1 is impossible).
    if not 0.5 <= value < 1.0:
        raise ValueError(f"`iou_threshold` must be in [0.5, 1), got {iou_threshold!r}")
    return value


def _ratio(num: int, den: int) -> float:
    return num / den if den else float("nan")


def _scores(counts: dict[str, int]) -> dict[str, float]:
    """IDF1 / IDP / IDR / MOTA from the counts (of one video or summed over videos)."""
    idtp, idfp, idfn = counts["IDTP"], counts["IDFP"], counts["IDFN"]
    gt_det = counts["gt_detections"]
    mota = 1.0 - (counts["FN"] + counts["FP"] + counts["IDSW"]) / gt_det if gt_det else float("nan")
    return {
        "IDF1": _ratio(2 * idtp, 2 * idtp + idfp + idfn),
        "IDP": _ratio(idtp, idtp + idfp),
        "IDR": _ratio(idtp, idtp + idfn),
        "MOTA": mota,
    }


def _identity_counts(
    p: np.ndarray, g: np.ndarray, background_id: int | None, ignore_index: int | None, iou_threshold: float
) -> dict[str, int]:
    num_frames = g.shape[0]
    frame = np.broadcast_to(np.arange(num_frames, dtype=np.int64)[:, None], (num_frames, g[0].size)).reshape(-1)
    g, p = g.reshape(-1), p.reshape(-1)
    if ignore_index is not None:
        keep = g != ignore_index
        if not keep.all():
            frame, g, p = frame[keep], g[keep], p[keep]
    gt_ids, gi = np.unique(g, return_inverse=True)
    pred_ids, pi = np.unique(p, return_inverse=True)
    n_g, n_p = max(gt_ids.size, 1), max(pred_ids.size, 1)
    gi, pi = gi.reshape(-1), pi.reshape(-1)
    # The sparse contingency: one cell per (frame, GT id, predicted id) with at least one pixel.
    cells, overlap = np.unique((frame * n_g + gi) * n_p + pi, return_counts=True)
    cell_tg, cell_p = cells // n_p, cells % n_p
    cell_t, cell_g = cell_tg // n_g, cell_tg % n_g
    cell_tp = cell_t * n_p + cell_p
    # Areas of every (frame, GT id) and (frame, predicted id) region, looked up per cell.
    gt_area = np.bincount(cell_tg, weights=overlap, minlength=num_frames * n_g).astype(np.int64)
    pred_area = np.bincount(cell_tp, weights=overlap, minlength=num_frames * n_p).astype(np.int64)
    is_fg = np.ones(n_g, dtype=bool) if background_id is None else gt_ids != background_id
    if gt_ids.size == 0:
        is_fg = np.zeros(1, dtype=bool)
    fg_cell = is_fg[cell_g]
    pred_present = pred_area > 0
    background_pixels = np.bincount(cell_tp[~fg_cell], weights=overlap[~fg_cell], minlength=num_frames * n_p)
    background_prediction = pred_present & (2 * background_pixels > pred_area)
    pred_detection = pred_present & ~background_prediction
    gt_detection = (gt_area > 0) & np.tile(is_fg, num_frames)
    union = gt_area[cell_tg] + pred_area[cell_tp] - overlap
    matched = fg_cell & pred_detection[cell_tp] & (overlap / union > iou_threshold)
    match_g, match_p, match_t = cell_g[matched], cell_p[matched], cell_t[matched]

    # IDF1: the one-to-one GT id <-> predicted id mapping maximising the matched frames. Only ids with a match
    # can contribute, so the assignment runs on those rows and columns.
    rows, row_of = np.unique(match_g, return_inverse=True)
    cols, col_of = np.unique(match_p, return_inverse=True)
    idtp = 0
    if rows.size:
        frames_together = np.bincount(
            row_of.reshape(-1) * cols.size + col_of.reshape(-1), minlength=rows.size * cols.size
        ).reshape(rows.size, cols.size)
        r, c = linear_sum_assignment(frames_together, maximize=True)
        idtp = int(frames_together[r, c].sum())

    # ID switches: matches in (GT id, frame) order; a switch is a neighbour of the same GT id with another id.
    order = np.lexsort((match_t, match_g))
    sg, sp = match_g[order], match_p[order]
    id_switches = int(np.count_nonzero((sg[1:] == sg[:-1]) & (sp[1:] != sp[:-1])))

    num_gt, num_pred, num_matches = int(gt_detection.sum()), int(pred_detection.sum()), int(matched.sum())
    return {
        "IDTP": idtp,
        "IDFP": num_pred - idtp,
        "IDFN": num_gt - idtp,
        "IDSW": id_switches,
        "FP": num_pred - num_matches,
        "FN": num_gt - num_matches,
        "gt_detections": num_gt,
        "pred_detections": num_pred,
        "matches": num_matches,
        "gt_tracks": int(np.unique(np.flatnonzero(gt_detection) % n_g).size),
        "pred_tracks": int(np.unique(np.flatnonzero(pred_detection) % n_p).size),
        "background_predictions": int(background_prediction.sum()),
    }


def identity_metrics(
    pred: Any,
    gt: Any,
    *,
    background_id: int | None = 0,
    ignore_index: int | None = -100,
    iou_threshold: float = 0.5,
) -> dict[str, float | int]:
    """IDF1 / IDP / IDR, ID switches, MOTA and FG-ARI of one video's predicted id map against its GT.

    Args:
        pred: predicted ids ``(T, h, w)``, integer numpy array or torch tensor (e.g. a tokenizer's per-pixel
            trajectory ids, made global over the video's chunks).
        gt: GT ids, same shape.
        background_id: GT id of the background (``None``: every GT id is an object).
        ignore_index: GT id of pixels dropped from every count (``None``: none).
        iou_threshold: a GT and a predicted detection match when their IoU in the frame is greater than this;
            in ``[0.5, 1)``.

    Returns:
        Plain Python numbers: ``"IDF1"``, ``"IDP"``, ``"IDR"``, ``"MOTA"``, ``"FG-ARI"`` (floats, NaN when
        undefined) and the integer counts of :data:`COUNT_KEYS` — ``"IDTP"``, ``"IDFP"``, ``"IDFN"``,
        ``"IDSW"``, ``"FP"``, ``"FN"``, ``"gt_detections"``, ``"pred_detections"``, ``"matches"``,
        ``"gt_tracks"`` (GT ids with a detection), ``"pred_tracks"`` (predicted ids with a detection) and
        ``"background_predictions"``.

    Raises:
        TypeError: a non-integer id array or argument.
        ValueError: shapes that differ or are not ``(T, h, w)``, or ``iou_threshold`` outside ``[0.5, 1)``.
    """
    p, g = _id_map(pred, "pred"), _id_map(gt, "gt")
    if p.shape != g.shape:
        raise ValueError(f"`pred` and `gt` must have the same shape, got {p.shape} and {g.shape}")
    background_id = _optional_int(background_id, "background_id")
    ignore_index = _optional_int(ignore_index, "ignore_index")
    counts = _identity_counts(p, g, background_id, ignore_index, _check_threshold(iou_threshold))
    fg_ari = foreground_adjusted_rand_index(p, g, background_id=background_id, ignore_index=ignore_index)
    return {**_scores(counts), "FG-ARI": float(fg_ari), **counts}


def tracking_metrics(
    predictions: Sequence[Any],
    references: Sequence[Any],
    *,
    background_id: int | None = 0,
    ignore_index: int | None = -100,
    iou_threshold: float = 0.5,
    return_per_video: bool = False,
) -> dict[str, Any]:
    """Identity metrics over several videos, combined as MOT benchmarks combine sequences.

    Args:
        predictions: one predicted id map ``(T, h, w)`` per video (videos may differ in size).
        references: the GT id maps, same number and per-video shapes.
        background_id, ignore_index, iou_threshold: as in :func:`identity_metrics`.
        return_per_video: also return ``"per_video"``, the list of :func:`identity_metrics` results.

    Returns:
        The counts of :data:`COUNT_KEYS` summed over videos; ``"IDF1"``, ``"IDP"``, ``"IDR"``, ``"MOTA"``
        recomputed from those sums; ``"FG-ARI"``, the mean over the videos where it is defined;
        ``"num_videos"``.
    """
    if isinstance(predictions, (str, bytes)) or not hasattr(predictions, "__len__"):
        raise TypeError(f"`predictions` must be a sequence of id arrays, got {type(predictions).__name__}")
    if isinstance(references, (str, bytes)) or not hasattr(references, "__len__"):
        raise TypeError(f"`references` must be a sequence of id arrays, got {type(references).__name__}")
    if len(predictions) != len(references):
        raise ValueError(
            f"`predictions` and `references` must hold the same number of videos, got {len(predictions)} and "
            f"{len(references)}"
        )
    if len(predictions) == 0:
        raise ValueError("`predictions` is empty: need at least one video")
    per_video = []
    for i, (pred, gt) in enumerate(zip(predictions, references, strict=True)):
        try:
            per_video.append(
                identity_metrics(
                    pred, gt, background_id=background_id, ignore_index=ignore_index, iou_threshold=iou_threshold
                )
            )
        except (TypeError, ValueError) as error:
            message = f"video {i}: {error}".replace("`pred`", "`predictions`").replace("`gt`", "`references`")
            raise type(error)(message) from error
    counts = {key: sum(video[key] for video in per_video) for key in COUNT_KEYS}
    fg_aris = [video["FG-ARI"] for video in per_video if not math.isnan(video["FG-ARI"])]
    out: dict[str, Any] = {
        **_scores(counts),
        "FG-ARI": sum(fg_aris) / len(fg_aris) if fg_aris else float("nan"),
        **counts,
        "num_videos": len(per_video),
    }
    if return_per_video:
        out["per_video"] = per_video
    return out
