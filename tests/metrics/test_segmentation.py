"""Tests for trajtok_hf.metrics.segmentation ((FG-)ARI, Hungarian-matched mIoU)."""

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from trajtok_hf.metrics.segmentation import (
    adjusted_rand_index,
    clip_segmentation_metrics,
    contingency_table,
    fg_ari_by_object_count,
    foreground_adjusted_rand_index,
    matched_mean_iou,
    object_errors,
    segmentation_metrics,
)

# Tolerances: metric values here are exact rationals (counts, ranks, pair counts) evaluated in float64; pytest.approx
# (rel 1e-6 by default) absorbs only their float64 rounding. No float32 computation is compared.


def _brute_ari(pred, gt):
    """ARI by explicit pair counting (Hubert & Arabie), with scikit-learn's 1.0 special cases."""
    pred, gt = list(np.ravel(pred)), list(np.ravel(gt))
    n = len(gt)
    if n < 2:
        return 1.0
    both = same_gt = same_pred = 0
    for i, j in itertools.combinations(range(n), 2):
        g, p = gt[i] == gt[j], pred[i] == pred[j]
        both += g and p
        same_gt += g
        same_pred += p
    pairs = math.comb(n, 2)
    expected = same_gt * same_pred / pairs
    max_index = (same_gt + same_pred) / 2
    if max_index == expected:  # both partitions trivial and identical
        return 1.0
    return (both - expected) / (max_index - expected)


def _brute_miou(pred, gt, background_id=None):
    """Matched mIoU by explicit IoU loops and exhaustive search over one-to-one matchings."""
    pred, gt = np.ravel(pred), np.ravel(gt)
    gids = [g for g in np.unique(gt) if background_id is None or g != background_id]
    pids = list(np.unique(pred))
    iou = np.zeros((len(gids), len(pids)))
    for a, g in enumerate(gids):
        for b, p in enumerate(pids):
            inter = np.sum((gt == g) & (pred == p))
            union = np.sum((gt == g) | (pred == p))
            iou[a, b] = inter / union
    best = 0.0
    k = min(len(gids), len(pids))
    for rows in itertools.permutations(range(len(gids)), k):
        for cols in itertools.permutations(range(len(pids)), k):
            best = max(best, sum(iou[r, c] for r, c in zip(rows, cols, strict=True)))
    return best / len(gids)


# --------------------------------------------------------------------------- ARI


def test_ari_identical_up_to_relabelling_is_one():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 5, (4, 6, 6))
    perm = np.array([40, -3, 7, 1000, 2])
    assert adjusted_rand_index(perm[gt], gt) == 1.0
    assert foreground_adjusted_rand_index(perm[gt], gt) == 1.0


def test_ari_hand_values():
    # scikit-learn documentation values.
    assert adjusted_rand_index([0, 0, 1, 1], [0, 0, 1, 2]) == pytest.approx(4 / 7)
    assert adjusted_rand_index([0, 0, 1, 2], [0, 0, 1, 1]) == pytest.approx(4 / 7)
    assert adjusted_rand_index([0, 1, 2, 3], [0, 0, 0, 0]) == pytest.approx(0.0)
    assert adjusted_rand_index([0, 1, 0, 1], [0, 0, 1, 1]) == pytest.approx(-0.5)
    # special cases: single pixel, one segment each, all singletons each.
    assert adjusted_rand_index([3], [1]) == 1.0
    assert adjusted_rand_index([1, 1, 1], [2, 2, 2]) == 1.0
    assert adjusted_rand_index([1, 2, 3], [4, 5, 6]) == 1.0


def test_ari_matches_brute_force_pair_counting():
    rng = np.random.default_rng(1)
    for _ in range(60):
        n = int(rng.integers(1, 25))
        gt = rng.integers(0, int(rng.integers(1, 5)), n)
        pred = rng.integers(0, int(rng.integers(1, 6)), n)
        # abs=1e-12: float64 of the same integer pair counts, ~1e3 × the rounding of the handful of divisions.
        assert adjusted_rand_index(pred, gt) == pytest.approx(_brute_ari(pred, gt), abs=1e-12)
        # ignored pixels are simply removed
        gt_ign = gt.copy()
        gt_ign[rng.random(n) < 0.3] = -100
        keep = gt_ign != -100
        want = _brute_ari(pred[keep], gt[keep]) if keep.any() else float("nan")
        got = adjusted_rand_index(pred, gt_ign)
        assert (np.isnan(got) and np.isnan(want)) or got == pytest.approx(want, abs=1e-12)


def test_ari_large_clip_no_overflow():
    # 1M pixels: the pair-count products in the formula (~1e24) exceed int64. Compare with the
    # Hubert-Arabie combinatorial form evaluated in exact rational arithmetic.
    rng = np.random.default_rng(2)
    gt = rng.integers(0, 6, 1_000_000)
    pred = gt.copy()
    pred[:1000] = 99
    table, _, _ = contingency_table(pred, gt)
    c2 = lambda x: Fraction(int(x) * (int(x) - 1), 2)  # noqa: E731
    index = sum(c2(x) for x in table.ravel())
    sa = sum(c2(x) for x in table.sum(1))
    sb = sum(c2(x) for x in table.sum(0))
    expected = sa * sb / c2(gt.size)
    want = (index - expected) / ((sa + sb) / 2 - expected)
    val = adjusted_rand_index(pred, gt)
    assert 0.99 < val < 1.0
    assert val == pytest.approx(float(want), rel=1e-14, abs=0)  # float64 against exact rationals: ~50 float64 eps
    assert adjusted_rand_index(gt + 1, gt) == 1.0


# ----------------------------------------------------------------------- FG-ARI


def test_fg_ari_ignores_background():
    gt = np.array([[0, 0, 0, 1, 1], [0, 0, 2, 2, 2]])
    pred = np.array([[1, 2, 1, 5, 5], [2, 1, 7, 7, 7]])  # background scrambled, objects exact
    assert foreground_adjusted_rand_index(pred, gt, background_id=0) == 1.0
    assert adjusted_rand_index(pred, gt) < 1.0
    # background_id is configurable; None means plain ARI.
    assert foreground_adjusted_rand_index(pred, gt + 7, background_id=7) == 1.0
    assert foreground_adjusted_rand_index(pred, gt, background_id=None) == adjusted_rand_index(pred, gt)
    # equals ARI on the foreground pixels only (brute force)
    fg = gt != 0
    pred2 = pred.copy()
    pred2[1, 2] = 5
    assert foreground_adjusted_rand_index(pred2, gt) == pytest.approx(_brute_ari(pred2[fg], gt[fg]))


def test_fg_ari_drops_ignore_and_undefined_without_foreground():
    gt = np.array([1, 1, 2, 2, -100, -100])
    a = foreground_adjusted_rand_index([3, 3, 4, 4, 0, 9], gt)
    b = foreground_adjusted_rand_index([3, 3, 4, 4, 3, 4], gt)
    assert a == b == 1.0
    assert np.isnan(foreground_adjusted_rand_index([1, 2, 3], [0, 0, -100]))
    assert np.isnan(adjusted_rand_index([1, 2], [-100, -100]))


# ------------------------------------------------------------------- matched mIoU


def test_miou_perfect_is_one():
    rng = np.random.default_rng(3)
    gt = rng.integers(0, 6, (3, 8, 8))
    assert matched_mean_iou(gt * 10 + 3, gt) == 1.0
    assert matched_mean_iou(gt * 10 + 3, gt, background_id=0) == 1.0


def test_miou_permutation_invariance():
    rng = np.random.default_rng(4)
    gt = rng.integers(0, 5, (2, 7, 7))
    pred = rng.integers(0, 4, (2, 7, 7))
    base = matched_mean_iou(pred, gt)
    pp, gp = rng.permutation(50)[:4], rng.permutation(50)[:5] + 100
    assert matched_mean_iou(pp[pred], gp[gt]) == pytest.approx(base)
    # also invariant to permuting the pixels (same permutation for pred and gt)
    order = rng.permutation(gt.size)
    assert matched_mean_iou(pred.ravel()[order], gt.ravel()[order]) == pytest.approx(base)


def test_miou_hand_case_with_unmatched_gt():
    gt = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    pred = np.array([5, 5, 5, 5, 6, 6, 6, 6])
    # IoU(gt0, p5) = 1, IoU(gt1, p6) = IoU(gt2, p6) = 2/4; only 2 predictions for 3 GT segments:
    # (1 + 0.5 + 0) / 3.
    assert matched_mean_iou(pred, gt) == pytest.approx(0.5)
    # foreground GT only: rows gt1, gt2; p5 has IoU 0 with both -> (0.5 + 0) / 2.
    assert matched_mean_iou(pred, gt, background_id=0) == pytest.approx(0.25)
    res = clip_segmentation_metrics(pred, gt, background_id=0)
    assert res["mIoU"] == pytest.approx(0.5) and res["FG-mIoU"] == pytest.approx(0.25)


def test_miou_hungarian_beats_greedy():
    # Built so that greedy matching (take the largest IoU first) is worse than the optimum.
    gt = np.array([0, 0, 0, 0, 0, 1, 1])
    pred = np.array([1, 1, 1, 2, 2, 1, 1])
    # IoU(0,1)=3/7, IoU(0,2)=2/5, IoU(1,1)=2/5, IoU(1,2)=0.
    # greedy: 0->1 (3/7) + 1->2 (0) = 0.4286; optimum: 0->2 + 1->1 = 0.8.
    assert matched_mean_iou(pred, gt) == pytest.approx(0.4)
    assert matched_mean_iou(pred, gt) == pytest.approx(_brute_miou(pred, gt))


def test_miou_matches_brute_force():
    rng = np.random.default_rng(5)
    for _ in range(30):
        n = int(rng.integers(2, 30))
        gt = rng.integers(0, int(rng.integers(1, 5)), n)
        pred = rng.integers(0, int(rng.integers(1, 5)), n)
        assert matched_mean_iou(pred, gt) == pytest.approx(_brute_miou(pred, gt))
        if (gt != 0).any():
            assert matched_mean_iou(pred, gt, background_id=0) == pytest.approx(_brute_miou(pred, gt, background_id=0))


def test_miou_ignore_index():
    gt = np.array([1, 1, -100, 2, 2])
    pred = np.array([4, 4, 4, 5, 5])  # the ignored pixel does not enlarge p4
    assert matched_mean_iou(pred, gt) == 1.0


# ----------------------------------------------------------------- contingency / per-clip


def test_contingency_dense_and_sparse():
    gt = np.array([[0, 0, 1], [1, 2, -100]])
    pred = np.array([[7, 8, 8], [8, 8, 7]])
    table, gids, pids = contingency_table(pred, gt)
    np.testing.assert_array_equal(gids, [0, 1, 2])
    np.testing.assert_array_equal(pids, [7, 8])
    np.testing.assert_array_equal(table, [[1, 1], [0, 2], [0, 1]])
    r, c, cnt, _, _ = contingency_table(pred, gt, dense=False)
    dense = np.zeros_like(table)
    dense[r, c] = cnt
    np.testing.assert_array_equal(dense, table)


def test_clip_metrics_consistent_with_single_functions():
    rng = np.random.default_rng(6)
    gt = rng.integers(-1, 4, (3, 5, 5))
    gt[gt == -1] = -100
    pred = rng.integers(0, 6, (3, 5, 5))
    res = clip_segmentation_metrics(pred, gt, background_id=0)
    assert res["ARI"] == pytest.approx(adjusted_rand_index(pred, gt))
    assert res["FG-ARI"] == pytest.approx(foreground_adjusted_rand_index(pred, gt, background_id=0))
    assert res["mIoU"] == pytest.approx(matched_mean_iou(pred, gt))
    assert res["FG-mIoU"] == pytest.approx(matched_mean_iou(pred, gt, background_id=0))


def test_segmentation_metrics_averages_over_clips():
    rng = np.random.default_rng(7)
    preds, gts = [], []
    for shape in [(2, 4, 4), (3, 5, 6), (1, 8, 8)]:
        gts.append(rng.integers(0, 4, shape))
        preds.append(rng.integers(0, 4, shape))
    # clip without foreground: FG-* undefined there and left out of the FG averages
    gts.append(np.zeros((2, 3, 3), dtype=np.int64))
    preds.append(rng.integers(0, 3, (2, 3, 3)))
    out = segmentation_metrics(preds, gts, return_per_clip=True)
    per = [clip_segmentation_metrics(p, g) for p, g in zip(preds, gts, strict=True)]
    for k in ("ARI", "mIoU"):
        assert out[k] == pytest.approx(np.mean([r[k] for r in per]))
    for k in ("FG-ARI", "FG-mIoU"):
        assert out[k] == pytest.approx(np.mean([r[k] for r in per[:3]]))
        assert np.isnan(out["per_clip"][k][3])
    assert out["num_clips"] == 4
    assert out["num_clips_ARI"] == 4 and out["num_clips_FG-ARI"] == 3
    # a stacked array is treated as clips along axis 0
    stacked = segmentation_metrics(np.stack(preds[:1] * 2), np.stack(gts[:1] * 2))
    assert stacked["ARI"] == pytest.approx(per[0]["ARI"])


def test_torch_inputs():
    gt = torch.tensor([[0, 0, 1, 1], [2, 2, 0, 0]])
    pred = torch.tensor([[3, 3, 4, 4], [5, 5, 3, 3]])
    out = segmentation_metrics([pred], [gt])
    assert out["ARI"] == 1.0 and out["mIoU"] == 1.0 and out["FG-ARI"] == 1.0


@pytest.mark.parametrize(
    "fn, args, kwargs, match",
    [
        (adjusted_rand_index, (np.zeros((2, 3)), np.zeros((3, 2))), {}, "pred.*gt"),
        (matched_mean_iou, (np.zeros(4), np.zeros(5)), {}, "pred.*gt"),
        (adjusted_rand_index, (np.array([0.5, 1.0]), np.array([0, 1])), {}, "pred"),
        (adjusted_rand_index, (np.array([0, 1]), np.array(["a", "b"])), {}, "gt"),
        (segmentation_metrics, ([np.zeros(3)], [np.zeros(3), np.zeros(3)]), {}, "predictions.*references"),
        (segmentation_metrics, ([np.zeros(3)], [np.zeros(4)]), {}, "clip 0.*predictions.*references"),
        (segmentation_metrics, ([], []), {}, "predictions"),
    ],
)
def test_bad_inputs_raise_value_error_naming_argument(fn, args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fn(*args, **kwargs)


def test_object_errors_merges_and_missed_pixels():
    # GT: background 0, objects 1, 2, 3 (2 px each), 5 ignored. Objects 1 and 3 share prediction 7; object 2 has one
    # pixel in the background's prediction 0.
    gt = np.array([0, 0, 0, 1, 1, 2, 2, 3, 3, -100])
    pred = np.array([0, 0, 0, 7, 7, 4, 0, 7, 7, 9])
    errors = object_errors(pred, gt)
    assert errors["ids"].tolist() == [1, 2, 3]
    assert errors["merged"].tolist() == [False, False, True]  # a trajectory with m objects counts m - 1
    assert errors["missed_pixels"].tolist() == [0, 1, 0]
    assert errors["in_background"].tolist() == [False, True, False]  # object 2's tie 4 / 0 goes to the smaller id 0
    # Object 2 absorbed by the background's trajectory 0, object 1 partly (its majority is its own id 7).
    errors = object_errors([0, 0, 0, 7, 0, 7, 0, 0, 0], [0, 0, 0, 1, 1, 1, 2, 2, -100])
    assert errors["in_background"].tolist() == [False, True] and errors["missed_pixels"].tolist() == [1, 0]
    assert not object_errors([0, 0, 1, 1], [1, 1, 2, 2]).get("in_background").any()  # no background in the GT
    # Three objects in one trajectory: two merged; majority ties go to the smallest predicted id.
    errors = object_errors([5, 5, 5, 5, 5, 5, 3], [1, 1, 2, 2, 3, 3, 3], background_id=None)
    assert errors["merged"].tolist() == [False, True, True] and errors["missed_pixels"].tolist() == [0, 0, 1]
    errors = object_errors([4, 2, 2, 4], [1, 1, 2, 2], background_id=None)
    assert errors["merged"].tolist() == [False, True] and errors["missed_pixels"].tolist() == [1, 1]
    empty = object_errors(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long))
    assert all(v.size == 0 for v in empty.values())


def test_fg_ari_by_object_count_groups_clips():
    refs = [np.array([0, 1, 1]), np.array([0, 1, 2]), np.array([1, 1, 0]), np.array([0, 0, -100]), np.array([2, 3, 3])]
    per_clip = np.array([1.0, 0.5, 0.0, np.nan, np.nan])
    out = fg_ari_by_object_count(per_clip, refs)
    assert out == {"1": {"FG-ARI": 0.5, "clips": 2}, "2": {"FG-ARI": 0.5, "clips": 1}}  # NaN / no-fg clips left out
    with pytest.raises(ValueError, match="per_clip_fg_ari"):
        fg_ari_by_object_count([1.0], refs)
    with pytest.raises(ValueError, match="per_clip_fg_ari"):
        fg_ari_by_object_count(["a", "b", "c", "d", "e"], refs)
    with pytest.raises(TypeError, match="references"):
        fg_ari_by_object_count([1.0], 7)
    metrics = segmentation_metrics([r * 0 for r in refs[:3]], refs[:3], return_per_clip=True)
    by_count = fg_ari_by_object_count(metrics["per_clip"]["FG-ARI"], refs[:3])
    assert by_count["1"]["FG-ARI"] == 1.0 and by_count["2"]["FG-ARI"] == 0.0
