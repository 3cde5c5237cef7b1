"""Put another segmenter under a trained TrajViT2, and keep it fixed while the rest trains.

TrajTok (paper Sec. 3) has two halves: the *segmenter* that segmentation pre-training trains (the feature
extractor, the query latents and Perceiver, the two assignment heads and the logit scale of Eq. 1:
:data:`~trajtok_hf.training.SEGMENTER_MODULES`), and the *token side* that only the video-text loss trains (the
refinement Perceiver, the sub-token offsets, the output projection and the optional position / motion projections).
:func:`replace_segmenter` swaps the first half of a :class:`~trajtok_hf.TrajViT2Model`'s tokenizer for another
segmenter's, e.g. a real-pixel segmenter under a video-text model trained on a synthetic one, and keeps the second
half, the encoder and the text tower; :func:`freeze_segmenter` then keeps the new segmenter as it was trained.
Neither is in the official release, which trains each TrajViT2 from its own segmentation pre-training.
"""

from __future__ import annotations

import copy

from torch import nn

from .optim import SEGMENTER_MODULES

# TrajTokConfig fields that describe the segmenter: they come from the new segmenter.
SEGMENTER_CONFIG_KEYS = (
    "backbone_config",
    "pretrained_backbone_name_or_path",
    "feature_layer_norm_eps",
    "shared_stage_layernorm",
    "backbone_final_layernorm",
    "backbone_frames_per_pass",
    "frame_difference_input",
    "frame_difference_alignment",
    "query_perceiver_depth",
    "query_init",
    "pixel_context_layers",
    "query_update_iterations",
    "assignment_hidden_size",
    "assignment_embed_dim",
    "logit_scale_init_value",
    "logit_scale_max",
    "soft_pool_normalization",
    "matching_tie_break",
)
# Fields both halves are built for: the two configs must agree on them.
SHARED_CONFIG_KEYS = (
    "hidden_size",
    "num_trajectories",
    "num_attention_heads",
    "perceiver_ff_mult",
    "rope_theta",
    "rope_fraction",
    "latent_norm_placement",
    "chunk_size",
)


def _is_segmenter_weight(name: str) -> bool:
    return name.split(".", 1)[0] in SEGMENTER_MODULES


def replace_segmenter(model: nn.Module, segmenter: nn.Module) -> None:
    """Replace, in place, the segmenter half of ``model``'s TrajTok tokenizer with ``segmenter``'s.

    Args:
        model: a :class:`~trajtok_hf.TrajViT2Model` with TrajTok tokens.
        segmenter: a :class:`~trajtok_hf.TrajTokModel` (segmentation pre-training's output) whose
            ``SHARED_CONFIG_KEYS`` (width, K, heads, ...) equal those of ``model``'s tokenizer.

    The new tokenizer config is ``model``'s with the ``SEGMENTER_CONFIG_KEYS`` of ``segmenter.config``; its weights
    are ``segmenter``'s for the ``SEGMENTER_MODULES`` and ``model``'s for the rest (loaded strictly, so a weight
    that does not fit raises). ``model.config`` is updated, so ``save_pretrained`` writes the new tokenizer.

    Raises:
        TypeError: ``model`` has no TrajTok tokenizer, or ``segmenter`` is not a TrajTok model.
        ValueError: the two configs differ on a shared field (named in the message).
    """
    from ..models.modeling_trajtok import TrajTokModel  # noqa: PLC0415 (training imports models lazily)

    if getattr(getattr(model, "config", None), "vision_tokenizer", None) != "trajtok":
        raise TypeError(f"`model` must be a TrajViT2Model with TrajTok tokens, got {type(model).__name__}")
    if not isinstance(segmenter, TrajTokModel):
        raise TypeError(f"`segmenter` must be a TrajTokModel, got {type(segmenter).__name__}")
    old = model.vision_model.tokenizer
    differing = [
        f"{key} ({getattr(old.config, key)!r} vs {getattr(segmenter.config, key)!r})"
        for key in SHARED_CONFIG_KEYS
        if getattr(old.config, key) != getattr(segmenter.config, key)
    ]
    if differing:
        raise ValueError(
            "`segmenter` does not fit the model's tokenizer; these TrajTokConfig fields must be equal: "
            + ", ".join(differing)
        )
    config = copy.deepcopy(old.config)
    for key in SEGMENTER_CONFIG_KEYS:
        setattr(config, key, copy.deepcopy(getattr(segmenter.config, key)))
    config.name_or_path = segmenter.config.name_or_path  # where the tokenizer's segmenter now comes from
    state = {k: v for k, v in old.state_dict().items() if not _is_segmenter_weight(k)}
    state.update({k: v for k, v in segmenter.state_dict().items() if _is_segmenter_weight(k)})
    new = TrajTokModel(config).to(device=next(old.parameters()).device, dtype=next(old.parameters()).dtype)
    new.load_state_dict(state, strict=True)
    new.train(old.training)
    model.vision_model.tokenizer = new
    model.config.vision_config.trajtok_config = config  # the vision model shares this config object


def _stay_in_eval_mode(module: nn.Module, args) -> None:
    module.train(False)


def freeze_segmenter(tokenizer: nn.Module) -> list[str]:
    """Keep the segmenter half of a TrajTok ``tokenizer`` fixed: its parameters get no gradient (so backward stops
    at the token side) and its modules run in eval mode even under ``model.train()`` (BatchNorm statistics, as in
    timm backbones, stay as trained). Returns the names of the frozen parameters.

    The eval mode is kept by forward pre-hooks on the frozen modules, which live as long as the module object (they
    are not saved)."""
    frozen = []
    for name in SEGMENTER_MODULES:
        part = getattr(tokenizer, name, None)
        if part is None:
            continue
        if isinstance(part, nn.Parameter):
            part.requires_grad_(False)
            frozen.append(name)
            continue
        part.requires_grad_(False)
        part.train(False)
        part.register_forward_pre_hook(_stay_in_eval_mode)
        frozen += [f"{name}.{n}" for n, _ in part.named_parameters()]
    if not frozen:
        raise TypeError(f"`tokenizer` has none of the segmenter modules {SEGMENTER_MODULES}: not a TrajTok tokenizer")
    return frozen


__all__ = ["SEGMENTER_CONFIG_KEYS", "SHARED_CONFIG_KEYS", "freeze_segmenter", "replace_segmenter"]
