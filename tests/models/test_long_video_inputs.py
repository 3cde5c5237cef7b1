"""Precomputed video tokens instead of pixels, the input of long videos whose tokens are merged across chunks:
TrajViT2's `trajectory_tokens` / `trajectory_mask` / `trajectory_spans` (one embedding per video) and TrajVLM's
`video_embeds` / `mm_encoder_outputs` (one prompt per video)."""

import pytest
import torch
from testers import (
    TRAJVLM_REDUCTION_LENGTH,
    assert_close_within_bound,
    text_batch,
    tiny_trajvit2_model,
    tiny_trajvit2_terms,
    tiny_trajvit2_vision_model,
    tiny_trajvlm_model,
    video_batch,
)
from testers import TRAJVLM_VIDEO_TOKEN_ID as VID

from trajtok_hf.models.modeling_trajvlm import TrajVLMVideoOutput

CHUNK = 4  # chunk_size of the tiny tokenizers
FRAMES = 10  # two full chunks and a last chunk of 2 frames
VIT2_TERMS = tiny_trajvit2_terms(size=64, frames=FRAMES)[0]


# ---------------------------------------------------------------------------------------------------------- TrajViT2
def _chunk_spans(num_tokens: int, num_chunks: int, frames: int, batch: int) -> torch.Tensor:
    """[start, end) of each tokenizer slot: the frames of its chunk (slots are laid out chunk by chunk)."""
    chunk = torch.arange(num_tokens) // (num_tokens // num_chunks)
    spans = torch.stack([chunk * CHUNK, ((chunk + 1) * CHUNK).clamp(max=frames)], dim=-1)
    return spans.expand(batch, -1, -1).clone()


def _own_tokens(model, videos):
    """The tokenizer's per-chunk tokens of `videos` and their chunk spans."""
    tokenizer = model.vision_model.tokenizer
    with torch.no_grad():
        tok = tokenizer(videos, return_dict=True)
    num_chunks = -(-videos.shape[1] // CHUNK)
    spans = _chunk_spans(tok.trajectory_tokens.shape[1], num_chunks, videos.shape[1], videos.shape[0])
    return {
        "trajectory_tokens": tok.trajectory_tokens,
        "trajectory_mask": tok.trajectory_mask,
        "trajectory_spans": spans,
    }


@pytest.fixture(scope="module")
def videos():
    return video_batch(2, FRAMES, seed=21)


@pytest.mark.parametrize("positions", [0, 3])
@torch.no_grad()
def test_trajvit2_own_tokens_with_chunk_spans_give_the_pixel_embedding(videos, positions):
    torch.manual_seed(0)
    vision = tiny_trajvit2_vision_model(max_chunk_positions=positions)
    clip = tiny_trajvit2_model(vision_overrides={"max_chunk_positions": positions})
    text = text_batch(2, seed=3)
    for model, run in (
        (vision, lambda m, **kw: m(**kw).pooler_output),
        (clip, lambda m, **kw: m.get_video_features(**kw).pooler_output),
        (clip, lambda m, **kw: m(**text, **kw).logits_per_video),
    ):
        pixels = run(model, pixel_values_videos=videos)
        tokens = run(model, **_own_tokens(model, videos))
        # Bound: the tower's reduction chain (testers.tiny_trajvit2_terms); both paths run the same operations.
        assert_close_within_bound(tokens, pixels, VIT2_TERMS)


@torch.no_grad()
def test_trajvit2_token_path_outputs(videos):
    model = tiny_trajvit2_vision_model(max_chunk_positions=3)
    inputs = _own_tokens(model, videos)
    out = model(**inputs)
    assert out.assignment_logits is None and out.trajectory_ids is None and out.num_trajectories is None
    assert torch.equal(out.trajectory_mask, inputs["trajectory_mask"])
    length = int(inputs["trajectory_mask"].sum(1).max())
    assert out.last_hidden_state.shape == (2, 1 + length, 32) and out.token_indices.shape == (2, length)
    as_tuple = model(**inputs, return_dict=False, output_hidden_states=True)
    assert torch.equal(as_tuple[1], out.pooler_output) and len(as_tuple[2]) == 3


@torch.no_grad()
def test_span_embedding_is_the_mean_over_the_covered_chunks():
    model = tiny_trajvit2_vision_model(max_chunk_positions=5)
    table = model.vision_model.chunk_positions.weight
    spans = torch.tensor([[[0, 4], [5, 6], [3, 5], [2, 19], [8, 20], [0, 20], [0, 1]]])
    mask = torch.ones(1, 7, dtype=torch.bool)
    got = model.vision_model._span_chunk_positions(spans, mask)
    for index, (start, end) in enumerate(spans[0].tolist()):
        first, last = start // CHUNK, (end - 1) // CHUNK
        expected = table[first : last + 1].mean(dim=0)
        if first == last:
            assert torch.equal(got[0, index], table[first])  # exactly the pixel path's per-chunk embedding
        # Bound: a mean of at most 5 rows, from a cumulative sum over the 5-row table (magnitude ≤ 1).
        assert_close_within_bound(got[0, index], expected, reduction_length=2 * 5, magnitude=1.0)


@pytest.mark.parametrize("positions", [0, 3])
@torch.no_grad()
def test_merged_tokens_spans_matter_only_with_chunk_positions_and_padding_has_no_effect(videos, positions):
    """Tokens of slot k of chunks 0 and 1 merged into one token spanning both chunks (pixel-count weights stand-in:
    a plain mean), batched with padding against each video alone."""
    torch.manual_seed(0)
    model = tiny_trajvit2_vision_model(max_chunk_positions=positions)
    own = _own_tokens(model, videos[:, : 2 * CHUNK])
    per_chunk = own["trajectory_tokens"].shape[1] // 2
    tokens = own["trajectory_tokens"].view(2, 2, per_chunk, -1)
    mask = own["trajectory_mask"].view(2, 2, per_chunk)
    both = mask.all(dim=1)  # (B, K·n): active in both chunks
    alone_in_one = torch.where(mask[:, 0].unsqueeze(-1), tokens[:, 0], tokens[:, 1])
    merged = torch.where(both.unsqueeze(-1), tokens.mean(dim=1), alone_in_one)
    merged_mask = mask.any(dim=1)
    first = torch.where(mask[:, 0], 0, CHUNK)
    last = torch.where(mask[:, 1], 2 * CHUNK, CHUNK)
    spans = torch.stack([first, last], dim=-1)
    out = model(trajectory_tokens=merged, trajectory_mask=merged_mask, trajectory_spans=spans).pooler_output
    one_chunk_spans = torch.stack([first, first + CHUNK], dim=-1)  # the merged tokens: their first chunk only
    one_chunk = model(trajectory_tokens=merged, trajectory_mask=merged_mask, trajectory_spans=one_chunk_spans)
    if positions:
        assert (out - one_chunk.pooler_output).abs().amax() > 1e-4
    else:  # the spans are validated only: the encoder is order-free over trajectory tokens
        assert torch.equal(out, one_chunk.pooler_output)
    # Batch padding: a video padded with garbage slots embeds as it does alone.
    padded = torch.cat([merged[:1], torch.full_like(merged[:1, :5], 1e4)], dim=1)
    padded_mask = torch.cat([merged_mask[:1], torch.zeros(1, 5, dtype=torch.bool)], dim=1)
    padded_spans = torch.cat([spans[:1], torch.full((1, 5, 2), -7)], dim=1)  # padding's spans are not read
    alone = model(trajectory_tokens=padded, trajectory_mask=padded_mask, trajectory_spans=padded_spans).pooler_output
    assert_close_within_bound(alone[0], out[0], VIT2_TERMS)


def test_trajvit2_token_path_trains_and_runs_in_bfloat16(videos):
    model = tiny_trajvit2_model(vision_overrides={"max_chunk_positions": 3}).train()
    inputs = _own_tokens(model, videos)
    loss = model(**text_batch(2, seed=4), **inputs, return_loss=True).loss
    loss.backward()
    assert torch.isfinite(loss) and model.vision_model.chunk_positions.weight.grad.abs().sum() > 0
    with torch.no_grad():
        half = model.eval().to(torch.bfloat16).get_video_features(**inputs).pooler_output  # fp32 tokens are cast
    assert half.dtype == torch.bfloat16 and torch.isfinite(half).all()


def _vit2_bad_inputs():
    tokens, mask = torch.randn(1, 6, 32), torch.ones(1, 6, dtype=torch.bool)
    spans = torch.tensor([[[0, 4]] * 6])
    ok = {"trajectory_tokens": tokens, "trajectory_mask": mask, "trajectory_spans": spans}

    def spans_with(start, end):
        changed = spans.clone()
        changed[0, 2] = torch.tensor([start, end])
        return {**ok, "trajectory_spans": changed}

    return [
        pytest.param(
            {**ok, "pixel_values_videos": video_batch(1, 4)}, ValueError, "pixel_values_videos or trajectory", id="both"
        ),
        pytest.param({}, ValueError, "pixel_values_videos", id="neither"),
        pytest.param(
            {**ok, "trajectory_tokens": tokens.numpy()},
            TypeError,
            "trajectory_tokens must be a torch",
            id="not_a_tensor",
        ),
        pytest.param(
            {**ok, "trajectory_tokens": tokens.long()}, TypeError, "trajectory_tokens must be a float", id="int_tokens"
        ),
        pytest.param(
            {**ok, "trajectory_tokens": tokens[0]}, ValueError, r"trajectory_tokens must have shape", id="2d_tokens"
        ),
        pytest.param({**ok, "trajectory_tokens": torch.randn(1, 6, 16)}, ValueError, "width 16 .* have 32", id="width"),
        pytest.param({**ok, "trajectory_tokens": tokens.clone().fill_(float("nan"))}, ValueError, "finite", id="nan"),
        pytest.param({**ok, "trajectory_mask": None}, ValueError, "trajectory_mask .* is required", id="no_mask"),
        pytest.param(
            {**ok, "trajectory_mask": mask.long()}, TypeError, "trajectory_mask must be a bool", id="mask_not_bool"
        ),
        pytest.param(
            {**ok, "trajectory_mask": mask[:, :5]}, ValueError, r"trajectory_mask must have shape", id="mask_shape"
        ),
        pytest.param(
            {**ok, "trajectory_mask": ~mask}, ValueError, r"no real token for video\(s\) \[0\]", id="mask_empty"
        ),
        pytest.param(
            {**ok, "trajectory_spans": spans.float()},
            TypeError,
            "trajectory_spans must be an integer",
            id="spans_float",
        ),
        pytest.param(
            {**ok, "trajectory_spans": spans[..., :1]},
            ValueError,
            r"trajectory_spans must have shape",
            id="spans_shape",
        ),
        pytest.param(spans_with(-1, 3), ValueError, "start at frame 0", id="start_negative"),
        pytest.param(spans_with(3, 3), ValueError, r"end > start, got \[3, 3\)", id="end_not_after_start"),
        pytest.param(
            spans_with(0, 13), ValueError, "4 chunks of 4, more than max_chunk_positions", id="past_positions"
        ),
        pytest.param({**ok, "trajectory_spans": None}, ValueError, "trajectory_spans are required", id="no_spans"),
        pytest.param(
            {"trajectory_mask": mask}, ValueError, "trajectory_mask given without trajectory_tokens", id="mask_alone"
        ),
        pytest.param(
            {**ok, "tokens_per_trajectory": 2}, ValueError, "tokens_per_trajectory", id="tokens_per_trajectory"
        ),
    ]


@pytest.mark.parametrize("kwargs, error, match", _vit2_bad_inputs())
def test_trajvit2_bad_token_inputs_raise_named_errors(kwargs, error, match):
    model = tiny_trajvit2_vision_model(max_chunk_positions=3)
    with pytest.raises(error, match=match):
        model(**kwargs)


def test_trajvit2_token_path_refusals_of_the_clip_model():
    tokens = {"trajectory_tokens": torch.randn(1, 6, 32), "trajectory_mask": torch.ones(1, 6, dtype=torch.bool)}
    clip = tiny_trajvit2_model()
    with pytest.raises(ValueError, match="segmentation_labels .* trajectory_tokens"):
        clip(**text_batch(1), **tokens, segmentation_labels=torch.zeros(1, 4, 16, 16, dtype=torch.long))
    with pytest.raises(ValueError, match="batch size 2 but trajectory_tokens has 1"):
        clip(**text_batch(2), **tokens, return_loss=True)
    with pytest.raises(ValueError, match="vision_tokenizer='vit3d'"):
        tiny_trajvit2_model("vit3d").get_video_features(**tokens)


# ----------------------------------------------------------------------------------------------------------- TrajVLM
@pytest.fixture(scope="module")
def vlm():
    """The tiny TrajVLM (16 trajectory slots) and two 8-frame videos (two chunks each) with different token counts."""
    torch.manual_seed(0)
    model = tiny_trajvlm_model(tokenizer_overrides={"num_trajectories": 16})
    for seed in range(20):
        videos = video_batch(2, 2 * CHUNK, size=32, seed=seed)
        with torch.no_grad():
            features = model.get_video_features(videos)
        if features.num_video_tokens[0] != features.num_video_tokens[1]:
            return model, videos, features
    raise AssertionError("no pair of random videos with different token counts")


_PROMPTS = torch.tensor([[11, 12, VID, 13, 14, 15], [0, 0, 21, VID, 22, 23]])  # compact form, row 1 left-padded
_MASK = (_PROMPTS != 0).long()
GREEDY = dict(do_sample=False, max_new_tokens=6, min_new_tokens=6, pad_token_id=0)


def _per_token_prompts(counts):
    """One <video> per video token (row r: its video's count), left-padded."""
    rows = [[11, 12] + [VID] * counts[0] + [13, 14, 15], [21] + [VID] * counts[1] + [22, 23]]
    width = max(map(len, rows))
    ids = torch.tensor([[0] * (width - len(r)) + r for r in rows])
    return ids, (ids != 0).long()


def _precomputed(features, how):
    return (
        {"video_embeds": features.pooler_output}
        if how == "video_embeds"
        else {"mm_encoder_outputs": {"video": features}}
    )


@pytest.mark.parametrize("how", ["video_embeds", "mm_encoder_outputs"])
@torch.no_grad()
def test_trajvlm_precomputed_tokens_equal_pixels_in_forward_and_generate(vlm, how):
    model, videos, features = vlm
    pixels = dict(input_ids=_PROMPTS, attention_mask=_MASK, pixel_values_videos=videos)
    tokens = dict(input_ids=_PROMPTS, attention_mask=_MASK, **_precomputed(features, how))
    labels = _PROMPTS.masked_fill(_MASK == 0, -100)
    a, b = model(**pixels, labels=labels), model(**tokens, labels=labels)
    # Bound: the tiny model's reduction chain (testers.TRAJVLM_REDUCTION_LENGTH); both paths run the same operations.
    assert_close_within_bound(b.logits, a.logits, TRAJVLM_REDUCTION_LENGTH)
    assert_close_within_bound(b.loss, a.loss, TRAJVLM_REDUCTION_LENGTH + 100)
    assert torch.equal(b.video_token_mask, a.video_token_mask)
    assert b.video_outputs.num_video_tokens.tolist() == features.num_video_tokens.tolist()
    for extra in (
        {},
        {"use_cache": False},
        {"num_beams": 2, "num_return_sequences": 2, "max_new_tokens": 3, "min_new_tokens": 3},
    ):
        assert torch.equal(model.generate(**tokens, **GREEDY | extra), model.generate(**pixels, **GREEDY | extra))


@torch.no_grad()
def test_trajvlm_one_placeholder_per_token_equals_the_compact_form(vlm):
    model, _, features = vlm
    embeds = {"video_embeds": features.pooler_output}
    ids, mask = _per_token_prompts(features.num_video_tokens.tolist())
    compact = model(input_ids=_PROMPTS, attention_mask=_MASK, **embeds)
    filled = model(input_ids=ids, attention_mask=mask, **embeds)
    assert filled.logits.shape[1] == ids.shape[1] and filled.expanded_attention_mask is None  # filled in place
    # Bound: the tiny model's reduction chain; the two forms differ in padding only (summation order).
    assert_close_within_bound(filled.logits[:, -3:], compact.logits[:, -3:], TRAJVLM_REDUCTION_LENGTH)
    assert torch.equal(filled.video_token_mask, ids == VID)


def _continue_from_cache(model, inputs):
    half = dict(GREEDY, max_new_tokens=3, min_new_tokens=3)
    first = model.generate(**inputs, **half, return_dict_in_generate=True)
    sequences = first.sequences
    rest = {k: v for k, v in inputs.items() if k != "input_ids"}
    return model.generate(input_ids=sequences, **rest, **half, cache=first.cache)


def _from_inputs_embeds(model, inputs):
    rest = {k: v for k, v in inputs.items() if k != "input_ids"}
    embeds = model.get_input_embeddings()(inputs["input_ids"])
    return torch.cat([inputs["input_ids"], model.generate(inputs_embeds=embeds, **rest, **GREEDY)], dim=1)


PER_TOKEN_PATHS = {
    "no_cache": lambda m, i: m.generate(**i, **GREEDY, use_cache=False),
    "inputs_embeds": _from_inputs_embeds,
    "continue_from_returned_cache": _continue_from_cache,
    "prompt_lookup": lambda m, i: m.generate(**i, **GREEDY, prompt_lookup_num_tokens=2),
    "assisted_same_model": lambda m, i: m.generate(**i, **GREEDY, assistant_model=m),
    "mm_encoder_outputs": lambda m, i: m.generate(
        input_ids=i["input_ids"],
        mm_encoder_outputs={"video": TrajVLMVideoOutput(pooler_output=i["video_embeds"])},
        **GREEDY,
    ),
}


@pytest.mark.parametrize("path", sorted(PER_TOKEN_PATHS))
@torch.no_grad()
def test_trajvlm_one_placeholder_per_token_works_on_every_generation_path(vlm, path):
    """One video (transformers runs prompt lookup and assisted decoding for one prompt at a time)."""
    model, _, features = vlm
    count = int(features.num_video_tokens[1])
    inputs = {"input_ids": torch.tensor([[21] + [VID] * count + [22, 23]]), "video_embeds": features.pooler_output[1:]}
    greedy = model.generate(**inputs, **GREEDY)
    assert torch.equal(PER_TOKEN_PATHS[path](model, inputs), greedy)


@torch.no_grad()
def test_trajvlm_one_placeholder_per_token_beam_search_expands_each_rows_videos(vlm):
    model, _, features = vlm
    ids, mask = _per_token_prompts(features.num_video_tokens.tolist())
    inputs = dict(input_ids=ids, attention_mask=mask, video_embeds=features.pooler_output)
    beams = model.generate(**inputs, **GREEDY, num_beams=2, num_return_sequences=2)
    for row in range(2):  # each row's beams as when the row runs alone
        real = mask[row].bool()
        alone = dict(input_ids=ids[row : row + 1, real], video_embeds=features.pooler_output[row : row + 1])
        single = model.generate(**alone, **GREEDY, num_beams=2, num_return_sequences=2)
        assert torch.equal(beams[2 * row : 2 * row + 2, -single.shape[1] :], single)


@torch.no_grad()
def test_trajvlm_chunk_by_chunk_tokens_and_a_merged_set_give_one_prompt(vlm):
    """A video's chunks tokenized one at a time and concatenated are its tokens (chunks are independent); a merged
    set of another length (here: pairs of tokens averaged) fills the same one-<video> prompt and generates."""
    model, videos, _ = vlm
    first, second = model.get_video_features(videos[:, :CHUNK]), model.get_video_features(videos[:, CHUNK:])
    chunked = [torch.cat([first.pooler_output[i], second.pooler_output[i]]) for i in range(2)]
    pixels = model(input_ids=_PROMPTS, attention_mask=_MASK, pixel_values_videos=videos)
    tokens = model(input_ids=_PROMPTS, attention_mask=_MASK, video_embeds=chunked)
    # Bound: the tiny model's reduction chain; the chunks were batched differently.
    assert_close_within_bound(tokens.logits, pixels.logits, TRAJVLM_REDUCTION_LENGTH)
    merged = [video[: len(video) // 2 * 2].view(-1, 2, video.shape[-1]).mean(dim=1) for video in chunked]
    out = model.generate(input_ids=_PROMPTS[:1], video_embeds=merged[:1], **GREEDY)
    assert out.shape == (1, _PROMPTS.shape[1] + 6)
    expanded = model(input_ids=_PROMPTS[:1], video_embeds=merged[:1])
    assert int(expanded.video_token_mask.sum()) == len(merged[0]) == len(chunked[0]) // 2


def _vlm_bad_inputs():
    one = [torch.randn(7, 32)]
    slots = torch.tensor([[11] + [VID] * 32 + [12]])  # slot form of one two-chunk video (2 chunks × 16 slots)
    return [
        pytest.param(
            dict(video_embeds=one, pixel_values_videos=video_batch(1, 4, size=32)), ValueError, "not both", id="both"
        ),
        pytest.param(
            dict(video_embeds=one, mm_encoder_outputs={"video": one}), ValueError, "not both", id="both_precomputed"
        ),
        pytest.param(dict(video_embeds=one[0]), TypeError, r"one video: pass \[tensor\]", id="tensor_2d"),
        pytest.param(dict(video_embeds=[]), TypeError, "got an empty sequence", id="empty_list"),
        pytest.param(
            dict(video_embeds=[one[0].numpy()]), TypeError, r"video_embeds\[0\] must be a torch", id="not_a_tensor"
        ),
        pytest.param(dict(video_embeds=[one[0].long()]), TypeError, r"video_embeds\[0\] must be a float", id="int"),
        pytest.param(
            dict(video_embeds=[torch.randn(7, 16)]),
            ValueError,
            r"video_embeds\[0\] must have shape \(N, 32\)",
            id="width",
        ),
        pytest.param(
            dict(video_embeds=[torch.randn(0, 32)]), ValueError, r"video_embeds\[0\] has no tokens", id="no_tokens"
        ),
        pytest.param(dict(video_embeds=[torch.full((7, 32), float("nan"))]), ValueError, "finite", id="nan"),
        pytest.param(
            dict(video_embeds=one * 2), ValueError, r"1 <video> placeholder.* 2 video\(s\)", id="too_many_videos"
        ),
        pytest.param(
            dict(input_ids=slots, video_embeds=one),
            ValueError,
            "slot form .* needs pixel_values_videos",
            id="slot_form",
        ),
        pytest.param(dict(mm_encoder_outputs={"image": one}), ValueError, "videos only", id="image"),
        pytest.param(
            dict(mm_encoder_outputs={"video": {}}), ValueError, "pooler_output is None", id="no_pooler_output"
        ),
        pytest.param(dict(mm_encoder_outputs=one), TypeError, "mm_encoder_outputs must be a dict", id="mm_not_a_dict"),
        pytest.param(
            dict(
                input_ids=torch.tensor([[VID] * 4 + [11], [12, 13] + [VID] * 3]), video_embeds=[one[0][:3], one[0][:4]]
            ),
            ValueError,
            "each row must hold whole videos",
            id="video_across_rows",
        ),
    ]


@pytest.mark.parametrize("kwargs, error, match", _vlm_bad_inputs())
def test_trajvlm_bad_precomputed_inputs_raise_named_errors(vlm, kwargs, error, match):
    model = vlm[0]
    with pytest.raises(error, match=match):
        model(**{"input_ids": _PROMPTS[:1], **kwargs})


@torch.no_grad()
def test_trajvlm_float32_tokens_run_in_a_bfloat16_model():
    model = tiny_trajvlm_model().to(torch.bfloat16)
    out = model(input_ids=_PROMPTS[:1], video_embeds=[torch.randn(5, 32)])
    assert out.logits.dtype == torch.bfloat16 and torch.isfinite(out.logits).all()
    assert int(out.video_token_mask.sum()) == 5
