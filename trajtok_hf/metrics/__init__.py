"""Evaluation metrics for TrajTok, as reported in the paper's experiments.

Plain, vectorised functions (numpy; torch tensors accepted):

* :mod:`trajtok_hf.metrics.retrieval` – video-text retrieval R@K / MedR / MeanR in both
  directions (several captions per video, pessimistic ties by default).
* :mod:`trajtok_hf.metrics.segmentation` – ARI, foreground ARI and Hungarian-matched mean IoU
  per clip, averaged over clips; per-object IoU / recall of the matched trajectory.
* :mod:`trajtok_hf.metrics.breakdown` – means of per-clip or per-object scores by group (source
  image, object count, object size) and a markdown table of them.

and `evaluate` metric modules bundled as package data, loadable offline from their local path:

* ``video_text_retrieval/video_text_retrieval.py``
* ``trajectory_segmentation/trajectory_segmentation.py``

``load_metric(name)`` returns ``evaluate.load(<local path of the bundled module>)``.
This package never imports :mod:`trajtok_hf.models`.
"""

from __future__ import annotations

import os
from typing import Any

from .breakdown import markdown_table, mean_by_group
from .retrieval import ranks_to_metrics, retrieval_metrics, retrieval_ranks
from .segmentation import (
    adjusted_rand_index,
    clip_segmentation_metrics,
    contingency_table,
    fg_ari_by_object_count,
    foreground_adjusted_rand_index,
    matched_mean_iou,
    object_counts,
    object_errors,
    object_scores,
    segmentation_metrics,
)
from .tracking import identity_metrics, tracking_metrics

__all__ = [
    "METRIC_MODULES",
    "metric_module_path",
    "load_metric",
    "retrieval_ranks",
    "ranks_to_metrics",
    "retrieval_metrics",
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
    "mean_by_group",
    "markdown_table",
    "identity_metrics",
    "tracking_metrics",
]

_HERE = os.path.dirname(os.path.abspath(__file__))

#: Names of the bundled `evaluate` modules (folder name == script name).
METRIC_MODULES = ("video_text_retrieval", "trajectory_segmentation")


def metric_module_path(name: str) -> str:
    """Local folder of a bundled `evaluate` metric module (``evaluate.load`` accepts it)."""
    if name not in METRIC_MODULES:
        raise ValueError(f"`name` must be one of {METRIC_MODULES}, got {name!r}")
    path = os.path.join(_HERE, name)
    if not os.path.isfile(os.path.join(path, f"{name}.py")):  # pragma: no cover - broken install
        raise FileNotFoundError(f"bundled metric script missing: {os.path.join(path, name + '.py')}")
    return path


def load_metric(name: str, **kwargs: Any):
    """``evaluate.load`` of a bundled metric from its local path (works offline).

    Args:
        name: ``"video_text_retrieval"`` or ``"trajectory_segmentation"``.
        **kwargs: forwarded to ``evaluate.load`` (e.g. ``experiment_id``, ``num_process``).
    """
    import evaluate  # lazy: keep `import trajtok_hf.metrics` light

    return evaluate.load(metric_module_path(name), **kwargs)
