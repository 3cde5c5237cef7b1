"""Tests of the segmentation supervision loss (paper Sec. 3) (trajtok_hf/models/loss_trajtok.py)."""

import itertools
import math
import time

import pytest
import torch
from testers import float_error_bound

from trajtok_hf.models.loss_trajtok import (
    DICE_EPS,
    IGNORE_INDEX,
    TrajectorySegmentationLoss,
    hungarian_match,
    trajectory_segmentation_loss,
)


def random_case(seed, num_gt, num_slots, shape=(2, 3, 4), unlabeled_fraction=0.2, batch_size=1):
    """Random logits (B, T, h, w, K) and labels (B, T, h, w) with `num_gt` sparse ids, every id present."""
    g = torch.Generator().manual_seed(seed)
    numel = math.prod(shape)
    labels = torch.empty(batch_size, numel, dtype=torch.long)
    ids = torch.randperm(1000, generator=g)[:num_gt] * 3 + 11  # arbitrary, non-contiguous ids
    for b in range(batch_size):
        dense = torch.cat([torch.arange(num_gt), torch.randint(0, num_gt, (numel - num_gt,), generator=g)])
        unlabeled = torch.rand(numel, generator=g) < unlabeled_fraction
        unlabeled[:num_gt] = False  # keep one pixel of every GT id
        perm = torch.randperm(numel, generator=g)
        lab = ids[dense[perm]]
        lab[unlabeled[perm]] = IGNORE_INDEX
        labels[b] = lab
    logits = torch.randn(batch_size, *shape, num_slots, generator=g)
    return logits, labels.view(batch_size, *shape)


def loss_bound(logits, labels):
    """Float error bound (testers.float_error_bound) of the float32 loss: terms up to |log p| <= the logit range
    + log K, reductions over the K slots (softmax), the pixels (Dice's masses, the focal mean) and at most as many
    matched terms (the means)."""
    magnitude = 2 * logits.abs().max().item() + math.log(logits.shape[-1])
    return float_error_bound(max(magnitude, 1.0), logits.shape[-1] + 2 * labels.numel())


def iou_sum_bound(num_terms):
    """Float error bound of a float64 sum of `num_terms` IoUs (each <= 1, so every partial sum <= num_terms)."""
    return float_error_bound(num_terms, num_terms, torch.float64)


def reference_iou(labels_flat, pred_flat, gt_id, slot):
    """IoU between a GT trajectory and a hard-mask slot over labeled pixels, with Python sets."""
    labeled = [i for i, lab in enumerate(labels_flat) if lab != IGNORE_INDEX]
    gt = {i for i in labeled if labels_flat[i] == gt_id}
    pred = {i for i in labeled if pred_flat[i] == slot}
    union = gt | pred
    return len(gt & pred) / len(union) if union else 0.0


def first_appearance_order(labels_flat):
    seen = []
    for lab in labels_flat:
        if lab != IGNORE_INDEX and lab not in seen:
            seen.append(lab)
    return seen


def reference_focal_dice(logits, labels, matches, gamma):
    """Loop-based focal and Dice straight from the formulas (given the matching)."""
    focal_terms, dice_terms = [], []
    batch_size, num_slots = logits.shape[0], logits.shape[-1]
    logits = logits.reshape(batch_size, -1, num_slots).tolist()
    labels = labels.reshape(batch_size, -1).tolist()
    for b in range(batch_size):
        slot_of = dict(zip(matches[b][0].tolist(), matches[b][1].tolist(), strict=True))
        probs = []
        for row in logits[b]:
            z = sum(math.exp(v) for v in row)
            probs.append([math.exp(v) / z for v in row])
        for n, lab in enumerate(labels[b]):
            if lab != IGNORE_INDEX and lab in slot_of:
                p = probs[n][slot_of[lab]]
                focal_terms.append(-((1 - p) ** gamma) * math.log(p))
        for gt_id, k in slot_of.items():
            inter = sum(probs[n][k] for n, lab in enumerate(labels[b]) if lab == gt_id)
            mass = sum(probs[n][k] for n, lab in enumerate(labels[b]) if lab != IGNORE_INDEX)
            size = sum(1 for lab in labels[b] if lab == gt_id)
            dice_terms.append(1 - (2 * inter + DICE_EPS) / (mass + size + DICE_EPS))
    return sum(focal_terms) / len(focal_terms), sum(dice_terms) / len(dice_terms)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("num_gt,num_slots", [(3, 6), (4, 6), (5, 6), (6, 6), (5, 3), (4, 2)])
def test_matching_is_optimal_against_brute_force(seed, num_gt, num_slots):
    logits, labels = random_case(seed, num_gt, num_slots)
    ((gt_ids, slot_ids),) = hungarian_match(logits, labels)
    labels_flat = labels.flatten().tolist()
    pred_flat = logits.argmax(-1).flatten().tolist()
    order = first_appearance_order(labels_flat)
    iou = [[reference_iou(labels_flat, pred_flat, g, k) for k in range(num_slots)] for g in order]

    assert len(gt_ids) == len(slot_ids) == min(num_gt, num_slots)
    assert len(set(slot_ids.tolist())) == len(slot_ids)  # injective
    assert gt_ids.tolist() == [g for g in order if g in set(gt_ids.tolist())]  # first-appearance order kept
    got = sum(iou[order.index(g)][k] for g, k in zip(gt_ids.tolist(), slot_ids.tolist(), strict=True))
    if num_gt <= num_slots:  # every GT gets an injective slot
        assignments = itertools.permutations(range(num_slots), num_gt)
        best = max(sum(iou[g][perm[g]] for g in range(num_gt)) for perm in assignments)
    else:  # every slot gets a distinct GT
        assignments = itertools.permutations(range(num_gt), num_slots)
        best = max(sum(iou[perm[k]][k] for k in range(num_slots)) for perm in assignments)
    assert got == pytest.approx(best, abs=iou_sum_bound(len(gt_ids)))  # the same IoUs summed in another order


def test_matching_recovers_a_known_permutation():
    labels = torch.tensor([[[5, 5, 9, 9], [2, 2, 9, IGNORE_INDEX]]])  # (1, 1, 2, 4) after unsqueeze
    labels = labels.unsqueeze(1)
    slot_of = {5: 3, 9: 0, 2: 1}
    logits = torch.full((1, 1, 2, 4, 4), -5.0)
    for (i, j), lab in zip(itertools.product(range(2), range(4)), labels.flatten().tolist(), strict=True):
        if lab != IGNORE_INDEX:
            logits[0, 0, i, j, slot_of[lab]] = 5.0
    ((gt_ids, slot_ids),) = hungarian_match(logits, labels)
    assert gt_ids.tolist() == [5, 9, 2]
    assert slot_ids.tolist() == [3, 0, 1]


def test_gt_ids_sorted_by_first_appearance_in_raster_order():
    # id 42 first appears at t=0 only in the last pixel; 7 only at t=1 (row 0); 3 at t=1 row 1 col 0; 0 at t=1 last.
    labels = torch.tensor(
        [[[[IGNORE_INDEX, 100], [100, 42]], [[7, 42], [3, 0]]]]
    )  # (B=1, T=2, h=2, w=2); order: 100, 42, 7, 3, 0
    logits = torch.randn(1, 2, 2, 2, 8)
    ((gt_ids, slot_ids),) = hungarian_match(logits, labels)
    assert gt_ids.tolist() == [100, 42, 7, 3, 0]
    assert gt_ids.dtype == slot_ids.dtype == torch.long


@pytest.mark.parametrize("gamma", [2.0, 1.5, 0.0])
@pytest.mark.parametrize("num_gt,num_slots", [(3, 5), (4, 4), (5, 3)])
def test_focal_and_dice_equal_loop_reference(gamma, num_gt, num_slots):
    logits, labels = random_case(7, num_gt, num_slots, shape=(2, 2, 3), batch_size=2)
    logits = logits * 2
    out = trajectory_segmentation_loss(logits, labels, gamma=gamma, return_dict=True)
    focal, dice = reference_focal_dice(logits.double(), labels, out["matches"], gamma)
    bound = loss_bound(logits, labels)  # float32 loss against a float64 reference
    assert out["focal"].item() == pytest.approx(focal, rel=0, abs=bound)
    assert out["dice"].item() == pytest.approx(dice, rel=0, abs=bound)
    assert out["loss"].item() == pytest.approx(focal + dice, rel=0, abs=2 * bound)
    weighted = trajectory_segmentation_loss(logits, labels, focal_weight=0.3, dice_weight=2.5, gamma=gamma)
    assert weighted.item() == pytest.approx(0.3 * focal + 2.5 * dice, rel=0, abs=(0.3 + 2.5) * bound)


def test_focal_and_dice_on_hand_made_case():
    # One sample, 4 pixels, K=2: GT "8" on pixels 0-1, GT "4" on pixel 2, pixel 3 unlabeled.
    labels = torch.tensor([[8, 8, 4, IGNORE_INDEX]])
    logits = torch.tensor([[[2.0, 0.0], [1.0, 0.0], [0.0, 3.0], [9.0, -9.0]]])
    out = trajectory_segmentation_loss(logits, labels, return_dict=True)
    ((gt_ids, slot_ids),) = out["matches"]
    assert gt_ids.tolist() == [8, 4] and slot_ids.tolist() == [0, 1]
    p = torch.softmax(logits[0, :3].double(), -1)
    p0, p1, p2 = p[0, 0].item(), p[1, 0].item(), p[2, 1].item()
    focal = sum(-((1 - q) ** 2) * math.log(q) for q in (p0, p1, p2)) / 3
    dice_8 = 1 - (2 * (p0 + p1) + 1) / (p[:, 0].sum().item() + 2 + 1)
    dice_4 = 1 - (2 * p2 + 1) / (p[:, 1].sum().item() + 1 + 1)
    bound = loss_bound(logits, labels)  # float32 loss against a float64 reference
    assert out["focal"].item() == pytest.approx(focal, rel=0, abs=bound)
    assert out["dice"].item() == pytest.approx((dice_8 + dice_4) / 2, rel=0, abs=bound)


def test_unlabeled_pixels_are_ignored():
    logits, labels = random_case(3, 4, 6, shape=(3, 4, 4), unlabeled_fraction=0.4, batch_size=2)
    unlabeled = labels == IGNORE_INDEX
    assert unlabeled.any()
    changed = logits.clone()
    changed[unlabeled] = torch.randn(int(unlabeled.sum()), 6) * 10  # also changes their argmax
    a = logits.clone().requires_grad_()
    b = changed.clone().requires_grad_()
    loss_a = trajectory_segmentation_loss(a, labels)
    loss_b = trajectory_segmentation_loss(b, labels)
    # Exact: the labelled pixels' values are the same and the unlabelled ones add exact zeros to the same sums.
    assert torch.equal(loss_a, loss_b)
    loss_b.backward()
    assert torch.all(b.grad[unlabeled] == 0)
    assert b.grad[~unlabeled].abs().sum() > 0


def test_invariant_to_a_permutation_of_the_slots():
    torch.manual_seed(0)
    num_slots = 8
    _, labels = random_case(5, 5, num_slots, shape=(2, 4, 4), batch_size=2)
    # Noisy logits that favour a hidden slot per GT, so the optimal matching is unique (no ties).
    hidden = {gid: k for k, gid in enumerate(sorted(set(labels.flatten().tolist()) - {IGNORE_INDEX}))}
    logits = torch.randn(*labels.shape, num_slots)
    for gid, k in hidden.items():
        logits[..., k] += 3.0 * (labels == gid)
    perm = torch.randperm(num_slots)
    out = trajectory_segmentation_loss(logits, labels, return_dict=True)
    out_perm = trajectory_segmentation_loss(logits[..., perm], labels, return_dict=True)
    # bound: loss_bound; the softmax sums the permuted slots in another order.
    torch.testing.assert_close(out["loss"], out_perm["loss"], atol=loss_bound(logits, labels), rtol=0)
    inverse = torch.argsort(perm)
    for (g, k), (g_p, k_p) in zip(out["matches"], out_perm["matches"], strict=True):
        assert g.tolist() == g_p.tolist()
        assert k.tolist() == perm[k_p].tolist()
        assert inverse[k].tolist() == k_p.tolist()


def test_perfect_prediction_gives_zero_loss_and_finite_grads():
    _, labels = random_case(2, 5, 7, shape=(2, 5, 5), batch_size=2)
    ids = sorted(set(labels.flatten().tolist()) - {IGNORE_INDEX})
    slot = torch.tensor([ids.index(v) + 1 if v != IGNORE_INDEX else 0 for v in labels.flatten().tolist()])
    logits = (torch.nn.functional.one_hot(slot, 7).float() * 60 - 30).view(*labels.shape, 7).requires_grad_()
    out = trajectory_segmentation_loss(logits, labels, return_dict=True)
    # Zero up to the rounding of the float32 sums (p = 1 − 1e-26 rounds to 1): at most the loss's float error bound.
    bound = float_error_bound(1.0, logits.shape[-1] + 2 * labels.numel())
    assert out["loss"].item() <= bound
    assert out["focal"].item() >= 0 and out["dice"].item() >= -bound
    out["loss"].backward()
    assert torch.isfinite(logits.grad).all()
    for gt_ids, slot_ids in out["matches"]:
        assert slot_ids.tolist() == [ids.index(g) + 1 for g in gt_ids.tolist()]


@pytest.mark.parametrize("gamma", [2.0, 0.5])
def test_gradients_finite_with_saturated_softmax(gamma):
    logits, labels = random_case(4, 3, 4, batch_size=2)
    logits = (logits * 1e3).requires_grad_()  # p == 1.0 exactly at many pixels
    trajectory_segmentation_loss(logits, labels, gamma=gamma).backward()
    assert torch.isfinite(logits.grad).all()


def test_no_labeled_pixels_gives_attached_zero():
    logits = torch.randn(2, 2, 3, 3, 5, requires_grad=True)
    labels = torch.full((2, 2, 3, 3), IGNORE_INDEX)
    out = trajectory_segmentation_loss(logits, labels, return_dict=True)
    assert out["loss"].item() == 0.0 and out["loss"].requires_grad
    out["loss"].backward()
    assert torch.isfinite(logits.grad).all() and torch.all(logits.grad == 0)
    assert all(g.numel() == 0 and k.numel() == 0 for g, k in out["matches"])


def test_sample_without_labels_next_to_a_labeled_one():
    logits, labels = random_case(6, 3, 4, batch_size=2)
    labels[0] = IGNORE_INDEX
    out = trajectory_segmentation_loss(logits, labels, return_dict=True)
    single = trajectory_segmentation_loss(logits[1:], labels[1:])
    torch.testing.assert_close(out["loss"], single, atol=loss_bound(logits, labels), rtol=0)  # other batch reductions
    assert out["matches"][0][0].numel() == 0 and out["matches"][1][0].numel() == 3


def test_flat_form_and_module_agree():
    logits, labels = random_case(8, 4, 6, shape=(2, 3, 3), batch_size=2)
    full = trajectory_segmentation_loss(logits, labels)
    flat = trajectory_segmentation_loss(logits.flatten(1, 3), labels.flatten(1))
    module = TrajectorySegmentationLoss(focal_weight=1.0, dice_weight=1.0, gamma=2.0)
    torch.testing.assert_close(full, flat, atol=loss_bound(logits, labels), rtol=0)  # reductions over other dims
    assert torch.equal(full, module(logits, labels))  # the module calls the same function: exact
    assert "gamma=2.0" in repr(module)


def test_low_precision_logits_are_upcast():
    logits, labels = random_case(9, 4, 6, batch_size=2)
    loss = trajectory_segmentation_loss(logits.bfloat16(), labels)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_iou_matching_is_fast_at_paper_size():
    torch.manual_seed(0)
    labels = torch.randint(0, 20, (2, 16, 7, 7)).repeat_interleave(8, 2).repeat_interleave(8, 3) * 13 + 1
    labels[:, :, :4] = IGNORE_INDEX
    logits = torch.randn(2, 16, 56, 56, 128)
    timings = []
    for _ in range(3):  # best of 3: robust to a briefly loaded machine
        start = time.perf_counter()
        matches = hungarian_match(logits, labels)
        timings.append(time.perf_counter() - start)
    assert min(timings) < 1.0  # ~15 ms on 2 idle CPU cores (most of it the argmax); generous bound for CI
    assert [len(g) for g, _ in matches] == [20, 20]


def _with_value(value):
    logits = torch.randn(2, 9, 5)
    logits[1, 3, 2] = value
    return logits, torch.zeros(2, 9, dtype=torch.long)


LONG = torch.long
BAD_INPUTS = [
    ("rank", lambda: (torch.randn(2, 3, 4, 5), torch.zeros(2, 3, 4, dtype=torch.long)), "assignment_logits"),
    ("label rank", lambda: (torch.randn(2, 2, 3, 3, 5), torch.zeros(2, 18, dtype=torch.long)), "segmentation_labels"),
    ("shape", lambda: (torch.randn(2, 2, 3, 3, 5), torch.zeros(2, 2, 3, 4, dtype=torch.long)), "segmentation_labels"),
    ("float labels", lambda: (torch.randn(2, 9, 5), torch.zeros(2, 9)), "segmentation_labels"),
    ("bool labels", lambda: (torch.randn(2, 9, 5), torch.zeros(2, 9, dtype=torch.bool)), "segmentation_labels"),
    ("negative label", lambda: (torch.randn(2, 9, 5), torch.full((2, 9), -1)), "segmentation_labels"),
    ("below -100", lambda: (torch.randn(2, 9, 5), torch.full((2, 9), -101)), "segmentation_labels"),
    ("int logits", lambda: (torch.zeros(2, 9, 5, dtype=LONG), torch.zeros(2, 9, dtype=LONG)), "assignment_logits"),
    ("nan logits", lambda: _with_value(float("nan")), "assignment_logits"),
    ("inf logits", lambda: _with_value(float("-inf")), "assignment_logits"),
    ("no slots", lambda: (torch.randn(2, 9, 0), torch.zeros(2, 9, dtype=torch.long)), "assignment_logits"),
    ("not a tensor", lambda: ([[0.0]], torch.zeros(1, 1, dtype=torch.long)), "assignment_logits"),
]


@pytest.mark.parametrize("name,make,argument", BAD_INPUTS, ids=[case[0] for case in BAD_INPUTS])
def test_bad_inputs_raise_with_argument_name(name, make, argument):
    logits, labels = make()
    with pytest.raises(ValueError, match=argument):
        trajectory_segmentation_loss(logits, labels)
    with pytest.raises(ValueError, match=argument):
        hungarian_match(logits, labels)


@pytest.mark.parametrize(
    "kwargs,argument",
    [
        ({"gamma": -1.0}, "gamma"),
        ({"focal_weight": float("nan")}, "focal_weight"),
        ({"dice_weight": -2}, "dice_weight"),
    ],
)
def test_bad_hyperparameters_raise(kwargs, argument):
    logits, labels = random_case(0, 2, 3)
    with pytest.raises(ValueError, match=argument):
        trajectory_segmentation_loss(logits, labels, **kwargs)
    with pytest.raises(ValueError, match=argument):
        TrajectorySegmentationLoss(**kwargs)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("num_gt,num_slots", [(3, 6), (5, 6), (5, 3)])
def test_soft_tie_break_keeps_the_optimal_hard_iou(seed, num_gt, num_slots):
    """tie_break="soft" only reorders assignments of equal hard IoU: the summed IoU stays the brute-force optimum."""
    logits, labels = random_case(seed, num_gt, num_slots)
    labels_flat = labels.flatten().tolist()
    pred_flat = logits.argmax(-1).flatten().tolist()
    order = first_appearance_order(labels_flat)
    iou = {(g, k): reference_iou(labels_flat, pred_flat, g, k) for g in order for k in range(num_slots)}
    totals = []
    for tie_break in ("index", "soft"):
        ((gt_ids, slot_ids),) = hungarian_match(logits, labels, tie_break=tie_break)
        assert len(set(slot_ids.tolist())) == len(slot_ids)
        totals.append(sum(iou[g, k] for g, k in zip(gt_ids.tolist(), slot_ids.tolist(), strict=True)))
    assert totals[0] == pytest.approx(totals[1], abs=iou_sum_bound(len(gt_ids)))  # IoUs summed in another order


def test_soft_tie_break_gives_an_unclaimed_trajectory_to_the_closest_slot():
    """Two objects (ids 1, 2) that slot 0 has swallowed next to background (id 0, slot 1): object 2 overlaps no free
    slot. "index" gives it the lowest free slot (2); "soft" the free slot with the most soft mass on it (4)."""
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2]).view(1, 1, 2, 4)
    logits = torch.full((1, 1, 2, 4, 5), -4.0)
    logits[..., 1] = torch.tensor([4.0, 4, 4, 4, -4, -4, -4, -4]).view(1, 1, 2, 4)  # background
    logits[..., 0] = torch.tensor([-4.0, -4, -4, -4, 4, 4, 4, 4]).view(1, 1, 2, 4)  # both objects
    logits[..., 4] = torch.tensor([-4.0, -4, -4, -4, -4, -4, 3, 3]).view(1, 1, 2, 4)  # close to claiming object 2
    ((gt_ids, index_slots),) = hungarian_match(logits, labels, tie_break="index")
    ((_, soft_slots),) = hungarian_match(logits, labels, tie_break="soft")
    assert gt_ids.tolist() == [0, 1, 2]
    assert index_slots.tolist() == [1, 0, 2]
    assert soft_slots.tolist() == [1, 0, 4]
    index_loss = trajectory_segmentation_loss(logits, labels, tie_break="index")
    soft_loss = trajectory_segmentation_loss(logits, labels, tie_break="soft")
    assert soft_loss < index_loss  # the chosen slot already has mass on the object
    assert TrajectorySegmentationLoss(tie_break="soft")(logits, labels) == soft_loss


def test_bad_tie_break_raises():
    logits, labels = random_case(0, 3, 4)
    with pytest.raises(ValueError, match="tie_break"):
        trajectory_segmentation_loss(logits, labels, tie_break="random")
    with pytest.raises(ValueError, match="tie_break"):
        hungarian_match(logits, labels, tie_break=None)
    with pytest.raises(ValueError, match="tie_break"):
        TrajectorySegmentationLoss(tie_break="Soft")


# ---- chunk-local slots: one matching problem per (sample, chunk)


def per_chunk_perfect_case(frames, chunk_size, num_gt=4, num_slots=6, batch_size=2, seed=0):
    """Labels (B, T, 3, 3) with `num_gt` ids in every chunk and one-hot logits that segment every chunk perfectly,
    with a different random id → slot permutation in each chunk (slot k of two chunks = different trajectories)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_gt, (batch_size, frames, 3, 3), generator=g)
    slots = torch.empty_like(labels)
    for b in range(batch_size):
        for start in range(0, frames, chunk_size):
            chunk = slice(start, start + chunk_size)
            labels[b, chunk].view(-1)[:num_gt] = torch.arange(num_gt)  # every id in every chunk
            slots[b, chunk] = torch.randperm(num_slots, generator=g)[labels[b, chunk]]
    logits = torch.nn.functional.one_hot(slots, num_slots).float() * 60 - 30
    return logits, labels * 5 + 2, slots


def pad_to_whole_chunks(logits, labels, chunk_size):
    """Unlabeled frames after the last chunk until T is a multiple of chunk_size (they change neither term)."""
    missing = -logits.shape[1] % chunk_size
    logits = torch.cat([logits, logits.new_zeros(logits.shape[0], missing, *logits.shape[2:])], dim=1)
    labels = torch.cat([labels, labels.new_full((labels.shape[0], missing, *labels.shape[2:]), IGNORE_INDEX)], dim=1)
    return logits, labels


def chunks_as_samples(tensor, chunk_size):
    """(B, T, ...) with T a multiple of chunk_size → (B·C, chunk_size, ...): every chunk its own sample."""
    return tensor.reshape(tensor.shape[0] * (tensor.shape[1] // chunk_size), chunk_size, *tensor.shape[2:])


@pytest.mark.parametrize("frames,chunk_size", [(32, 16), (16, 8), (9, 4), (5, 2), (3, 1)])
def test_perfect_per_chunk_segmentation_scores_zero(frames, chunk_size):
    logits, labels, slots = per_chunk_perfect_case(frames, chunk_size)
    logits.requires_grad_()
    out = trajectory_segmentation_loss(logits, labels, return_dict=True, chunk_size=chunk_size)
    bound = float_error_bound(1.0, logits.shape[-1] + 2 * labels.numel())  # as the perfect single-chunk case
    assert 0 <= out["focal"].item() <= bound and abs(out["dice"].item()) <= bound
    out["loss"].backward()
    assert torch.isfinite(logits.grad).all()
    # Matches: per chunk, every id → its own chunk's slot, numbered c·K + k as the model's trajectory_ids.
    num_slots = logits.shape[-1]
    trajectory_ids = slots + (torch.arange(frames) // chunk_size).view(1, frames, 1, 1) * num_slots
    for b, (gt_ids, matched) in enumerate(out["matches"]):
        num_chunks = -(-frames // chunk_size)
        assert len(gt_ids) == 4 * num_chunks
        expected = {
            (g, t) for g, t in zip(labels[b].flatten().tolist(), trajectory_ids[b].flatten().tolist(), strict=True)
        }
        assert set(zip(gt_ids.tolist(), matched.tolist(), strict=True)) == expected
    # Matching the whole clip at once (chunk_size=None) cannot find one slot per id: the case can fail.
    whole = trajectory_segmentation_loss(logits, labels, return_dict=True)
    assert whole["focal"].item() > 1.0


@pytest.mark.parametrize("tie_break", ["index", "soft"])
@pytest.mark.parametrize("frames,chunk_size", [(4, 4), (4, 9), (1, 16)])
def test_single_chunk_equals_whole_clip_exactly(tie_break, frames, chunk_size):
    logits, labels = random_case(11, 5, 6, shape=(frames, 3, 4), batch_size=3)
    a, b = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    chunked = trajectory_segmentation_loss(a, labels, return_dict=True, tie_break=tie_break, chunk_size=chunk_size)
    whole = trajectory_segmentation_loss(b, labels, return_dict=True, tie_break=tie_break)
    for key in ("loss", "focal", "dice"):
        assert torch.equal(chunked[key], whole[key])
    for (g1, k1), (g2, k2) in zip(chunked["matches"], whole["matches"], strict=True):
        assert torch.equal(g1, g2) and torch.equal(k1, k2)
    chunked["loss"].backward()
    whole["loss"].backward()
    assert torch.equal(a.grad, b.grad)


@pytest.mark.parametrize("tie_break", ["index", "soft"])
@pytest.mark.parametrize("frames,chunk_size", [(4, 2), (6, 2), (7, 3), (5, 4)])
def test_chunks_are_matched_and_pooled_as_separate_samples(tie_break, frames, chunk_size):
    """chunk_size=c on (B, T) equals chunk_size=None on (B·C, c): each chunk its own sample (a shorter last chunk is
    padded with unlabeled frames, which change neither term)."""
    logits, labels = random_case(12, 5, 4, shape=(frames, 2, 3), batch_size=2)
    out = trajectory_segmentation_loss(logits, labels, return_dict=True, tie_break=tie_break, chunk_size=chunk_size)
    padded_logits, padded_labels = pad_to_whole_chunks(logits, labels, chunk_size)
    as_samples = trajectory_segmentation_loss(
        chunks_as_samples(padded_logits, chunk_size),
        chunks_as_samples(padded_labels, chunk_size),
        return_dict=True,
        tie_break=tie_break,
    )
    bound = loss_bound(padded_logits, padded_labels)  # the same terms, reduced in another order
    for key in ("loss", "focal", "dice"):
        torch.testing.assert_close(out[key], as_samples[key], atol=bound, rtol=0)
    num_chunks = padded_logits.shape[1] // chunk_size
    for b, (gt_ids, trajectory_ids) in enumerate(out["matches"]):
        per_chunk = as_samples["matches"][b * num_chunks : (b + 1) * num_chunks]
        assert gt_ids.tolist() == [g for ids, _ in per_chunk for g in ids.tolist()]
        offsets = [c * logits.shape[-1] + k for c, (_, ks) in enumerate(per_chunk) for k in ks.tolist()]
        assert trajectory_ids.tolist() == offsets
    matches = hungarian_match(logits, labels, tie_break=tie_break, chunk_size=chunk_size)
    for (g1, k1), (g2, k2) in zip(matches, out["matches"], strict=True):
        assert torch.equal(g1, g2) and torch.equal(k1, k2)


def test_module_passes_chunk_size():
    logits, labels, _ = per_chunk_perfect_case(8, 4)
    module = TrajectorySegmentationLoss(chunk_size=4)
    assert torch.equal(module(logits, labels), trajectory_segmentation_loss(logits, labels, chunk_size=4))
    assert "chunk_size=4" in repr(module)


BAD_CHUNK_SIZES = [
    ("zero", 0, torch.randn(1, 4, 2, 2, 3)),
    ("negative", -2, torch.randn(1, 4, 2, 2, 3)),
    ("float", 2.0, torch.randn(1, 4, 2, 2, 3)),
    ("bool", True, torch.randn(1, 4, 2, 2, 3)),
    ("string", "4", torch.randn(1, 4, 2, 2, 3)),
    ("flat logits have no frame axis", 4, torch.randn(1, 16, 3)),
]


@pytest.mark.parametrize("name,chunk_size,logits", BAD_CHUNK_SIZES, ids=[case[0] for case in BAD_CHUNK_SIZES])
def test_bad_chunk_size_raises(name, chunk_size, logits):
    labels = torch.zeros(logits.shape[:-1], dtype=torch.long)
    with pytest.raises(ValueError, match="chunk_size"):
        trajectory_segmentation_loss(logits, labels, chunk_size=chunk_size)
    with pytest.raises(ValueError, match="chunk_size"):
        hungarian_match(logits, labels, chunk_size=chunk_size)
    if logits.dim() == 5:
        with pytest.raises(ValueError, match="chunk_size"):
            TrajectorySegmentationLoss(chunk_size=chunk_size)
