"""Convert the official TrajViT2 checkpoint (hellomuffin/trajtok @658a6ed, HF repo ``michaelzch001/trajtok-trajvitv2``,
``model.pth`` = a ``SegmentCLIP`` state dict) into a :class:`~trajtok_hf.TrajViT2Model`.

What is mapped (the release's ``SegmentCLIP`` in ``model_pretrain.py``; vision = ``SegmentViT``, ``segmenter.py``)
----------------------------------------------------------------------------------------------------------------
=====================================================================  ==============================================
official                                                               TrajViT2Model
=====================================================================  ==============================================
``vision_encoder.traj_tokenizer.*`` (``SegmentTokenizer``)             ``vision_model.tokenizer.*`` (TrajTokModel, via
                                                                       :func:`convert_official_trajtok_tokenizer`)
``vision_encoder.vision_encoder.cls_token``                            ``vision_model.cls_token``
``vision_encoder.vision_encoder.vit.encoder.layer.i.`` (4.x ViT)       ``vision_model.layers.i.`` (5.24 ``ViTLayer``)
  ``attention.attention.{query,key,value}`` / ``attention.output.dense``  ``attention.{q,k,v}_proj`` / ``attention.o_proj``
  ``intermediate.dense`` / ``output.dense``                              ``mlp.fc1`` / ``mlp.fc2``
  ``layernorm_before`` / ``layernorm_after``                             same names
``vision_encoder.norm``                                                ``vision_model.post_layernorm``
``text_encoder.embeddings.*``, ``text_encoder.encoder.layer.i.*``      ``text_model.*`` (HF ``BertModel``, no pooler),
  for i < fusion_layer                                                 ``num_hidden_layers = fusion_layer``
``vision_proj`` / ``text_proj``                                        ``visual_projection`` / ``text_projection``
``temp`` (logits = cos / temp)                                         ``logit_scale = log(1 / temp)``
=====================================================================  ==============================================

Dropped on purpose, by explicit pattern (anything else that is not mapped is an error, as is any model key without an
official tensor): the tokenizer's documented unused keys (see ``convert_official_segmenter``), the ViT's
``vit.embeddings.*`` / ``vit.layernorm.*`` / ``vit.pooler.*`` (never used: trajectory tokens replace the patch
embedding), ``text_encoder.embeddings.position_ids`` (a buffer), every ``text_encoder.encoder.layer.i.*`` with
i ≥ fusion_layer (xbert's fusion layers with ``crossattention``; only the ITM/fusion mode runs them), and
``itm_head``. ``fusion_layer`` is the first text layer that has ``crossattention`` weights (all layers if none).

Release behaviours switched on: the tokenizer's (``convert_official_segmenter``: DINOv3 ConvNeXt backbone, shared
stage LayerNorm, final backbone norm, half RoPE, every-layer latent norm, learned refinement latents, last 2 pixels
always visible, 1 token per trajectory, ``chunk_size=8``: one chunk per 8-frame clip, the release's clip length; a
longer clip gives the encoder the K slots of every chunk); ``vision_config.attend_to_inactive_tokens=True`` (the
released ViT ignores its padding mask and attends over all K token slots, empty trajectories included); the encoder's
per-layer LayerNorm eps 1e-12 and final ``norm`` eps 1e-5; the text tower = BERT cut at ``fusion_layer`` with [CLS]
pooling and no pooler; logits = exp(logit_scale)·cos without clamp (SegmentCLIP never clamps ``temp``). The released eval
scripts' ``text_proj(pooled[:, 0])`` fails with a shape error; the converted model does ``text_proj(CLS)``, as training.

Parity on a small official-format checkpoint with reference outputs of the official classes (fp32): vision/text
hidden states, embeddings and video-text logits ≤ 2.4e-6, tokens 1.5e-6, ids and active mask exact; the
tokenizer's scale-20 assignment logits 5e-5 (1.7e-5 with ``attn_implementation="eager"``, see
``convert_official_segmenter``).

Not readable from the tensors (arguments): the ViT's attention heads (``--vision_num_attention_heads``, release 16 =
ViT-L's) and BERT's (``--text_num_attention_heads``, default hidden/64 = 12 for bert-base). Widths, depths, K,
projection size and vocabulary are read from the shapes. Written next to the weights: the video processor (224×224
bicubic, no crop, ImageNet mean/std) and, with ``--text_tokenizer`` (a local bert-base-uncased tokenizer folder;
there is no vocabulary in the checkpoint), a ``TrajViT2Processor`` with ``model_max_length=77``.

Usage::

    trajtok-convert-trajvit2 --checkpoint model.pth --output_dir trajvit2-hf [--verify_with reference.safetensors]
"""  # noqa: E501 (the key tables above are wider than a line)

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path

import torch

from ..models.configuration_trajvit2 import TrajViT2Config
from ..models.modeling_trajvit2 import TrajViT2Model
from .convert_official_segmenter import (
    convert_official_trajtok_tokenizer,
    official_tokenizer_outputs,
)
from .official_checkpoint import (
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

__all__ = ["convert_official_trajvit2", "convert_official_trajvit2_state_dict", "main", "verify_trajvit2"]

TOKENIZER_PREFIX = "vision_encoder.traj_tokenizer."
_VIT = r"vision_encoder\.vision_encoder\.vit\.encoder\.layer\.(\d+)"

# SegmentViT's transformer (4.x ViT layer names) and final norm → TrajViT2VisionTransformer (5.24 ViTLayer).
VISION_KEY_MAPPING: dict[str, str] = {
    r"vision_encoder\.vision_encoder\.cls_token": "vision_model.cls_token",
    rf"{_VIT}\.attention\.attention\.query\.(weight|bias)": r"vision_model.layers.\1.attention.q_proj.\2",
    rf"{_VIT}\.attention\.attention\.key\.(weight|bias)": r"vision_model.layers.\1.attention.k_proj.\2",
    rf"{_VIT}\.attention\.attention\.value\.(weight|bias)": r"vision_model.layers.\1.attention.v_proj.\2",
    rf"{_VIT}\.attention\.output\.dense\.(weight|bias)": r"vision_model.layers.\1.attention.o_proj.\2",
    rf"{_VIT}\.intermediate\.dense\.(weight|bias)": r"vision_model.layers.\1.mlp.fc1.\2",
    rf"{_VIT}\.output\.dense\.(weight|bias)": r"vision_model.layers.\1.mlp.fc2.\2",
    rf"{_VIT}\.(layernorm_before|layernorm_after)\.(weight|bias)": r"vision_model.layers.\1.\2.\3",
    r"vision_encoder\.norm\.(weight|bias)": r"vision_model.post_layernorm.\1",
}
VISION_DROP_PATTERNS: dict[str, str] = {
    r"vision_encoder\.vision_encoder\.vit\.(embeddings|layernorm|pooler)\..+": (
        "ViT patch embedding / final layernorm / pooler, never used (the CustomTransformer runs only the encoder "
        "layers on trajectory tokens)"
    ),
}

# CLIP heads.
HEAD_KEY_MAPPING: dict[str, str] = {
    r"vision_proj\.(weight|bias)": r"visual_projection.\1",
    r"text_proj\.(weight|bias)": r"text_projection.\1",
    r"temp": "logit_scale",  # value: log(1 / temp)
}
HEAD_DROP_PATTERNS: dict[str, str] = {r"itm_head\.(weight|bias)": "image-text matching head, unused by retrieval"}

_BERT_LAYER_PARTS = (
    r"attention\.self\.(?:query|key|value)|attention\.output\.dense|attention\.output\.LayerNorm|"
    r"intermediate\.dense|output\.dense|output\.LayerNorm"
)


def text_rules(fusion_layer: int) -> tuple[dict[str, str], dict[str, str]]:
    """xbert BertModel (``text_encoder.``) → HF BertModel (``text_model.``), keeping the layers < fusion_layer."""
    kept = "|".join(str(i) for i in range(fusion_layer)) or "(?!)"
    rename = {
        r"text_encoder\.embeddings\.(word_embeddings|position_embeddings|token_type_embeddings)\.weight": (
            r"text_model.embeddings.\1.weight"
        ),
        r"text_encoder\.embeddings\.LayerNorm\.(weight|bias)": r"text_model.embeddings.LayerNorm.\1",
        rf"text_encoder\.encoder\.layer\.({kept})\.({_BERT_LAYER_PARTS})\.(weight|bias)": (
            r"text_model.encoder.layer.\1.\2.\3"
        ),
    }
    drop = {
        r"text_encoder\.embeddings\.position_ids": "position-id buffer",
        rf"text_encoder\.encoder\.layer\.(?!(?:{kept})\.)\d+\..+": (
            f"xbert fusion layers (>= fusion_layer {fusion_layer}, with crossattention): only the ITM/fusion mode "
            "runs them, the contrastive text mode stops before"
        ),
    }
    return rename, drop


def _fusion_layer(state_dict) -> tuple[int, int]:
    layers = {int(m.group(1)) for k in state_dict if (m := re.match(r"text_encoder\.encoder\.layer\.(\d+)\.", k))}
    cross = {
        int(m.group(1))
        for k in state_dict
        if (m := re.match(r"text_encoder\.encoder\.layer\.(\d+)\.crossattention\.", k))
    }
    if not layers:
        raise OfficialCheckpointError(
            "no text_encoder.encoder.layer.* tensors: not a TrajViT2 (SegmentCLIP) checkpoint"
        )
    fusion = min(cross) if cross else len(layers)
    if fusion == 0:
        raise OfficialCheckpointError("text layer 0 already has crossattention: no text-only layers to convert")
    return fusion, len(layers)


def convert_official_trajvit2_state_dict(
    state_dict: dict[str, torch.Tensor],
    vision_num_attention_heads: int = 16,
    text_num_attention_heads: int | None = None,
) -> tuple[TrajViT2Config, dict[str, torch.Tensor], dict[str, str]]:
    """Official SegmentCLIP state dict → (TrajViT2Config, TrajViT2Model state dict, {dropped key: reason}).

    Raises :class:`OfficialCheckpointError` listing every official key that is neither mapped nor documented as
    unused, and every model key without an official tensor."""
    tokenizer = convert_official_trajtok_tokenizer(state_dict, TOKENIZER_PREFIX)
    if not tokenizer.has_refinement:
        raise OfficialCheckpointError(f"no SegmentTokenizer under {TOKENIZER_PREFIX!r} (expected its segmenter.*)")
    fusion_layer, num_text_layers = _fusion_layer(state_dict)
    text_rename, text_drop = text_rules(fusion_layer)
    rename = {**VISION_KEY_MAPPING, **HEAD_KEY_MAPPING, **text_rename}
    drop = {**VISION_DROP_PATTERNS, **HEAD_DROP_PATTERNS, **text_drop}
    rest = {k: v for k, v in state_dict.items() if k not in tokenizer.consumed_keys}
    converted, dropped, unused = rename_official_keys(rest, "", rename, drop)
    if unused:
        raise OfficialCheckpointError(
            f"{len(unused)} official key(s) are neither mapped nor documented as unused:{format_key_list(unused)}"
        )
    converted.update({f"vision_model.tokenizer.{k}": v for k, v in tokenizer.state_dict.items()})
    dropped.update(tokenizer.dropped_keys)
    if "logit_scale" in converted:
        temp = converted["logit_scale"]
        if temp.numel() != 1 or not float(temp) > 0:
            raise OfficialCheckpointError(f"temp must be a positive scalar, got {temp}")
        converted["logit_scale"] = torch.log(1.0 / temp.double()).to(temp.dtype).reshape(())

    inverted = invert_rename_rules(rename)

    def _require(key):
        if key not in converted:
            raise OfficialCheckpointError(
                f"missing official tensor {official_name(key, inverted) or key} (→ {key}), needed to read the shape"
            )
        return converted[key]

    width = _require("vision_model.cls_token").shape[-1]
    num_vit_layers = len({int(m.group(1)) for k in converted if (m := re.match(r"vision_model\.layers\.(\d+)\.", k))})
    fc1 = _require("vision_model.layers.0.mlp.fc1.weight")
    words = _require("text_model.embeddings.word_embeddings.weight")
    text_hidden = words.shape[1]
    text_heads = text_num_attention_heads or max(text_hidden // 64, 1)
    config = TrajViT2Config(
        vision_config=dict(
            vision_tokenizer="trajtok",
            trajtok_config=tokenizer.config.to_dict(),
            hidden_size=int(width),
            num_hidden_layers=num_vit_layers,
            num_attention_heads=vision_num_attention_heads,
            intermediate_size=int(fc1.shape[0]),
            hidden_act="gelu",
            layer_norm_eps=1e-12,
            final_layer_norm_eps=1e-5,
            qkv_bias="vision_model.layers.0.attention.q_proj.bias" in converted,
            attend_to_inactive_tokens=True,
        ),
        text_config=dict(
            model_type="bert",
            vocab_size=int(words.shape[0]),
            hidden_size=int(text_hidden),
            num_hidden_layers=fusion_layer,
            num_attention_heads=text_heads,
            intermediate_size=int(_require("text_model.encoder.layer.0.intermediate.dense.weight").shape[0]),
            max_position_embeddings=int(_require("text_model.embeddings.position_embeddings.weight").shape[0]),
            type_vocab_size=int(_require("text_model.embeddings.token_type_embeddings.weight").shape[0]),
            hidden_act="gelu",
            layer_norm_eps=1e-12,
            pad_token_id=0,
        ),
        projection_dim=int(_require("visual_projection.weight").shape[0]),
        projection_bias="visual_projection.bias" in converted,
        logit_scale_init_value=float(_require("logit_scale")),
        text_pooling="cls",
    )
    with torch.device("meta"):
        expected = TrajViT2Model(config).state_dict()
    tokenizer_fresh = tuple(rf"vision_model\.tokenizer\.{p}" for p in tokenizer.fresh_keys)
    check_converted_state_dict(
        converted, expected, allowed_missing=tokenizer_fresh, what="TrajViT2Model", inverted_rules=inverted
    )
    return config, converted, dropped


def load_converted_trajvit2(config: TrajViT2Config, state_dict: dict[str, torch.Tensor]) -> TrajViT2Model:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = TrajViT2Model(config)
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    if missing or unexpected:
        raise OfficialCheckpointError(f"load_state_dict: missing {missing}, unexpected {unexpected}")
    return model.eval()


# (reference name, default atol; 0 = exact)
TRAJVIT2_REFERENCE = (
    ("trajvit2_queries", 1e-4),
    ("trajvit2_logits", 1e-4),
    ("trajvit2_ids", 0),
    ("traj_tokens", 1e-4),
    ("active_mask", 0),
    ("vision_last_hidden_state", 1e-4),
    ("vision_embeds", 1e-4),
    ("text_last_hidden_state", 1e-4),
    ("text_embeds", 1e-4),
    ("logits_per_video", 1e-4),
)


@torch.no_grad()
def trajvit2_outputs(
    model: TrajViT2Model, pixel_values, input_ids=None, attention_mask=None
) -> dict[str, torch.Tensor]:
    """The converted model's outputs under the reference's names, the whole clip as one chunk (as the official code)."""
    model.eval()
    tokenizer = model.vision_model.tokenizer
    tok = official_tokenizer_outputs(tokenizer, pixel_values)
    out = {
        "trajvit2_queries": tok["queries"],
        "trajvit2_logits": tok["logits"],
        "trajvit2_ids": tok["ids"],
        "traj_tokens": tok["tokens"],
        "active_mask": tok["active_mask"],
    }
    chunk_size = tokenizer.config.chunk_size
    tokenizer.config.chunk_size = max(chunk_size, pixel_values.shape[1])
    try:
        if input_ids is None:
            video = model.get_video_features(pixel_values)
            out["vision_last_hidden_state"] = video.last_hidden_state
            out["vision_embeds"] = torch.nn.functional.normalize(video.pooler_output, dim=-1)
        else:
            full = model(input_ids=input_ids, attention_mask=attention_mask, pixel_values_videos=pixel_values)
            out["vision_last_hidden_state"] = full.vision_model_output.last_hidden_state
            out["vision_embeds"] = full.video_embeds
            out["text_last_hidden_state"] = full.text_model_output.last_hidden_state
            out["text_embeds"] = full.text_embeds
            out["logits_per_video"] = full.logits_per_video
    finally:
        tokenizer.config.chunk_size = chunk_size
    return out


def verify_trajvit2(model: TrajViT2Model, reference: dict[str, torch.Tensor], atol: float | None = None):
    """Compare with a reference file (``pixel_values``, optional ``input_ids``/``attention_mask``, outputs named as in
    :data:`TRAJVIT2_REFERENCE`; those present are checked). Returns ``{name: max abs diff}``."""
    if "pixel_values" not in reference:
        raise OfficialCheckpointError("the reference file has no 'pixel_values' (B, T, 3, H, W) input")
    present = [(name, tol) for name, tol in TRAJVIT2_REFERENCE if name in reference]
    if not present:
        raise OfficialCheckpointError(
            f"the reference file has none of {[n for n, _ in TRAJVIT2_REFERENCE]} (it has {sorted(reference)})"
        )
    outputs = trajvit2_outputs(
        model, reference["pixel_values"].float(), reference.get("input_ids"), reference.get("attention_mask")
    )
    missing = [name for name, _ in present if name not in outputs]
    if missing:
        raise OfficialCheckpointError(f"the reference file needs input_ids/attention_mask to check {missing}")
    pairs = {
        name: (outputs[name], reference[name], tol if (atol is None or tol == 0) else atol) for name, tol in present
    }
    return compare_outputs(pairs)


def convert_official_trajvit2(
    checkpoint: str | Path | dict,
    output_dir: str | Path | None = None,
    verify_with: str | Path | dict | None = None,
    vision_num_attention_heads: int = 16,
    text_num_attention_heads: int | None = None,
    text_tokenizer: str | Path | None = None,
    atol: float | None = None,
) -> tuple[TrajViT2Model, dict[str, float]]:
    """Convert an official TrajViT2 checkpoint (path or state dict); check it against ``verify_with`` before writing
    anything; write ``save_pretrained`` + the video processor (+ a ``TrajViT2Processor`` with ``text_tokenizer``).
    Returns ``(model, {reference name: max abs diff})``."""
    state_dict = checkpoint if isinstance(checkpoint, dict) else load_official_state_dict(checkpoint)
    config, converted, _ = convert_official_trajvit2_state_dict(
        state_dict, vision_num_attention_heads, text_num_attention_heads
    )
    model = load_converted_trajvit2(config, converted)
    diffs = {}
    if verify_with is not None:
        reference = verify_with if isinstance(verify_with, dict) else load_reference(verify_with)
        diffs = verify_trajvit2(model, reference, atol=atol)
    if output_dir is not None:
        with converted_model_folder(output_dir) as folder:
            model.save_pretrained(folder)
            video_processor = save_video_processor(folder)
            if text_tokenizer is not None:
                from transformers import AutoTokenizer

                from ..models.processing_trajvit2 import TrajViT2Processor

                tokenizer = AutoTokenizer.from_pretrained(str(text_tokenizer), model_max_length=77)
                TrajViT2Processor(video_processor=video_processor, tokenizer=tokenizer).save_pretrained(str(folder))
    return model, diffs


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="trajtok-convert-trajvit2",
        description="Convert the official TrajViT2 (SegmentCLIP) checkpoint (model.pth or .safetensors) to a "
        "trajtok_hf TrajViT2Model folder.",
    )
    parser.add_argument(
        "--checkpoint", required=True, help="official model.pth ({'model': sd, 'meta': ...}) or .safetensors"
    )
    parser.add_argument("--output_dir", required=True, help="folder for save_pretrained (+ processors)")
    parser.add_argument(
        "--verify_with",
        help="reference .safetensors with pixel_values (+ input_ids, attention_mask) and official outputs: checked "
        "before anything is written",
    )
    parser.add_argument("--vision_num_attention_heads", type=int, default=16, help="ViT heads (release: 16)")
    parser.add_argument(
        "--text_num_attention_heads", type=int, default=None, help="BERT heads (default: hidden / 64, 12 for bert-base)"
    )
    parser.add_argument(
        "--text_tokenizer", help="local bert-base-uncased tokenizer folder: also write a TrajViT2Processor"
    )
    parser.add_argument("--atol", type=float, default=None, help="float tolerance of --verify_with (default 1e-4)")
    args = parser.parse_args(argv)
    try:
        model, diffs = convert_official_trajvit2(
            args.checkpoint,
            args.output_dir,
            args.verify_with,
            args.vision_num_attention_heads,
            args.text_num_attention_heads,
            args.text_tokenizer,
            args.atol,
        )
    except (OfficialCheckpointError, FileNotFoundError) as err:
        raise SystemExit(f"error: {err}") from None
    config = model.config
    vision, text = config.vision_config, config.text_config
    print(
        f"converted {args.checkpoint} → {args.output_dir}: tokenizer width {vision.trajtok_config.hidden_size}, "
        f"K={vision.trajtok_config.num_trajectories}; encoder {vision.num_hidden_layers}×{vision.hidden_size}; "
        f"text {text.num_hidden_layers}×{text.hidden_size}; temperature {math.exp(-model.logit_scale.item()):.4g}; "
        f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters"
    )
    for name, diff in diffs.items():
        print(f"  {name}: max abs diff {diff:.3g}")


if __name__ == "__main__":
    main()
