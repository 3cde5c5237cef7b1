"""Tests for trajtok_hf.metrics.retrieval (R@1/5/10, MedR, both directions)."""

import numpy as np
import pytest
import torch

from trajtok_hf.metrics import retrieval as retrieval_mod
from trajtok_hf.metrics.retrieval import ranks_to_metrics, retrieval_metrics, retrieval_ranks

# Tolerances: metric values here are exact rationals (counts, ranks, pair counts) evaluated in float64; pytest.approx
# (rel 1e-6 by default) absorbs only their float64 rounding. No float32 computation is compared.

# 5 captions x 3 videos, hand-checked below. Captions 0,1 -> video 0; 2 -> video 1; 3,4 -> video 2.
S_HAND = np.array(
    [
        [0.90, 0.75, 0.30],
        [0.20, 0.50, 0.55],
        [0.60, 0.70, 0.10],
        [0.80, 0.72, 0.50],
        [0.10, 0.20, 0.05],
    ],
    dtype=np.float32,
)
T2V_HAND = np.array([0, 0, 1, 2, 2])
# t2v: text0 0.90 best -> 1; text1 0.20 < 0.50, 0.55 -> 3; text2 -> 1; text3 0.50 < 0.80, 0.72 -> 3;
#      text4 0.05 < 0.10, 0.20 -> 3.
T2V_RANKS_HAND = [1, 3, 1, 3, 3]
# v2t: video0 best caption text0 (0.90), nothing wrong above -> 1 (text1 at 0.20 is ignored);
#      video1 text2 0.70 < text0 0.75, text3 0.72 -> 3;
#      video2 best caption text3 0.50 < text1 0.55 -> 2.
V2T_RANKS_HAND = [1, 3, 2]


def _brute_ranks(sim, t2v, ties="pessimistic"):
    """Sort-based reference: rank = position of the first correct item in the sorted list,
    with ties ordered wrong-first (pessimistic) or correct-first (optimistic)."""
    sim = np.asarray(sim, dtype=np.float64)
    nt, nv = sim.shape
    sign = 1 if ties == "pessimistic" else -1

    def first_correct(scores, correct):
        order = sorted(range(len(scores)), key=lambda j: (-scores[j], sign * int(correct[j])))
        return next(pos for pos, j in enumerate(order) if correct[j]) + 1

    t2v_r = [first_correct(sim[i], [j == t2v[i] for j in range(nv)]) for i in range(nt)]
    v2t_r = [first_correct(sim[:, v], [t2v[i] == v for i in range(nt)]) for v in range(nv)]
    return np.array(t2v_r), np.array(v2t_r)


def test_hand_computed_multi_caption():
    t2v_r, v2t_r = retrieval_ranks(S_HAND, T2V_HAND)
    np.testing.assert_array_equal(t2v_r, T2V_RANKS_HAND)
    np.testing.assert_array_equal(v2t_r, V2T_RANKS_HAND)
    m = retrieval_metrics(S_HAND, T2V_HAND)
    assert m["t2v_R@1"] == pytest.approx(40.0)
    assert m["t2v_R@5"] == pytest.approx(100.0)
    assert m["t2v_R@10"] == pytest.approx(100.0)
    assert m["t2v_MedR"] == 3.0
    assert m["t2v_MeanR"] == pytest.approx(2.2)
    assert m["v2t_R@1"] == pytest.approx(100.0 / 3)
    assert m["v2t_R@5"] == pytest.approx(100.0)
    assert m["v2t_MedR"] == 2.0
    assert m["v2t_MeanR"] == pytest.approx(2.0)
    assert set(m) == {f"{d}_{k}" for d in ("t2v", "v2t") for k in ("R@1", "R@5", "R@10", "MedR", "MeanR")}


def test_video_text_layout_is_transpose():
    a = retrieval_metrics(S_HAND, T2V_HAND)
    b = retrieval_metrics(S_HAND.T.copy(), T2V_HAND, layout="video_text")
    assert a == b


def test_identity_similarity_is_perfect():
    m = retrieval_metrics(np.eye(7))
    for d in ("t2v", "v2t"):
        assert m[f"{d}_R@1"] == 100.0 and m[f"{d}_R@5"] == 100.0 and m[f"{d}_R@10"] == 100.0
        assert m[f"{d}_MedR"] == 1.0 and m[f"{d}_MeanR"] == 1.0


def test_reversed_identity_ties_pessimistic_and_optimistic():
    # text i matches video i, but the 1 is on the anti-diagonal: the correct score 0 ties with
    # n-2 wrong zeros and is beaten by one wrong 1.
    n = 12
    s = np.fliplr(np.eye(n))
    pess = retrieval_metrics(s)
    assert pess["t2v_R@1"] == 0.0 and pess["t2v_R@5"] == 0.0 and pess["t2v_R@10"] == 0.0
    assert pess["t2v_MedR"] == n and pess["v2t_MedR"] == n
    opt = retrieval_metrics(s, ties="optimistic")
    assert opt["t2v_R@1"] == 0.0 and opt["t2v_R@5"] == 100.0
    assert opt["t2v_MedR"] == 2.0 and opt["v2t_MedR"] == 2.0


def test_constant_similarity_is_worst_case_when_pessimistic():
    t2v = np.array([0, 0, 1, 2, 2, 2])
    s = np.zeros((6, 3))
    t2v_r, v2t_r = retrieval_ranks(s, t2v)
    np.testing.assert_array_equal(t2v_r, [3] * 6)
    # video v: every wrong caption ties -> rank = 1 + #wrong captions.
    np.testing.assert_array_equal(v2t_r, [1 + 4, 1 + 5, 1 + 3])
    t2v_r, v2t_r = retrieval_ranks(s, t2v, ties="optimistic")
    assert (t2v_r == 1).all() and (v2t_r == 1).all()


def test_v2t_other_correct_captions_never_count_against():
    # Video 0 has two captions tied at the top; that is still rank 1 even pessimistically.
    s = np.array([[1.0, 0.0], [1.0, 0.0], [0.5, 0.9]])
    _, v2t_r = retrieval_ranks(s, [0, 0, 1])
    assert v2t_r[0] == 1


def test_v2t_uses_best_caption():
    # Video 0: caption 0 is ranked last for it, caption 1 first -> hit at rank 1.
    s = np.array([[0.0, 0.9], [1.0, 0.2], [0.3, 0.8]])
    _, v2t_r = retrieval_ranks(s, [0, 0, 1])
    assert v2t_r[0] == 1
    # Without caption 1 the same video would be ranked behind text 2 (0.3 > 0.0).
    _, v2t_r = retrieval_ranks(s[[0, 2]], [0, 1])
    assert v2t_r[0] == 2


def test_known_ranks_construction():
    # S[i, j] = -((j - c_i) mod n): distinct scores, correct video at offset r_i - 1 -> rank r_i.
    n = 20
    want = np.array([1, 1, 2, 5, 6, 10, 11, 20, 3, 1])
    c = np.arange(len(want)) * 3 % n
    s = -((np.arange(n)[None, :] - c[:, None]) % n).astype(float)
    t2v = (c + want - 1) % n
    extra = np.setdiff1d(np.arange(n), t2v)  # give the remaining videos a caption too
    s = np.concatenate([s, np.eye(n)[extra]])
    t2v = np.concatenate([t2v, extra])
    t2v_r, _ = retrieval_ranks(s, t2v)
    np.testing.assert_array_equal(t2v_r[: len(want)], want)
    m = ranks_to_metrics(want, "x_")
    assert m["x_R@1"] == pytest.approx(30.0)
    assert m["x_R@5"] == pytest.approx(60.0)
    assert m["x_R@10"] == pytest.approx(80.0)
    assert m["x_MedR"] == pytest.approx(4.0)
    assert m["x_MeanR"] == pytest.approx(6.0)


@pytest.mark.parametrize("ties", ["pessimistic", "optimistic"])
def test_matches_sort_based_reference_with_ties(ties):
    rng = np.random.default_rng(0)
    for _ in range(25):
        nv = int(rng.integers(1, 7))
        nt = nv + int(rng.integers(0, 6))
        t2v = np.concatenate([rng.permutation(nv), rng.integers(0, nv, nt - nv)])
        rng.shuffle(t2v)
        sim = rng.integers(0, 3, (nt, nv)).astype(np.float32)  # many ties
        got = retrieval_ranks(sim, t2v, ties=ties)
        want = _brute_ranks(sim, t2v, ties)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


def test_chunking_gives_same_result(monkeypatch):
    rng = np.random.default_rng(1)
    sim = rng.integers(0, 4, (23, 9)).astype(np.float64)
    t2v = np.concatenate([np.arange(9), rng.integers(0, 9, 14)])
    full = retrieval_ranks(sim, t2v)
    monkeypatch.setattr(retrieval_mod, "_CHUNK_ELEMS", 10)  # a few rows per chunk
    chunked = retrieval_ranks(sim, t2v)
    np.testing.assert_array_equal(full[0], chunked[0])
    np.testing.assert_array_equal(full[1], chunked[1])


def test_torch_inputs_and_low_precision():
    s = torch.tensor(S_HAND, dtype=torch.bfloat16)
    assert retrieval_metrics(s, torch.tensor(T2V_HAND)) == retrieval_metrics(s.float().numpy(), T2V_HAND)
    assert retrieval_metrics(np.eye(4, dtype=np.float16))["t2v_R@1"] == 100.0


def test_custom_ks():
    m = retrieval_metrics(S_HAND, T2V_HAND, ks=(2, 3))
    assert m["t2v_R@2"] == pytest.approx(40.0) and m["t2v_R@3"] == pytest.approx(100.0)
    assert "t2v_R@1" not in m


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(similarity=np.zeros(5)), "similarity"),
        (dict(similarity=np.zeros((2, 3, 4))), "similarity"),
        (dict(similarity=np.zeros((0, 3))), "similarity"),
        (dict(similarity=np.array([[np.nan, 1.0], [0.0, 1.0]])), "similarity"),
        (dict(similarity=np.zeros((5, 3))), "text_to_video"),  # non-square needs mapping
        (dict(similarity=np.zeros((5, 3)), text_to_video=[0, 1, 2]), "text_to_video"),
        (dict(similarity=np.zeros((5, 3)), text_to_video=[0, 1, 2, 3, 0]), "text_to_video"),
        (dict(similarity=np.zeros((5, 3)), text_to_video=[0, 1, 2, -1, 0]), "text_to_video"),
        (dict(similarity=np.zeros((5, 3)), text_to_video=[0, 1, 2, 0.5, 0]), "text_to_video"),
        (dict(similarity=np.zeros((5, 3)), text_to_video=[[0, 1, 2, 1, 0]]), "text_to_video"),
        (dict(similarity=np.zeros((5, 3)), text_to_video=[0, 0, 1, 1, 0]), "text_to_video"),  # video 2 uncaptioned
        (dict(similarity=np.zeros((3, 5)), text_to_video=[0, 1, 2, 1, 0], layout="text_video"), "text_to_video"),
        (dict(similarity=np.eye(3), layout="rows"), "layout"),
        (dict(similarity=np.eye(3), ties="random"), "ties"),
        (dict(similarity=np.eye(3), ks=(0,)), "ks"),
    ],
)
def test_bad_inputs_raise_value_error_naming_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        retrieval_metrics(**kwargs)
