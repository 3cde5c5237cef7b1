"""Video-text retrieval metrics (the retrieval metrics reported in the paper's experiments).

Implements Recall@K (R@1/5/10 by default, in percent), median rank (MedR) and
mean rank (MeanR) in both directions from a single similarity matrix:

* **text→video (t2v)** – every caption is a query over all videos; the rank of
  the query is the position of its (single) ground-truth video.
* **video→text (v2t)** – every video is a query over all captions. With several
  captions per video, a hit is *any* correct caption, so the rank of a video
  query is the position of its best-ranked correct caption, i.e. the position of
  the first correct caption in the sorted list. Other correct captions never push
  it down.

Ranks are 1-based. **Ties are broken pessimistically by default**: every wrong
candidate whose score is ``>=`` the score of the correct one is counted as ranked
before it, so a constant similarity matrix yields the worst possible rank rather
than a perfect score (a degenerate model can never look good). ``ties="optimistic"``
counts only strictly larger scores instead. Concretely, with ``s*`` the score of
the correct candidate (for v2t: the best score among the video's captions) and
``W`` the set of wrong candidates::

    pessimistic rank = 1 + #{w in W : s_w >= s*}
    optimistic  rank = 1 + #{w in W : s_w >  s*}

How: the rank is a vectorised comparison/count on the similarity matrix
(``O(num_texts * num_videos)`` work, no sorting), processed in row chunks to bound
memory. Inputs may be numpy arrays or torch tensors (any float dtype; bf16/fp16 are
upcast to float32). ``NaN`` similarities are rejected.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

__all__ = ["retrieval_ranks", "ranks_to_metrics", "retrieval_metrics"]

_LAYOUTS = ("text_video", "video_text")
_TIES = ("pessimistic", "optimistic")
_CHUNK_ELEMS = 1 << 24  # ~16M comparisons per chunk (16 MiB of bool)


def _to_numpy(x: Any, name: str) -> np.ndarray:
    """Convert numpy/torch/list input to a numpy array (no torch import needed)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor
        t = x.detach().cpu()
        if getattr(t, "is_floating_point", lambda: False)() and t.element_size() < 4:
            t = t.float()  # bf16 / fp16 have no (or lossy) numpy equivalents
        x = t.numpy()
    try:
        return np.asarray(x)
    except (ValueError, TypeError) as e:  # ragged nested lists
        raise ValueError(f"`{name}` could not be converted to an array: {e}") from e


def _validate(
    similarity: Any,
    text_to_video: Any | None,
    layout: str,
    ties: str,
) -> tuple[np.ndarray, np.ndarray, int]:
    if layout not in _LAYOUTS:
        raise ValueError(f"`layout` must be one of {_LAYOUTS}, got {layout!r}")
    if ties not in _TIES:
        raise ValueError(f"`ties` must be one of {_TIES}, got {ties!r}")

    sim = _to_numpy(similarity, "similarity")
    if sim.ndim != 2:
        raise ValueError(f"`similarity` must be a 2-D matrix, got shape {sim.shape}")
    if sim.dtype == object or not (np.issubdtype(sim.dtype, np.number) or sim.dtype == bool):
        raise ValueError(f"`similarity` must be numeric, got dtype {sim.dtype}")
    if not np.issubdtype(sim.dtype, np.floating):
        sim = sim.astype(np.float64)
    elif sim.dtype.itemsize < 4:
        sim = sim.astype(np.float32)
    if layout == "video_text":
        sim = sim.T
    num_texts, num_videos = sim.shape
    if num_texts == 0 or num_videos == 0:
        raise ValueError(f"`similarity` must be non-empty, got shape {sim.shape}")
    if np.isnan(sim).any():
        raise ValueError("`similarity` contains NaN values")

    if text_to_video is None:
        if num_texts != num_videos:
            raise ValueError(
                "`text_to_video` is required when the similarity matrix is not square "
                f"(got {num_texts} texts x {num_videos} videos)"
            )
        t2v = np.arange(num_texts, dtype=np.int64)
    else:
        t2v = _to_numpy(text_to_video, "text_to_video")
        if t2v.ndim != 1 or t2v.shape[0] != num_texts:
            raise ValueError(
                f"`text_to_video` must be a 1-D array of length num_texts={num_texts} "
                f"(layout={layout!r}), got shape {t2v.shape}"
            )
        if np.issubdtype(t2v.dtype, np.floating):
            if not np.all(np.isfinite(t2v)) or not np.all(t2v == np.round(t2v)):
                raise ValueError("`text_to_video` must contain integer video indices")
        elif not np.issubdtype(t2v.dtype, np.integer):
            raise ValueError(f"`text_to_video` must be an integer array, got dtype {t2v.dtype}")
        t2v = t2v.astype(np.int64)
        bad = (t2v < 0) | (t2v >= num_videos)
        if bad.any():
            raise ValueError(
                f"`text_to_video` has indices out of range [0, {num_videos}): {np.unique(t2v[bad])[:10].tolist()}"
            )
    return sim, t2v, num_videos


def _count_ahead(scores: np.ndarray, target: np.ndarray, wrong: np.ndarray, pessimistic: bool) -> np.ndarray:
    """For each row: number of wrong candidates scoring >= (or >) the target score."""
    ahead = scores >= target[:, None] if pessimistic else scores > target[:, None]
    return np.count_nonzero(ahead & wrong, axis=1)


def retrieval_ranks(
    similarity: Any,
    text_to_video: Any | None = None,
    *,
    layout: str = "text_video",
    ties: str = "pessimistic",
) -> tuple[np.ndarray, np.ndarray]:
    """1-based ranks of every query in both directions.

    Args:
        similarity: ``(num_texts, num_videos)`` matrix (``layout="text_video"``) or
            ``(num_videos, num_texts)`` (``layout="video_text"``); larger = more similar.
        text_to_video: int array of length ``num_texts``; ``text_to_video[i]`` is the
            index of the video described by caption ``i``. Several captions may share
            a video. ``None`` means one caption per video in the same order (square
            matrix required).
        layout: which axis holds the texts (see ``similarity``).
        ties: ``"pessimistic"`` (default) or ``"optimistic"``; see module docstring.

    Returns:
        ``(t2v_ranks, v2t_ranks)``: int64 arrays of shape ``(num_texts,)`` and
        ``(num_videos,)``.

    Raises:
        ValueError: bad shapes/dtypes, out-of-range ``text_to_video``, NaN scores, or
            a video without any caption (its v2t rank is undefined).
    """
    sim, t2v, num_videos = _validate(similarity, text_to_video, layout, ties)
    pess = ties == "pessimistic"
    num_texts = sim.shape[0]

    captions_per_video = np.bincount(t2v, minlength=num_videos)
    if (captions_per_video == 0).any():
        missing = np.flatnonzero(captions_per_video == 0)
        raise ValueError(
            f"`text_to_video` leaves {missing.size} video(s) without a caption "
            f"(e.g. {missing[:10].tolist()}); their video→text rank is undefined"
        )

    # text -> video: one correct video per text.
    t2v_ranks = np.empty(num_texts, dtype=np.int64)
    vid_ids = np.arange(num_videos)
    step = max(1, _CHUNK_ELEMS // num_videos)
    for s in range(0, num_texts, step):
        rows = sim[s : s + step]
        tgt_idx = t2v[s : s + step]
        target = rows[np.arange(rows.shape[0]), tgt_idx]
        wrong = vid_ids[None, :] != tgt_idx[:, None]
        t2v_ranks[s : s + step] = 1 + _count_ahead(rows, target, wrong, pess)

    # video -> text: best correct caption; other correct captions never count against.
    v2t_ranks = np.empty(num_videos, dtype=np.int64)
    sim_vt = sim.T  # (num_videos, num_texts), a view
    step = max(1, _CHUNK_ELEMS // num_texts)
    for s in range(0, num_videos, step):
        rows = sim_vt[s : s + step]
        correct = t2v[None, :] == np.arange(s, s + rows.shape[0])[:, None]
        target = np.where(correct, rows, -np.inf).max(axis=1)
        v2t_ranks[s : s + step] = 1 + _count_ahead(rows, target, ~correct, pess)

    return t2v_ranks, v2t_ranks


def ranks_to_metrics(ranks: Any, prefix: str = "", ks: Iterable[int] = (1, 5, 10)) -> dict[str, float]:
    """``{prefix}R@K`` (percent of queries with rank <= K), ``{prefix}MedR``, ``{prefix}MeanR``."""
    r = np.asarray(ranks)
    if r.ndim != 1 or r.size == 0:
        raise ValueError(f"`ranks` must be a non-empty 1-D array, got shape {r.shape}")
    out: dict[str, float] = {}
    for k in ks:
        k = int(k)
        if k < 1:
            raise ValueError(f"`ks` must contain positive integers, got {k}")
        out[f"{prefix}R@{k}"] = float(100.0 * np.mean(r <= k))
    out[f"{prefix}MedR"] = float(np.median(r))
    out[f"{prefix}MeanR"] = float(np.mean(r))
    return out


def retrieval_metrics(
    similarity: Any,
    text_to_video: Any | None = None,
    *,
    layout: str = "text_video",
    ks: Sequence[int] = (1, 5, 10),
    ties: str = "pessimistic",
) -> dict[str, float]:
    """Recall@K (percent), median and mean rank for text→video and video→text.

    See :func:`retrieval_ranks` for the arguments. Returns e.g.::

        {"t2v_R@1": ..., "t2v_R@5": ..., "t2v_R@10": ..., "t2v_MedR": ..., "t2v_MeanR": ...,
         "v2t_R@1": ..., "v2t_R@5": ..., "v2t_R@10": ..., "v2t_MedR": ..., "v2t_MeanR": ...}

    R@K values are percentages in [0, 100]; ranks are 1-based (MedR may be x.5 for an
    even number of queries, as with ``numpy.median``).
    """
    t2v_ranks, v2t_ranks = retrieval_ranks(similarity, text_to_video, layout=layout, ties=ties)
    out = ranks_to_metrics(t2v_ranks, "t2v_", ks)
    out.update(ranks_to_metrics(v2t_ranks, "v2t_", ks))
    return out
