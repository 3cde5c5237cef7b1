"""Run-length tokenization and space-time pooling of the ViT3D baseline's tokens (trajtok_hf/baselines/
token_reduction.py)."""

from __future__ import annotations

import pytest
import torch
from testers import tiny_trajvit2_model, tiny_trajvit2_vision_model, video_batch

from trajtok_hf.baselines import (
    apply_run_length_tokenization,
    apply_token_merging,
    apply_token_pooling,
    pooled_grid_size,
    remove_token_reduction,
    run_length_keep_mask,
)
from trajtok_hf.baselines.token_reduction import PooledViT3DTokenizer, RunLengthViT3DTokenizer
from trajtok_hf.models.modeling_vit3d import ViT3DPatchTokenizer


def _vit3d(**overrides):
    return tiny_trajvit2_vision_model("vit3d", num_hidden_layers=2, **overrides)


def _static_video(batch=2, frames=8, size=64, seed=3):
    """Every frame the same, except that patch (row 1, col 2) changes in frames 4–7 of clip 0 (tubelets 2 and 3)."""
    video = video_batch(batch, 1, size=size, seed=seed).expand(-1, frames, -1, -1, -1).clone()
    video[0, 4:, :, 16:32, 32:48] += 1.0
    return video


def _reference_keep(video, tubelet, patch, threshold):
    """Patch by patch, the rule as the module docstring states it."""
    batch, frames = video.shape[:2]
    t, h, w = -(-frames // tubelet), video.shape[-2] // patch, video.shape[-1] // patch
    padded = torch.cat((video, video[:, -1:].expand(-1, t * tubelet - frames, -1, -1, -1)), dim=1)
    keep = torch.ones(batch, t, h, w, dtype=torch.bool)
    for b in range(batch):
        for i in range(1, t):
            for r in range(h):
                for c in range(w):
                    cur = padded[
                        b, i * tubelet : (i + 1) * tubelet, :, r * patch : (r + 1) * patch, c * patch : (c + 1) * patch
                    ]
                    prev = padded[
                        b, (i - 1) * tubelet : i * tubelet, :, r * patch : (r + 1) * patch, c * patch : (c + 1) * patch
                    ]
                    keep[b, i, r, c] = (cur - prev).abs().mean() > threshold
    return keep.flatten(1)


@pytest.mark.parametrize("frames", [8, 7, 1])
@pytest.mark.parametrize("threshold", [0.0, 0.5, 2.0])
def test_run_length_keep_mask_matches_a_patch_by_patch_reference(frames, threshold):
    video = video_batch(2, frames, size=32, seed=frames)
    video[:, frames // 2 :] = video[:, :1]  # a static second half: some patches repeat exactly
    keep = run_length_keep_mask(video, tubelet_size=2, patch_size=16, threshold=threshold)
    assert torch.equal(keep, _reference_keep(video, 2, 16, threshold))


def test_rlt_drops_static_patches_and_keeps_the_changing_one():
    model = apply_run_length_tokenization(_vit3d(), threshold=0.1)
    video = _static_video()
    out = model.vision_model.tokenizer(video)
    # 4 tubelets × 16 patches; clip 0 keeps the first tubelet and its changed patch at tubelet 2 only (tubelet 3 repeats
    # tubelet 2), clip 1 the first tubelet only.
    assert out.token_mask.sum(1).tolist() == [17, 16]
    assert out.token_mask[0].view(4, 4, 4)[2, 1, 2] and not out.token_mask[0].view(4, 4, 4)[3, 1, 2]
    encoded = model(pixel_values_videos=video)
    assert encoded.attention_mask.shape == (2, 1 + 17) and encoded.attention_mask.sum(1).tolist() == [18, 17]


def test_rlt_at_threshold_zero_on_changing_frames_keeps_everything_and_matches_the_plain_model():
    plain = _vit3d()
    video = video_batch(2, 8, size=64, seed=1)
    expected = plain(pixel_values_videos=video).pooler_output
    apply_run_length_tokenization(plain, threshold=0.0)  # random frames: every patch changes
    assert torch.equal(plain(pixel_values_videos=video).pooler_output, expected)
    remove_token_reduction(plain)
    assert type(plain.vision_model.tokenizer) is ViT3DPatchTokenizer


def test_rlt_output_is_the_plain_model_on_the_kept_tokens():
    model = _vit3d()
    video = _static_video()
    keep = run_length_keep_mask(video, 2, 16, 0.1)
    tokens = model.vision_model.tokenizer(video).tokens
    expected = model.vision_model.encode_tokens(tokens, keep).pooler_output
    apply_run_length_tokenization(model, 0.1)
    torch.testing.assert_close(model(pixel_values_videos=video).pooler_output, expected, rtol=0, atol=0)


@pytest.mark.parametrize(
    "kernel, grid, frames",
    [
        ((1, 2, 2), (4, 2, 2), 8),
        ((2, 2, 2), (2, 2, 2), 8),
        ((4, 4, 4), (1, 1, 1), 8),
        (3, (2, 2, 2), 8),
        (2, (2, 2, 2), 7),
    ],
)
def test_pooling_averages_windows_positions_included(kernel, grid, frames):
    model = _vit3d()
    video = video_batch(2, frames, size=64, seed=5)
    plain = model.vision_model.tokenizer(video)
    apply_token_pooling(model, kernel)
    out = model.vision_model.tokenizer(video)
    k = (kernel,) * 3 if isinstance(kernel, int) else kernel
    assert out.grid_size == grid == pooled_grid_size(plain.grid_size, k)
    assert out.tokens.shape == (2, grid[0] * grid[1] * grid[2], plain.tokens.shape[-1]) and out.token_mask.all()
    # Reference: mean of the plain tokens in each window (windows cut at the border average what they hold).
    t, h, w = plain.grid_size
    full = plain.tokens.view(2, t, h, w, -1)
    expected = torch.stack(
        [
            full[:, i * k[0] : (i + 1) * k[0], r * k[1] : (r + 1) * k[1], c * k[2] : (c + 1) * k[2]].mean((1, 2, 3))
            for i in range(grid[0])
            for r in range(grid[1])
            for c in range(grid[2])
        ],
        dim=1,
    )
    torch.testing.assert_close(out.tokens, expected, rtol=1e-5, atol=1e-6)
    assert model(pixel_values_videos=video).last_hidden_state.shape[1] == 1 + expected.shape[1]


def test_reductions_replace_each_other_keep_the_state_dict_and_train():
    model = tiny_trajvit2_model("vit3d")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    apply_run_length_tokenization(model, 0.2)
    apply_token_pooling(model, (2, 2, 2))
    tokenizer = model.vision_model.tokenizer
    assert type(tokenizer) is PooledViT3DTokenizer and not hasattr(tokenizer, "rlt_threshold")
    apply_run_length_tokenization(model, 0.3)
    assert type(tokenizer) is RunLengthViT3DTokenizer and tokenizer.rlt_threshold == 0.3
    assert not hasattr(tokenizer, "pool_kernel")
    assert model.state_dict().keys() == state.keys()
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    # Composes with ToMe inside the encoder, and gradients reach the tubelet projection.
    apply_token_pooling(model, (1, 2, 2))
    apply_token_merging(model, 2)
    video = video_batch(2, 8, size=64, seed=2)
    features = model.get_video_features(pixel_values_videos=video).pooler_output
    features.sum().backward()
    assert tokenizer.projection.weight.grad is not None and tokenizer.projection.weight.grad.abs().sum() > 0
    remove_token_reduction(model)
    assert type(tokenizer) is ViT3DPatchTokenizer
    remove_token_reduction(model)  # a no-op the second time


@pytest.mark.parametrize(
    "apply, value, match",
    [
        (apply_run_length_tokenization, -0.1, "threshold must be a finite number >= 0"),
        (apply_run_length_tokenization, float("nan"), "threshold must be a finite number >= 0"),
        (apply_run_length_tokenization, True, "threshold must be a finite number >= 0"),
        (apply_run_length_tokenization, "0.1", "threshold must be a finite number >= 0"),
        (apply_token_pooling, 0, "kernel must be a positive int or 3 positive ints"),
        (apply_token_pooling, (2, 2), "kernel must be a positive int or 3 positive ints"),
        (apply_token_pooling, (2, 2, 1.5), "kernel must be a positive int or 3 positive ints"),
        (apply_token_pooling, "222", "kernel must be a positive int or 3 positive ints"),
    ],
)
def test_bad_arguments_are_named(apply, value, match):
    with pytest.raises(ValueError, match=match):
        apply(_vit3d(), value)


@pytest.mark.parametrize(
    "video, tubelet, patch, match",
    [
        (torch.zeros(2, 4, 3, 32), 2, 16, "must be a \\(B, T, C, H, W\\) tensor"),
        ([[0.0]], 2, 16, "must be a \\(B, T, C, H, W\\) tensor"),
        (torch.zeros(1, 4, 3, 30, 32), 2, 16, "positive multiples of patch_size \\(16\\)"),
        (torch.zeros(1, 0, 3, 32, 32), 2, 16, "at least one frame"),
        (torch.zeros(1, 4, 3, 32, 32), 0, 16, "tubelet_size must be a positive int"),
        (torch.zeros(1, 4, 3, 32, 32), 2, 2.0, "patch_size must be a positive int"),
    ],
)
def test_keep_mask_names_bad_inputs(video, tubelet, patch, match):
    with pytest.raises(ValueError, match=match):
        run_length_keep_mask(video, tubelet, patch, 0.1)


def test_pooled_grid_size_needs_three_axes():
    with pytest.raises(ValueError, match="grid_size and kernel must have 3 entries"):
        pooled_grid_size((4, 4), (2, 2))


def test_trajtok_models_and_non_models_are_refused():
    with pytest.raises(ValueError, match="applies to the ViT3D baseline"):
        apply_token_pooling(tiny_trajvit2_vision_model("trajtok"), 2)
    with pytest.raises(ValueError, match="applies to the ViT3D baseline"):
        apply_run_length_tokenization(tiny_trajvit2_vision_model("trajtok"), 0.1)
    with pytest.raises(TypeError, match="model must be a TrajViT2Model"):
        apply_token_pooling(torch.nn.Linear(2, 2), 2)
    with pytest.raises(ValueError, match="attend_to_inactive_tokens"):
        apply_run_length_tokenization(_vit3d(attend_to_inactive_tokens=True), 0.1)
