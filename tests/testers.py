"""Tiny configurations and inputs for every model, shared by the per-model tests and tests/test_common.py."""

from __future__ import annotations

import torch

from trajtok_hf import TrajTokConfig, TrajTokModel

TINY_BACKBONE = {"model_type": "convnext", "depths": [1, 1, 1, 1], "hidden_sizes": [8, 16, 24, 32]}


def load_file_module(path, name: str | None = None):
    """Import a script (an example or benchmark, not a package module) from its file path."""
    import importlib.util
    import os

    spec = importlib.util.spec_from_file_location(name or os.path.splitext(os.path.basename(path))[0], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def float_error_bound(magnitude: float, reduction_length: int, dtype: torch.dtype = torch.float32) -> float:
    """Worst-case rounding error of a value computed by reductions over ``reduction_length`` terms of size up to
    ``magnitude`` in ``dtype``: magnitude × length × eps (the classic bound of a recursive sum, which also covers a
    different summation order or blocking, e.g. oneDNN/AMX kernels versus plain AVX ones)."""
    return float(magnitude) * int(reduction_length) * torch.finfo(dtype).eps


def assert_close_within_bound(actual, expected, reduction_length: int, magnitude: float | None = None, msg=None):
    """``|actual − expected| ≤ float_error_bound(magnitude, reduction_length, dtype)`` elementwise; the magnitude
    defaults to the largest |value| of either tensor (at least 1: intermediate values of a normalised network are
    O(1) even where an output is small), the dtype is ``expected``'s."""
    if magnitude is None:
        magnitude = max(actual.detach().abs().max().item(), expected.detach().abs().max().item(), 1.0)
    bound = float_error_bound(magnitude, reduction_length, expected.dtype)
    torch.testing.assert_close(actual, expected, atol=bound, rtol=0, msg=msg)


def transformer_layer_terms(sequence_length: int, hidden_size: int, intermediate_size: int, num_heads: int) -> int:
    """Reduction length (for float_error_bound) of one pre- or post-norm transformer layer: two LayerNorms and the
    Q/K/V, output and first MLP projections sum ``hidden_size`` terms each, q·k sums a head's width, softmax and the
    weighted sum of values run over the sequence, the second MLP projection sums ``intermediate_size`` terms."""
    return 5 * hidden_size + hidden_size // num_heads + sequence_length + intermediate_size


def assert_ids_equal_up_to_ties(ids_a: torch.Tensor, ids_b: torch.Tensor, logits: torch.Tensor, bound: float) -> None:
    """Hard ids (argmax over the last dim of ``logits``) of two computations that agree up to ``bound`` in their
    logits may differ only where the two best logits are within 2 × ``bound`` of each other (a genuine near-tie);
    every other id must be equal."""
    differ = ids_a != ids_b
    if not differ.any():
        return
    top2 = logits.topk(2, dim=-1).values
    gap = top2[..., 0] - top2[..., 1]
    assert (gap[differ] <= 2 * bound).all(), (
        f"{int(differ.sum())} ids differ, some where the two best logits are {gap[differ].max().item():.3g} apart "
        f"(> 2 × bound {bound:.3g}): not a float tie"
    )


def tiny_trajtok_config(**overrides) -> TrajTokConfig:
    kwargs = dict(
        backbone_config=dict(TINY_BACKBONE),
        hidden_size=32,
        num_trajectories=8,
        num_attention_heads=4,
        assignment_hidden_size=16,
        assignment_embed_dim=8,
        subtoken_fourier_frequencies=4,
        chunk_size=4,
    )
    kwargs.update(overrides)
    return TrajTokConfig(**kwargs)


def tiny_trajtok_terms(size: int = 64, chunk_frames: int = 4) -> tuple[int, int]:
    """Reduction lengths (for float_error_bound) of tiny_trajtok_config on size² frames, up to the assignment logits
    and up to the trajectory tokens. Each ConvNeXt stage sums a 7×7 depthwise window and two linears of width ≤ 4·32,
    then the stage projection sums 32 terms; a Perceiver layer sums over a chunk's chunk_frames·(size/4)² pixels
    + 8·4 latents in its attention and over ≤ 4·32 terms in its projections and feed-forward; the logits add 2 query
    layers and heads of width ≤ 32, the tokens 2 refinement layers and the output projection."""
    backbone = 4 * (49 + 2 * 128) + 32
    perceiver_layer = (chunk_frames * (size // 4) ** 2 + 32) + 2 * 128
    logits = backbone + 2 * perceiver_layer + 3 * 32
    return logits, logits + 2 * perceiver_layer + 32


def tiny_trajtok_model(**overrides) -> TrajTokModel:
    return TrajTokModel(tiny_trajtok_config(**overrides)).eval()


def assert_backbone_refused(model: TrajTokModel, folder, error: type[Exception], message: str) -> None:
    """``model.load_pretrained_backbone(folder)`` raises ``error`` matching ``message`` and changes nothing: no weight,
    no recorded backbone name."""
    import pytest

    before = {key: value.clone() for key, value in model.state_dict().items()}
    with pytest.raises(error, match=message):
        model.load_pretrained_backbone(folder)
    assert model.config.pretrained_backbone_name_or_path is None
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)


def video_batch(batch=2, frames=4, size=64, seed=0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, frames, 3, size, size, generator=generator)


# ---------------------------------------------------------------------------------------------------------------------
# The table of models that every common check in tests/test_common.py runs on. Each new model adds one ModelCase.
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

from transformers import AutoModel  # noqa: E402


@dataclass
class ModelCase:
    """name: test id; build(): a tiny model in eval mode; inputs(batch_size): forward kwargs whose tensors all have
    the batch first; outputs(output): the tensors to compare (batch first); bad_inputs: (kwargs, error, match);
    reduction_terms: the reduction length up to the outputs, for the float error bound of a comparison across batch
    sizes or a reload (float_error_bound with the outputs' magnitude, fp32)."""

    name: str
    build: Callable
    inputs: Callable
    outputs: Callable
    auto_class: type = AutoModel
    bad_inputs: list = field(default_factory=list)
    reduction_terms: int = 0


def _trajtok_outputs(out):
    return {
        "trajectory_tokens": out.trajectory_tokens,
        "trajectory_mask": out.trajectory_mask,
        "assignment_logits": out.assignment_logits,
        "trajectory_ids": out.trajectory_ids,
        "num_trajectories": out.num_trajectories,
    }


MODEL_CASES = [
    ModelCase(
        name="trajtok",
        build=lambda: tiny_trajtok_model(),
        inputs=lambda batch: {"pixel_values_videos": video_batch(batch, 5, seed=3)},
        outputs=_trajtok_outputs,
        reduction_terms=tiny_trajtok_terms(64)[1],
        bad_inputs=[
            ({"pixel_values_videos": torch.randn(1, 3, 64, 64)}, ValueError, "pixel_values_videos"),
            ({"pixel_values_videos": torch.randn(1, 2, 4, 64, 64)}, ValueError, "pixel_values_videos"),
        ],
    ),
]


# ---------------------------------------------------------------------------------------------------------------------
# TrajViT2 (video-text CLIP) and its ViT3D baseline:
# tiny encoder (width 32, 2 layers, 4 heads), tiny BERT, projection 16
from transformers import BertConfig  # noqa: E402

from trajtok_hf import TrajViT2Config, TrajViT2Model, TrajViT2VisionConfig, TrajViT2VisionModel  # noqa: E402

TINY_BERT = dict(
    vocab_size=100,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=64,
)


def tiny_trajvit2_vision_config(
    vision_tokenizer="trajtok", tokenizer_overrides=None, **overrides
) -> TrajViT2VisionConfig:
    kwargs = dict(
        vision_tokenizer=vision_tokenizer,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        image_size=64,
        num_frames=4,
    )
    if vision_tokenizer == "trajtok":
        kwargs["trajtok_config"] = tiny_trajtok_config(**(tokenizer_overrides or {}))
    kwargs.update(overrides)
    return TrajViT2VisionConfig(**kwargs)


def tiny_trajvit2_config(
    vision_tokenizer="trajtok", vision_overrides=None, tokenizer_overrides=None, text_overrides=None, **overrides
) -> TrajViT2Config:
    vision = tiny_trajvit2_vision_config(vision_tokenizer, tokenizer_overrides, **(vision_overrides or {}))
    kwargs = dict(
        vision_config=vision,
        text_config=BertConfig(**{**TINY_BERT, **(text_overrides or {})}).to_dict(),
        projection_dim=16,
    )
    kwargs.update(overrides)
    return TrajViT2Config(**kwargs)


def tiny_trajvit2_model(vision_tokenizer="trajtok", **kwargs) -> TrajViT2Model:
    return TrajViT2Model(tiny_trajvit2_config(vision_tokenizer, **kwargs)).eval()


def tiny_trajvit2_vision_model(vision_tokenizer="trajtok", **kwargs) -> TrajViT2VisionModel:
    return TrajViT2VisionModel(tiny_trajvit2_vision_config(vision_tokenizer, **kwargs)).eval()


def save_tiny_trajvit2_folder(
    folder, num_frames: int = 4, size: int = 64, vision_tokenizer: str = "trajtok", tokenizer_overrides=None
) -> None:
    """A tiny TrajViT2Model (TrajTok or ViT3D tokenizer; ``tokenizer_overrides`` for its TrajTokConfig) with a
    word-level caption tokenizer and a processor, saved as a model folder (what the benchmark scripts load with
    --model)."""
    from trajtok_hf import TrajTokVideoProcessor, TrajViT2Processor
    from trajtok_hf.training import build_caption_tokenizer, synthetic_caption_words

    tokenizer = build_caption_tokenizer([" ".join(synthetic_caption_words())])
    torch.manual_seed(0)
    tiny_trajvit2_model(
        vision_tokenizer, text_overrides={"vocab_size": len(tokenizer)}, tokenizer_overrides=tokenizer_overrides
    ).save_pretrained(folder)
    video_processor = TrajTokVideoProcessor(num_frames=num_frames, size={"height": size, "width": size})
    TrajViT2Processor(video_processor=video_processor, tokenizer=tokenizer).save_pretrained(folder)


def tiny_trajvit2_terms(vision_tokenizer="trajtok", size=32, frames=2, text_length=7, num_layers=2) -> tuple[int, int]:
    """Reduction lengths (for float_error_bound) of the tiny TrajViT2 towers up to the video and the text embeddings.
    Video: the tokenizer (TrajTok's tokens, or ViT3D's Conv3d over a 2-frame 3-channel 16² tubelet), the input
    projection (32), ``num_layers`` encoder layers over [CLS] + ≤ 32 slots per 4-frame chunk (or the tubelets), the
    final LayerNorm, the projection (32) and the L2 normalisation (16). Text: the BERT embeddings' LayerNorm, 2 layers
    over the text, the same projection and normalisation."""
    if vision_tokenizer == "trajtok":
        tokens, sequence = tiny_trajtok_terms(size)[1], 1 + 32 * -(-frames // 4)
    else:
        tokens, sequence = 2 * 3 * 16 * 16, 1 + -(-frames // 2) * (size // 16) ** 2
    head = 32 + 32 + 16  # the final (text: embeddings') LayerNorm, the projection, the L2 normalisation
    video = tokens + 32 + num_layers * transformer_layer_terms(sequence, 32, 64, 4) + head
    text = 2 * transformer_layer_terms(text_length, 32, 64, 4) + head
    return video, text


def text_batch(batch=2, length=7, seed=0, vocab_size=100) -> dict:
    """input_ids [CLS]=1 ... with right padding (id 0) of varying lengths, and the matching attention_mask."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, vocab_size, (batch, length), generator=generator)
    input_ids[:, 0] = 1
    lengths = torch.tensor([length - (i % 3) for i in range(batch)])
    attention_mask = (torch.arange(length)[None] < lengths[:, None]).long()
    return {"input_ids": input_ids * attention_mask, "attention_mask": attention_mask}


def _trajvit2_inputs(batch, frames=5, size=64):
    return {**text_batch(batch, seed=5), "pixel_values_videos": video_batch(batch, frames, size=size, seed=4)}


def _trajvit2_outputs(out):
    return {"video_embeds": out.video_embeds, "text_embeds": out.text_embeds}


def _trajvit2_vision_outputs(out):
    return {
        "pooler_output": out.pooler_output,
        "trajectory_mask": out.trajectory_mask,
        "num_trajectories": out.num_trajectories,
    }


_TEXT_1 = text_batch(1, seed=1)
_TEXT_2 = text_batch(2, seed=1)


def _video_with(value, batch=1):
    """A normalised video batch with one bad pixel value (inf, NaN, or a magnitude no normalised frame reaches)."""
    video = video_batch(batch, 2)
    video[0, 1, 2, 3, 4] = value
    return video


def _text_with(**changes):
    """_TEXT_1 with some entries replaced: {"input_ids": (index, value)} or a whole tensor."""
    text = {k: v.clone() for k, v in _TEXT_1.items()}
    for name, change in changes.items():
        if isinstance(change, torch.Tensor):
            text[name] = change
        else:
            text[name][0, change[0]] = change[1]
    return text


# Bad values at the public boundary, shared by the TrajViT2 cases (pixels) and the CLIP cases (text too).
TRAJVIT2_BAD_PIXELS = [
    (_video_with(float("inf")), "pixel_values_videos must hold finite frames"),
    (_video_with(float("-inf")), "pixel_values_videos must hold finite frames"),
    (_video_with(float("nan")), "pixel_values_videos must hold finite frames"),
    (_video_with(1e30), r"\|value\| <= 10000"),
    (video_batch(1, 2).to(torch.int64), "float tensor"),
]
TRAJVIT2_BAD_TEXT = [
    (_text_with(input_ids=(1, TINY_BERT["vocab_size"])), r"input_ids must be in \[0, 100\)"),
    (_text_with(input_ids=(1, -1)), r"input_ids must be in \[0, 100\).*\[-1, "),
    (text_batch(1, length=TINY_BERT["max_position_embeddings"] + 1), "position table holds 64"),
    (_text_with(attention_mask=torch.zeros(1, 7, dtype=torch.long)), r"masks every token of text\(s\) \[0\]"),
    (_text_with(attention_mask=(0, 2)), "attention_mask must hold 1 for tokens"),
    (_text_with(token_type_ids=torch.full((1, 7), 2)), r"token_type_ids must be in \[0, 2\)"),
    (_text_with(input_ids=_TEXT_1["input_ids"].float()), "integer token ids"),
]


def _trajvit2_bad_inputs():
    pixels = [({**_TEXT_1, "pixel_values_videos": video}, ValueError, match) for video, match in TRAJVIT2_BAD_PIXELS]
    video = video_batch(1, 2)
    texts = [({**text, "pixel_values_videos": video}, ValueError, match) for text, match in TRAJVIT2_BAD_TEXT]
    return pixels + texts


MODEL_CASES += [
    ModelCase(
        name="trajvit2",
        # 32 trajectory slots on a 16×16 grid: batches mix videos with different active counts (padding matters).
        build=lambda: tiny_trajvit2_model(tokenizer_overrides={"num_trajectories": 32}),
        inputs=lambda batch: _trajvit2_inputs(batch),
        outputs=_trajvit2_outputs,
        reduction_terms=max(tiny_trajvit2_terms(size=64, frames=5)),
        bad_inputs=[
            (dict(_TEXT_1), ValueError, "pixel_values_videos is required"),
            ({"pixel_values_videos": video_batch(1, 2)}, ValueError, "input_ids is required"),
            ({**_TEXT_1, "pixel_values_videos": torch.randn(1, 3, 64, 64)}, ValueError, "pixel_values_videos"),
            ({**_TEXT_2, "pixel_values_videos": video_batch(1, 2), "return_loss": True}, ValueError, "batch size"),
            (
                {
                    **_TEXT_1,
                    "pixel_values_videos": video_batch(1, 2),
                    "segmentation_labels": torch.zeros(1, 2, 8, 8).long(),
                },
                ValueError,
                "segmentation_labels",
            ),
            (
                {**_TEXT_1, "pixel_values_videos": video_batch(1, 2), "pixel_values": torch.randn(1, 3, 64, 64)},
                TypeError,
                "unexpected",
            ),
            *_trajvit2_bad_inputs(),
        ],
    ),
    ModelCase(
        name="trajvit2_vit3d",
        build=lambda: tiny_trajvit2_model("vit3d"),
        inputs=lambda batch: _trajvit2_inputs(batch),
        outputs=_trajvit2_outputs,
        reduction_terms=max(tiny_trajvit2_terms("vit3d", size=64, frames=5)),
        bad_inputs=[
            ({**_TEXT_1, "pixel_values_videos": video_batch(1, 2, size=40)}, ValueError, "patch_size"),
            (
                {
                    **_TEXT_1,
                    "pixel_values_videos": video_batch(1, 2),
                    "segmentation_labels": torch.zeros(1, 2, 16, 16).long(),
                },
                ValueError,
                "vision_tokenizer",
            ),
            ({**_TEXT_1, "pixel_values_videos": video_batch(1, 2), "tokens_per_trajectory": 2}, ValueError, "vit3d"),
            *_trajvit2_bad_inputs(),
        ],
    ),
    ModelCase(
        name="trajvit2_vision",
        build=lambda: tiny_trajvit2_vision_model(tokenizer_overrides={"num_trajectories": 32}),
        inputs=lambda batch: {"pixel_values_videos": video_batch(batch, 5, seed=6)},
        outputs=_trajvit2_vision_outputs,
        reduction_terms=tiny_trajvit2_terms(size=64, frames=5)[0],
        bad_inputs=[
            ({"pixel_values_videos": torch.randn(1, 3, 64, 64)}, ValueError, "pixel_values_videos"),
            ({"pixel_values_videos": video_batch(1, 2).numpy()}, TypeError, "pixel_values_videos"),
            *(({"pixel_values_videos": video}, ValueError, match) for video, match in TRAJVIT2_BAD_PIXELS),
        ],
    ),
]


# ---------------------------------------------------------------------------------------------------------------------
# TrajAdapter (probe on a frozen video backbone): tiny VideoMAE (32², patch 8, tubelets of 2 of 8 frames, width 32)
# + the tiny TrajTok segmenter (chunks of 4 frames: two chunks) → a 4×4×4 token grid.
from transformers import AutoModelForVideoClassification  # noqa: E402

from trajtok_hf import TrajAdapterConfig, TrajAdapterForVideoClassification  # noqa: E402

TINY_VIDEOMAE = dict(
    model_type="videomae",
    image_size=32,
    patch_size=8,
    num_frames=8,
    tubelet_size=2,
    hidden_size=32,
    num_hidden_layers=1,
    num_attention_heads=4,
    intermediate_size=64,
)


def tiny_trajadapter_config(
    probe_type="trajectory", backbone_overrides=None, tokenizer_overrides=None, **overrides
) -> TrajAdapterConfig:
    kwargs = dict(
        backbone_config={**TINY_VIDEOMAE, **(backbone_overrides or {})},
        trajtok_config=tiny_trajtok_config(**(tokenizer_overrides or {})) if probe_type == "trajectory" else None,
        probe_type=probe_type,
        num_labels=3,
        num_attention_heads=4,
        subtoken_fourier_frequencies=4,
    )
    kwargs.update(overrides)
    return TrajAdapterConfig(**kwargs)


def tiny_trajadapter_terms(tokens_per_trajectory: int = 1) -> int:
    """Reduction length (for float_error_bound) of the tiny TrajAdapter up to its logits: the VideoMAE backbone (a
    2×3×8×8 tubelet, one layer over 64 tokens, its LayerNorm), the tiny TrajTok on 32² frames up to its logits (ids,
    queries), 2 refinement Perceiver layers over 64 tokens + the 2·8·n queries (feed-forward 4·32), the attentive
    probe over those slots, the classifier's LayerNorm and linear."""
    slots = 2 * 8 * tokens_per_trajectory
    backbone = 2 * 3 * 8 * 8 + transformer_layer_terms(64, 32, 64, 4) + 32
    refinement = 2 * transformer_layer_terms(64 + slots, 32, 128, 4)
    probe = transformer_layer_terms(slots, 32, 128, 4)
    return backbone + tiny_trajtok_terms(32)[0] + refinement + probe + 2 * 32


def tiny_trajadapter_model(probe_type="trajectory", **kwargs) -> TrajAdapterForVideoClassification:
    return TrajAdapterForVideoClassification(tiny_trajadapter_config(probe_type, **kwargs)).eval()


def _trajadapter_outputs(out):
    return {
        "logits": out.logits,
        "trajectory_tokens": out.trajectory_tokens,
        "trajectory_mask": out.trajectory_mask,
        "trajectory_ids": out.trajectory_ids,
        "num_trajectories": out.num_trajectories,
    }


MODEL_CASES += [
    ModelCase(
        name="trajadapter",
        build=lambda: tiny_trajadapter_model(tokens_per_trajectory=2),
        inputs=lambda batch: {"pixel_values_videos": video_batch(batch, 8, size=32, seed=7)},
        outputs=_trajadapter_outputs,
        reduction_terms=tiny_trajadapter_terms(tokens_per_trajectory=2),
        auto_class=AutoModelForVideoClassification,
        bad_inputs=[
            ({"pixel_values_videos": torch.randn(1, 3, 32, 32)}, ValueError, "pixel_values_videos"),
            ({"pixel_values_videos": video_batch(1, 4, size=32)}, ValueError, "exactly 8"),
            ({"pixel_values_videos": video_batch(1, 8, size=64)}, ValueError, "32×32"),
            ({"pixel_values": video_batch(1, 8, size=32)}, TypeError, "pixel_values_videos"),
            ({"pixel_values_videos": video_batch(1, 8, size=32), "labels": torch.tensor([0, 1])}, ValueError, "labels"),
            ({"pixel_values_videos": video_batch(1, 8, size=32) * float("inf")}, ValueError, "pixel_values_videos"),
            ({"pixel_values_videos": video_batch(1, 8, size=32) * 1e30}, ValueError, "pixel_values_videos"),
            ({"pixel_values_videos": video_batch(1, 8, size=32).to(torch.int64)}, ValueError, "pixel_values_videos"),
        ],
    ),
]


# ---------------------------------------------------------------------------------------------------------------------
# TrajVLM (video LLM, TrajTok or patch-pool connector): tiny SigLIP tower (32², patch 8 → 4×4 patches), tiny TrajTok
# segmenter (clips of 4 frames), tiny Qwen3 (width 32, 2 layers, 4 heads, 2 KV heads, head dim 8).
from transformers import AutoModelForImageTextToText  # noqa: E402

from trajtok_hf import TrajVLMConfig, TrajVLMForConditionalGeneration  # noqa: E402

TINY_SIGLIP = dict(
    model_type="siglip_vision_model",
    image_size=32,
    patch_size=8,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    vision_use_head=False,
)
TINY_QWEN3 = dict(
    model_type="qwen3",
    vocab_size=100,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=8,
    intermediate_size=64,
    max_position_embeddings=512,
    pad_token_id=0,
    bos_token_id=2,
    eos_token_id=4,
)
TRAJVLM_VIDEO_TOKEN_ID = 5  # the id of <video> in trajtok_hf.data.video_qa.build_qa_tokenizer()
# Longest chain of reductions behind a tiny TrajVLM output, in terms summed: tower (patch embedding 3·8·8 = 192; 2
# layers of norms 32, q/k/v 32, scores 8 over 16 patches, out 32, MLP 32 + 64: ~250 each), connector Perceiver (query
# map 32; 2 layers of norms, q/kv 32, scores 8 over <= 64 pixels + 32 latents, out 32, FF 32 + 128: ~400 each),
# projector 32 + 32, LLM (2 layers of RMSNorm 32, q/k/v 32, scores 8 over <= 48 tokens, out 32, MLP 32 + 64: ~250
# each), head 32: about 2,200 terms. float_error_bound(magnitude, TRAJVLM_REDUCTION_LENGTH) bounds the rounding
# difference of two evaluations of the same tiny model that sum in different orders (batching, padding, kernels).
TRAJVLM_REDUCTION_LENGTH = 2500


def tiny_trajvlm_config(
    connector_type="trajtok", tokenizer_overrides=None, vision_overrides=None, text_overrides=None, **overrides
) -> TrajVLMConfig:
    kwargs = dict(
        vision_config={**TINY_SIGLIP, **(vision_overrides or {})},
        text_config={**TINY_QWEN3, **(text_overrides or {})},
        connector_type=connector_type,
        video_token_id=TRAJVLM_VIDEO_TOKEN_ID,
        chunk_size=4,
        segmenter_image_size=32,
        connector_num_attention_heads=4,
        subtoken_fourier_frequencies=4,
        patch_pool_size=2,
    )
    if connector_type == "trajtok":
        kwargs["trajtok_config"] = tiny_trajtok_config(**{"chunk_size": 4, **(tokenizer_overrides or {})})
    kwargs.update(overrides)
    return TrajVLMConfig(**kwargs)


def tiny_trajvlm_model(connector_type="trajtok", **kwargs) -> TrajVLMForConditionalGeneration:
    return TrajVLMForConditionalGeneration(tiny_trajvlm_config(connector_type, **kwargs)).eval()


def trajvlm_text_batch(batch=2, length=6, seed=0, placeholder_at=2) -> dict:
    """Unpadded prompts with one <video> placeholder per row; other ids in [6, 100)."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(6, 100, (batch, length), generator=generator)
    input_ids[:, placeholder_at] = TRAJVLM_VIDEO_TOKEN_ID
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}


def _trajvlm_outputs(out):
    return {
        "logits": out.logits,
        "video_token_mask": out.video_token_mask,
        "expanded_attention_mask": out.expanded_attention_mask,
    }


_TRAJVLM_TEXT_1 = trajvlm_text_batch(1, seed=11)
_TRAJVLM_NO_PLACEHOLDER = {"input_ids": torch.tensor([[7, 8, 9, 10]])}
# Three placeholders for one video: neither one per video nor one per connector slot (2 or 12 slots here).
_TRAJVLM_TWO_PLACEHOLDERS = {
    "input_ids": torch.tensor([[7, TRAJVLM_VIDEO_TOKEN_ID, 9, TRAJVLM_VIDEO_TOKEN_ID, TRAJVLM_VIDEO_TOKEN_ID]])
}
_TRAJVLM_BAD_INPUTS = [
    ({**_TRAJVLM_NO_PLACEHOLDER, "pixel_values_videos": video_batch(1, 6, size=32)}, ValueError, "placeholder"),
    ({**_TRAJVLM_TWO_PLACEHOLDERS, "pixel_values_videos": video_batch(1, 6, size=32)}, ValueError, "placeholder"),
    (dict(_TRAJVLM_TEXT_1), ValueError, "no pixel_values_videos"),
    ({**_TRAJVLM_TEXT_1, "pixel_values_videos": torch.randn(1, 3, 32, 32)}, ValueError, "pixel_values_videos"),
    ({**_TRAJVLM_TEXT_1, "pixel_values_videos": video_batch(1, 6, size=64)}, ValueError, "32×32"),
    (
        {"input_ids": torch.zeros(1, 0, dtype=torch.long), "pixel_values_videos": video_batch(1, 6, size=32)},
        ValueError,
        "empty prompt",
    ),
    ({**_TRAJVLM_TEXT_1, "pixel_values": torch.randn(1, 3, 32, 32)}, TypeError, "pixel_values_videos"),
]

MODEL_CASES += [
    ModelCase(
        # One trajectory slot per clip: every video then has the same token count, so the expanded sequences (and
        # the logits) stack across batch sizes. Variable counts are covered in tests/models/test_modeling_trajvlm.py.
        name="trajvlm",
        build=lambda: tiny_trajvlm_model(tokenizer_overrides={"num_trajectories": 1}),
        inputs=lambda batch: {
            **trajvlm_text_batch(batch, seed=12),
            "pixel_values_videos": video_batch(batch, 6, size=32, seed=13),
        },
        outputs=_trajvlm_outputs,
        auto_class=AutoModelForImageTextToText,
        bad_inputs=_TRAJVLM_BAD_INPUTS,
        reduction_terms=TRAJVLM_REDUCTION_LENGTH,  # batched vs alone: summation order only
    ),
    ModelCase(
        name="trajvlm_patch_pool",
        build=lambda: tiny_trajvlm_model("patch_pool", patch_pool_temporal_size=2),
        inputs=lambda batch: {
            **trajvlm_text_batch(batch, seed=14),
            "pixel_values_videos": video_batch(batch, 6, size=32, seed=15),
        },
        outputs=_trajvlm_outputs,
        auto_class=AutoModelForImageTextToText,
        bad_inputs=_TRAJVLM_BAD_INPUTS,
        reduction_terms=TRAJVLM_REDUCTION_LENGTH,  # batched vs alone: summation order only
    ),
]
