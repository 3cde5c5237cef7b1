"""Token packing of the TrajViT2 encoder (`token_packing`, an addition to the paper; the official TrajViT2 pads): the
packed sequence under a block-diagonal mask gives the padded path's outputs, `"auto"` follows its FLOP model, and no
clip sees another."""

import pytest
import torch
from testers import (
    assert_close_within_bound,
    float_error_bound,
    tiny_trajvit2_vision_config,
    tiny_trajvit2_vision_model,
    transformer_layer_terms,
    video_batch,
)
from transformers.masking_utils import create_bidirectional_mask

from trajtok_hf import TrajViT2VisionConfig, TrajViT2VisionModel
from trajtok_hf.models import modeling_trajvit2
from trajtok_hf.models.modeling_trajvit2 import TrajViT2VisionTransformer, encoder_layer_flops

# The tiny encoder (testers.tiny_trajvit2_vision_config): width 32, 2 layers, 4 heads, MLP 64, token width 32.
WIDTH, INTERMEDIATE = 32, 64
# Active tokens per clip in 8 slots: skewed, so packing pays under the FLOP model (checked below).
COUNTS = (1, 5, 2, 7)
SLOTS = 8
# 32 trajectory slots on the 8×8 grid of 32² frames: some stay empty and videos differ in counts.
SPARSE = {"num_trajectories": 32}


def _encoder_terms(sequence: int) -> int:
    """Reduction length (testers.float_error_bound) of the tiny encoder over `sequence` keys: input projection,
    2 layers, final LayerNorm. The packed softmax runs over all N packed keys (masked ones contribute exact zeros),
    so `sequence` is the packed length, the longer of the two."""
    return WIDTH + 2 * transformer_layer_terms(sequence, WIDTH, INTERMEDIATE, 4) + WIDTH


PACKED_LENGTH = sum(1 + c for c in COUNTS)
TERMS = _encoder_terms(PACKED_LENGTH)
# bf16: each path rounds each layer's output and the final LayerNorm's to bf16 once; a different summation order moves
# each rounding by at most an ulp, so the outputs agree to a few ulps (eps = 2⁻⁷) of the largest value.
BF16_RELATIVE = 4 * torch.finfo(torch.bfloat16).eps


# Tiny tensors: intra-op threads cost more in synchronisation than they save (conftest.single_thread).
pytestmark = pytest.mark.usefixtures("single_thread")


def _tokens(counts=COUNTS, slots=SLOTS, seed=0, dtype=torch.float32):
    """(B, slots, 32) tokens and a mask with `counts[b]` active slots at random positions of clip b."""
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randn(len(counts), slots, WIDTH, generator=generator)
    order = torch.rand(len(counts), slots, generator=generator).argsort(dim=1)
    mask = order < torch.tensor(counts)[:, None]
    return tokens.to(dtype), mask


def _model(attn_implementation="sdpa", dtype=torch.float32, **overrides) -> TrajViT2VisionModel:
    torch.manual_seed(0)
    model = tiny_trajvit2_vision_model(**overrides).to(dtype)
    if model.config._attn_implementation != attn_implementation:
        model.set_attn_implementation(attn_implementation)
    return model


@pytest.fixture
def packed_calls(monkeypatch):
    """The number of encoder calls that ran packed."""
    calls = []
    original = TrajViT2VisionTransformer._encode_packed
    monkeypatch.setattr(
        TrajViT2VisionTransformer, "_encode_packed", lambda self, *a, **k: calls.append(1) or original(self, *a, **k)
    )
    return calls


def _assert_padded_outputs_equal(packed, padded, terms=TERMS, relative=None):
    """Same layout and bookkeeping; values equal where `attention_mask` is True within the bound (fp32: the float
    error bound of `terms`; bf16: `relative` × the largest value); the last hidden state is zero elsewhere."""
    assert torch.equal(packed.attention_mask, padded.attention_mask)
    assert torch.equal(packed.token_indices, padded.token_indices)
    assert packed.last_hidden_state.shape == padded.last_hidden_state.shape
    assert (packed.last_hidden_state[~packed.attention_mask] == 0).all()
    pairs = [(packed.last_hidden_state, padded.last_hidden_state), (packed.pooler_output, padded.pooler_output)]
    if padded.hidden_states is not None:
        assert len(packed.hidden_states) == len(padded.hidden_states)
        for a, b in zip(packed.hidden_states, padded.hidden_states, strict=True):
            assert (a is None) == (b is None)
            if a is not None:
                assert a.shape == b.shape
                assert (a[~packed.attention_mask] == 0).all()  # the packed path's padding entries are zeros
                pairs.append((a[packed.attention_mask], b[padded.attention_mask]))
    for a, b in pairs:
        if relative is None:
            assert_close_within_bound(a, b, terms)
        else:
            magnitude = max(b.abs().max().item(), 1.0)
            torch.testing.assert_close(a.float(), b.float(), atol=relative * magnitude, rtol=0)


# ------------------------------------------------------------------------------------------------------------ config
def test_config_default_and_bad_value():
    assert TrajViT2VisionConfig().token_packing == "auto"
    for mode in ("off", "on", "auto"):
        assert TrajViT2VisionConfig(token_packing=mode).token_packing == mode
    with pytest.raises(ValueError, match=r"token_packing must be one of \('off', 'on', 'auto'\), got 'yes'"):
        TrajViT2VisionConfig(token_packing="yes")
    with pytest.raises(ValueError, match="token_packing"):
        TrajViT2VisionConfig(token_packing=True)
    tokens, mask = _tokens()
    with pytest.raises(ValueError, match="token_packing must be one of"):
        _model().vision_model.encode_tokens(tokens, mask, token_packing="pack")


def test_config_round_trip(tmp_path):
    config = tiny_trajvit2_vision_config(token_packing="auto")
    config.save_pretrained(tmp_path)
    assert TrajViT2VisionConfig.from_pretrained(tmp_path).token_packing == "auto"


# -------------------------------------------------------------------------------------------------------- cost model
def test_cost_model_numbers():
    # D=4, I=16: linear 2·(4·16 + 2·4·16) = 384 per token; attention 4·S²·D per sequence.
    assert encoder_layer_flops(1, 10, 4, 16) == 10 * 384 + 4 * 100 * 4 == 5440
    assert encoder_layer_flops(3, 10, 4, 16) == 3 * 5440
    # I = 4·D: 24·D² per token.
    assert encoder_layer_flops(1, 1, 1024, 4096) - 4 * 1024 == 24 * 1024**2
    # ViT-L width, a skewed batch of 8 (20..120 tokens per clip): the padded batch costs 8·121 tokens.
    counts = [20, 120, 35, 60, 25, 90, 40, 30]
    padded = encoder_layer_flops(8, 1 + max(counts), 1024, 4096)
    packed = encoder_layer_flops(1, sum(1 + c for c in counts), 1024, 4096)
    assert packed < padded
    # Nearly equal clips: the N² attention outweighs the few padded tokens saved.
    counts = [7, 7, 7, 6]
    assert encoder_layer_flops(1, sum(1 + c for c in counts), WIDTH, INTERMEDIATE) > encoder_layer_flops(
        4, 8, WIDTH, INTERMEDIATE
    )


@pytest.mark.parametrize(
    "counts, expected",
    [
        (COUNTS, True),  # skewed: packed 19 tokens vs padded 4 × 8
        ((7, 7, 7, 6), False),  # padding, but the packed sequence's attention costs more than it saves
        ((3, 3, 3, 3), False),  # no padding: nothing to pack
    ],
)
def test_auto_packs_where_the_cost_model_says(counts, expected, packed_calls):
    vision = _model().vision_model
    tokens, mask = _tokens(counts)
    batch, length = len(counts), 1 + max(counts)
    if min(counts) < max(counts):  # with padding, the cost model decides
        packed_flops = encoder_layer_flops(1, batch + sum(counts), WIDTH, INTERMEDIATE)
        assert (packed_flops < encoder_layer_flops(batch, length, WIDTH, INTERMEDIATE)) == expected
    out = vision.encode_tokens(tokens, mask, token_packing="auto")
    assert len(packed_calls) == int(expected)
    assert out.last_hidden_state.shape == (batch, length, WIDTH)
    _assert_padded_outputs_equal(out, vision.encode_tokens(tokens, mask, token_packing="off"))


# ---------------------------------------------------------------------------------------------------------- equality
@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("mode", ["on", "auto"])
@torch.no_grad()
def test_packed_equals_padded_fp32(mode, attn_implementation, packed_calls):
    """Through the public vision model with precomputed tokens, the mode taken from the config."""
    padded_model = _model(attn_implementation, token_packing="off")
    packed_model = _model(attn_implementation, token_packing=mode)
    packed_model.load_state_dict(padded_model.state_dict())
    tokens, mask = _tokens()
    selection = [0, 1, -1]  # the encoder input, a middle layer's output, the last layer's output
    padded = padded_model(trajectory_tokens=tokens, trajectory_mask=mask, output_hidden_states=selection)
    assert not packed_calls
    packed = packed_model(trajectory_tokens=tokens, trajectory_mask=mask, output_hidden_states=selection)
    assert len(packed_calls) == 1
    assert packed.last_hidden_state.shape == (4, 1 + max(COUNTS), WIDTH)
    _assert_padded_outputs_equal(packed, padded)
    assert torch.equal(packed.trajectory_mask, mask)


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
@torch.no_grad()
def test_packed_equals_padded_bf16(attn_implementation, packed_calls):
    vision = _model(attn_implementation, dtype=torch.bfloat16).vision_model
    tokens, mask = _tokens(dtype=torch.bfloat16)
    padded = vision.encode_tokens(tokens, mask, output_hidden_states=True, token_packing="off")
    packed = vision.encode_tokens(tokens, mask, output_hidden_states=True, token_packing="on")
    assert len(packed_calls) == 1 and packed.last_hidden_state.dtype == torch.bfloat16
    _assert_padded_outputs_equal(packed, padded, relative=BF16_RELATIVE)


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
def test_gradients_match_the_padded_path(attn_implementation, packed_calls):
    model = _model(attn_implementation)
    vision = model.vision_model
    tokens, mask = _tokens()

    def grads(mode):
        leaf = tokens.clone().requires_grad_(True)
        vision.zero_grad()
        vision.encode_tokens(leaf, mask, token_packing=mode).pooler_output.sum().backward()
        return leaf.grad, vision.cls_token.grad.clone(), vision.layers[0].mlp.fc1.weight.grad.clone()

    padded, packed = grads("off"), grads("on")
    assert len(packed_calls) == 1
    assert (packed[0][~mask] == 0).all()  # inactive slots get no gradient
    # bound: the backward pass runs the forward's reductions again (2 × the forward's length), fp32 eps.
    for a, b in zip(packed, padded, strict=True):
        assert_close_within_bound(a, b, 2 * TERMS)
    # Activation checkpointing recomputes the packed forward (same mask, same operations): bit-identical.
    model.train()
    model.activation_checkpointing_enable()
    assert vision.layers[0].gradient_checkpointing
    for a, b in zip(grads("on"), packed, strict=True):
        assert torch.equal(a, b)


@torch.no_grad()
def test_trajtok_pixel_path_with_packing(packed_calls):
    padded_model = _model(tokenizer_overrides=SPARSE, token_packing="off")
    packed_model = _model(tokenizer_overrides=SPARSE, token_packing="on")
    packed_model.load_state_dict(padded_model.state_dict())
    videos = video_batch(3, 2, size=32, seed=1)
    padded, packed = padded_model(videos), packed_model(videos)
    counts = padded.num_trajectories
    assert len(set(counts.tolist())) > 1, "test needs videos with different active counts"
    assert len(packed_calls) == 1
    assert torch.equal(packed.num_trajectories, counts) and torch.equal(packed.trajectory_ids, padded.trajectory_ids)
    # bound: the encoder over the packed sequence; the tokenizer runs the same operations in both.
    _assert_padded_outputs_equal(packed, padded, _encoder_terms(int(counts.sum()) + 3))


# ----------------------------------------------------------------------------------------------------- the mask
@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("mask_present", [True, False], ids=["block_diagonal", "mask_removed"])
@torch.no_grad()
def test_no_clip_sees_another(attn_implementation, mask_present, monkeypatch):
    """Changing clip 0's tokens leaves the other clips' outputs unchanged under packing; with the block-diagonal mask
    removed, the same check fails (so it tests the mask)."""
    if not mask_present:
        monkeypatch.setattr(modeling_trajvit2, "_block_diagonal_attention_mask", lambda *args: None)
    vision = _model(attn_implementation).vision_model
    tokens, mask = _tokens()
    changed = tokens.clone()
    changed[0] = torch.randn(SLOTS, WIDTH, generator=torch.Generator().manual_seed(7)) * 3
    a = vision.encode_tokens(tokens, mask, token_packing="on").last_hidden_state
    b = vision.encode_tokens(changed, mask, token_packing="on").last_hidden_state
    bound = float_error_bound(max(a.abs().max().item(), 1.0), TERMS)
    assert (a[0] - b[0]).abs().max() > bound  # clip 0 itself changes
    others = (a[1:] - b[1:]).abs().max()
    assert (others <= bound) == mask_present


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_mask_is_transformers_packed_sequence_mask(attn_implementation, dtype):
    """The block-diagonal mask equals what `create_bidirectional_mask` builds for a packed sequence (position ids
    restarting at 0 for each clip), in each backend's form: boolean for SDPA, 0 / finfo.min for eager."""
    lengths = torch.tensor([1 + c for c in COUNTS])
    segment_ids = torch.repeat_interleave(torch.arange(len(COUNTS)), lengths)
    starts = torch.cumsum(lengths, 0) - lengths
    position_ids = (torch.arange(int(lengths.sum())) - starts[segment_ids])[None]
    config = tiny_trajvit2_vision_config()
    config._attn_implementation = attn_implementation
    embeds = torch.zeros(1, int(lengths.sum()), WIDTH, dtype=dtype)
    expected = create_bidirectional_mask(
        config=config, inputs_embeds=embeds, attention_mask=None, position_ids=position_ids
    )
    mask = modeling_trajvit2._block_diagonal_attention_mask(segment_ids, attn_implementation, dtype)
    assert mask.dtype == expected.dtype == (torch.bool if attn_implementation == "sdpa" else dtype)
    assert torch.equal(mask, expected)


# ------------------------------------------------------------------------------------------------------ fallbacks
@torch.no_grad()
def test_cases_that_run_padded(packed_calls):
    tokens, mask = _tokens()
    # Equal counts: no padding after compaction.
    vision = _model().vision_model
    equal_tokens, equal_mask = _tokens((3, 3, 3, 3))
    out = vision.encode_tokens(equal_tokens, equal_mask, token_packing="on")
    assert out.attention_mask.all() and not packed_calls
    # The release option attends to every slot: there is no padding to drop.
    release = _model(attend_to_inactive_tokens=True, token_packing="on").vision_model
    assert release.encode_tokens(tokens, mask).attention_mask.all() and not packed_calls
    # Another attention implementation: the packed mask is built for eager and SDPA only.
    other = _model().vision_model
    other.config._attn_implementation = "flex_attention"
    assert not other._packs(torch.tensor([[True, False], [True, True]]), "on")
    assert vision._packs(torch.tensor([[True, False], [True, True]]), "on")


@torch.no_grad()
def test_output_attentions_run_padded(packed_calls):
    """Attention weights keep their per-clip (B, heads, 1 + L, 1 + L) layout: the encoder runs padded."""
    padded_model = _model("eager", token_packing="off")
    packed_model = _model("eager", token_packing="on")
    packed_model.load_state_dict(padded_model.state_dict())
    tokens, mask = _tokens()
    out = packed_model(trajectory_tokens=tokens, trajectory_mask=mask, output_attentions=True)
    assert not packed_calls
    length = 1 + max(COUNTS)
    assert len(out.attentions) == 2 and all(a.shape == (4, 4, length, length) for a in out.attentions)
    reference = padded_model(trajectory_tokens=tokens, trajectory_mask=mask, output_attentions=True)
    for a, b in zip(out.attentions, reference.attentions, strict=True):
        assert torch.equal(a, b)  # the same computation
    packed_model(trajectory_tokens=tokens, trajectory_mask=mask)
    assert len(packed_calls) == 1  # without attentions, the same model packs
