"""TrajTok tokenizer (paper Sec. 3): each equation and rule checked directly on small tensors."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from testers import (
    assert_close_within_bound,
    assert_ids_equal_up_to_ties,
    float_error_bound,
    tiny_trajtok_config,
    tiny_trajtok_model,
    tiny_trajvit2_vision_model,
    video_batch,
)

from trajtok_hf import TrajTokConfig, TrajTokModel
from trajtok_hf.models.perceiver_trajtok import (
    HardMask,
    SegmentWeightedSum,
    apply_rotary,
    dense_hard_mask_attention,
    rotary_multiplier,
    segment_hard_mask_attention,
    streamed_context_attention,
)

# Error bounds (testers.float_error_bound: magnitude × reduction length × eps). Reduction lengths of the tiny model
# (testers.tiny_trajtok_config, 64² frames, chunks of 4): each ConvNeXt stage sums a 7×7 depthwise window and two
# linears of width ≤ 4·32, then the stage projection sums 32 terms; a Perceiver layer sums over a chunk's 4·16·16
# pixels + 8·4 latents in its attention and over ≤ 4·32 terms in its projections and feed-forward.
BACKBONE_TERMS = 4 * (49 + 2 * 128) + 32
PERCEIVER_LAYER_TERMS = (4 * 16 * 16 + 32) + 2 * 128
# Everything up to the logits (backbone, 2 query layers, heads of width ≤ 32) and up to the tokens (+ 2 refinement
# layers and the output projection).
LOGIT_TERMS = BACKBONE_TERMS + 2 * PERCEIVER_LAYER_TERMS + 3 * 32
TOKEN_TERMS = LOGIT_TERMS + 2 * PERCEIVER_LAYER_TERMS + 32


# ----------------------------------------------------------------------------------------------------------- shapes
def test_output_shapes_and_types():
    model = tiny_trajtok_model()
    out = model(video_batch(2, 6), output_soft_masks=True, output_pixel_features=True)
    K, D = model.config.num_trajectories, model.config.hidden_size
    num_chunks = 2  # 6 frames, chunk 4
    assert out.trajectory_tokens.shape == (2, num_chunks * K, D)
    assert out.trajectory_mask.shape == (2, num_chunks * K) and out.trajectory_mask.dtype == torch.bool
    assert out.assignment_logits.shape == (2, 6, 16, 16, K)
    assert out.trajectory_ids.shape == (2, 6, 16, 16) and out.trajectory_ids.dtype == torch.long
    assert out.num_trajectories.tolist() == out.trajectory_mask.sum(1).tolist()
    assert out.trajectory_queries.shape == (2, num_chunks * K, D)
    assert out.soft_masks.shape == out.assignment_logits.shape
    assert out.pixel_features.shape == (2, 6, 16, 16, D)
    assert torch.isfinite(out.trajectory_tokens).all()


def test_single_image_is_one_frame_video():
    model = tiny_trajtok_model()
    out = model(video_batch(1, 1))
    assert out.trajectory_tokens.shape == (1, 8, 32)
    assert out.trajectory_ids.shape == (1, 1, 16, 16)
    assert out.num_trajectories.item() >= 1


def test_non_square_and_non_multiple_sizes():
    model = tiny_trajtok_model()
    out = model(torch.randn(1, 2, 3, 64, 96))
    assert out.trajectory_ids.shape == (1, 2, 16, 24)
    out = model(torch.randn(1, 2, 3, 70, 70))  # not a multiple of 32: the stem's grid (17×17) is the mask grid
    assert out.trajectory_ids.shape == (1, 2, 17, 17)


# ------------------------------------------------------------------------------------------------- Eq. 1 assignment
def test_eq1_soft_mask_sums_to_one_over_trajectories():
    out = tiny_trajtok_model()(video_batch(1, 2), output_soft_masks=True)
    torch.testing.assert_close(out.soft_masks.sum(-1), torch.ones(1, 2, 16, 16))
    torch.testing.assert_close(out.soft_masks, out.assignment_logits.softmax(-1))


def test_eq1_logits_are_scaled_cosine_of_the_two_heads():
    model = tiny_trajtok_model()
    out = model(video_batch(1, 2), output_pixel_features=True)
    features = out.pixel_features.reshape(1, -1, 32)
    q = F.normalize(model.query_head(out.trajectory_queries), dim=-1)
    p = F.normalize(model.pixel_head(features), dim=-1)
    scale = min(math.log1p(math.exp(model.logit_scale.item())) + 1.0, 20.0)
    expected = (p @ q.transpose(1, 2)) * scale
    # Same ops in another order: the heads (≤ 32 terms) and the 8-dim cosine.
    assert_close_within_bound(out.assignment_logits.reshape(1, -1, 8), expected, 3 * 32)
    # Initial scale: softplus(log 16) + 1.
    assert scale == pytest.approx(math.log(17.0) + 1.0, rel=1e-6)


def test_eq1_logit_scale_is_clamped():
    model = tiny_trajtok_model()
    with torch.no_grad():
        model.logit_scale.fill_(100.0)
    out = model(video_batch(1, 1), output_soft_masks=True)
    assert out.assignment_logits.abs().max() <= 20.0 + 1e-4
    assert out.assignment_logits.abs().max() > 10.0


def test_hard_mask_is_argmax_and_active_set_is_non_empty_trajectories():
    model = tiny_trajtok_model(num_trajectories=32)
    out = model(video_batch(2, 1, size=32))  # 8×8 pixels, 32 slots: some slots must be empty
    torch.testing.assert_close(out.trajectory_ids, out.assignment_logits.argmax(-1))
    for b in range(2):
        used = set(out.trajectory_ids[b].unique().tolist())
        active = set(torch.nonzero(out.trajectory_mask[b]).flatten().tolist())
        assert used == active
        assert out.num_trajectories[b].item() == len(used)
    assert not out.trajectory_mask.all(), "test needs inactive trajectories to mean anything"


def test_inactive_trajectories_never_in_mask_for_multi_tokens():
    model = tiny_trajtok_model(num_trajectories=32)
    out = model(video_batch(1, 1, size=32), tokens_per_trajectory=4)
    token_traj = torch.arange(out.trajectory_mask.shape[1]) // 4
    used = out.trajectory_ids.unique()
    assert torch.equal(out.trajectory_mask[0], torch.isin(token_traj, used))


# --------------------------------------------------------------------------------------------- Eq. 2 initial tokens
@pytest.mark.parametrize("normalization", ["sum", "mean"])
def test_eq2_soft_pool_equals_direct_loop(normalization):
    model = tiny_trajtok_model(soft_pool_normalization=normalization, tokens_per_trajectory_choices=[1])
    torch.manual_seed(1)
    logits = torch.randn(1, 6, 8) * 3
    features = torch.randn(1, 6, 32)
    got = model._initial_queries(logits, features, 1)  # (1, K, D) = z_k + offset
    offset = model.subtoken_offsets[0]
    mask = logits.softmax(-1)[0]
    for k in range(8):
        z = sum(mask[p, k] * features[0, p] for p in range(6))
        if normalization == "mean":
            z = z / (sum(mask[p, k] for p in range(6)) + 1e-6)
        # A sum over 6 pixels (+ the 6-term mass), in another order than the einsum.
        assert_close_within_bound(got[0, k], z + offset, 2 * 6)


def test_query_init_latent_variants():
    for query_init in ("latent", "latent_plus_soft_pool"):
        model = tiny_trajtok_model(query_init=query_init)
        assert model.refinement_latents.shape == (8, 7, 32)
        assert model.subtoken_offsets is None  # only soft-pooled queries get the Fourier-ring offsets
        out = model(video_batch(1, 2), tokens_per_trajectory=2)
        assert out.trajectory_tokens.shape == (1, 16, 32)
    assert tiny_trajtok_model().refinement_latents is None


# ------------------------------------------------------------------------------------- stop-gradient (paper Sec. 3)
def _grad_norm(module):
    grads = [p.grad.abs().sum() for p in module.parameters() if p.grad is not None]
    return float(sum(grads)) if grads else 0.0


@pytest.mark.parametrize("detach", [True, False])
def test_query_perceiver_gradient_never_reaches_backbone_when_detached(detach):
    model = tiny_trajtok_model(detach_features=detach).train()
    out = model(video_batch(1, 2), tokens_per_trajectory=1)
    out.trajectory_queries.square().sum().backward()
    backbone_grad = _grad_norm(model.feature_extractor)
    assert _grad_norm(model.query_perceiver) > 0
    assert (backbone_grad == 0) == detach


def test_refinement_and_assignment_paths_reach_backbone():
    model = tiny_trajtok_model().train()
    out = model(video_batch(1, 2), tokens_per_trajectory=1)
    out.trajectory_tokens.square().sum().backward()
    assert _grad_norm(model.feature_extractor.backbone) > 0
    model.zero_grad()
    out = model(video_batch(1, 2), tokens_per_trajectory=1)
    out.assignment_logits.square().sum().backward()
    assert _grad_norm(model.feature_extractor.backbone) > 0  # through the pixel head
    assert _grad_norm(model.query_perceiver) > 0


# --------------------------------------------------------------------------------- hard-mask attention (refinement)
def _random_attention_inputs(batch=2, heads=2, num_traj=5, n=2, pixels=40, dim=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    length = num_traj * n
    tensors = [torch.randn(batch, heads, length, dim, generator=g) for _ in range(3)]
    tensors += [torch.randn(batch, heads, pixels, dim, generator=g) for _ in range(2)]
    ids = torch.randint(0, num_traj - 1, (batch, pixels), generator=g)  # the last trajectory stays empty
    return tensors, ids


@pytest.mark.parametrize("n", [1, 2, 4])
@pytest.mark.parametrize("visible_last", [0, 2])
def test_segment_softmax_equals_dense_reference(n, visible_last):
    tensors, ids = _random_attention_inputs(n=n)
    tensors = [t.double().requires_grad_() for t in tensors]
    dense = dense_hard_mask_attention(*tensors, ids, n, visible_last)
    fast = segment_hard_mask_attention(*tensors, ids, n, visible_last)
    torch.testing.assert_close(fast, dense, atol=1e-10, rtol=1e-10)
    weights = torch.randn_like(dense)
    grads_dense = torch.autograd.grad((dense * weights).sum(), tensors)
    grads_fast = torch.autograd.grad((fast * weights).sum(), tensors)
    for a, b in zip(grads_fast, grads_dense, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)
    assert torch.isfinite(fast).all()  # the empty trajectory sees only its own sub-token latents


@pytest.mark.parametrize("n", [1, 2, 4])
@pytest.mark.parametrize("visible_last", [0, 2])
def test_segment_softmax_aggregating_values_before_projection(n, visible_last):
    """pixel_value=None + (pixel_inputs, value_weight): Σ a·W x computed as W·Σ a x, same outputs and gradients."""
    tensors, ids = _random_attention_inputs(n=n)
    g = torch.Generator().manual_seed(1)
    heads, dim, width = 2, 4, 6
    inputs = torch.randn(2, tensors[3].shape[2], width, generator=g, dtype=torch.float64)
    value_weight = torch.randn(heads * dim, width, generator=g, dtype=torch.float64)
    tensors = [t.double() for t in tensors[:4]]
    leaves = [*tensors, inputs, value_weight]
    for leaf in leaves:
        leaf.requires_grad_()
    projected = F.linear(inputs, value_weight).unflatten(-1, (heads, dim)).transpose(1, 2)
    dense = dense_hard_mask_attention(*tensors, projected, ids, n, visible_last)
    fast = segment_hard_mask_attention(
        *tensors, None, ids, n, visible_last, pixel_inputs=inputs, value_weight=value_weight
    )
    torch.testing.assert_close(fast, dense, atol=1e-10, rtol=1e-10)
    weights = torch.randn_like(dense)
    for a, b in zip(
        torch.autograd.grad((fast * weights).sum(), leaves),
        torch.autograd.grad((dense * weights).sum(), leaves),
        strict=True,
    ):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)
    with pytest.raises(ValueError, match="pixel_inputs and value_weight"):
        segment_hard_mask_attention(*tensors, None, ids, n, visible_last)


@pytest.mark.parametrize("n", [1, 2])
@pytest.mark.parametrize("visible_last", [0, 2])
def test_segment_softmax_with_streamed_pixel_keys(monkeypatch, n, visible_last):
    """pixel_key as a function of a pixel range: scores are made block by block (here 14 rows over a batch of 2 =
    blocks of 7 of the 40 pixels, the last one short) and give the dense result; the function is asked for each block
    once (+ the last E pixels)."""
    import trajtok_hf.models.attention_trajtok as attention

    monkeypatch.setattr(attention, "STREAM_BLOCK_PIXELS", 14)
    tensors, ids = _random_attention_inputs(n=n)
    tensors = [t.double() for t in tensors]
    query, latent_key, latent_value, pixel_key, pixel_value = tensors
    calls = []

    def key_of(start, stop):
        calls.append((start, stop))
        return pixel_key[:, :, start:stop].transpose(1, 2)

    dense = dense_hard_mask_attention(*tensors, ids, n, visible_last)
    streamed = segment_hard_mask_attention(
        query, latent_key, latent_value, key_of, pixel_value, ids, n, visible_last, num_pixels=40
    )
    torch.testing.assert_close(streamed, dense, atol=1e-10, rtol=1e-10)
    assert calls[:6] == [(s, min(s + 7, 40)) for s in range(0, 40, 7)]
    assert calls[6:] == ([(40 - visible_last, 40)] if visible_last else [])
    with pytest.raises(ValueError, match="needs num_pixels"):
        segment_hard_mask_attention(query, latent_key, latent_value, key_of, pixel_value, ids, n)


def test_segment_weighted_sum_matches_index_add_and_gradcheck():
    g = torch.Generator().manual_seed(0)
    weights = torch.rand(30, 3, generator=g, dtype=torch.float64, requires_grad=True)
    inputs = torch.randn(30, 5, generator=g, dtype=torch.float64, requires_grad=True)
    segment = torch.randint(0, 4, (30,), generator=g)
    segment[segment == 2] = 1  # segment 2 stays empty: its rows must be zero
    out = SegmentWeightedSum.apply(weights, inputs, segment, 4)
    reference = torch.zeros(4, 3, 5, dtype=torch.float64).index_add(0, segment, weights[..., None] * inputs[:, None])
    torch.testing.assert_close(out, reference, atol=1e-12, rtol=0)
    assert out[2].abs().max() == 0
    assert torch.autograd.gradcheck(lambda w, x: SegmentWeightedSum.apply(w, x, segment, 4), (weights, inputs))


@pytest.mark.parametrize("attention", [segment_hard_mask_attention, dense_hard_mask_attention])
def test_hard_mask_attention_isolated_per_trajectory(attention):
    (q, kl, vl, kp, vp), ids = _random_attention_inputs(n=2)
    base = attention(q, kl, vl, kp, vp, ids, 2)
    j = 1
    pixels_of_j = (ids == j)[:, None, :, None]
    kp2 = torch.where(pixels_of_j, torch.randn_like(kp) * 5, kp)
    vp2 = torch.where(pixels_of_j, torch.randn_like(vp) * 5, vp)
    moved = attention(q, kl, vl, kp2, vp2, ids, 2)
    slot_traj = torch.arange(q.shape[2]) // 2
    others = slot_traj != j
    torch.testing.assert_close(moved[:, :, others], base[:, :, others], atol=0, rtol=0)
    assert (moved[:, :, ~others] - base[:, :, ~others]).abs().max() > 1e-3


def test_model_tokens_depend_only_on_own_pixels():
    """Perturbing the features of trajectory j's pixels leaves every token k ≠ j of the refinement unchanged."""
    model = tiny_trajtok_model()
    out = model(video_batch(1, 2), output_pixel_features=True, tokens_per_trajectory=2)
    features = out.pixel_features.reshape(1, -1, 32)
    ids = out.trajectory_ids.reshape(1, -1)
    j = int(ids[0, 0])
    hard = HardMask(trajectory_ids=ids, tokens_per_trajectory=2)
    queries = torch.randn(1, 16, 32)
    base = model.refinement_perceiver(queries, features, hard)
    moved = model.refinement_perceiver(
        queries, torch.where((ids == j)[..., None], torch.randn_like(features), features), hard
    )
    slot_traj = torch.arange(16) // 2
    # The other tokens see the same inputs; only blocking of the sums may differ: 2 refinement layers.
    assert_close_within_bound(moved[0, slot_traj != j], base[0, slot_traj != j], 2 * PERCEIVER_LAYER_TERMS)
    assert (moved[0, slot_traj == j] - base[0, slot_traj == j]).abs().max() > 1e-3


@pytest.mark.parametrize("n", [1, 2, 4])
def test_model_fast_path_equals_dense_outputs_and_gradients(n):
    model = tiny_trajtok_model(refinement_visible_last_pixels=2 if n == 2 else 0).train()
    video = video_batch(2, 3)
    outs, grads = [], []
    for implementation in ("segment", "dense"):
        model.zero_grad()
        out = model(video, tokens_per_trajectory=n, hard_mask_implementation=implementation)
        (
            out.trajectory_tokens * torch.linspace(-1, 1, out.trajectory_tokens.numel()).view_as(out.trajectory_tokens)
        ).sum().backward()
        outs.append(out.trajectory_tokens.detach())
        grads.append({k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None})
    # Same attention, other summation order: 2 refinement layers + output projection (gradients: the whole model).
    assert_close_within_bound(outs[0], outs[1], 2 * PERCEIVER_LAYER_TERMS + 32)
    assert grads[0].keys() == grads[1].keys()
    for key in grads[0]:
        assert_close_within_bound(grads[0][key], grads[1][key], TOKEN_TERMS, msg=key)


def test_unmasked_ablation_differs_and_sees_all_pixels():
    model = tiny_trajtok_model(use_hard_mask=False)
    out = model(video_batch(1, 2))
    assert torch.isfinite(out.trajectory_tokens).all()


# ------------------------------------------------------------------------------------------------------- Matryoshka
@pytest.mark.parametrize("n", [1, 2, 4])
def test_matryoshka_shapes(n):
    model = tiny_trajtok_model()
    out = model(video_batch(2, 4), tokens_per_trajectory=n)
    assert out.trajectory_tokens.shape == (2, 8 * n, 32)
    assert out.trajectory_mask.shape == (2, 8 * n)
    # All sub-tokens of a trajectory share its activity.
    assert (out.trajectory_mask.view(2, 8, n) == out.trajectory_mask.view(2, 8, n)[..., :1]).all()


def test_fourier_ring_offsets_are_distinct_and_scaled():
    model = tiny_trajtok_model()
    config = model.config
    for n in config.tokens_per_trajectory_choices:
        offsets = model.subtoken_offsets[config.subtoken_slice(n)]
        assert offsets.shape == (n, 32)
        for a, b in itertools.combinations(range(n), 2):
            assert (offsets[a] - offsets[b]).norm() > 1e-3
        # ring of F frequencies, orthonormal projection: every offset has norm sqrt(F) × 0.02
        torch.testing.assert_close(offsets.norm(dim=-1), torch.full((n,), math.sqrt(4) * 0.02), atol=1e-5, rtol=0)
    # sub-tokens of one trajectory start apart, so they give different tokens
    out = model(video_batch(1, 2), tokens_per_trajectory=4)
    tokens = out.trajectory_tokens.view(1, 8, 4, 32)
    assert (tokens[:, :, 0] - tokens[:, :, 1]).abs().max() > 1e-4


def test_training_samples_tokens_per_trajectory_and_eval_uses_default():
    model = tiny_trajtok_model(tokens_per_trajectory=2)
    assert model(video_batch(1, 1)).trajectory_tokens.shape[1] == 16
    model.train()
    seen = {model(video_batch(1, 1)).trajectory_tokens.shape[1] // 8 for _ in range(12)}
    assert seen == {1, 2, 4}


# --------------------------------------------------------------------------------------------------------- chunking
def test_chunking_equals_separate_chunks():
    model = tiny_trajtok_model(chunk_size=16)
    video = video_batch(1, 40, size=32)
    out = model(video, output_soft_masks=True)
    assert out.trajectory_tokens.shape == (1, 3 * 8, 32)
    K = 8
    for c, (start, stop) in enumerate([(0, 16), (16, 32), (32, 40)]):
        part = model(video[:, start:stop])
        # Batched vs alone: the same sums, possibly blocked differently by the kernels (the chunk here is 16 frames
        # of 8×8 pixels, the same pixel count per chunk as the terms above assume).
        assert_close_within_bound(out.trajectory_tokens[:, c * K : (c + 1) * K], part.trajectory_tokens, TOKEN_TERMS)
        assert_close_within_bound(out.assignment_logits[:, start:stop], part.assignment_logits, LOGIT_TERMS)
        logit_bound = float_error_bound(max(part.assignment_logits.abs().max().item(), 1.0), LOGIT_TERMS, torch.float32)
        assert_ids_equal_up_to_ties(
            out.trajectory_ids[:, start:stop] - c * K, part.trajectory_ids, part.assignment_logits, logit_bound
        )
    assert out.num_trajectories.item() == out.trajectory_mask.sum().item()


def test_batch_of_chunks_is_one_backbone_call(monkeypatch):
    model = tiny_trajtok_model(chunk_size=4)
    calls = []
    original = model.feature_extractor.forward
    monkeypatch.setattr(model.feature_extractor, "forward", lambda x: calls.append(x.shape[0]) or original(x))
    model(video_batch(2, 8))
    assert calls == [2 * 8]  # 2 videos × 2 full chunks × 4 frames in one batch


# ----------------------------------------------------------------------------------------------------------- RoPE
@pytest.mark.parametrize("fraction", [1.0, 0.5])
def test_rotary_matches_explicit_rotation(fraction):
    head_dim, rotary_dim, positions = 8, int(8 * fraction), 5
    x = torch.randn(1, positions, 2, head_dim)
    got = apply_rotary(x, rotary_multiplier(positions, head_dim, rotary_dim, 10000.0, "cpu"))
    expected = x.clone()
    for m in range(positions):
        for i in range(rotary_dim // 2):
            theta = m * 10000.0 ** (-2 * i / rotary_dim)
            a, b = x[0, m, :, 2 * i], x[0, m, :, 2 * i + 1]
            expected[0, m, :, 2 * i] = a * math.cos(theta) - b * math.sin(theta)
            expected[0, m, :, 2 * i + 1] = b * math.cos(theta) + a * math.sin(theta)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


# -------------------------------------------------------------------------------------------- backbones & options
@pytest.mark.parametrize("backbone_type", ["convnext", "convnextv2", "dinov3_convnext"])
def test_convnext_family_backbones(backbone_type):
    backbone = {"model_type": backbone_type, "depths": [1, 1, 1, 1], "hidden_sizes": [8, 16, 24, 32]}
    model = tiny_trajtok_model(backbone_config=backbone)
    out = model(video_batch(1, 2))
    assert out.trajectory_ids.shape == (1, 2, 16, 16)


def test_release_options_run():
    model = tiny_trajtok_model(
        backbone_config={"model_type": "dinov3_convnext", "depths": [1, 1, 1, 1], "hidden_sizes": [8, 16, 24, 32]},
        shared_stage_layernorm=True,
        backbone_final_layernorm=True,
        rope_fraction=0.5,
        latent_norm_placement="every_layer",
        query_init="latent",
        refinement_visible_last_pixels=2,
        tokens_per_trajectory_choices=[1],
    )
    assert len(model.feature_extractor.layer_norms) == 1
    assert model.feature_extractor.final_layernorm is not None
    out = model(video_batch(1, 2))
    assert torch.isfinite(out.trajectory_tokens).all()


def test_eager_attention_equals_sdpa():
    model = tiny_trajtok_model(latent_norm_placement="every_layer", rope_fraction=0.5)
    video = video_batch(1, 2)
    expected = model(video, output_pixel_features=True)
    model.set_attn_implementation("eager")
    assert model.query_perceiver.layers[0].attention.config._attn_implementation == "eager"
    got = model(video, output_pixel_features=True)
    # Written-out softmax vs SDPA: the query Perceiver's sums in another order (tokens: everything after it).
    assert_close_within_bound(got.trajectory_queries, expected.trajectory_queries, 2 * PERCEIVER_LAYER_TERMS)
    assert_close_within_bound(got.trajectory_tokens, expected.trajectory_tokens, TOKEN_TERMS)


def test_eager_from_pretrained_reaches_the_perceivers(tmp_path):
    """``attn_implementation="eager"`` at load time reaches the Perceivers (written-out softmax) and gives the SDPA
    result within the float bound."""
    tiny_trajtok_model().save_pretrained(tmp_path)
    video = video_batch(1, 2)
    sdpa = TrajTokModel.from_pretrained(tmp_path).eval()
    eager = TrajTokModel.from_pretrained(tmp_path, attn_implementation="eager").eval()
    for perceiver in (eager.query_perceiver, eager.refinement_perceiver):
        assert all(layer.attention.config._attn_implementation == "eager" for layer in perceiver.layers)
    assert sdpa.query_perceiver.layers[0].attention.config._attn_implementation == "sdpa"
    # Written-out softmax vs SDPA: the sums of the whole model in other orders.
    assert_close_within_bound(eager(video).trajectory_tokens, sdpa(video).trajectory_tokens, TOKEN_TERMS)


# 6 frames with chunks of 4 (a full chunk and a short one), n = 2: C·K = 16 queries, N = 32 tokens, 6·16·16 pixels.
_PIXELS, _QUERIES, _TOKENS = 6 * 16 * 16, 2 * 8, 2 * 8 * 2


def test_hidden_states_are_the_perceiver_latent_streams():
    model = tiny_trajtok_model()
    video = video_batch(2, 6)
    plain = model(video, tokens_per_trajectory=2)
    out = model(video, tokens_per_trajectory=2, output_hidden_states=True)
    assert plain.hidden_states is None and plain.attentions is None
    shapes = [tuple(h.shape) for h in out.hidden_states]
    assert shapes == [(2, _QUERIES, 32)] * 3 + [(2, _TOKENS, 32)] * 3  # query Perceiver, then refinement, depth 2 + 1
    # The query stream's last state, through the final LayerNorm, is the segmenter's queries (same ops: exact).
    torch.testing.assert_close(
        model.query_perceiver.norm_latents(out.hidden_states[2]), plain.trajectory_queries, atol=0, rtol=0
    )
    # Asking for the states changes nothing else (the same computation).
    torch.testing.assert_close(out.trajectory_tokens, plain.trajectory_tokens, atol=0, rtol=0)
    # transformers' index convention: only the selected entries, None elsewhere; also from the config.
    selected = model(video, tokens_per_trajectory=2, output_hidden_states=[0, -1]).hidden_states
    assert [h is not None for h in selected] == [True, False, False, False, False, True]
    torch.testing.assert_close(selected[-1], out.hidden_states[-1], atol=0, rtol=0)
    model.config.output_hidden_states = True
    assert len(model(video, output_trajectory_tokens=False).hidden_states) == 3  # no refinement: query stream only


def test_attentions_are_the_perceiver_weights():
    """One map per Perceiver layer over [own chunk's latents ; every pixel of the video]; rows sum to 1; pixels of
    the other chunk (and, in the refinement, of other trajectories) get weight 0."""
    model = tiny_trajtok_model()
    video = video_batch(2, 6)
    plain = model(video, tokens_per_trajectory=2)
    out = model(video, tokens_per_trajectory=2, output_attentions=True, return_dict=True)
    shapes = [tuple(a.shape) for a in out.attentions]
    assert shapes == [(2, 4, _QUERIES, 8 + _PIXELS)] * 2 + [(2, 4, _TOKENS, 16 + _PIXELS)] * 2
    for weights, keys in zip(out.attentions, (8, 8, 16, 16), strict=True):
        # Softmax rows over at most 16 + 6·16·16 keys.
        assert_close_within_bound(weights.sum(-1), torch.ones_like(weights[..., 0]), keys + _PIXELS, magnitude=1.0)
        rows = weights.shape[2] // 2
        chunk0, chunk1 = weights[:, :, :rows, keys:], weights[:, :, rows:, keys:]
        assert chunk0[..., 4 * 256 :].abs().max() == 0 and chunk1[..., : 4 * 256].abs().max() == 0
    ids = plain.trajectory_ids.reshape(2, -1)  # global ids c·K + k
    token_trajectory = torch.arange(_TOKENS) // 2
    other_trajectory = ids[:, None, :] != token_trajectory[None, :, None]  # (B, N, pixels)
    assert out.attentions[2][..., 16:].masked_select(other_trajectory[:, None]).abs().max() == 0
    # The written-out attention gives the tokens of the segment-softmax path within the float bound.
    assert_close_within_bound(out.trajectory_tokens, plain.trajectory_tokens, TOKEN_TERMS)
    assert len(model(video, output_attentions=True, output_hidden_states=True, return_dict=False)) == 8


@pytest.mark.parametrize("cpu_flash", [True, False], ids=["cpu_flash", "written_out"])
@pytest.mark.parametrize("num_pixels, block", [(1, 4), (37, 8), (64, 64), (100, 1000)])
def test_streamed_context_attention_equals_sdpa(num_pixels, block, cpu_flash, monkeypatch):
    """Both ways of attending to a block (PyTorch's CPU flash kernel, and the written-out scores where it is
    missing) merge into one SDPA call over all keys; the keys and values come as strided (B, n, h, d) views."""
    import trajtok_hf.models.attention_trajtok as attention

    if not cpu_flash:
        monkeypatch.setattr(attention, "_CPU_FLASH_ATTENTION", None)
    elif attention._CPU_FLASH_ATTENTION is None:
        pytest.skip("this PyTorch has no CPU flash-attention kernel")
    torch.manual_seed(0)
    query, latent_key, latent_value = (torch.randn(2, 4, 6, 8) for _ in range(3))
    keys_values = torch.randn(2, num_pixels, 2, 4, 8)
    key, value = keys_values[:, :, 0].transpose(1, 2) * 4, keys_values[:, :, 1].transpose(1, 2)  # peaked keys
    calls = []

    def project(start, stop):
        calls.append((start, stop))
        return key[:, :, start:stop], value[:, :, start:stop]

    got = streamed_context_attention(query, latent_key, latent_value, num_pixels, project, block)
    expected = F.scaled_dot_product_attention(
        query, torch.cat((latent_key, key), 2), torch.cat((latent_value, value), 2)
    )
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert calls == [(s, min(s + block, num_pixels)) for s in range(0, num_pixels, block)]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float64])
def test_streamed_context_attention_keeps_the_dtype_and_merges_in_float32_or_wider(dtype):
    """bfloat16 blocks are merged in float32: the result is as close to the float64 attention as one SDPA call over
    all keys in bfloat16 (within a bfloat16 rounding of the output); float64 stays float64 (written-out path)."""
    torch.manual_seed(0)
    query, latent_key, latent_value = (torch.randn(1, 2, 5, 16, dtype=torch.float64) for _ in range(3))
    key, value = torch.randn(1, 2, 300, 16, dtype=torch.float64) * 2, torch.randn(1, 2, 300, 16, dtype=torch.float64)
    exact = F.scaled_dot_product_attention(query, torch.cat((latent_key, key), 2), torch.cat((latent_value, value), 2))
    cast = [t.to(dtype) for t in (query, latent_key, latent_value, key, value)]
    got = streamed_context_attention(*cast[:3], 300, lambda a, b: (cast[3][:, :, a:b], cast[4][:, :, a:b]), 64)
    assert got.dtype == dtype and got.shape == exact.shape
    if dtype == torch.float64:
        torch.testing.assert_close(got, exact, atol=1e-12, rtol=1e-12)
    else:
        one_call = F.scaled_dot_product_attention(
            cast[0], torch.cat((cast[1], cast[3]), 2), torch.cat((cast[2], cast[4]), 2)
        )
        bf16_ulp = 2.0**-8 * exact.abs().max().item()
        assert (got.double() - exact).abs().max() <= (one_call.double() - exact).abs().max() + bf16_ulp


def test_perceivers_stream_pixels_at_inference_with_the_same_result(monkeypatch):
    """Inference over more than STREAM_BLOCK_PIXELS pixels takes the streamed paths (query Perceiver: blocked online
    softmax; refinement: blocked pixel keys); the outputs equal the one-shot paths that autograd mode takes (≤ 1e-5),
    which is what the model computed before streaming existed."""
    import trajtok_hf.models.attention_trajtok as attention
    import trajtok_hf.models.perceiver_trajtok as perceiver

    monkeypatch.setattr(attention, "STREAM_BLOCK_PIXELS", 100)  # 2 videos × 2 frames of 64²: blocks of 50 of 512 pixels
    model = tiny_trajtok_model().eval()
    video = video_batch(2, 2)
    streamed_calls = []
    original = perceiver.streamed_context_attention
    monkeypatch.setattr(
        perceiver, "streamed_context_attention", lambda *a, **k: streamed_calls.append(1) or original(*a, **k)
    )
    with torch.no_grad():
        streamed = model(video, output_pixel_features=True)
    assert len(streamed_calls) == model.config.query_perceiver_depth
    with torch.enable_grad():  # autograd on: the one-shot path
        one_shot = model(video, output_pixel_features=True)
    assert len(streamed_calls) == model.config.query_perceiver_depth
    # Online vs one-shot softmax: the Perceivers' sums in other orders (2 frames of 64²: half the pixels assumed above).
    assert_close_within_bound(streamed.trajectory_queries, one_shot.trajectory_queries, 2 * PERCEIVER_LAYER_TERMS)
    assert_close_within_bound(streamed.assignment_logits, one_shot.assignment_logits, LOGIT_TERMS)
    logit_bound = float_error_bound(max(one_shot.assignment_logits.abs().max().item(), 1.0), LOGIT_TERMS, torch.float32)
    assert_ids_equal_up_to_ties(
        streamed.trajectory_ids, one_shot.trajectory_ids, one_shot.assignment_logits, logit_bound
    )
    # The refinement's segment softmax streams its pixel keys too.
    assert_close_within_bound(streamed.trajectory_tokens, one_shot.trajectory_tokens, TOKEN_TERMS)


def test_gradient_checkpointing_gives_same_gradients():
    model = tiny_trajtok_model().train()
    video = video_batch(1, 2)
    grads = []
    for checkpointing in (False, True):
        if checkpointing:
            model.activation_checkpointing_enable()
        model.zero_grad()
        model(video, tokens_per_trajectory=1).trajectory_tokens.sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    # Recomputed forward: the same ops; the gradients sum over the whole model's reductions.
    assert_close_within_bound(grads[0], grads[1], TOKEN_TERMS)


def test_return_tuple():
    out = tiny_trajtok_model()(video_batch(1, 1), return_dict=False)
    assert isinstance(out, tuple) and out[0].shape == (1, 8, 32)


# ------------------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "video, match",
    [
        (torch.randn(2, 3, 64, 64), "pixel_values_videos must have shape"),
        (torch.randn(2, 2, 2, 3, 64, 64), "pixel_values_videos must have shape"),
        (torch.randn(1, 2, 1, 64, 64), "3 \\(RGB\\) channels"),
        (torch.randn(1, 2, 4, 64, 64), "3 \\(RGB\\) channels"),
        (torch.randn(1, 0, 3, 64, 64), "at least one video and one frame"),
        (torch.randn(1, 2, 3, 16, 64), "at least 32×32"),
        (torch.full((1, 1, 3, 64, 64), float("nan")), "NaN or inf"),
        (torch.full((1, 1, 3, 64, 64), float("inf")), "NaN or inf"),
        (torch.full((1, 1, 3, 64, 64), float("-inf")), "NaN or inf"),
        (torch.full((1, 1, 3, 64, 64), 1e30), "\\|value\\| <= 10000\\), got values in \\[1e\\+30"),
        (torch.full((1, 1, 3, 64, 64), -2e4), "got values in \\[-20000, -20000\\]"),
        (torch.zeros(1, 1, 3, 64, 64, dtype=torch.uint8), "float tensor"),
    ],
)
def test_bad_pixel_values(video, match):
    with pytest.raises(ValueError, match=match):
        tiny_trajtok_model()(video)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_runs_from_the_processor_output(dtype):
    """A bf16 / fp16 model takes the processor's float32 output as it is (cast at the top of forward)."""
    from trajtok_hf import TrajTokVideoProcessor

    frames = torch.randint(0, 256, (4, 3, 48, 40), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    pixels = TrajTokVideoProcessor(num_frames=4, size={"height": 64, "width": 64})(frames, return_tensors="pt")
    assert pixels["pixel_values_videos"].dtype == torch.float32
    model = tiny_trajtok_model().to(dtype)
    try:
        out = model(**pixels)
    except (RuntimeError, NotImplementedError) as error:
        if dtype == torch.float16 and "Half" in str(error):
            pytest.skip(f"this torch build has no float16 CPU kernel for an op of the model: {error}")
        raise
    assert out.trajectory_tokens.dtype == dtype and out.assignment_logits.dtype == dtype
    assert torch.isfinite(out.trajectory_tokens).all() and out.num_trajectories.min() >= 1


def test_bad_forward_arguments():
    model = tiny_trajtok_model()
    with pytest.raises(TypeError, match="pixel_values_videos must be a torch.Tensor"):
        model(video_batch(1, 1).numpy())
    for n in (3, 0, 8, True):
        with pytest.raises(ValueError, match="tokens_per_trajectory"):
            model(video_batch(1, 1), tokens_per_trajectory=n)
    with pytest.raises(ValueError, match="hard_mask_implementation"):
        model(video_batch(1, 1), hard_mask_implementation="sparse")
    with pytest.raises(TypeError, match="unexpected arguments"):
        model(video_batch(1, 1), pixel_values=video_batch(1, 1))


@pytest.mark.parametrize("frames_per_pass", [1, 3, None])
def test_backbone_frames_per_pass_changes_no_value(frames_per_pass):
    """The ConvNeXt over 2 videos × 5 frames in passes of 1 / 3 / 4 (the CPU default) frames vs one pass."""
    reference = tiny_trajtok_model(backbone_frames_per_pass=64)
    model = tiny_trajtok_model(backbone_frames_per_pass=frames_per_pass)
    model.load_state_dict(reference.state_dict())
    video = video_batch(2, 5)
    with torch.no_grad():
        a, b = reference(video, output_pixel_features=True), model(video, output_pixel_features=True)
    # Per-frame ops in passes of other sizes: kernels may block the backbone's sums differently (oneDNN/AMX vs AVX),
    # so each output is bounded by the reductions up to it.
    for key, terms in (
        ("pixel_features", BACKBONE_TERMS),
        ("assignment_logits", LOGIT_TERMS),
        ("trajectory_tokens", TOKEN_TERMS),
    ):
        assert_close_within_bound(getattr(b, key), getattr(a, key), terms, msg=key)
    logit_bound = float_error_bound(max(a.assignment_logits.abs().max().item(), 1.0), LOGIT_TERMS, torch.float32)
    assert_ids_equal_up_to_ties(a.trajectory_ids, b.trajectory_ids, a.assignment_logits, logit_bound)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"query_init": "mean"}, "query_init"),
        ({"soft_pool_normalization": "max"}, "soft_pool_normalization"),
        ({"latent_norm_placement": "none"}, "latent_norm_placement"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"chunk_size": -4}, "chunk_size"),
        ({"tokens_per_trajectory": 3}, "tokens_per_trajectory"),
        ({"tokens_per_trajectory_choices": [1, 3]}, "tokens_per_trajectory_choices"),
        ({"tokens_per_trajectory_choices": [2], "tokens_per_trajectory": 1}, "tokens_per_trajectory"),
        ({"num_trajectories": 0}, "num_trajectories"),
        ({"hidden_size": 30}, "divisible"),
        ({"rope_fraction": 1.5}, "rope_fraction"),
        ({"detach_features": "yes"}, "detach_features"),
        ({"refinement_visible_last_pixels": -1}, "refinement_visible_last_pixels"),
        ({"backbone_frames_per_pass": 0}, "backbone_frames_per_pass"),
        ({"backbone_frames_per_pass": 2.0}, "backbone_frames_per_pass"),
        ({"backbone_config": {"model_type": "resnet"}}, "backbone_config"),
        ({"backbone_config": {"model_type": "no-such-model"}}, "supported backbone configs"),
        ({"backbone_config": "convnext"}, "backbone_config must be a dict, a PreTrainedConfig or None"),
    ],
)
def test_bad_config_values(kwargs, match):
    with pytest.raises((TypeError, ValueError), match=match):
        tiny_trajtok_config(**kwargs)


@pytest.mark.parametrize(
    "kwargs, hint",
    [
        ({"num_traj": 64}, "did you mean 'num_trajectories'"),
        ({"num_trajectory": 64}, "did you mean 'num_trajectories'"),
        ({"chunksize": 8}, "did you mean 'chunk_size'"),
        ({"layer_norm_epsilon": 1e-6}, "'layer_norm_epsilon'"),  # an extra attribute (transformers' tests set it)
    ],
)
def test_unknown_config_keys_warn_and_are_kept(kwargs, hint, tmp_path, caplog):
    """transformers' convention: an unknown key is kept (save → reload keeps it) and a warning names the closest
    field; the field itself keeps its default."""
    with caplog.at_level("WARNING", logger="trajtok_hf"):
        config = tiny_trajtok_config(**kwargs)
    assert hint in caplog.text
    ((key, value),) = kwargs.items()
    assert getattr(config, key) == value and config.num_trajectories == 8 and config.chunk_size == 4
    config.save_pretrained(tmp_path)
    assert getattr(TrajTokConfig.from_pretrained(tmp_path), key) == value


def test_known_config_keys_do_not_warn(tmp_path, caplog):
    with caplog.at_level("WARNING", logger="trajtok_hf"):
        config = tiny_trajtok_config(num_trajectories=16)
        config.save_pretrained(tmp_path)
        TrajTokConfig.from_pretrained(tmp_path)
    assert "unknown argument" not in caplog.text


def test_config_json_round_trip(tmp_path):
    config = tiny_trajtok_config(query_init="latent", tokens_per_trajectory_choices=[1, 2])
    config.save_pretrained(tmp_path)
    loaded = TrajTokConfig.from_pretrained(tmp_path)
    assert loaded.query_init == "latent" and loaded.tokens_per_trajectory_choices == [1, 2]
    assert loaded.backbone_config.hidden_sizes == [8, 16, 24, 32]
    assert loaded.to_dict() == config.to_dict()


def test_default_config_is_the_paper_tokenizer():
    config = TrajTokConfig()
    assert (config.hidden_size, config.num_trajectories, config.chunk_size) == (512, 128, 16)
    assert config.backbone_config.model_type == "convnext"
    assert list(config.backbone_config.depths) == [3, 3, 9, 3]  # ConvNeXt-Tiny
    assert config.detach_features and config.use_hard_mask and config.query_init == "soft_pool"
    assert config.tokens_per_trajectory_choices == [1, 2, 4]
    assert TrajTokModel.main_input_name == "pixel_values_videos"


def test_tiny_config_forward_is_fast():
    """The tiny test configuration runs 2×4×3×64×64 well under a second (best of 5 after a warm-up; the best run is
    robust to other processes competing for the cores)."""
    import time

    model = tiny_trajtok_model()
    video = video_batch(2, 4)
    times = []
    with torch.inference_mode():
        model(video)
        for _ in range(5):
            start = time.perf_counter()
            model(video)
            times.append(time.perf_counter() - start)
    assert min(times) < 1.0


def test_skipping_trajectory_tokens_keeps_the_segmentation():
    model = tiny_trajtok_model()
    video = video_batch(1, 6)
    full = model(video)
    seg_only = model(video, output_trajectory_tokens=False)
    assert seg_only.trajectory_tokens is None
    torch.testing.assert_close(seg_only.assignment_logits, full.assignment_logits)
    assert torch.equal(seg_only.trajectory_ids, full.trajectory_ids)
    assert torch.equal(seg_only.trajectory_mask, full.trajectory_mask)


def test_torch_compile_reuses_its_graphs_after_the_first_calls():
    """torch.compile breaks the graph inside the chunk tokenizer; the continuation must be compiled once, not on every
    call (a bound method left on the stack across the break used to invalidate it each time). Dynamo's own eager
    backend captures the same graphs as inductor without generating code, so the check is cheap."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    model = tiny_trajvit2_vision_model()
    compiled = torch.compile(model, backend="eager")
    video = video_batch(batch=1, frames=2, size=64)
    with torch.inference_mode():
        expected = model(pixel_values_videos=video).pooler_output
        for _ in range(2):
            compiled(pixel_values_videos=video)
        frames = counters["frames"]["ok"]
        for _ in range(3):
            out = compiled(pixel_values_videos=video).pooler_output
    assert counters["frames"]["ok"] == frames, "frames were compiled again on later calls with the same input"
    torch.testing.assert_close(out, expected)
    torch._dynamo.reset()
