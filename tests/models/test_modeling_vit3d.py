"""ViT3D baseline (paper Sec. 4): tubelet tokens, space-time positions, and the shared TrajViT2 encoder/CLIP code."""

import math

import pytest
import torch
import torch.nn.functional as F
from testers import (
    assert_close_within_bound,
    tiny_trajvit2_model,
    tiny_trajvit2_vision_config,
    tiny_trajvit2_vision_model,
    video_batch,
)

from trajtok_hf import TrajViT2Config, TrajViT2Model
from trajtok_hf.models.modeling_vit3d import ViT3DPatchTokenizer, sinusoidal_position_embedding_3d

# Tiny tensors: intra-op threads cost more in synchronisation than they save (conftest.single_thread).
pytestmark = pytest.mark.usefixtures("single_thread")


def tokenizer(**overrides) -> ViT3DPatchTokenizer:
    module = ViT3DPatchTokenizer(tiny_trajvit2_vision_config("vit3d", **overrides))
    with torch.no_grad():
        module.projection.weight.normal_(std=0.02)
        module.projection.bias.normal_(std=0.02)
        if module.position_embeddings is not None:
            module.position_embeddings.normal_(std=0.02)
    return module


def test_tubelet_tokens_shape_order_and_mask():
    module = tokenizer()
    videos = video_batch(2, 4, size=64)
    out = module(videos)
    assert out.grid_size == (2, 4, 4)
    assert out.tokens.shape == (2, 2 * 4 * 4, 32) and out.token_mask.all() and out.token_mask.shape == (2, 32)
    # Token (t, row, col) = the Conv3d of tubelet frames 2t..2t+1, pixels of patch (row, col), plus its position.
    t, row, col = 1, 2, 3
    patch = videos[0, 2 * t : 2 * t + 2, :, 16 * row : 16 * row + 16, 16 * col : 16 * col + 16]  # (2, 3, 16, 16)
    weight = module.projection.weight  # (D, 3, 2, 16, 16)
    expected = torch.einsum("tchw,dcthw->d", patch, weight) + module.projection.bias
    index = (t * 4 + row) * 4 + col
    expected = expected + module.position_embeddings[0, index]
    # bound: Σ|patch·weight| (the partial sums' size), a 2·3·16² = 1536-term dot product (+ bias, position), fp32.
    magnitude = torch.einsum("tchw,dcthw->d", patch.abs(), weight.abs()).max().item() + 1
    assert_close_within_bound(out.tokens[0, index], expected, patch.numel() + 2, magnitude)


def test_frames_not_filling_a_tubelet_repeat_the_last_frame():
    module = tokenizer()
    videos = video_batch(1, 3, size=32)
    repeated = torch.cat((videos, videos[:, -1:]), dim=1)
    assert torch.equal(module(videos).tokens, module(repeated).tokens)  # the same padded clip: the same operations
    image = videos[:, :1]  # an image = a 1-frame video = a 2-frame still clip
    out = module(image)
    assert out.grid_size == (1, 2, 2)
    # Equivalent to a 2-D patch embedding whose kernel is the sum of the two temporal slices (+ positions).
    conv2d = F.conv2d(image[:, 0], module.projection.weight.sum(2), module.projection.bias, stride=16)
    positions = module.position_embedding((1, 2, 2), torch.float32, "cpu")
    # bound: Σ|pixel·weight| (the partial sums' size), a 1536-term convolution (+ bias, position), fp32 eps.
    magnitude = F.conv2d(image[:, 0].abs(), module.projection.weight.abs().sum(2), stride=16).max().item() + 1
    assert_close_within_bound(out.tokens, conv2d.flatten(2).transpose(1, 2) + positions, 2 * 3 * 16 * 16 + 2, magnitude)


def test_learned_positions_interpolate_for_other_grids():
    module = tokenizer()
    default = module.position_embedding(module.default_grid, torch.float32, "cpu")
    assert module.default_grid == (2, 4, 4)
    assert torch.equal(default, module.position_embeddings)  # default grid: used as they are
    grid = module.position_embeddings.reshape(1, 2, 4, 4, 32).permute(0, 4, 1, 2, 3)
    expected = F.interpolate(grid, size=(1, 6, 3), mode="trilinear", align_corners=False)
    expected = expected.permute(0, 2, 3, 4, 1).reshape(1, 18, 32)
    assert torch.equal(module.position_embedding((1, 6, 3), torch.float32, "cpu"), expected)  # the same call
    # An image (1 tubelet) gets the temporal centre of the clip's positions (the mean of the 2 slots here).
    # bound: |position| <= its max, trilinear weights of 8 terms against a mean of 2, fp32 eps.
    assert_close_within_bound(
        module.position_embedding((1, 4, 4), torch.float32, "cpu"),
        module.position_embeddings.reshape(1, 2, 16, 32).mean(1),
        8,
        magnitude=module.position_embeddings.abs().max().item(),
    )
    out = module(video_batch(1, 2, size=96, seed=1))  # 6×6 patches: interpolated, no error
    assert out.tokens.shape == (1, 36, 32)


def test_sinusoidal_positions_formula_and_any_grid():
    emb = sinusoidal_position_embedding_3d((3, 4, 5), 32)
    assert emb.shape == (60, 32)
    m = 32 // 6
    t, row, col = 2, 1, 4
    omega = 1.0 / 10000 ** (torch.arange(m, dtype=torch.float64) / m)

    def axis(p):
        return torch.cat(((p * omega).sin(), (p * omega).cos()))

    expected = torch.cat((axis(t), axis(row), axis(col), torch.zeros(32 - 6 * m, dtype=torch.float64))).float()
    # bound: |sin|, |cos| <= 1, the same float64 values rounded once to float32 (vectorised and scalar sin may differ
    # in their last float64 bit).
    assert_close_within_bound(emb[(t * 4 + row) * 5 + col], expected, 1, magnitude=1.0)
    assert torch.unique(emb, dim=0).shape[0] == 60  # every position distinct
    module = tokenizer(position_embedding_type="sinusoidal")
    assert [name for name, _ in module.named_parameters()] == ["projection.weight", "projection.bias"]
    out = module(video_batch(1, 5, size=48))
    assert out.grid_size == (3, 3, 3)


@pytest.mark.parametrize(
    "videos, error, match",
    [
        (torch.randn(1, 3, 64, 64), ValueError, "1-frame video"),
        (torch.randn(1, 2, 4, 64, 64), ValueError, "channels"),
        (torch.randn(1, 2, 3, 64, 40), ValueError, "multiples of patch_size"),
        (torch.ones(1, 2, 3, 64, 64, dtype=torch.uint8), ValueError, "float"),
        (video_batch(1, 2).numpy(), TypeError, "torch.Tensor"),
    ],
)
def test_bad_inputs(videos, error, match):
    # The checks run once, at the public boundary of the model that owns the ViT3D tokenizer.
    with pytest.raises(error, match=match):
        tiny_trajvit2_vision_model("vit3d")(videos)


# ----------------------------------------------------------------------------------- same encoder, same CLIP code
def test_vit3d_and_trajtok_share_the_encoder_and_clip_heads():
    traj = tiny_trajvit2_model("trajtok")
    vit3d = tiny_trajvit2_model("vit3d")
    assert type(traj) is type(vit3d) is TrajViT2Model

    def shared(model):
        return {k: v.shape for k, v in model.state_dict().items() if not k.startswith("vision_model.tokenizer.")}

    assert shared(traj) == shared(vit3d)  # CLS, encoder layers, final norm, projections, text tower, logit scale
    assert type(vit3d.vision_model.tokenizer) is ViT3DPatchTokenizer


def test_default_vit3d_config_has_the_release_encoder_and_tubelet_shapes():
    vision = TrajViT2Config(vision_tokenizer="vit3d").vision_config
    assert (vision.hidden_size, vision.num_hidden_layers, vision.num_attention_heads) == (512, 24, 16)
    assert (vision.tubelet_size, vision.patch_size, vision.image_size, vision.num_frames) == (2, 16, 224, 16)
    assert vision.position_embedding_type == "learned"
    module = ViT3DPatchTokenizer(vision)
    assert module.position_embeddings.shape == (1, 8 * 14 * 14, 512)


def test_vit3d_vision_model_uses_every_patch_and_trains():
    model = tiny_trajvit2_vision_model("vit3d").train()
    videos = video_batch(2, 3, size=32)
    out = model(videos)
    assert out.last_hidden_state.shape == (2, 1 + 2 * 2 * 2, 32) and out.attention_mask.all()
    assert out.trajectory_mask is None and out.num_trajectories is None
    out.pooler_output.square().sum().backward()
    tokenizer = model.vision_model.tokenizer
    assert tokenizer.projection.weight.grad.abs().sum() > 0 and tokenizer.position_embeddings.grad.abs().sum() > 0


def test_vit3d_clip_model_on_images_and_videos():
    model = tiny_trajvit2_model("vit3d")
    images = video_batch(2, 1, size=32)[:, 0]
    features = model.get_image_features(images).pooler_output
    assert features.shape == (2, 16) and torch.isfinite(features).all()
    out = model(
        input_ids=torch.ones(2, 4, dtype=torch.long), pixel_values_videos=video_batch(2, 4, size=32), return_loss=True
    )
    assert out.loss.ndim == 0 and math.isfinite(out.loss.item())
