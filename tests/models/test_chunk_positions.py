"""Chunk positions of the TrajViT2 vision tower (``max_chunk_positions``): the order of a clip's chunks matters only
with them (the paper's trajectory tokens are a set)."""

import pytest
import torch
from testers import tiny_trajvit2_vision_config, tiny_trajvit2_vision_model, video_batch

from trajtok_hf import TrajViT2VisionConfig, TrajViT2VisionModel

CHUNK = 4  # the tiny tokenizer's chunk_size


def _swap_chunks(video):
    return torch.cat([video[:, CHUNK:], video[:, :CHUNK]], dim=1)


@pytest.mark.parametrize("positions", [0, 2, 5])
def test_chunk_swapped_clip_embeds_differently_only_with_positions(positions):
    torch.manual_seed(0)
    model = tiny_trajvit2_vision_model(max_chunk_positions=positions)
    video = video_batch(batch=2, frames=2 * CHUNK)
    with torch.no_grad():
        original = model(video).pooler_output
        swapped = model(_swap_chunks(video)).pooler_output
    if positions:
        assert (original - swapped).abs().amax() > 1e-3
    else:  # a set of tokens: the same embedding up to float rounding (the encoder sees the chunks in another order)
        torch.testing.assert_close(swapped, original, rtol=1e-4, atol=1e-4)


def test_tokens_of_each_chunk_get_their_own_embedding():
    torch.manual_seed(0)
    model = tiny_trajvit2_vision_model(max_chunk_positions=3)
    tokens = torch.zeros(1, 3 * 8, model.config.token_width)  # 3 chunks of K = 8 slots
    shifted = model.vision_model._add_chunk_positions(tokens, 3 * CHUNK)
    table = model.vision_model.chunk_positions.weight
    torch.testing.assert_close(shifted[0], table.repeat_interleave(8, dim=0), rtol=0, atol=0)


def test_too_many_chunks_is_an_error():
    model = tiny_trajvit2_vision_model(max_chunk_positions=1)
    with pytest.raises(ValueError, match="max_chunk_positions"):
        model(video_batch(batch=1, frames=2 * CHUNK))


@pytest.mark.parametrize(
    "overrides, tokenizer, match",
    [
        ({"max_chunk_positions": -1}, "trajtok", "max_chunk_positions"),
        ({"max_chunk_positions": 2}, "vit3d", "ViT3D has its own"),
    ],
)
def test_config_validation(overrides, tokenizer, match):
    with pytest.raises(ValueError, match=match):
        tiny_trajvit2_vision_config(tokenizer, **overrides)


def test_round_trip(tmp_path):
    model = tiny_trajvit2_vision_model(max_chunk_positions=2)
    model.save_pretrained(tmp_path)
    loaded = TrajViT2VisionModel.from_pretrained(tmp_path).eval()
    assert isinstance(loaded.config, TrajViT2VisionConfig) and loaded.config.max_chunk_positions == 2
    video = video_batch(batch=1, frames=2 * CHUNK)
    with torch.no_grad():
        torch.testing.assert_close(loaded(video).pooler_output, model(video).pooler_output)
