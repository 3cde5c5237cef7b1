"""ToMe-style token merging of the ViT3D baseline's encoder (trajtok_hf/baselines/token_merging.py)."""

from __future__ import annotations

import math

import pytest
import torch
from testers import (
    assert_close_within_bound,
    float_error_bound,
    tiny_trajvit2_model,
    tiny_trajvit2_terms,
    tiny_trajvit2_vision_model,
    transformer_layer_terms,
    video_batch,
)

from trajtok_hf.baselines.token_merging import (
    ToMeVisionTransformer,
    apply_token_merging,
    bipartite_soft_matching,
    merge_weighted_average,
    remove_token_merging,
    tome_r_for_token_count,
    tome_tokens_per_layer,
)

LAYERS = 4
# Reduction length (testers.float_error_bound) of the 4-layer tiny ViT3D on _video(): 8 frames of 64², 65 tokens.
VIT3D_TERMS = tiny_trajvit2_terms("vit3d", size=64, frames=8, num_layers=LAYERS)[0]


def _vit3d(**overrides):
    return tiny_trajvit2_vision_model("vit3d", num_hidden_layers=LAYERS, **overrides)


def _video(batch=2, frames=8):
    # 64² frames, 16² patches, tubelet 2: 4·4·4 = 64 patch tokens + [CLS] = 65.
    return video_batch(batch, frames, size=64, seed=7)


def test_r_zero_is_bit_identical_to_the_unmerged_model():
    model = _vit3d()
    video = _video()
    with torch.no_grad():
        reference = model(video)
        apply_token_merging(model, 0)
        merged = model(video)
    assert isinstance(model.vision_model, ToMeVisionTransformer)
    assert torch.equal(merged.last_hidden_state, reference.last_hidden_state)
    assert torch.equal(merged.pooler_output, reference.pooler_output)
    assert merged.tokens_per_layer == (65,) * LAYERS
    assert torch.equal(merged.token_sizes, torch.ones(2, 65))


def test_merging_removes_r_tokens_per_layer_and_keeps_sizes_and_cls():
    model = apply_token_merging(_vit3d(), 6)
    with torch.no_grad():
        out = model(_video())
    expected = [65 - 6 * layer for layer in range(LAYERS)]
    assert list(out.tokens_per_layer) == expected == tome_tokens_per_layer(65, 6, LAYERS)
    assert out.last_hidden_state.shape == (2, 65 - 6 * LAYERS, 32)
    assert out.attention_mask.all() and out.attention_mask.shape == (2, 65 - 6 * LAYERS)
    # Sizes count input tokens: every row sums to the input length, the [CLS] is alone and first.
    assert torch.equal(out.token_sizes.sum(dim=1), torch.full((2,), 65.0))
    assert (out.token_sizes >= 1).all()
    assert torch.equal(out.token_sizes[:, 0], torch.ones(2))
    assert torch.equal(out.pooler_output, out.last_hidden_state[:, 0])
    assert torch.isfinite(out.last_hidden_state).all()


def test_r_is_clamped_to_half_and_cls_survives_maximal_merging():
    model = apply_token_merging(_vit3d(), 1000)
    with torch.no_grad():
        out = model(_video(batch=1))
    assert list(out.tokens_per_layer) == tome_tokens_per_layer(65, 1000, LAYERS) == [65, 33, 17, 9]
    assert out.last_hidden_state.shape[1] == 5
    assert out.token_sizes[0, 0] == 1 and out.token_sizes.sum() == 65


def test_cls_is_never_a_merge_source_even_when_it_is_the_most_similar_token():
    torch.manual_seed(1)
    metric = torch.randn(3, 9, 8)
    metric[:, 0] = metric[:, 1]  # the [CLS] is an exact copy of B token 0: the best pair of all
    matching = bipartite_soft_matching(metric, r=4)
    assert (matching.source != 0).all()
    assert (matching.unmerged[:, 0] == 0).all()
    unprotected = bipartite_soft_matching(metric, r=1, protect_first=False)
    assert (unprotected.source[:, 0] == 0).all()


def _reference_merge(x, size, r):
    """Brute-force ToMe for one sequence (python loops are fine in a test): same rules, written plainly."""
    n = x.shape[0]
    a_positions, b_positions = list(range(0, n, 2)), list(range(1, n, 2))
    unit = torch.nn.functional.normalize(x, dim=-1)
    best = []
    for i, pa in enumerate(a_positions):
        sims = [float(unit[pa] @ unit[pb]) for pb in b_positions]
        j = max(range(len(sims)), key=lambda k: (sims[k], -k))
        best.append((-math.inf if i == 0 else sims[j], i, j))
    chosen = sorted(best, key=lambda t: (-t[0], t[1]))[:r]
    merged_sources = {i for _, i, _ in chosen}
    tokens_b = {j: (x[pb] * size[pb], size[pb].clone()) for j, pb in enumerate(b_positions)}
    for _, i, j in chosen:
        total, mass = tokens_b[j]
        tokens_b[j] = (total + x[a_positions[i]] * size[a_positions[i]], mass + size[a_positions[i]])
    kept = [(x[pa], size[pa]) for i, pa in enumerate(a_positions) if i not in merged_sources]
    out = [t for t, _ in kept] + [tokens_b[j][0] / tokens_b[j][1] for j in range(len(b_positions))]
    sizes = [s for _, s in kept] + [tokens_b[j][1] for j in range(len(b_positions))]
    return torch.stack(out), torch.stack(sizes)


def test_vectorised_matching_and_merge_match_a_brute_force_reference():
    torch.manual_seed(2)
    x = torch.randn(3, 11, 6)
    size = torch.randint(1, 4, (3, 11)).float()
    size[:, 0] = 1
    merged, merged_size = merge_weighted_average(x, size, bipartite_soft_matching(x, r=3))
    for b in range(3):
        ref, ref_size = _reference_merge(x[b], size[b], 3)
        # bound: |x| <= max |x|, a weighted mean of <= r + 1 tokens (their sum and one division), fp32 eps.
        assert_close_within_bound(merged[b], ref, 3 + 2, magnitude=x.abs().max().item())
        assert torch.equal(merged_size[b], ref_size)  # sums of small integers: exact


def test_batch_items_are_merged_independently():
    model = apply_token_merging(_vit3d(), [7, 5, 3, 2])
    video = _video(batch=3)
    with torch.no_grad():
        batched = model(video).last_hidden_state
        single = torch.cat([model(video[i : i + 1]).last_hidden_state for i in range(3)])
    assert_close_within_bound(batched, single, VIT3D_TERMS)  # bound: |hidden| (>= 1), the ViT3D's reductions, fp32


def test_merging_duplicates_with_proportional_attention_equals_unmerged_duplicated_input():
    """Tokens [CLS, t1, t1, t2, t2, …]: A (even positions) and B (odd) hold identical twins, so layer 0 merges exactly
    the twins, and a size-2 token under proportional attention is the same key as its two copies: the merged encoder
    must give the unmerged encoder's [CLS] on the duplicated sequence."""
    model = _vit3d()
    torch.manual_seed(3)
    unique = torch.randn(2, 12, 32)
    # bound: |hidden| (>= 1), the 4 layers over 25 tokens, the twins' mean and the final LayerNorm, fp32 eps.
    terms = LAYERS * transformer_layer_terms(25, 32, 64, 4) + 2 + 32
    duplicated = unique.repeat_interleave(2, dim=1)  # 24 tokens + [CLS] = 25, twins at positions (2k−1, 2k)
    mask = torch.ones(2, 24, dtype=torch.bool)
    with torch.no_grad():
        reference = model.vision_model.encode_tokens(duplicated, mask)
        apply_token_merging(model, [12, 0, 0, 0])
        merged = model.vision_model.encode_tokens(duplicated, mask)
        assert merged.tokens_per_layer == (25, 13, 13, 13)
        assert torch.equal(merged.token_sizes, torch.cat((torch.ones(2, 1), torch.full((2, 12), 2.0)), dim=1))
        assert_close_within_bound(merged.pooler_output, reference.pooler_output, terms)
        # Without proportional attention each merged token weighs like one key: the result changes.
        apply_token_merging(model, [12, 0, 0, 0], proportional_attention=False)
        plain = model.vision_model.encode_tokens(duplicated, mask)
    bound = float_error_bound(max(reference.pooler_output.abs().max().item(), 1.0), terms)
    assert (plain.pooler_output - reference.pooler_output).abs().max() > bound


def test_eager_and_sdpa_agree_with_proportional_attention():
    sdpa = apply_token_merging(_vit3d(), 5)
    eager = _vit3d()
    eager.load_state_dict(sdpa.state_dict())
    eager.set_attn_implementation("eager")
    apply_token_merging(eager, 5)
    video = _video()
    with torch.no_grad():
        # bound: |hidden| (>= 1), the ViT3D's reductions, fp32 eps; the two attention kernels sum in other orders.
        assert_close_within_bound(eager(video).pooler_output, sdpa(video).pooler_output, VIT3D_TERMS)


def test_clip_model_gradients_and_removal():
    model = tiny_trajvit2_model("vit3d", vision_overrides={"num_hidden_layers": LAYERS})
    video = _video()
    with torch.no_grad():
        reference = model.get_video_features(video).pooler_output
    apply_token_merging(model, 4)
    features = model.get_video_features(video).pooler_output
    assert features.shape == reference.shape
    features.sum().backward()
    assert model.vision_model.layers[0].attention.k_proj.weight.grad is not None
    assert model.vision_model.tokenizer.projection.weight.grad is not None
    remove_token_merging(model)
    assert type(model.vision_model).__name__ == "TrajViT2VisionTransformer"
    with torch.no_grad():
        assert torch.equal(model.get_video_features(video).pooler_output, reference)


@pytest.mark.parametrize("token_packing", ["off", "on", "auto"])
def test_merging_ignores_token_packing_and_runs_with_output_attentions(token_packing):
    # ViT3D tokens have no padding, so the packing setting (passed by the parent's _encode) changes nothing.
    reference = _vit3d(token_packing="off")
    model = _vit3d(token_packing=token_packing)
    model.load_state_dict(reference.state_dict())
    for m in (reference, model):
        m.set_attn_implementation("eager")
        apply_token_merging(m, 4)
    video = _video()
    with torch.no_grad():
        expected = reference(pixel_values_videos=video).pooler_output
        out = model(pixel_values_videos=video, output_attentions=True)
    assert torch.equal(out.pooler_output, expected)


@pytest.mark.parametrize("num_tokens,num_layers", [(65, 4), (197, 24), (785, 24), (1569, 12), (50, 3)])
def test_r_for_token_count_hits_the_mean_within_one_token(num_tokens, num_layers):
    minimum = sum(tome_tokens_per_layer(num_tokens, num_tokens, num_layers)) / num_layers
    for target in torch.linspace(math.ceil(minimum), num_tokens, 9).tolist():
        schedule = tome_r_for_token_count(num_tokens, num_layers, target)
        assert len(schedule) == num_layers and all(isinstance(r, int) and r >= 0 for r in schedule)
        mean = sum(tome_tokens_per_layer(num_tokens, schedule)) / num_layers
        assert 0 <= mean - target < 1, (target, schedule, mean)


def test_r_for_token_count_extremes_and_encoder_agreement():
    assert tome_r_for_token_count(65, 4, 65) == [0, 0, 0, 0]
    assert tome_r_for_token_count(65, 4, 1000.0) == [0, 0, 0, 0]
    # Unreachable target: the most aggressive schedule (halving every layer), as clamped merges.
    assert tome_r_for_token_count(65, 4, 1) == [32, 16, 8, 4]
    schedule = tome_r_for_token_count(65, LAYERS, 40.0)
    model = apply_token_merging(_vit3d(), schedule)
    with torch.no_grad():
        out = model(_video(batch=1))
    assert list(out.tokens_per_layer) == tome_tokens_per_layer(65, schedule)
    assert 0 <= sum(out.tokens_per_layer) / LAYERS - 40.0 < 1


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"num_tokens": 1, "num_layers": 4, "target_mean_tokens": 10}, "num_tokens"),
        ({"num_tokens": 65.0, "num_layers": 4, "target_mean_tokens": 10}, "num_tokens"),
        ({"num_tokens": 65, "num_layers": 0, "target_mean_tokens": 10}, "num_layers"),
        ({"num_tokens": 65, "num_layers": True, "target_mean_tokens": 10}, "num_layers"),
        ({"num_tokens": 65, "num_layers": 4, "target_mean_tokens": 0.5}, "target_mean_tokens"),
        ({"num_tokens": 65, "num_layers": 4, "target_mean_tokens": float("nan")}, "target_mean_tokens"),
        ({"num_tokens": 65, "num_layers": 4, "target_mean_tokens": "25"}, "target_mean_tokens"),
    ],
)
def test_r_for_token_count_rejects_bad_inputs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tome_r_for_token_count(**kwargs)


@pytest.mark.parametrize("r", [-1, 1.5, True, [1, 2], [1, 2, 3, -1], "2", torch.tensor(2)])
def test_apply_rejects_bad_r(r):
    with pytest.raises(ValueError, match="r must"):
        apply_token_merging(_vit3d(), r)


def test_apply_rejects_trajtok_and_non_models_and_partial_masks():
    with pytest.raises(ValueError, match="model: token merging applies to the ViT3D"):
        apply_token_merging(tiny_trajvit2_vision_model("trajtok"), 2)
    with pytest.raises(TypeError, match="model must be"):
        apply_token_merging(torch.nn.Linear(2, 2), 2)
    with pytest.raises(ValueError, match="proportional_attention"):
        apply_token_merging(_vit3d(), 2, proportional_attention="yes")
    with pytest.raises(ValueError, match="num_layers is required"):
        tome_tokens_per_layer(65, 3)
    model = apply_token_merging(_vit3d(), 2)
    mask = torch.ones(1, 8, dtype=torch.bool)
    mask[0, -1] = False
    with pytest.raises(ValueError, match="token_mask must be all True"):
        model.vision_model.encode_tokens(torch.randn(1, 8, 32), mask)
