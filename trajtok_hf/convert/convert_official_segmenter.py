"""Convert the official TrajTok segmenter checkpoint (hellomuffin/trajtok @658a6ed, HF repo
``michaelzch001/trajtok-segmenter``, ``model.pth``) into a :class:`~trajtok_hf.TrajTokModel`.

What is mapped (the release's ``segmenter/trajtok_segmenter/model/model_pretrain.py`` and ``model/segmenter.py``)
--------------------------------------------------------------------------------------------------------------------
The official ``SegmentWrapper`` state dict keeps the segmenter (``SimpleSegmenter``) under ``vision_encoder.``:

======================================================  ===============================================================
official (under the segmenter prefix)                   TrajTokModel
======================================================  ===============================================================
``patch_encoder.backbone.downsample_layers.s.i``        ``feature_extractor.backbone.model.stages.s.downsample_layers.i``
``patch_encoder.backbone.stages.s.j.{dwconv,norm,``     ``feature_extractor.backbone.model.stages.s.layers.j.``
``pwconv1,pwconv2,gamma}``                              ``{depthwise_conv,layer_norm,pointwise_conv1,pointwise_conv2,gamma}``
``patch_encoder.backbone.norm``                         ``feature_extractor.final_layernorm`` (stage-4 map only)
``patch_encoder.proj.i`` (1×1 conv, (D, C, 1, 1))       ``feature_extractor.projections.i`` (nn.Linear, (D, C))
``patch_encoder.ln`` (one LN for the 4 stages)          ``feature_extractor.layer_norms.0``
``trajectory_perceiver.latents``                        ``query_latents``
``trajectory_perceiver.{norm_ctx,norm_lat}``            ``query_perceiver.{norm_context,norm_latents}``
``trajectory_perceiver.layers.L.0.*``                   ``query_perceiver.layers.L.attention.*``
``trajectory_perceiver.layers.L.1.*``                   ``query_perceiver.layers.L.feed_forward.*``
``traj_seg_head_low_res.{0,2}``                         ``query_head.{0,2}``
``patch_decoder_low_res.{0,2}``                         ``pixel_head.{0,2}``
``log_scale``                                           ``logit_scale``
======================================================  ===============================================================

:func:`convert_official_trajtok_tokenizer` also reads the full ``SegmentTokenizer`` of a TrajViT2 checkpoint
(``vision_encoder.traj_tokenizer.``: the segmenter above under ``segmenter.``, plus ``latents`` (K, 1, D) →
``refinement_latents``, ``traj_feature_updater.*`` → ``refinement_perceiver.*`` (same layout as the query Perceiver)
and ``output_projector`` → ``output_projection``).

Dropped on purpose, by explicit pattern (anything else that is not mapped is an error):
``patch_encoder.backbone.norms.3`` (the same module as ``norm`` in DINOv3's ConvNeXt; checked equal),
``*.rotary_emb.freqs`` (RoPE inverse frequencies; recomputed by our Perceiver, checked equal),
``patch_decoder_high_res.*`` / ``traj_seg_head_high_res.*`` (the 224² training-only head), and in the segmenter file
the top-level ``text_encoder.*``, ``vision_proj``, ``text_proj``, ``temp``, ``itm_head`` (unused by the segmenter).

Release behaviours switched on (where the released forward departs from paper Sec. 3; all documented
``TrajTokConfig`` options whose defaults keep the paper's form): ``backbone_config`` of type ``dinov3_convnext``
(ConvNeXt-S, LN eps 1e-6); ``shared_stage_layernorm=True``; ``backbone_final_layernorm=True``; ``rope_fraction=0.5``;
``latent_norm_placement="every_layer"``; ``query_init="latent"``; ``refinement_visible_last_pixels=2``;
``tokens_per_trajectory_choices=[1]``. Widths, K, backbone widths/depths, Perceiver depths, heads (from the RoPE
frequencies' length: head dim = 4 × len(freqs)) and the assignment heads are read from the tensors' shapes.

**The segmenter checkpoint has no refinement (``SegmentTokenizer``) part**: the model converted from it has a
*freshly initialised* refinement Perceiver, refinement latents and output projection (seeded, ``--seed``). Its
``assignment_logits``, ``trajectory_ids``, ``trajectory_queries``, ``pixel_features`` and ``trajectory_mask`` are the
official segmenter's; its ``trajectory_tokens`` are not trained. Convert a TrajViT2 checkpoint for trained tokens.

Numerics: fp32 parity on a small official-format checkpoint with reference outputs of the official classes is
≤ 4e-6 (features, queries, logits; ids exact). The scale-20 assignment logits of a TrajViT2 tokenizer are
ill-conditioned (fp32 rounding alone moves them by ~3e-5): they match to 5e-5 with the default SDPA attention and to
1.7e-5 with ``from_pretrained(..., attn_implementation="eager")``, whose written-out softmax rounds like the official
Perceiver.

Chunks: the release samples 8 frames per clip and its tokenizer runs a whole clip in one pass (K slots for the 8
frames), so the converted config has ``chunk_size=8`` and the saved processor samples 8 frames. A longer clip is cut
into consecutive chunks of 8 frames (a last shorter chunk as it is), each tokenized on its own with its own K slots
(trajectory ``c·K + k``, not linked across chunks); set ``model.config.chunk_size`` to the clip length to run it in
one pass as the release's code would (a length it was not trained on). ``--verify_with`` runs the check with one chunk
covering the whole reference clip, as the official code. Preprocessing: frames 224×224 bicubic, no crop, ImageNet
mean/std (as in the release's ``scripts/eval_*.py``), written as a ``TrajTokVideoProcessor`` next to the weights when
that class is available.

Usage::

    trajtok-convert-segmenter --checkpoint model.pth --output_dir trajtok-segmenter-hf \\
        [--verify_with reference.safetensors]
"""  # noqa: E501 (the key tables above are wider than a line)

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..models.configuration_trajtok import TrajTokConfig
from ..models.modeling_trajtok import TrajTokModel
from .official_checkpoint import (
    RELEASE_CLIP_FRAMES,
    OfficialCheckpointError,
    check_converted_state_dict,
    compare_outputs,
    converted_model_folder,
    format_key_list,
    invert_rename_rules,
    load_official_state_dict,
    load_reference,
    official_name,
    rename_official_keys,
    save_video_processor,
)

__all__ = [
    "ConvertedTokenizer",
    "SEGMENTER_FILE_DROP_PATTERNS",
    "TOKENIZER_REFINEMENT_KEYS",
    "convert_official_segmenter",
    "convert_official_trajtok_tokenizer",
    "load_converted_tokenizer",
    "main",
    "official_tokenizer_outputs",
    "verify_tokenizer",
]


# ------------------------------------------------------------------------------------------------ key tables
def _perceiver_rules(official: str, ours: str) -> dict[str, str]:
    """``PerceiverResampler`` (official perceiver_resampler.py) → ``TrajTokPerceiver``."""
    return {
        rf"{official}\.norm_ctx\.(weight|bias)": rf"{ours}.norm_context.\1",
        rf"{official}\.norm_lat\.(weight|bias)": rf"{ours}.norm_latents.\1",
        rf"{official}\.layers\.(\d+)\.0\.(norm_media|norm_latents)\.(weight|bias)": (
            rf"{ours}.layers.\1.attention.\2.\3"
        ),
        rf"{official}\.layers\.(\d+)\.0\.(to_q|to_kv|to_out)\.weight": rf"{ours}.layers.\1.attention.\2.weight",
        rf"{official}\.layers\.(\d+)\.1\.(norm|gate|up|down)\.(weight|bias)": rf"{ours}.layers.\1.feed_forward.\2.\3",
    }


_BACKBONE = r"patch_encoder\.backbone"
_HF_BACKBONE = "feature_extractor.backbone.model"
_BLOCK = rf"{_BACKBONE}\.stages\.([0-3])\.(\d+)"  # official ConvNeXt block j of stage s
_HF_BLOCK = rf"{_HF_BACKBONE}.stages.\1.layers.\2"

# SimpleSegmenter (official model/segmenter.py) keys, relative to the segmenter prefix → TrajTokModel keys.
SEGMENTER_KEY_MAPPING: dict[str, str] = {
    # DINOv3 ConvNeXt (facebookresearch/dinov3 convnext.py) → transformers DINOv3ConvNextBackbone.
    rf"{_BACKBONE}\.downsample_layers\.([0-3])\.([01])\.(weight|bias)": (
        rf"{_HF_BACKBONE}.stages.\1.downsample_layers.\2.\3"
    ),
    rf"{_BLOCK}\.dwconv\.(weight|bias)": rf"{_HF_BLOCK}.depthwise_conv.\3",
    rf"{_BLOCK}\.norm\.(weight|bias)": rf"{_HF_BLOCK}.layer_norm.\3",
    rf"{_BLOCK}\.pwconv1\.(weight|bias)": rf"{_HF_BLOCK}.pointwise_conv1.\3",
    rf"{_BLOCK}\.pwconv2\.(weight|bias)": rf"{_HF_BLOCK}.pointwise_conv2.\3",
    rf"{_BLOCK}\.gamma": rf"{_HF_BLOCK}.gamma",
    rf"{_BACKBONE}\.norm\.(weight|bias)": r"feature_extractor.final_layernorm.\1",
    # Multi-scale head: 1×1 convs (reshaped to Linear) and the LayerNorm shared by the 4 stages.
    r"patch_encoder\.proj\.([0-3])\.(weight|bias)": r"feature_extractor.projections.\1.\2",
    r"patch_encoder\.ln\.(weight|bias)": r"feature_extractor.layer_norms.0.\1",
    # Trajectory-query Perceiver and the assignment heads.
    r"trajectory_perceiver\.latents": "query_latents",
    **_perceiver_rules(r"trajectory_perceiver", "query_perceiver"),
    r"traj_seg_head_low_res\.([02])\.(weight|bias)": r"query_head.\1.\2",
    r"patch_decoder_low_res\.([02])\.(weight|bias)": r"pixel_head.\1.\2",
    r"log_scale": "logit_scale",
}

_ROTARY_FREQS = r"\.layers\.\d+\.0\.rotary_emb\.freqs"
SEGMENTER_DROP_PATTERNS: dict[str, str] = {
    rf"{_BACKBONE}\.norms\.3\.(weight|bias)": "the same module as backbone.norm in DINOv3's ConvNeXt (checked equal)",
    rf"trajectory_perceiver{_ROTARY_FREQS}": "RoPE inverse frequencies, recomputed from rope_theta (checked equal)",
    r"patch_decoder_high_res\..+": "224² high-res head, training only (eval and TrajViT2 drop it)",
    r"traj_seg_head_high_res\..+": "224² high-res head, training only (eval and TrajViT2 drop it)",
}

# SegmentTokenizer keys outside its segmenter, relative to the tokenizer prefix.
REFINEMENT_KEY_MAPPING: dict[str, str] = {
    r"latents": "refinement_latents",
    **_perceiver_rules(r"traj_feature_updater", "refinement_perceiver"),
    r"output_projector\.(weight|bias)": r"output_projection.\1",
}
REFINEMENT_DROP_PATTERNS: dict[str, str] = {
    rf"traj_feature_updater{_ROTARY_FREQS}": "RoPE inverse frequencies, recomputed from rope_theta (checked equal)",
}

# Top-level keys of the segmenter's model.pth (SegmentWrapper's text tower and heads) that the segmenter does not use.
SEGMENTER_FILE_DROP_PATTERNS: dict[str, str] = {
    r"text_encoder\..+": "text tower of SegmentWrapper, unused by the segmenter",
    r"(vision_proj|text_proj|itm_head)\.(weight|bias)": "contrastive/ITM heads of SegmentWrapper, unused",
    r"temp": "contrastive temperature of SegmentWrapper, unused",
}

# TrajTokModel keys that only the refinement (SegmentTokenizer) part provides.
TOKENIZER_REFINEMENT_KEYS = (r"refinement_latents", r"refinement_perceiver\..+", r"output_projection\..+")

# Release options: the released forward where it departs from the paper's form (see the module docstring).
RELEASE_OPTIONS = dict(
    chunk_size=RELEASE_CLIP_FRAMES,  # the release tokenizes its 8-frame clips in one pass
    shared_stage_layernorm=True,
    backbone_final_layernorm=True,
    rope_fraction=0.5,
    rope_theta=10000.0,
    latent_norm_placement="every_layer",
    query_init="latent",
    refinement_visible_last_pixels=2,
    tokens_per_trajectory=1,
    tokens_per_trajectory_choices=[1],
    detach_features=True,
    use_hard_mask=True,
    feature_layer_norm_eps=1e-5,
    logit_scale_max=20.0,
)


@dataclass
class ConvertedTokenizer:
    """Result of :func:`convert_official_trajtok_tokenizer`.

    Attributes:
        config: the TrajTokConfig read from the tensors' shapes, with the release options on.
        state_dict: TrajTokModel key → tensor.
        has_refinement: whether the official tensors included the refinement part (a ``SegmentTokenizer``).
        consumed_keys: every official key under the prefix (mapped or dropped): a caller converting a larger model
            checks its remaining keys itself.
        dropped_keys: official key → why it is not used.
        fresh_keys: regexes of TrajTokModel keys left freshly initialised (the refinement part when absent).
    """

    config: TrajTokConfig
    state_dict: dict[str, torch.Tensor]
    has_refinement: bool
    consumed_keys: set[str] = field(default_factory=set)
    dropped_keys: dict[str, str] = field(default_factory=dict)
    fresh_keys: tuple[str, ...] = ()


def _count_indices(keys, pattern: str) -> int:
    found = {int(m.group(1)) for k in keys if (m := re.fullmatch(pattern, k))}
    if found != set(range(len(found))):
        raise OfficialCheckpointError(f"non-contiguous layer indices {sorted(found)} for {pattern}")
    return len(found)


def _infer_config(
    sd: dict[str, torch.Tensor], rotary_freqs: list[torch.Tensor], inverted_rules=(), **overrides
) -> TrajTokConfig:
    """TrajTokConfig from the (renamed) tensors' shapes + the release options."""
    keys = list(sd)

    def _require(key: str, what: str) -> torch.Tensor:
        if key not in sd:
            name = official_name(key, inverted_rules) or key
            raise OfficialCheckpointError(
                f"missing official tensor {name} ({what}; → {key}), needed to read the model's shape"
            )
        return sd[key]

    proj = [_require(f"feature_extractor.projections.{i}.weight", "stage projection") for i in range(4)]
    hidden = proj[0].shape[0]
    stage_widths = [int(p.shape[1]) for p in proj]
    depths = [
        _count_indices(keys, rf"{re.escape(_HF_BACKBONE)}\.stages\.{s}\.layers\.(\d+)\.depthwise_conv\.weight")
        for s in range(4)
    ]
    latents = _require("query_latents", "query latents")
    num_traj = latents.shape[0]
    query_depth = _count_indices(keys, r"query_perceiver\.layers\.(\d+)\.attention\.to_q\.weight")
    gate = _require("query_perceiver.layers.0.feed_forward.gate.weight", "perceiver feed-forward")
    if gate.shape[0] % hidden:
        raise OfficialCheckpointError(f"perceiver feed-forward width {gate.shape[0]} is not a multiple of {hidden}")
    rope_fraction = RELEASE_OPTIONS["rope_fraction"]
    if rotary_freqs:
        # rotary-embedding-torch RotaryEmbedding(dim=head_dim·0.5) stores head_dim·0.5/2 inverse frequencies.
        head_dim = int(round(2 * rotary_freqs[0].numel() / rope_fraction))
    else:
        head_dim = hidden // 8  # official perceiver_resampler.py: heads = 8, dim_head = dim // 8 (hard-coded)
    if head_dim <= 0 or hidden % head_dim:
        raise OfficialCheckpointError(f"RoPE frequencies imply head dim {head_dim}, which does not divide {hidden}")
    query_head = _require("query_head.0.weight", "query head"), _require("query_head.2.weight", "query head")
    refinement_depth = (
        _count_indices(keys, r"refinement_perceiver\.layers\.(\d+)\.attention\.to_q\.weight") or query_depth
    )
    output_size = sd["output_projection.weight"].shape[0] if "output_projection.weight" in sd else hidden
    if "refinement_latents" in sd:
        slots = sd["refinement_latents"].shape
        if len(slots) != 3 or slots[0] != num_traj or slots[1] != 1:
            raise OfficialCheckpointError(
                f"refinement latents of shape {tuple(slots)}: only the released 1 token per trajectory "
                f"({num_traj}, 1, {hidden}) is supported"
            )
    options = dict(RELEASE_OPTIONS)
    options.update(
        backbone_config={
            "model_type": "dinov3_convnext",
            "hidden_sizes": stage_widths,
            "depths": depths,
            "layer_norm_eps": 1e-6,
            "hidden_act": "gelu",
        },
        hidden_size=int(hidden),
        num_trajectories=int(num_traj),
        query_perceiver_depth=query_depth,
        refinement_perceiver_depth=refinement_depth,
        num_attention_heads=hidden // head_dim,
        perceiver_ff_mult=gate.shape[0] // hidden,
        assignment_hidden_size=int(query_head[0].shape[0]),
        assignment_embed_dim=int(query_head[1].shape[0]),
        output_size=None if output_size == hidden else int(output_size),
    )
    options.update(overrides)
    return TrajTokConfig(**options)


def _check_rotary(freqs: dict[str, torch.Tensor], config: TrajTokConfig) -> None:
    rotary_dim = int(config.head_dim * config.rope_fraction)
    expected = 1.0 / config.rope_theta ** (torch.arange(0, rotary_dim, 2, dtype=torch.float64) / rotary_dim)
    for key, value in freqs.items():
        if value.shape != expected.shape or not torch.allclose(value.double(), expected, rtol=1e-5, atol=0):
            raise OfficialCheckpointError(
                f"{key} = {value.tolist()} is not the RoPE of head dim {config.head_dim} × rope_fraction "
                f"{config.rope_fraction}, theta {config.rope_theta} (expected {expected.tolist()})"
            )


def convert_official_trajtok_tokenizer(
    state_dict: dict[str, torch.Tensor], prefix: str, **config_overrides
) -> ConvertedTokenizer:
    """Map the official tokenizer tensors under ``prefix`` to TrajTokModel names.

    ``prefix`` is either a ``SimpleSegmenter`` (the segmenter checkpoint: ``"vision_encoder."``) or a
    ``SegmentTokenizer`` (a TrajViT2 checkpoint: ``"vision_encoder.traj_tokenizer."``, whose segmenter is under
    ``prefix + "segmenter."``). Every key under ``prefix`` must be mapped or match a documented drop pattern, and the
    result must cover the TrajTokModel of the inferred config (except the refinement part when the official tensors
    have none); otherwise an :class:`OfficialCheckpointError` lists the keys. Keys outside ``prefix`` are left to the
    caller. ``config_overrides`` are passed to the TrajTokConfig (e.g. ``chunk_size``).
    """
    if not any(k.startswith(prefix) for k in state_dict):
        raise OfficialCheckpointError(f"no official tensor under the prefix {prefix!r}")
    has_refinement = any(k.startswith(prefix + "segmenter.") for k in state_dict)
    segmenter_prefix = prefix + "segmenter." if has_refinement else prefix
    if not any(k.startswith(segmenter_prefix + "patch_encoder.") for k in state_dict):
        raise OfficialCheckpointError(
            f"no segmenter under {segmenter_prefix!r} (expected {segmenter_prefix}patch_encoder.* tensors)"
        )

    converted, dropped, unused = rename_official_keys(
        state_dict, segmenter_prefix, SEGMENTER_KEY_MAPPING, SEGMENTER_DROP_PATTERNS
    )
    if has_refinement:
        outside_segmenter = {k: v for k, v in state_dict.items() if not k.startswith(segmenter_prefix)}
        refinement, dropped_r, unused_r = rename_official_keys(
            outside_segmenter, prefix, REFINEMENT_KEY_MAPPING, REFINEMENT_DROP_PATTERNS
        )
        converted.update(refinement)
        dropped.update(dropped_r)
        unused += unused_r
    if unused:
        # Report before shape inference, which could otherwise fail on a confusing missing tensor.
        raise OfficialCheckpointError(
            f"{len(unused)} official key(s) under {prefix!r} are neither mapped nor documented as unused:"
            f"{format_key_list(unused)}"
        )

    # 1×1 convolutions (D, C, 1, 1) → nn.Linear weights (D, C).
    for i in range(4):
        key = f"feature_extractor.projections.{i}.weight"
        if key in converted:
            weight = converted[key]
            if weight.ndim != 4 or weight.shape[2:] != (1, 1):
                raise OfficialCheckpointError(
                    f"{key}: expected a 1×1 conv weight (D, C, 1, 1), got {tuple(weight.shape)}"
                )
            converted[key] = weight.reshape(weight.shape[0], weight.shape[1])

    # Verified drops: the duplicate final norm and the RoPE frequencies.
    backbone = segmenter_prefix + "patch_encoder.backbone."
    for name in ("weight", "bias"):
        duplicate, norm = state_dict.get(f"{backbone}norms.3.{name}"), state_dict.get(f"{backbone}norm.{name}")
        if duplicate is not None and (norm is None or not torch.equal(duplicate, norm)):
            raise OfficialCheckpointError(
                f"{backbone}norms.3.{name} differs from {backbone}norm.{name}: in DINOv3's ConvNeXt they are one "
                "module, so this checkpoint does not have the layout this converter knows"
            )
    freqs = {k: state_dict[k] for k in dropped if k.endswith("rotary_emb.freqs")}
    inverted = invert_rename_rules(SEGMENTER_KEY_MAPPING, segmenter_prefix) + invert_rename_rules(
        REFINEMENT_KEY_MAPPING, prefix
    )
    config = _infer_config(converted, list(freqs.values()), inverted, **config_overrides)
    _check_rotary(freqs, config)

    fresh = () if has_refinement else TOKENIZER_REFINEMENT_KEYS
    with torch.device("meta"):
        expected = TrajTokModel(config).state_dict()
    check_converted_state_dict(converted, expected, allowed_missing=fresh, what="TrajTokModel", inverted_rules=inverted)
    consumed = {k for k in state_dict if k.startswith(prefix)}
    return ConvertedTokenizer(config, converted, has_refinement, consumed, dropped, fresh)


def load_converted_tokenizer(converted: ConvertedTokenizer, seed: int = 0) -> TrajTokModel:
    """Build the TrajTokModel of ``converted.config`` (fresh parts initialised with ``seed``) and load the tensors."""
    with torch.random.fork_rng(devices=[]):  # leave the caller's RNG state alone
        torch.manual_seed(seed)
        model = TrajTokModel(converted.config)
    missing, unexpected = model.load_state_dict(converted.state_dict, strict=False)
    not_fresh = [k for k in missing if not any(re.fullmatch(p, k) for p in converted.fresh_keys)]
    if not_fresh or unexpected:
        raise OfficialCheckpointError(f"load_state_dict: missing {not_fresh}, unexpected {unexpected}")
    return model.eval()


# -------------------------------------------------------------------------------------------------- parity
@torch.no_grad()
def official_tokenizer_outputs(model: TrajTokModel, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
    """Run ``model`` like the official code (the whole clip as one chunk) and return its outputs in the official
    layouts: ``patch_features`` (B, N, D), ``queries`` (B, K, D), ``logits`` (B, N, K), ``ids`` (B, N),
    ``tokens`` (B, K·n, D) (every slot, inactive ones too) and ``active_mask`` (B, K·n)."""
    was_training, chunk_size = model.training, model.config.chunk_size
    model.eval()
    model.config.chunk_size = max(chunk_size, pixel_values.shape[1])
    try:
        out = model(pixel_values, output_pixel_features=True)
    finally:
        model.config.chunk_size = chunk_size
        model.train(was_training)
    batch = pixel_values.shape[0]
    return {
        "patch_features": out.pixel_features.reshape(batch, -1, out.pixel_features.shape[-1]),
        "queries": out.trajectory_queries,
        "logits": out.assignment_logits.reshape(batch, -1, out.assignment_logits.shape[-1]),
        "ids": out.trajectory_ids.reshape(batch, -1),
        "tokens": out.trajectory_tokens,
        "active_mask": out.trajectory_mask,
    }


# (our output name, reference name, default atol; 0 = exact) for the segmenter checkpoint.
SEGMENTER_REFERENCE = (
    ("patch_features", "segmenter_patch_features", 1e-4),
    ("queries", "segmenter_queries", 1e-4),
    ("logits", "segmenter_logits", 1e-4),
    ("ids", "segmenter_ids", 0),
)


def verify_tokenizer(model: TrajTokModel, reference: dict[str, torch.Tensor], names=SEGMENTER_REFERENCE, atol=None):
    """Compare ``model`` on ``reference["pixel_values"]`` with the reference outputs named in ``names`` (those the
    reference file has; at least one). ``atol`` overrides the float tolerances. Returns ``{reference name: max abs
    diff}``; raises :class:`OfficialCheckpointError` on any mismatch."""
    if "pixel_values" not in reference:
        raise OfficialCheckpointError("the reference file has no 'pixel_values' (B, T, 3, H, W) input")
    present = [(ours, ref, tol) for ours, ref, tol in names if ref in reference]
    if not present:
        raise OfficialCheckpointError(
            f"the reference file has none of the outputs {[ref for _, ref, _ in names]} (it has {sorted(reference)})"
        )
    outputs = official_tokenizer_outputs(model, reference["pixel_values"].float())
    pairs = {
        ref: (outputs[ours], reference[ref], tol if (atol is None or tol == 0) else atol) for ours, ref, tol in present
    }
    return compare_outputs(pairs)


# -------------------------------------------------------------------------------------------------- script
def convert_official_segmenter(
    checkpoint: str | Path | dict,
    output_dir: str | Path | None = None,
    verify_with: str | Path | dict | None = None,
    seed: int = 0,
    atol: float | None = None,
) -> tuple[TrajTokModel, dict[str, float]]:
    """Convert an official segmenter checkpoint (path or state dict) into a TrajTokModel.

    The refinement part is freshly initialised (``seed``): the segmenter checkpoint has none. With ``verify_with``
    (a reference file or dict with ``pixel_values`` and any of ``segmenter_patch_features``, ``segmenter_queries``,
    ``segmenter_logits``, ``segmenter_ids``) the outputs are checked *before* anything is written. With
    ``output_dir`` the model (``save_pretrained``) and, when available, the video processor are written.
    Returns ``(model, {reference name: max abs diff})``.
    """
    state_dict = checkpoint if isinstance(checkpoint, dict) else load_official_state_dict(checkpoint)
    prefix = "vision_encoder."
    outside = {k: v for k, v in state_dict.items() if not k.startswith(prefix)}
    _, _, unused = rename_official_keys(outside, "", {}, SEGMENTER_FILE_DROP_PATTERNS)
    if unused:
        raise OfficialCheckpointError(
            f"{len(unused)} official key(s) outside {prefix!r} are neither mapped nor documented as unused:"
            f"{format_key_list(unused)}"
        )
    if any(k.startswith(prefix + "traj_tokenizer.") for k in state_dict):
        raise OfficialCheckpointError(
            "this is a TrajViT2 (SegmentCLIP) checkpoint, not the segmenter: use the TrajViT2 converter, or "
            "convert_official_trajtok_tokenizer(state_dict, 'vision_encoder.traj_tokenizer.') for its tokenizer"
        )
    converted = convert_official_trajtok_tokenizer(state_dict, prefix)
    model = load_converted_tokenizer(converted, seed=seed)
    diffs = {}
    if verify_with is not None:
        reference = verify_with if isinstance(verify_with, dict) else load_reference(verify_with)
        diffs = verify_tokenizer(model, reference, SEGMENTER_REFERENCE, atol=atol)
    if output_dir is not None:
        with converted_model_folder(output_dir) as folder:
            model.save_pretrained(folder)
            save_video_processor(folder)
    return model, diffs


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="trajtok-convert-segmenter",
        description="Convert the official TrajTok segmenter checkpoint (model.pth or .safetensors) to a "
        "trajtok_hf TrajTokModel folder. The refinement part is freshly initialised (the segmenter has none).",
    )
    parser.add_argument(
        "--checkpoint", required=True, help="official model.pth ({'model': sd, 'meta': ...}) or .safetensors"
    )
    parser.add_argument("--output_dir", required=True, help="folder for save_pretrained (+ video processor)")
    parser.add_argument(
        "--verify_with",
        help="reference .safetensors with pixel_values and segmenter_{patch_features,queries,logits,ids}: checked "
        "before anything is written",
    )
    parser.add_argument("--atol", type=float, default=None, help="float tolerance of --verify_with (default 1e-4)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the freshly initialised refinement part")
    args = parser.parse_args(argv)
    try:
        model, diffs = convert_official_segmenter(
            args.checkpoint, args.output_dir, args.verify_with, args.seed, args.atol
        )
    except (OfficialCheckpointError, FileNotFoundError) as err:
        raise SystemExit(f"error: {err}") from None
    config = model.config
    print(
        f"converted {args.checkpoint} → {args.output_dir}: width {config.hidden_size}, K={config.num_trajectories}, "
        f"backbone {list(config.backbone_config.hidden_sizes)} × {list(config.backbone_config.depths)}, "
        f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters (refinement part freshly initialised)"
    )
    for name, diff in diffs.items():
        print(f"  {name}: max abs diff {diff:.3g}")


if __name__ == "__main__":
    main()
