"""Tests for trajtok_hf.metrics.breakdown (group means, markdown tables) and the per-object scores they group
(trajtok_hf.metrics.segmentation.object_scores / object_counts)."""

import math

import numpy as np
import pytest
import torch

from trajtok_hf.metrics import (
    clip_segmentation_metrics,
    markdown_table,
    mean_by_group,
    object_counts,
    object_scores,
)

# Tolerances: every value here is a ratio of small pixel counts in float64; pytest.approx (rel 1e-6) absorbs only its
# rounding.

# (name, pred, gt, ids, iou, recall): hand-computed per-object scores (background 0, ignore -100).
OBJECT_CASES = [
    ("perfect", [[0, 1], [2, 2]], [[0, 1], [2, 2]], [1, 2], [1.0, 1.0], [1.0, 1.0]),
    ("relabelled", [[7, 3], [9, 9]], [[0, 1], [2, 2]], [1, 2], [1.0, 1.0], [1.0, 1.0]),
    # The object sits inside the background's trajectory: all its cells are covered, half of the union is it.
    ("lumped_with_background", [0, 0, 0, 0], [0, 0, 1, 1], [1], [0.5], [1.0]),
    # One trajectory for two objects: one of them is matched to it, the other is left unmatched (0).
    ("more_objects_than_trajectories", [5, 5, 5, 5], [1, 1, 2, 2], [1, 2], [0.5, 0.0], [1.0, 0.0]),
    ("object_split_in_two", [0, 0, 1, 1], [3, 3, 3, 3], [3], [0.5], [0.5]),
    # Ignored pixels count nowhere: pred 4 also covers an ignored pixel (IoU 2/4 if it counted) and a background one.
    ("ignored_pixels_dropped", [4, 4, 4, 4, 8], [-100, 1, 1, 0, 0], [1], [2 / 3], [1.0]),
]


@pytest.mark.parametrize("pred, gt, ids, iou, recall", [c[1:] for c in OBJECT_CASES], ids=[c[0] for c in OBJECT_CASES])
def test_object_scores_hand_cases(pred, gt, ids, iou, recall):
    scores = object_scores(np.array(pred), np.array(gt))
    assert scores["ids"].tolist() == ids
    assert scores["iou"].tolist() == pytest.approx(iou)
    assert scores["recall"].tolist() == pytest.approx(recall)
    gt = np.array(gt)
    assert scores["pixels"].tolist() == [int((gt == i).sum()) for i in ids]


@pytest.mark.parametrize(
    "gt, background_id",
    [([0, 0, 0], 0), ([-100, -100], 0), (np.zeros((0,), np.int64), 0), ([-100, 2], 2)],
    ids=["background_only", "all_ignored", "empty", "custom_background"],
)
def test_object_scores_without_foreground_are_empty(gt, background_id):
    gt = np.asarray(gt)
    scores = object_scores(np.zeros_like(gt), gt, background_id=background_id)
    assert {key: value.size for key, value in scores.items()} == {"ids": 0, "pixels": 0, "iou": 0, "recall": 0}


@pytest.mark.parametrize("seed", range(5))
def test_object_ious_average_to_the_clip_fg_miou(seed):
    rng = np.random.default_rng(seed)
    gt = rng.integers(0, 4, (3, 6, 6))
    gt[0, 0, :3] = -100
    pred = rng.integers(0, 3, (3, 6, 6))
    scores = object_scores(torch.from_numpy(pred), gt)
    clip = clip_segmentation_metrics(pred, gt)
    assert scores["iou"].mean() == pytest.approx(clip["FG-mIoU"])
    assert ((scores["iou"] <= scores["recall"] + 1e-12) & (scores["recall"] <= 1)).all()


def test_object_counts():
    refs = [np.array([0, 1, 2]), np.array([[0, -100], [0, 0]]), np.array([3, 3, -100])]
    assert object_counts(refs).tolist() == [2, 0, 1]
    assert object_counts(refs, background_id=None, ignore_index=None).tolist() == [3, 2, 2]


# (name, groups, values, kwargs, expected): group means skip NaN, keep the given order, then sort (numerically).
GROUP_CASES = [
    (
        "sorted_by_default",
        ["b", "a", "b"],
        {"x": [1.0, 2.0, 3.0]},
        {},
        {"a": {"x": 2.0, "count": 1}, "b": {"x": 2.0, "count": 2}},
    ),
    (
        "numeric_labels_sort_as_numbers",
        [10, 2, 2, 1],
        {"x": [4.0, 1.0, 3.0, 0.0]},
        {"count_name": "clips"},
        {"1": {"x": 0.0, "clips": 1}, "2": {"x": 2.0, "clips": 2}, "10": {"x": 4.0, "clips": 1}},
    ),
    (
        "given_order_first_absent_groups_dropped",
        ["large", "small", "medium", "small"],
        {"IoU": [0.5, 0.25, 1.0, 0.75]},
        {"order": ("small", "medium", "large", "huge"), "count_name": "objects"},
        {
            "small": {"IoU": 0.5, "objects": 2},
            "medium": {"IoU": 1.0, "objects": 1},
            "large": {"IoU": 0.5, "objects": 1},
        },
    ),
    (
        "nan_skipped_all_nan_is_nan",
        ["a", "a", "b"],
        {"x": [np.nan, 1.0, np.nan], "y": [1.0, 3.0, 5.0]},
        {},
        {"a": {"x": 1.0, "y": 2.0, "count": 2}, "b": {"x": math.nan, "y": 5.0, "count": 1}},
    ),
]


@pytest.mark.parametrize(
    "groups, values, kwargs, expected", [c[1:] for c in GROUP_CASES], ids=[c[0] for c in GROUP_CASES]
)
def test_mean_by_group(groups, values, kwargs, expected):
    out = mean_by_group(groups, values, **kwargs)
    assert list(out) == list(expected)
    for group, row in expected.items():
        assert list(out[group]) == list(row)
        for key, value in row.items():
            assert out[group][key] == pytest.approx(value, nan_ok=True)


@pytest.mark.parametrize(
    "groups, values, kwargs, match",
    [
        (["a", "b"], {"x": [1.0]}, {}, r"values\['x'\]"),
        (["a"], {"count": [1.0]}, {}, "count_name"),
    ],
    ids=["length_mismatch", "count_name_clash"],
)
def test_mean_by_group_bad_inputs(groups, values, kwargs, match):
    with pytest.raises(ValueError, match=match):
        mean_by_group(groups, values, **kwargs)


def test_markdown_table():
    rows = {"cat": {"FG-ARI": 0.12345, "clips": 3}, "a|b": {"FG-ARI": math.nan, "clips": np.int64(0)}, "x": {}}
    assert markdown_table(rows, ["FG-ARI", "clips"], first_column="photo", digits=2) == "\n".join(
        [
            "| photo | FG-ARI | clips |",
            "|---|---:|---:|",
            "| cat | 0.12 | 3 |",
            "| a\\|b | – | 0 |",
            "| x | – | – |",
        ]
    )
    with pytest.raises(ValueError, match="columns"):
        markdown_table(rows, [])
