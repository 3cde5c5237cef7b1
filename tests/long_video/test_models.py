"""TrajViT2 and TrajVLM on a long video: merged tokens through the streaming path, against the clip path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.testers import TRAJVLM_VIDEO_TOKEN_ID, assert_close_within_bound, tiny_trajvit2_model, tiny_trajvlm_model
from trajtok_hf import TrajTokVideoProcessor
from trajtok_hf.long_video import trajvit2_long_video_features, trajvlm_long_video_embeds

CHUNK = 4  # the tiny models' chunk size


@pytest.fixture(scope="module")
def processor():
    return TrajTokVideoProcessor(size={"height": 32, "width": 32})


def frames(count, seed=0):
    return list(np.random.default_rng(seed).integers(0, 255, (count, 32, 32, 3), dtype=np.uint8))


def clip_pixels(processor, video):
    return processor(np.stack(video), do_sample_frames=False, return_tensors="pt")["pixel_values_videos"]


@pytest.mark.parametrize("positions", [0, 4], ids=["order-free", "chunk-positions"])
def test_trajvit2_one_chunk_is_the_clip_embedding(processor, positions):
    model = tiny_trajvit2_model(max_chunk_positions=positions).eval()
    video = frames(CHUNK)
    output, tokens = trajvit2_long_video_features(model, processor, video)
    with torch.inference_mode():
        clip = model.get_video_features(clip_pixels(processor, video), return_dict=True)
    # The merged set is the chunk's token set in another order; the encoder does not depend on the order.
    assert tokens.merged.num_tokens == int(clip.trajectory_mask.sum())
    assert_close_within_bound(output.pooler_output, clip.pooler_output, reduction_length=2048)


def test_trajvit2_a_static_video_is_one_chunks_tokens_and_embedding(processor):
    model = tiny_trajvit2_model().eval()
    still = frames(1)[0]
    output, tokens = trajvit2_long_video_features(model, processor, [still] * (3 * CHUNK))
    _, one = trajvit2_long_video_features(model, processor, [still] * CHUNK)
    assert [c["num_tokens"] for c in tokens.chunks] == [one.merged.num_tokens] * 3
    assert tokens.merged.num_tokens == one.merged.num_tokens
    assert tokens.merged.trajectory_spans[:, 1].max() == 3 * CHUNK
    short, _ = trajvit2_long_video_features(model, processor, [still] * CHUNK)
    assert_close_within_bound(output.pooler_output, short.pooler_output, reduction_length=2048)


def test_trajvit2_needs_the_trajtok_tokenizer(processor):
    with pytest.raises(TypeError, match="vit3d"):
        trajvit2_long_video_features(tiny_trajvit2_model("vit3d"), processor, frames(CHUNK))


@pytest.fixture(scope="module")
def vlm():
    torch.manual_seed(0)
    return tiny_trajvlm_model()


def test_trajvlm_one_chunk_gives_the_clips_video_tokens(vlm, processor):
    video = frames(CHUNK, seed=1)
    merged, _ = trajvlm_long_video_embeds(vlm, processor, video)
    with torch.inference_mode():
        clip = vlm.get_video_features(clip_pixels(processor, video)).pooler_output[0]
    # The same tokens, in time order instead of slot order.
    order = lambda t: t[torch.argsort(t[:, 0])]  # noqa: E731
    torch.testing.assert_close(order(merged.trajectory_tokens), order(clip))


def test_trajvlm_a_long_static_video_is_one_prompt_of_one_chunks_tokens(vlm, processor):
    still = frames(1, seed=2)[0]
    merged, summary = trajvlm_long_video_embeds(vlm, processor, [still] * (4 * CHUNK))
    assert len(summary.chunks) == 4
    assert merged.num_tokens == summary.chunks[0]["num_tokens"]
    prompt = torch.tensor([[11, 12, TRAJVLM_VIDEO_TOKEN_ID, 13]])
    greedy = dict(do_sample=False, max_new_tokens=4, min_new_tokens=4, pad_token_id=0)
    with torch.inference_mode():
        long = vlm.generate(input_ids=prompt, video_embeds=[merged.trajectory_tokens], **greedy)
        one, _ = trajvlm_long_video_embeds(vlm, processor, [still] * CHUNK)
        short = vlm.generate(input_ids=prompt, video_embeds=[one.trajectory_tokens], **greedy)
    assert torch.equal(long, short)


@pytest.mark.parametrize(
    "model, kwargs, error, match",
    [
        ("patch_pool", {}, TypeError, "connector_type"),
        ("trajtok", dict(chunk_size=CHUNK + 1), ValueError, "chunk_size"),
    ],
)
def test_trajvlm_bad_arguments_are_named(vlm, processor, model, kwargs, error, match):
    model = vlm if model == "trajtok" else tiny_trajvlm_model("patch_pool")
    with pytest.raises(error, match=match):
        trajvlm_long_video_embeds(model, processor, frames(CHUNK), **kwargs)
