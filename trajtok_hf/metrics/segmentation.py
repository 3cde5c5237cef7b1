"""Trajectory segmentation metrics (the segmentation quality reported in the paper's experiments).

For synthetic data with exact ground truth, (foreground) ARI and matched mean IoU
measure the segmentation directly. Each clip is one partition of its pixels over
space *and* time (ids are trajectory ids, so a segment is a spatio-temporal tube);
arrays of any shape, e.g. ``(T, h, w)``, are accepted and flattened. Pixels whose
ground truth equals ``ignore_index`` (default ``-100``) are dropped everywhere.

* **ARI** – adjusted Rand index (Hubert & Arabie, 1985) between the GT and the
  predicted partition of the valid pixels. Computed from the pair-confusion form used
  by scikit-learn (``adjusted_rand_score``): with contingency counts ``n_ij``, GT sizes
  ``a_i``, predicted sizes ``b_j`` and ``n`` pixels (ordered pair counts)::

      tp = sum n_ij^2 - n          fp = sum b_j^2 - sum n_ij^2
      fn = sum a_i^2 - sum n_ij^2  tn = n^2 - tp - fp - fn - n
      ARI = 2 (tp*tn - fn*fp) / ((tp+fn)(fn+tn) + (tp+fp)(fp+tn))

  and ``ARI = 1`` when ``fn == fp == 0`` (identical partitions, including the
  single-pixel / single-segment cases), exactly like scikit-learn. Products are done
  with Python integers, so there is no overflow or rounding for any video size.
  Invariant to relabelling; 1 = identical partitions, ~0 = chance, can be negative.
* **FG-ARI** – ARI restricted to pixels whose GT is neither ``background_id``
  (default ``0``; ``None`` = no background) nor ignored. The *prediction* may still
  split or merge those pixels arbitrarily with anything.
* **mIoU (Hungarian-matched mean IoU)** – IoU matrix between every GT segment and
  every predicted segment (over valid pixels), one-to-one matching maximising the
  total IoU (``scipy.optimize.linear_sum_assignment``), then the mean over *GT*
  segments; GT segments left unmatched (more GT than predicted segments) score 0.
  ``mIoU`` uses all GT segments including background; ``FG-mIoU`` only the
  foreground GT segments (predicted segments are still measured on all valid pixels,
  so a prediction that swallows background is penalised).

Per-clip values are averaged over clips by :func:`segmentation_metrics`. A clip on
which a metric is undefined (no valid pixels; for FG-* no foreground pixels) gets
``NaN`` for that metric and is left out of that metric's average (the number of
clips used is reported).

How: every metric is derived from one sparse contingency table per clip, built with
``np.unique(..., return_inverse=True)`` and ``np.bincount`` on combined
``gt * n_pred + pred`` codes – no Python loops over pixels. All values are fractions
in ``[0, 1]`` (ARI in ``[-1, 1]``), not percent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = [
    "contingency_table",
    "adjusted_rand_index",
    "foreground_adjusted_rand_index",
    "matched_mean_iou",
    "clip_segmentation_metrics",
    "segmentation_metrics",
    "object_errors",
    "object_scores",
    "object_counts",
    "fg_ari_by_object_count",
]


def to_numpy(x: Any) -> np.ndarray:
    """A torch tensor (without importing torch) or anything array-like as a numpy array."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _ids(x: Any, name: str) -> np.ndarray:
    try:
        a = to_numpy(x)
    except (ValueError, TypeError) as e:
        raise ValueError(f"`{name}` could not be converted to an array: {e}") from e
    if a.dtype == bool:
        return a.astype(np.int64)
    if np.issubdtype(a.dtype, np.integer):
        return a.astype(np.int64, copy=False)
    if np.issubdtype(a.dtype, np.floating):
        if a.size and not (np.all(np.isfinite(a)) and np.all(a == np.round(a))):
            raise ValueError(f"`{name}` must contain integer segment ids, got non-integral floats")
        return a.astype(np.int64)
    raise ValueError(f"`{name}` must be an integer id array, got dtype {a.dtype}")


def _prepare(pred: Any, gt: Any, ignore_index: int | None):
    p = _ids(pred, "pred")
    g = _ids(gt, "gt")
    if p.shape != g.shape:
        raise ValueError(f"`pred` and `gt` must have the same shape, got {p.shape} and {g.shape}")
    p = p.reshape(-1)
    g = g.reshape(-1)
    if ignore_index is not None:
        keep = g != ignore_index
        if not keep.all():
            p, g = p[keep], g[keep]
    return p, g


def contingency_table(pred: Any, gt: Any, *, ignore_index: int | None = -100, dense: bool = True):
    """Contingency counts between GT segments (rows) and predicted segments (columns).

    Returns ``(table, gt_ids, pred_ids)`` where ``table[i, j]`` is the number of valid
    pixels with GT id ``gt_ids[i]`` and predicted id ``pred_ids[j]`` (int64, dense).
    With ``dense=False`` returns ``(rows, cols, counts, gt_ids, pred_ids)`` holding only
    the non-zero cells (memory ``O(#non-zero)`` instead of ``O(#gt * #pred)``).
    """
    p, g = _prepare(pred, gt, ignore_index)
    return _contingency(p, g, dense)


def _contingency(p: np.ndarray, g: np.ndarray, dense: bool):
    gt_ids, gi = np.unique(g, return_inverse=True)
    pred_ids, pi = np.unique(p, return_inverse=True)
    n_g, n_p = gt_ids.size, pred_ids.size
    code = gi.astype(np.int64) * n_p + pi
    if dense:
        table = np.bincount(code, minlength=n_g * n_p).reshape(n_g, n_p).astype(np.int64)
        return table, gt_ids, pred_ids
    cells, counts = np.unique(code, return_counts=True)
    return cells // max(n_p, 1), cells % max(n_p, 1), counts.astype(np.int64), gt_ids, pred_ids


def _ari_from_counts(nij: np.ndarray, a: np.ndarray, b: np.ndarray, n: int) -> float:
    if n == 0:
        return float("nan")
    # int64 sums are exact for any realistic pixel count (n^2 < 9.2e18 <=> n < 3e9);
    # the products below use Python ints (arbitrary precision).
    sum_sq = int(np.dot(nij, nij))
    sum_a = int(np.dot(a, a))
    sum_b = int(np.dot(b, b))
    n = int(n)
    tp = sum_sq - n
    fp = sum_b - sum_sq
    fn = sum_a - sum_sq
    tn = n * n - tp - fp - fn - n
    if fn == 0 and fp == 0:
        return 1.0
    return 2.0 * (tp * tn - fn * fp) / ((tp + fn) * (fn + tn) + (tp + fp) * (fp + tn))


def _ari(p: np.ndarray, g: np.ndarray) -> float:
    if g.size == 0:
        return float("nan")
    _, _, counts, _, _ = _contingency(p, g, dense=False)
    a = np.unique(g, return_counts=True)[1]
    b = np.unique(p, return_counts=True)[1]
    return _ari_from_counts(counts, a, b, g.size)


def adjusted_rand_index(pred: Any, gt: Any, *, ignore_index: int | None = -100) -> float:
    """ARI between predicted and GT ids over pixels with ``gt != ignore_index``.

    ``pred`` and ``gt`` are integer arrays of the same (any) shape, e.g. ``(T, h, w)``.
    Returns ``NaN`` if no valid pixel remains. Matches scikit-learn's
    ``adjusted_rand_score`` (including its 1.0 special cases).
    """
    p, g = _prepare(pred, gt, ignore_index)
    return _ari(p, g)


def foreground_adjusted_rand_index(
    pred: Any, gt: Any, *, background_id: int | None = 0, ignore_index: int | None = -100
) -> float:
    """FG-ARI: ARI over pixels whose GT is neither ``background_id`` nor ``ignore_index``.

    ``background_id=None`` makes it identical to :func:`adjusted_rand_index`. Returns
    ``NaN`` if the clip has no foreground pixel.
    """
    p, g = _prepare(pred, gt, ignore_index)
    if background_id is not None:
        fg = g != background_id
        p, g = p[fg], g[fg]
    return _ari(p, g)


def _iou_matrix(table: np.ndarray) -> np.ndarray:
    """IoU of every GT segment (row) with every predicted segment (column) of a dense contingency table."""
    union = table.sum(axis=1)[:, None] + table.sum(axis=0)[None, :] - table
    return table / np.maximum(union, 1)  # union >= 1 for every existing GT / pred segment


def _foreground_rows(gt_ids: np.ndarray, background_id: int | None) -> np.ndarray:
    return gt_ids != background_id if background_id is not None else np.ones(gt_ids.size, bool)


def _matched_rows(iou: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hungarian matching of the rows of ``iou``: per row, its matched column (``-1`` = unmatched) and matched IoU
    (``0`` when unmatched)."""
    rows, cols = linear_sum_assignment(iou, maximize=True)
    match = np.full(iou.shape[0], -1, dtype=np.int64)
    match[rows] = cols
    matched_iou = np.zeros(iou.shape[0])
    matched_iou[rows] = iou[rows, cols]
    return match, matched_iou


def _matched_miou(table: np.ndarray, gt_ids: np.ndarray, background_id: int | None) -> dict[str, float]:
    """Hungarian-matched mean IoU over all GT rows and over foreground GT rows."""
    out = {"mIoU": float("nan"), "FG-mIoU": float("nan")}
    if table.size == 0:
        return out
    iou = _iou_matrix(table)
    out["mIoU"] = float(_matched_rows(iou)[1].mean())
    fg_rows = _foreground_rows(gt_ids, background_id)
    if fg_rows.any():
        out["FG-mIoU"] = float(_matched_rows(iou[fg_rows])[1].mean())
    return out


def matched_mean_iou(
    pred: Any,
    gt: Any,
    *,
    ignore_index: int | None = -100,
    background_id: int | None = None,
) -> float:
    """Hungarian-matched mean IoU, averaged over GT segments (unmatched GT → IoU 0).

    With ``background_id=None`` (default) every GT segment counts; with an id, that GT
    segment is excluded from the matching and the mean (the FG-mIoU of
    :func:`segmentation_metrics`). Predicted segment areas always include every valid
    pixel. Returns ``NaN`` when there is no GT segment to average over.
    """
    p, g = _prepare(pred, gt, ignore_index)
    if g.size == 0:
        return float("nan")
    table, gt_ids, _ = _contingency(p, g, dense=True)
    res = _matched_miou(table, gt_ids, background_id)
    return res["mIoU"] if background_id is None else res["FG-mIoU"]


def clip_segmentation_metrics(
    pred: Any,
    gt: Any,
    *,
    background_id: int | None = 0,
    ignore_index: int | None = -100,
) -> dict[str, float]:
    """All metrics for one clip: ``{"ARI", "FG-ARI", "mIoU", "FG-mIoU"}`` (fractions, NaN if undefined).

    One contingency table is shared by all four metrics.
    """
    p, g = _prepare(pred, gt, ignore_index)
    out = {"ARI": float("nan"), "FG-ARI": float("nan"), "mIoU": float("nan"), "FG-mIoU": float("nan")}
    if g.size == 0:
        return out
    table, gt_ids, _ = _contingency(p, g, dense=True)
    nz = table[table > 0]
    out["ARI"] = _ari_from_counts(nz, table.sum(axis=1), table.sum(axis=0), g.size)
    if background_id is None:
        out["FG-ARI"] = out["ARI"]
    else:
        fg_table = table[gt_ids != background_id]
        n_fg = int(fg_table.sum())
        if n_fg > 0:
            out["FG-ARI"] = _ari_from_counts(fg_table[fg_table > 0], fg_table.sum(axis=1), fg_table.sum(axis=0), n_fg)
    out.update(_matched_miou(table, gt_ids, background_id))
    return out


_KEYS = ("ARI", "FG-ARI", "mIoU", "FG-mIoU")


def segmentation_metrics(
    predictions: Sequence[Any],
    references: Sequence[Any],
    *,
    background_id: int | None = 0,
    ignore_index: int | None = -100,
    return_per_clip: bool = False,
) -> dict[str, Any]:
    """Per-clip ARI / FG-ARI / mIoU / FG-mIoU, averaged over clips.

    Args:
        predictions: sequence of per-clip predicted id arrays (any shape, e.g.
            ``(T, h, w)``; clips may differ in size), or one array whose first axis
            indexes clips.
        references: GT id arrays, same structure and per-clip shapes as ``predictions``.
        background_id: GT id of the background for FG-ARI / FG-mIoU (``None``: none).
        ignore_index: GT id of pixels to drop from every metric (``None``: none).
        return_per_clip: also return ``"per_clip"``: ``{key: np.ndarray(num_clips)}``.

    Returns:
        ``{"ARI", "FG-ARI", "mIoU", "FG-mIoU"}`` – NaN-skipping means over clips –
        plus ``"num_clips"`` and ``"num_clips_<key>"`` (clips on which the metric was
        defined).
    """
    if isinstance(predictions, (str, bytes)) or isinstance(references, (str, bytes)):
        raise ValueError("`predictions` and `references` must be sequences of id arrays")
    n_p, n_r = len(predictions), len(references)
    if n_p != n_r:
        raise ValueError(f"`predictions` and `references` must contain the same number of clips, got {n_p} and {n_r}")
    if n_p == 0:
        raise ValueError("`predictions` is empty: need at least one clip")
    per_clip = {k: np.full(n_p, np.nan) for k in _KEYS}
    for i, (pred, gt) in enumerate(zip(predictions, references, strict=True)):
        try:
            res = clip_segmentation_metrics(pred, gt, background_id=background_id, ignore_index=ignore_index)
        except ValueError as e:
            raise ValueError(f"clip {i}: {e}".replace("`pred`", "`predictions`").replace("`gt`", "`references`")) from e
        for k in _KEYS:
            per_clip[k][i] = res[k]
    out: dict[str, Any] = {}
    for k in _KEYS:
        valid = ~np.isnan(per_clip[k])
        out[k] = float(per_clip[k][valid].mean()) if valid.any() else float("nan")
    out["num_clips"] = n_p
    for k in _KEYS:
        out[f"num_clips_{k}"] = int((~np.isnan(per_clip[k])).sum())
    if return_per_clip:
        out["per_clip"] = per_clip
    return out


def object_errors(
    pred: Any, gt: Any, *, background_id: int | None = 0, ignore_index: int | None = -100
) -> dict[str, np.ndarray]:
    """Per foreground GT segment (object) of one clip, the ways FG-ARI loses it.

    Every object is assigned its *majority* predicted id (the predicted segment holding most of its valid pixels;
    ties → the smallest id). Returns ``{"ids", "merged", "missed_pixels", "in_background"}``, one entry per object in
    ascending id order: ``merged`` is True when an object of smaller id has the same majority id (a trajectory holding
    m objects counts m - 1 of them as merged); ``missed_pixels`` counts the object's pixels outside its majority id
    (for a single-object clip, any such pixel drops its FG-ARI to 0); ``in_background`` is True when the object's
    majority id is the background's majority id (the object is absorbed by the background's trajectory; always
    False without a background segment). Empty arrays when the clip has no foreground.
    """
    p, g = _prepare(pred, gt, ignore_index)
    empty = {
        "ids": np.zeros(0, np.int64),
        "merged": np.zeros(0, bool),
        "missed_pixels": np.zeros(0, np.int64),
        "in_background": np.zeros(0, bool),
    }
    if g.size == 0:
        return empty
    table, gt_ids, pred_ids = _contingency(p, g, dense=True)
    fg = gt_ids != background_id if background_id is not None else np.ones(gt_ids.size, bool)
    if not fg.any():
        return empty
    background_majority = table[~fg].argmax(axis=1)  # zero or one row: the background's majority id
    table = table[fg]
    majority = table.argmax(axis=1)  # first maximum = smallest predicted id (pred_ids are sorted)
    in_background = np.isin(majority, background_majority)
    # An object is merged when an object of smaller id already holds its majority trajectory: a group of m objects
    # in one trajectory counts m - 1 (the objects lost to the merge).
    first = np.unique(majority, return_index=True)[1]
    shared = np.ones(majority.size, bool)
    shared[first] = False
    missed = table.sum(axis=1) - table[np.arange(majority.size), majority]
    return {
        "ids": gt_ids[fg],
        "merged": shared,
        "missed_pixels": missed.astype(np.int64),
        "in_background": in_background,
    }


def fg_ari_by_object_count(
    per_clip_fg_ari: Any, references: Sequence[Any], *, background_id: int | None = 0, ignore_index: int | None = -100
) -> dict[str, dict[str, float]]:
    """Mean FG-ARI of the clips with 1, 2, … foreground segments: ``{"1": {"FG-ARI": mean, "clips": n}, …}``.

    ``per_clip_fg_ari`` is ``segmentation_metrics(..., return_per_clip=True)["per_clip"]["FG-ARI"]`` and
    ``references`` the GT id arrays it was computed from. With one object FG-ARI is all-or-nothing (one object pixel
    outside the object's trajectory gives 0), so the split separates boundary errors of single objects from merges.
    Clips without foreground or with a NaN value are left out.
    """
    if isinstance(references, (str, bytes)) or not hasattr(references, "__len__"):
        raise TypeError(f"`references` must be a sequence of GT id arrays, got {type(references).__name__}")
    try:
        values = np.asarray(per_clip_fg_ari, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as error:
        raise ValueError(f"`per_clip_fg_ari` must be a 1-D array of per-clip FG-ARI values: {error}") from error
    if values.size != len(references):
        raise ValueError(f"`per_clip_fg_ari` has {values.size} values for {len(references)} `references`")
    counts = object_counts(references, background_id=background_id, ignore_index=ignore_index)
    out: dict[str, dict[str, float]] = {}
    for count in np.unique(counts[counts > 0]):
        chosen = values[(counts == count) & ~np.isnan(values)]
        if chosen.size:
            out[str(int(count))] = {"FG-ARI": float(chosen.mean()), "clips": int(chosen.size)}
    return out


def object_scores(
    pred: Any, gt: Any, *, background_id: int | None = 0, ignore_index: int | None = -100
) -> dict[str, np.ndarray]:
    """Per foreground GT segment (object) of one clip, how well its matched trajectory covers it.

    Objects are matched one-to-one to predicted trajectories by the Hungarian matching of FG-mIoU (foreground GT
    rows, IoU over all valid pixels of the clip, i.e. over space *and* time). Returns, one entry per object in
    ascending id order:

    * ``ids`` — the object's GT id; ``pixels`` — its valid pixels;
    * ``iou`` — IoU of the object with its matched trajectory (``0`` when unmatched: more objects than
      trajectories). The mean of ``iou`` over a clip's objects is that clip's FG-mIoU;
    * ``recall`` — fraction of the object's pixels inside its matched trajectory (``0`` when unmatched). A
      trajectory that also swallows background lowers ``iou`` but not ``recall``.

    Unlike FG-ARI, which scores a clip's whole foreground partition, these are scores of single objects, so they can
    be grouped by object attributes (size, texture, visibility). Empty arrays when the clip has no foreground.
    """
    p, g = _prepare(pred, gt, ignore_index)
    empty = {
        "ids": np.zeros(0, np.int64),
        "pixels": np.zeros(0, np.int64),
        "iou": np.zeros(0),
        "recall": np.zeros(0),
    }
    if g.size == 0:
        return empty
    table, gt_ids, _ = _contingency(p, g, dense=True)
    fg = _foreground_rows(gt_ids, background_id)
    if not fg.any():
        return empty
    match, iou = _matched_rows(_iou_matrix(table)[fg])
    table = table[fg]
    pixels = table.sum(axis=1)
    hits = np.where(match >= 0, table[np.arange(match.size), np.maximum(match, 0)], 0)
    return {"ids": gt_ids[fg], "pixels": pixels, "iou": iou, "recall": hits / np.maximum(pixels, 1)}


def object_counts(
    references: Sequence[Any], *, background_id: int | None = 0, ignore_index: int | None = -100
) -> np.ndarray:
    """Number of distinct foreground GT ids (objects) of every clip of ``references``, ``(num_clips,)`` int64."""
    drop = [x for x in (background_id, ignore_index) if x is not None]
    return np.array([np.setdiff1d(_ids(gt, "references"), drop).size for gt in references], dtype=np.int64)
