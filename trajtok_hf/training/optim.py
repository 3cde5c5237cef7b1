"""Optimisation of the training scripts (paper Sec. 4: AdamW lr 1e-4, wd 0.02, betas (0.9, 0.999), cosine to 1 % with
warm-up, gradient clip 10).

:func:`build_optimizer` is AdamW over :func:`parameter_groups` (no weight decay on norms, biases, learned
latents/offsets, [CLS]/position embeddings and logit scales; optional per-module learning rates);
:func:`build_scheduler` is a linear warm-up then a cosine decay to ``min_lr_ratio`` (1 %) of the peak (transformers'
``"cosine_with_min_lr"``); :func:`default_warmup_steps` picks the warm-up length (one epoch, as the paper).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

# Parameters whose name contains one of these are never decayed, whatever their shape: learned queries/latents and
# sub-token offsets (TrajTok), [CLS] / position embeddings, and temperatures. Biases and norm weights are caught by
# their module type / dimension.
NO_DECAY_NAME_PARTS = (
    "latents",
    "subtoken_offsets",
    "logit_scale",
    "cls_token",
    "class_embedding",
    "position_embedding",
    "pos_embed",
)


# The TrajTok modules that segmentation pre-training (paper Sec. 3, examples/train_segmenter.py) trains: the
# feature extractor (and the optional space-time blocks after it, ``TrajTokConfig.pixel_context_layers``), the query
# latents and Perceiver, the two assignment heads, the logit scale of Eq. 1 and the gates of the optional clustering
# update of the queries (``TrajTokConfig.query_update_iterations``). The
# refinement Perceiver, the sub-token offsets and the output projection get no gradient from the segmentation loss,
# so they are still at their initialisation when TrajViT2 training warm-starts from a segmenter.
SEGMENTER_MODULES = (
    "feature_extractor",
    "pixel_context",
    "query_latents",
    "query_perceiver",
    "query_head",
    "pixel_head",
    "logit_scale",
    "query_update_gates",
)


def parameter_groups(
    model: nn.Module, weight_decay: float, learning_rates: dict[str, float] | None = None
) -> list[dict[str, Any]]:
    """AdamW parameter groups: ``weight_decay`` on weight matrices / conv kernels, 0 on everything else.

    No decay: parameters of normalisation layers (any module whose class name contains ``"Norm"``), biases and other
    tensors with fewer than 2 dims (ConvNeXt layer scales, logit scales), and names containing one of
    :data:`NO_DECAY_NAME_PARTS` (learned latents, sub-token offsets, [CLS] / position embeddings). Frozen
    parameters are left out.

    ``learning_rates`` maps parameter-name prefixes (module paths such as ``"vision_model.tokenizer.query_perceiver"``,
    matched at a ``.`` boundary) to their own learning rate; those parameters get separate groups with an ``"lr"``
    key, the rest use the optimizer's default. The schedulers of :func:`build_scheduler` scale every group's LR by
    the same factor. A prefix that matches no trainable parameter raises ``ValueError`` (a typo would otherwise
    silently train those weights at the default LR).
    """
    if learning_rates is not None and not isinstance(learning_rates, Mapping):
        raise TypeError(
            f"learning_rates must be a mapping of parameter-name prefix -> lr, got {type(learning_rates).__name__}"
        )
    learning_rates = dict(learning_rates or {})
    for prefix, lr in learning_rates.items():
        if not isinstance(prefix, str) or not prefix:
            raise ValueError(f"learning_rates keys must be non-empty parameter-name prefixes, got {prefix!r}")
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
            raise ValueError(f"learning_rates[{prefix!r}] must be a number > 0, got {lr!r}")
    norm_params = {
        id(p) for module in model.modules() if "Norm" in type(module).__name__ for p in module.parameters(recurse=False)
    }
    groups: dict[tuple[bool, float | None], list[nn.Parameter]] = {}
    matched = set()
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        decay = not (param.ndim < 2 or id(param) in norm_params or any(part in name for part in NO_DECAY_NAME_PARTS))
        prefix = next((p for p in learning_rates if name == p or name.startswith(p + ".")), None)
        matched.add(prefix)
        groups.setdefault((decay, None if prefix is None else float(learning_rates[prefix])), []).append(param)
    unmatched = sorted(set(learning_rates) - matched)
    if unmatched:
        raise ValueError(f"learning_rates: no trainable parameter of the model is named like {unmatched}")
    # Default-LR groups first, decayed before not decayed: the layout of the two-group case stays as it was.
    order = sorted(groups, key=lambda key: (key[1] is not None, key[1] or 0.0, not key[0]))
    out = []
    for decay, lr in order:
        group = {"params": groups[(decay, lr)], "weight_decay": weight_decay if decay else 0.0}
        if lr is not None:
            group["lr"] = lr
        out.append(group)
    return out


def build_optimizer(
    model: nn.Module,
    learning_rate: float = 1e-4,
    weight_decay: float = 0.02,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    learning_rates: dict[str, float] | None = None,
) -> torch.optim.AdamW:
    """AdamW of the paper (Sec. 4) over :func:`parameter_groups` (``learning_rates``: per-prefix LRs, see there)."""
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate!r}")
    if not weight_decay >= 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
    return torch.optim.AdamW(
        parameter_groups(model, weight_decay, learning_rates), lr=learning_rate, betas=tuple(betas), eps=eps
    )


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    num_training_steps: int,
    num_warmup_steps: int = 0,
    min_lr_ratio: float = 0.01,
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up from 0 over ``num_warmup_steps``, then cosine decay to ``min_lr_ratio`` × peak at
    ``num_training_steps`` (transformers' ``"cosine_with_min_lr"`` schedule with ``min_lr_rate``).

    Step it once per optimizer step (not per micro-batch, not once per process): the scripts do not pass it to
    ``accelerator.prepare``, whose wrapper would step it ``num_processes`` times per optimizer step.
    """
    from transformers import get_scheduler

    if isinstance(num_training_steps, bool) or not isinstance(num_training_steps, int) or num_training_steps < 1:
        raise ValueError(f"num_training_steps must be a positive int, got {num_training_steps!r}")
    if isinstance(num_warmup_steps, bool) or not isinstance(num_warmup_steps, int) or num_warmup_steps < 0:
        raise ValueError(f"num_warmup_steps must be an int >= 0, got {num_warmup_steps!r}")
    if num_warmup_steps >= num_training_steps:
        raise ValueError(
            f"num_warmup_steps ({num_warmup_steps}) must be smaller than num_training_steps ({num_training_steps})"
        )
    if not 0.0 <= min_lr_ratio <= 1.0:
        raise ValueError(f"min_lr_ratio must lie in [0, 1], got {min_lr_ratio!r}")
    return get_scheduler(
        "cosine_with_min_lr",
        optimizer,
        num_warmup_steps=num_warmup_steps,
        num_training_steps=num_training_steps,
        scheduler_specific_kwargs={"min_lr_rate": min_lr_ratio},
    )


def default_warmup_steps(max_steps: int, steps_per_epoch: int | None, warmup_steps: int | None = None) -> int:
    """The warm-up of a run of ``max_steps`` optimizer steps: ``warmup_steps`` when given, else one epoch (paper
    Sec. 4) when the epoch length is known, else 5 % of ``max_steps``; always below ``max_steps``."""
    if warmup_steps is not None:
        return warmup_steps
    guess = steps_per_epoch if steps_per_epoch else math.ceil(0.05 * max_steps)
    return int(min(guess, max_steps - 1))
