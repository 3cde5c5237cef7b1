"""Tests for trajtok_hf.metrics.tracking (IDF1 / IDSW / MOTA on dense id maps)."""

import itertools
import math

import numpy as np
import pytest
import torch

from trajtok_hf.metrics import identity_metrics, tracking_metrics
from trajtok_hf.metrics.tracking import COUNT_KEYS

# Values here are exact rationals (detection counts) evaluated in float64; pytest.approx absorbs only rounding.


def _two_objects(num_frames=6):
    """(T, 4, 4): object 1 in the top-left 2x2 block, object 2 in the bottom-right one, background elsewhere."""
    gt = np.zeros((num_frames, 4, 4), dtype=np.int64)
    gt[:, :2, :2] = 1
    gt[:, 2:, 2:] = 2
    return gt


def _relabel(ids, mapping):
    out = ids.copy()
    for old, new in mapping.items():
        out[ids == old] = new
    return out


def test_perfect_tracking():
    gt = _two_objects()
    res = identity_metrics(gt, gt)
    assert res["IDF1"] == res["IDP"] == res["IDR"] == res["MOTA"] == res["FG-ARI"] == 1.0
    assert (res["IDSW"], res["FP"], res["FN"], res["IDFP"], res["IDFN"]) == (0, 0, 0, 0, 0)
    assert (res["gt_detections"], res["pred_detections"], res["matches"], res["IDTP"]) == (12, 12, 12, 12)
    assert (res["gt_tracks"], res["pred_tracks"]) == (2, 2)
    # The prediction's id 0 covers exactly the GT background in every frame: a background prediction per frame.
    assert res["background_predictions"] == 6
    assert all(type(res[key]) is int for key in COUNT_KEYS)
    assert all(type(res[key]) is float for key in ("IDF1", "IDP", "IDR", "MOTA", "FG-ARI"))


def test_relabelling_the_prediction_changes_nothing():
    gt = _two_objects()
    swapped = gt.copy()
    swapped[3:] = _relabel(gt[3:], {1: 2, 2: 1})
    for pred in (gt, swapped):
        renamed = _relabel(pred, {0: 41, 1: -7, 2: 1000})
        assert identity_metrics(renamed, gt) == identity_metrics(pred, gt)


def test_id_swap_halfway():
    # From frame 2 on, the two predicted ids are swapped. Best mapping: GT 1 -> pred 2 and GT 2 -> pred 1 (4 frames
    # each), so IDTP = 8 of 12 detections; each GT id switches once.
    gt = _two_objects(6)
    pred = gt.copy()
    pred[2:] = _relabel(gt[2:], {1: 2, 2: 1})
    res = identity_metrics(pred, gt)
    assert (res["IDTP"], res["IDFP"], res["IDFN"]) == (8, 4, 4)
    assert res["IDF1"] == pytest.approx(2 * 8 / (2 * 8 + 4 + 4))
    assert res["IDP"] == pytest.approx(8 / 12) and res["IDR"] == pytest.approx(8 / 12)
    assert res["IDSW"] == 2
    assert res["matches"] == 12 and res["FP"] == res["FN"] == 0
    assert res["MOTA"] == pytest.approx(1 - 2 / 12)


@pytest.mark.parametrize("split_at", [1, 2, 4])
def test_object_split_into_a_new_id(split_at):
    # One GT object over 5 frames; the prediction gives it id 1 before `split_at` and id 7 from then on.
    gt = np.zeros((5, 3, 3), dtype=np.int64)
    gt[:, :2, :2] = 1
    pred = gt.copy()
    pred[split_at:][gt[split_at:] == 1] = 7
    res = identity_metrics(pred, gt)
    idtp = max(split_at, 5 - split_at)
    assert (res["IDTP"], res["IDFP"], res["IDFN"]) == (idtp, 5 - idtp, 5 - idtp)
    assert res["IDF1"] == pytest.approx(2 * idtp / (2 * idtp + 2 * (5 - idtp)))
    assert res["IDSW"] == 1 and res["MOTA"] == pytest.approx(1 - 1 / 5)
    assert (res["gt_tracks"], res["pred_tracks"]) == (1, 2)


def test_switching_back_counts_again_and_gaps_do_not_reset():
    # GT 1 matched by pred ids a, a, (missed), b, a over 5 frames: switches a->b and b->a; the gap is not a switch.
    gt = np.zeros((5, 2, 2), dtype=np.int64)
    gt[:, 0, :] = 1
    pred = np.zeros_like(gt)
    pred[:, 0, :] = [[3, 3], [3, 3], [0, 0], [4, 4], [3, 3]]
    pred[2] = [[5, 6], [5, 6]]  # frame 2: the object is cut in two halves that each cover 1/2 of it: no match
    res = identity_metrics(pred, gt)
    assert res["IDSW"] == 2
    assert res["matches"] == 4 and res["FN"] == 1
    assert res["IDTP"] == 3


def test_background_segmented_as_trajectories_is_not_penalised():
    gt = _two_objects(4)
    pred = gt.copy()
    # The tokenizer splits the background into two trajectories (left / right half of the free area) per frame.
    pred[:, :2, 2:] = 8
    pred[:, 2:, :2] = 9
    res = identity_metrics(pred, gt)
    assert res["IDF1"] == 1.0 and res["MOTA"] == 1.0 and res["IDSW"] == 0
    assert res["pred_detections"] == 8 and res["background_predictions"] == 8
    # Without a background every GT id is an object: the background segments are GT tracks, now each split in two.
    no_background = identity_metrics(pred, gt, background_id=None)
    assert no_background["background_predictions"] == 0
    assert no_background["gt_detections"] == 12 and no_background["gt_tracks"] == 3


@pytest.mark.parametrize(
    "background_pixels, object_pixels, is_background_prediction",
    [(3, 2, True), (2, 2, False), (2, 3, False), (1, 0, True)],
)
def test_background_prediction_needs_more_than_half_background(
    background_pixels, object_pixels, is_background_prediction
):
    # One frame, one row: the GT object is the first 4 pixels; predicted id 5 covers `object_pixels` of them and
    # `background_pixels` background pixels; the rest of the object is predicted id 1.
    gt = np.array([[[1, 1, 1, 1, 0, 0, 0, 0]]])
    pred = np.array([[[1, 1, 1, 1, 2, 2, 2, 2]]])
    pred[0, 0, 4 - object_pixels : 4 + background_pixels] = 5
    res = identity_metrics(pred, gt)
    assert res["background_predictions"] == int(is_background_prediction) + (background_pixels < 4)
    assert res["pred_detections"] == (object_pixels < 4) + (not is_background_prediction)


def test_ignored_pixels_are_dropped_everywhere():
    gt = _two_objects(3)
    pred = gt.copy()
    gt_ignored = gt.copy()
    gt_ignored[:, 0, :] = -100  # half of object 1 and some background are unlabeled
    pred[:, 0, :] = 2  # the prediction there is wrong, but it is not looked at
    res = identity_metrics(pred, gt_ignored)
    assert res["IDF1"] == 1.0 and res["matches"] == 6 and res["FG-ARI"] == 1.0
    # A whole object ignored in one frame is no detection there.
    gt_ignored[1][gt[1] == 2] = -100
    assert identity_metrics(pred, gt_ignored)["gt_detections"] == 5
    # ignore_index=None: -100 becomes one more GT object.
    assert identity_metrics(gt_ignored, gt_ignored, ignore_index=None)["gt_tracks"] == 3


@pytest.mark.parametrize(
    "size, covered, extra, threshold, matched",
    [
        (2, 2, 2, 0.5, False),  # IoU 2/4 == 0.5: not greater than the threshold
        (2, 2, 1, 0.5, True),  # IoU 2/3
        (2, 2, 1, 0.6, True),
        (2, 2, 1, 2 / 3, False),  # exactly at a non-round threshold
        (5, 3, 0, 0.6, False),  # IoU 3/5
        (4, 4, 1, 0.75, True),  # IoU 4/5
        (4, 3, 0, 0.75, False),  # IoU 3/4
    ],
)
def test_iou_must_exceed_the_threshold(size, covered, extra, threshold, matched):
    # GT object: the first `size` pixels of one row; predicted id 3 covers `covered` of them and `extra` background
    # pixels (IoU = covered / (size + extra)); id 4 covers the rest of the object.
    gt = np.zeros((1, 1, 10), dtype=np.int64)
    gt[0, 0, :size] = 1
    pred = np.zeros_like(gt)
    pred[0, 0, : size - covered] = 4
    pred[0, 0, size - covered : size + extra] = 3
    res = identity_metrics(pred, gt, iou_threshold=threshold)
    assert res["matches"] == int(matched)
    assert res["FN"] == int(not matched)


def _brute_force(pred, gt, threshold=0.5):
    """The definitions, with loops: per-frame detections and IoUs, IDF1 by trying every mapping."""
    pairs, gt_det, pred_det = [], 0, 0
    for g_frame, p_frame in zip(gt, pred, strict=True):
        dets = [p for p in np.unique(p_frame) if (g_frame[p_frame == p] == 0).mean() <= 0.5]
        gts = [g for g in np.unique(g_frame) if g != 0]
        gt_det, pred_det = gt_det + len(gts), pred_det + len(dets)
        frame_pairs = []
        for g, p in itertools.product(gts, dets):
            a, b = g_frame == g, p_frame == p
            if (a & b).sum() / (a | b).sum() > threshold:
                frame_pairs.append((g, p))
        pairs.append(frame_pairs)
    gt_ids = sorted({g for frame in pairs for g, _ in frame})
    pred_ids = sorted({p for frame in pairs for _, p in frame})
    best = 0
    for chosen in itertools.permutations(pred_ids + [None] * len(gt_ids), len(gt_ids)):
        mapping = dict(zip(gt_ids, chosen, strict=True))
        best = max(best, sum((g, mapping[g]) in frame for frame in pairs for g in gt_ids))
    switches, last = 0, {}
    for frame in pairs:
        for g, p in frame:
            switches += g in last and last[g] != p
            last[g] = p
    matches = sum(len(frame) for frame in pairs)
    return {"IDTP": best, "IDSW": switches, "matches": matches, "gt_detections": gt_det, "pred_detections": pred_det}


@pytest.mark.parametrize("seed", range(6))
def test_matches_a_brute_force_reference(seed):
    rng = np.random.default_rng(seed)
    # Blocky random maps, so that matches (IoU > 0.5) happen often.
    gt = np.kron(rng.integers(0, 4, size=(6, 2, 2)), np.ones((1, 2, 2), dtype=np.int64))
    pred = gt.copy()
    noisy = rng.random(gt.shape) < 0.15
    pred[noisy] = rng.integers(0, 5, size=noisy.sum())
    swaps = rng.random(6) < 0.4
    pred[swaps] = (pred[swaps] * 3) % 7  # change the predicted ids in some frames
    expected = _brute_force(pred, gt)
    res = identity_metrics(pred, gt)
    assert {key: res[key] for key in expected} == expected


def test_torch_input_and_dtypes():
    gt = _two_objects(4)
    pred = gt.copy()
    pred[2:] = _relabel(gt[2:], {1: 2, 2: 1})
    expected = identity_metrics(pred, gt)
    assert identity_metrics(torch.from_numpy(pred), torch.from_numpy(gt.astype(np.int32))) == expected
    assert identity_metrics(pred.astype(np.uint8), gt.astype(np.int16)) == expected


def test_tracking_metrics_sums_counts_over_videos():
    gt_a = _two_objects(6)
    pred_a = gt_a.copy()
    pred_a[2:] = _relabel(gt_a[2:], {1: 2, 2: 1})  # IDTP 8 of 12, IDSW 2
    gt_b = np.zeros((2, 3, 3), dtype=np.int64)
    gt_b[:, :2, :2] = 1  # perfect, 2 detections
    res = tracking_metrics([pred_a, gt_b], [gt_a, gt_b], return_per_video=True)
    assert (res["IDTP"], res["IDFP"], res["IDFN"], res["IDSW"]) == (10, 4, 4, 2)
    assert res["gt_detections"] == 14 and res["num_videos"] == 2
    assert res["IDF1"] == pytest.approx(20 / 28)  # from the sums, not the mean of 2/3 and 1
    assert res["MOTA"] == pytest.approx(1 - 2 / 14)
    per_video = res["per_video"]
    assert res["FG-ARI"] == pytest.approx((per_video[0]["FG-ARI"] + per_video[1]["FG-ARI"]) / 2)
    assert per_video[1]["IDF1"] == 1.0


def test_undefined_values_are_nan():
    empty = np.zeros((3, 2, 2), dtype=np.int64)  # background only
    res = identity_metrics(empty, empty)
    assert math.isnan(res["IDF1"]) and math.isnan(res["MOTA"]) and math.isnan(res["FG-ARI"])
    assert res["gt_detections"] == res["pred_detections"] == 0 and res["background_predictions"] == 3
    all_ignored = np.full((2, 2, 2), -100)
    assert identity_metrics(all_ignored, all_ignored)["matches"] == 0
    mixed = tracking_metrics([empty, _two_objects(2)], [empty, _two_objects(2)])
    assert mixed["IDF1"] == 1.0 and mixed["FG-ARI"] == 1.0  # the NaN video is left out of the FG-ARI mean


@pytest.mark.parametrize(
    "pred, gt, kwargs, error, match",
    [
        (np.zeros((2, 3, 3), int), np.zeros((2, 3, 4), int), {}, ValueError, "`pred` and `gt` must have the same"),
        (np.zeros((3, 3), int), np.zeros((3, 3), int), {}, ValueError, r"`pred` must have shape \(T, h, w\)"),
        (np.zeros((2, 3, 3)), np.zeros((2, 3, 3), int), {}, TypeError, "`pred` must hold integer ids"),
        (np.zeros((2, 3, 3), int), np.zeros((2, 3, 3), bool), {}, TypeError, "`gt` must hold integer ids"),
        (np.zeros((2, 3, 3), int), np.zeros((2, 3, 3), int), {"iou_threshold": 0.4}, ValueError, "iou_threshold"),
        (np.zeros((2, 3, 3), int), np.zeros((2, 3, 3), int), {"iou_threshold": 1.0}, ValueError, "iou_threshold"),
        (np.zeros((2, 3, 3), int), np.zeros((2, 3, 3), int), {"iou_threshold": "0.5"}, TypeError, "iou_threshold"),
        (np.zeros((2, 3, 3), int), np.zeros((2, 3, 3), int), {"background_id": 0.0}, TypeError, "background_id"),
        (np.zeros((2, 3, 3), int), np.zeros((2, 3, 3), int), {"ignore_index": "x"}, TypeError, "ignore_index"),
    ],
)
def test_identity_metrics_rejects_bad_input(pred, gt, kwargs, error, match):
    with pytest.raises(error, match=match):
        identity_metrics(pred, gt, **kwargs)


def test_tracking_metrics_rejects_bad_input():
    gt = _two_objects(2)
    with pytest.raises(ValueError, match="same number of videos"):
        tracking_metrics([gt], [gt, gt])
    with pytest.raises(ValueError, match="empty"):
        tracking_metrics([], [])
    with pytest.raises(TypeError, match="`predictions` must be a sequence"):
        tracking_metrics(iter([gt]), [gt])
    with pytest.raises(ValueError, match="video 1: `predictions` and `references` must have the same shape"):
        tracking_metrics([gt, gt], [gt, gt[:, :3]])
    with pytest.raises(TypeError, match="video 0: `predictions` must hold integer ids"):
        tracking_metrics([gt.astype(float)], [gt])


def test_per_chunk_ids_on_a_long_video():
    # A tokenizer that links nothing across chunks gives every object a new id in every chunk of 16 frames.
    from trajtok_hf.data.long_videos import LongVideoConfig, generate_long_video

    video = generate_long_video(LongVideoConfig(num_frames=64, scenario="static"), seed=0)
    gt = video["segmentation_labels"]
    pred = gt + 100 * (np.arange(64) // 16)[:, None, None]
    linked = identity_metrics(gt, gt)
    unlinked = identity_metrics(pred, gt)
    objects = len(video["objects"])
    assert linked["IDF1"] == 1.0 and linked["IDSW"] == 0
    assert unlinked["IDSW"] == objects * 3  # three chunk boundaries
    assert unlinked["IDTP"] == objects * 16  # only one chunk per object survives the mapping
    assert unlinked["IDF1"] == pytest.approx(0.25) and unlinked["MOTA"] == pytest.approx(1 - 3 / 64)
    assert unlinked["FG-ARI"] < 0.5 < linked["FG-ARI"]
