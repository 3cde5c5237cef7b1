"""Token Merging (ToMe) for the ViT3D baseline's encoder: a token-count-matched baseline for TrajViT2.

ToMe (Bolya et al., "Token Merging: Your ViT but Faster", ICLR 2023) shrinks a ViT's sequence *inside* the encoder:
in each layer, between the attention and the MLP, it merges the ``r`` most similar token pairs. TrajViT2 instead
feeds the encoder few tokens from the start (one per active trajectory). Applied to ViT3D (the same encoder over
2×16×16 tubelet tokens), ToMe answers "is it just the smaller token count?" at an equal *average* sequence length.

What is implemented (per encoder layer ℓ with ``r_ℓ`` merges):

1. Pre-LN attention of the transformers ``ViTLayer`` with its own projections and the attention function it
   dispatches to (SDPA or eager, ``config._attn_implementation``). With **proportional attention**, ``log(size)``
   of each key token is added to the attention logits (passed as an additive float attention mask), so a token
   that stands for s merged patches weighs like s identical keys.
2. **Bipartite soft matching** on the attention *keys* (the similarity metric of ToMe: the keys averaged over
   heads; they summarise what each token contributes to attention): tokens alternate between set A (even
   positions, the [CLS] at 0 included) and B (odd positions); each A token picks its most cosine-similar B token;
   the ``r_ℓ`` A tokens with the highest similarity are merged into their B partners. The [CLS] is never merged
   (its scores are −inf). Matching runs without gradient, as in ToMe; the merge itself is differentiable.
3. **Size-weighted average**: merged token = Σ sizeᵢ·xᵢ / Σ sizeᵢ; sizes add up (they always sum to the input
   sequence length). The residual stream after the attention is what is merged; the MLP then runs on fewer tokens.

``r_ℓ`` is clamped to ``(n_ℓ − 1) // 2`` (at most half of the non-[CLS] tokens, the most a bipartite matching can
remove), as ToMe does. The sequence after layer ℓ is ``[CLS, unmerged A tokens, all B tokens]``, each group in its
original order.

How ``r`` is chosen. ToMe uses a constant ``r`` (tokens removed per layer). To compare with TrajViT2 at equal cost,
:func:`tome_r_for_token_count` finds a per-layer schedule whose **mean number of tokens entering each layer** (the
sequence length each layer's attention runs on) matches a target, e.g. TrajViT2's ``1 + active tokens``: the largest
constant ``r`` whose mean stays at or above the target, then one extra merge in the earliest layers (each removes
~(L−1−ℓ)/L tokens from the mean) until the mean is within one token of the target. A constant ``r`` alone cannot do
that: one more merge per layer lowers the mean by ~(L−1)/2 tokens. Targets below the reachable minimum (halving in
every layer) give that most aggressive schedule; :func:`tome_tokens_per_layer` says what a schedule achieves.

Scope: ViT3D only. Its token set has no padding (every patch is a token), so merging needs no padding logic;
:func:`apply_token_merging` refuses TrajTok towers (their tokens already number ~10–30 active trajectories, and
their padding would need masked matching), and a patched encoder raises if it is handed a partial token mask.

Differences from the official code (github facebookresearch/ToMe, ``tome/merge.py``, ``tome/patch/timm.py``),
written independently:

- ToMe swaps the classes of timm's ``Block``/``Attention`` and rewrites their forward (a hand-written softmax with
  the size term). Here only the TrajViT2 vision transformer's ``encode_tokens`` is replaced (class swap of that one
  module); the ``ViTLayer`` submodules, their weights and transformers' attention dispatch (SDPA/eager) are used
  as they are, with proportional attention as an additive mask. With ``r = 0`` the output is bit-identical to the
  unpatched model, and the state dict is unchanged (``save_pretrained`` works; it saves the plain model).
- ``r`` may be an int (constant, as ToMe) or an explicit per-layer list; ToMe's ``(r, inflection)`` schedules are
  not offered, :func:`tome_r_for_token_count` matches a mean token count instead.
- The unmerged A tokens are always kept in their original order (ToMe sorts them only when there is a class
  token) and the similarity ranking uses a stable sort, so ties (e.g. duplicated tokens) merge deterministically.
- No source tracing / unmerging (ToMe's visualisation helpers); the output reports each token's size instead.
- Not supported: padding masks (see above), gradient checkpointing of the patched layers, attention backends that
  cannot take an additive float mask (flash attention) when proportional attention is on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.vit.modeling_vit import ViTAttention, ViTLayer, eager_attention_forward

from ..models.modeling_trajvit2 import (
    TrajViT2Model,
    TrajViT2VisionModel,
    TrajViT2VisionOutput,
    TrajViT2VisionTransformer,
)

__all__ = [
    "BipartiteMatching",
    "ToMeVisionOutput",
    "ToMeVisionTransformer",
    "apply_token_merging",
    "bipartite_soft_matching",
    "merge_weighted_average",
    "remove_token_merging",
    "tome_r_for_token_count",
    "tome_tokens_per_layer",
]

# Tokens that are never merged: the [CLS] at position 0.
_PROTECTED = 1
# Attention backends that accept an additive float mask (needed for proportional attention).
_ADDITIVE_MASK_BACKENDS = (None, "eager", "sdpa")


# ---------------------------------------------------------------------------------------------------------------------
# Schedules
def _check_count(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def _normalize_schedule(r, num_layers: int) -> tuple[int, ...]:
    """An int (same r in every layer) or one non-negative int per layer → a tuple of length ``num_layers``."""
    if isinstance(r, bool):
        raise ValueError(f"r must be a non-negative int or a sequence of {num_layers} of them, got {r!r}")
    if isinstance(r, int):
        if r < 0:
            raise ValueError(f"r must be >= 0 (tokens merged per layer), got {r}")
        return (r,) * num_layers
    if isinstance(r, torch.Tensor) or not isinstance(r, Sequence) or isinstance(r, str):
        raise ValueError(f"r must be a non-negative int or a sequence of {num_layers} of them, got {r!r}")
    if len(r) != num_layers:
        raise ValueError(f"r must give one value per encoder layer ({num_layers}), got {len(r)} values")
    if any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in r):
        raise ValueError(f"r must contain only non-negative ints, got {list(r)!r}")
    return tuple(int(v) for v in r)


def tome_tokens_per_layer(num_tokens: int, r: int | Sequence[int], num_layers: int | None = None) -> list[int]:
    """Number of tokens entering each encoder layer under the merge schedule ``r`` ([CLS] included).

    Content does not matter: every layer removes exactly ``min(r_ℓ, (n_ℓ − 1) // 2)`` tokens.

    Args:
        num_tokens: sequence length entering the first layer ([CLS] + patch tokens).
        r: merges per layer, an int (needs ``num_layers``) or one int per layer.
        num_layers: number of layers when ``r`` is an int.
    """
    _check_count("num_tokens", num_tokens, _PROTECTED + 1)
    if isinstance(r, int) and not isinstance(r, bool):
        if num_layers is None:
            raise ValueError("num_layers is required when r is an int")
        _check_count("num_layers", num_layers, 1)
        schedule = _normalize_schedule(r, num_layers)
    else:
        schedule = _normalize_schedule(r, len(r) if num_layers is None else num_layers)
    counts, n = [], num_tokens
    for r_layer in schedule:  # a loop over layers (≤ dozens), not over tokens
        counts.append(n)
        n -= min(r_layer, (n - _PROTECTED) // 2)
    return counts


def _effective_schedule(num_tokens: int, schedule: Sequence[int]) -> list[int]:
    """The merges that actually happen (each r_ℓ clamped to (n_ℓ − 1) // 2)."""
    counts = tome_tokens_per_layer(num_tokens, list(schedule))
    return [min(r, (n - _PROTECTED) // 2) for r, n in zip(schedule, counts, strict=True)]


def tome_r_for_token_count(num_tokens: int, num_layers: int, target_mean_tokens: float) -> list[int]:
    """A per-layer merge schedule whose mean number of tokens entering each layer matches ``target_mean_tokens``.

    The largest constant ``r`` that keeps the mean ≥ target, plus one extra merge in the earliest layers where that
    still keeps the mean ≥ target (a merge in layer ℓ removes one token from the L−1−ℓ later layers, so the early
    layers are the coarse steps and the late ones the fine steps, down to 1/L of a token). Result: mean − target
    ∈ [0, 1) whenever the target is reachable. A target ≥ ``num_tokens`` gives no merging; one below the minimum
    (every layer halving the non-[CLS] tokens) gives that most aggressive schedule — compare
    ``mean(tome_tokens_per_layer(num_tokens, schedule))`` with the target to detect it.

    Args:
        num_tokens: sequence length entering the first layer ([CLS] + patch tokens; ViT3D: 1 + ⌈T/2⌉·(H/16)·(W/16)).
        num_layers: encoder depth L.
        target_mean_tokens: the wanted mean over layers, e.g. TrajViT2's encoder length 1 + active tokens.

    Returns:
        One int per layer, already clamped to what a bipartite matching can merge (the merges that will happen).
    """
    _check_count("num_tokens", num_tokens, _PROTECTED + 1)
    _check_count("num_layers", num_layers, 1)
    if (
        isinstance(target_mean_tokens, bool)
        or not isinstance(target_mean_tokens, (int, float))
        or not math.isfinite(target_mean_tokens)
        or target_mean_tokens < 1
    ):
        raise ValueError(f"target_mean_tokens must be a finite number >= 1, got {target_mean_tokens!r}")

    def mean(schedule) -> float:
        return sum(tome_tokens_per_layer(num_tokens, schedule)) / num_layers

    if target_mean_tokens >= num_tokens:
        return [0] * num_layers
    # Counts only fall as r grows (n − min(r, (n−1)//2) is non-decreasing in n, non-increasing in r): bisect the
    # largest constant r whose mean is still ≥ target.
    low, high = 0, (num_tokens - _PROTECTED) // 2
    while low < high:
        mid = (low + high + 1) // 2
        if mean([mid] * num_layers) >= target_mean_tokens:
            low = mid
        else:
            high = mid - 1
    schedule = [low] * num_layers
    for layer in range(num_layers):  # coarse (early) to fine (late) steps
        trial = list(schedule)
        trial[layer] += 1
        if mean(trial) >= target_mean_tokens:
            schedule = trial
    return _effective_schedule(num_tokens, schedule)


# ---------------------------------------------------------------------------------------------------------------------
# Matching and merging
@dataclass(frozen=True)
class BipartiteMatching:
    """Result of :func:`bipartite_soft_matching` for a batch; indices are into set A (even positions) or B (odd).

    Attributes:
        unmerged (`torch.LongTensor` of shape `(B, |A| − r)`): A tokens that stay, ascending (the [CLS] first).
        source (`torch.LongTensor` of shape `(B, r)`): A tokens merged away.
        destination (`torch.LongTensor` of shape `(B, r)`): the B token each source is merged into.
    """

    unmerged: torch.Tensor
    source: torch.Tensor
    destination: torch.Tensor

    @property
    def r(self) -> int:
        return self.source.shape[1]


def bipartite_soft_matching(metric: torch.Tensor, r: int, protect_first: bool = True) -> BipartiteMatching:
    """ToMe's bipartite soft matching: pair each even-position token with its most cosine-similar odd-position token
    and select the ``r`` best pairs. Vectorised over the batch.

    Args:
        metric (`torch.Tensor` of shape `(B, N, C)`): what similarity is measured on (ToMe: keys averaged over heads).
        r: pairs to merge; clamped to ``(N − protected) // 2``.
        protect_first: never merge token 0 (the [CLS]).
    """
    if metric.ndim != 3:
        raise ValueError(f"metric must be a (batch, tokens, channels) tensor, got shape {tuple(metric.shape)}")
    _check_count("r", r, 0)
    num_tokens = metric.shape[1]
    r = min(r, (num_tokens - int(protect_first)) // 2)
    with torch.no_grad():
        metric = F.normalize(metric.float(), dim=-1)
        scores = metric[:, ::2] @ metric[:, 1::2].transpose(1, 2)  # (B, |A|, |B|) cosine similarities
        if protect_first:
            scores[:, 0] = -math.inf
        best, best_partner = scores.max(dim=-1)
        # Stable: equal similarities keep position order, so duplicated tokens merge deterministically.
        order = torch.argsort(best, dim=-1, descending=True, stable=True)
        source = order[:, :r]
        unmerged = order[:, r:].sort(dim=-1).values
        destination = best_partner.gather(1, source)
    return BipartiteMatching(unmerged=unmerged, source=source, destination=destination)


def merge_weighted_average(
    x: torch.Tensor, size: torch.Tensor, matching: BipartiteMatching
) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge tokens by size-weighted average: x (B, N, C), size (B, N) → ([unmerged A ; B] tokens, their sizes).

    A merged B token becomes ``(s_b·x_b + Σ s_a·x_a) / (s_b + Σ s_a)`` over the A tokens merged into it (several may
    pick the same B token); sizes are summed, so their total is preserved.
    """
    channels = x.shape[-1]
    weighted = x * size.unsqueeze(-1).to(x.dtype)
    a, b = weighted[:, ::2], weighted[:, 1::2]
    size_a, size_b = size[:, ::2], size[:, 1::2]

    def gather(t, index):
        return t.gather(1, index.unsqueeze(-1).expand(-1, -1, t.shape[-1]))

    kept = gather(a, matching.unmerged)
    b = b.scatter_add(1, matching.destination.unsqueeze(-1).expand(-1, -1, channels), gather(a, matching.source))
    kept_size = size_a.gather(1, matching.unmerged)
    size_b = size_b.scatter_add(1, matching.destination, size_a.gather(1, matching.source))
    new_size = torch.cat((kept_size, size_b), dim=1)
    merged = torch.cat((kept, b), dim=1) / new_size.unsqueeze(-1).to(x.dtype)
    return merged, new_size


# ---------------------------------------------------------------------------------------------------------------------
# The patched encoder
@dataclass
class ToMeVisionOutput(TrajViT2VisionOutput):
    r"""
    [`TrajViT2VisionOutput`] of a token-merging encoder. The sequence shrinks layer by layer: M = tokens after the
    last layer ([CLS] included). `token_indices` is None (a merged token stands for several patches).

    Args:
        token_sizes (`torch.FloatTensor` of shape `(B, M)`):
            Number of input tokens ([CLS] = 1) each output token is the average of; each row sums to the input length.
        tokens_per_layer (`tuple[int]`):
            Sequence length entering each encoder layer ([CLS] included); its mean is the average token count.
    """

    token_sizes: torch.FloatTensor | None = None
    tokens_per_layer: tuple[int, ...] | None = None


def _attention_with_keys(
    attention: ViTAttention, hidden: torch.Tensor, attention_mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``ViTAttention.forward`` step for step (same projections, same dispatched attention function, same op order,
    hence bit-identical), also returning the keys (B, heads, N, head_dim) that ToMe matches on. Recomputing the keys
    with ``k_proj`` instead would cost an extra N·D² matmul per layer."""
    input_shape = hidden.shape[:-1]
    hidden_shape = (*input_shape, -1, attention.head_dim)
    query = attention.q_proj(hidden).view(hidden_shape).transpose(1, 2)
    key = attention.k_proj(hidden).view(hidden_shape).transpose(1, 2)
    value = attention.v_proj(hidden).view(hidden_shape).transpose(1, 2)
    interface = ALL_ATTENTION_FUNCTIONS.get_interface(attention.config._attn_implementation, eager_attention_forward)
    output, _ = interface(
        attention,
        query,
        key,
        value,
        attention_mask,
        dropout=0.0 if not attention.training else attention.attention_dropout,
        scaling=attention.scaling,
    )
    output = attention.o_proj(output.reshape(*input_shape, -1).contiguous())
    return output, key


class ToMeVisionTransformer(TrajViT2VisionTransformer):
    """[`TrajViT2VisionTransformer`] (ViT3D tokens) whose encoder merges tokens in every layer (see module docstring).

    Set up by :func:`apply_token_merging`, which swaps the class of an existing module and sets ``tome_r`` (one int per
    layer) and ``tome_proportional_attention``.
    """

    tome_r: tuple[int, ...] = ()
    tome_proportional_attention: bool = True

    def encode_tokens(
        self,
        tokens: torch.Tensor,
        token_mask: torch.Tensor,
        output_hidden_states: bool = False,
        *,
        token_packing: str | None = None,
    ) -> ToMeVisionOutput:
        """[CLS] + tokens → encoder with token merging → final LayerNorm. ``token_mask`` must be all True (ViT3D), so
        there is no padding to pack: ``token_packing`` is accepted for the parent's signature and has no effect."""
        if tokens.ndim != 3 or token_mask.shape != tokens.shape[:2] or token_mask.dtype != torch.bool:
            raise ValueError(
                f"tokens must be (B, N, D) and token_mask a bool (B, N) tensor, got {tuple(tokens.shape)} and "
                f"{tuple(token_mask.shape)} {token_mask.dtype}"
            )
        if not bool(token_mask.all()):
            raise ValueError(
                "token_mask must be all True: token merging supports the ViT3D token set only (no padding)"
            )
        if len(self.tome_r) != len(self.layers):
            raise ValueError(f"tome_r must hold one value per layer ({len(self.layers)}), got {self.tome_r!r}")
        batch = tokens.shape[0]
        hidden = self.input_projection(tokens)
        hidden = torch.cat((self.cls_token.expand(batch, -1, -1).to(hidden.dtype), hidden), dim=1)
        full_mask = torch.ones(hidden.shape[:2], dtype=torch.bool, device=hidden.device)
        # Exactly the unpatched encoder's mask (None for an all-True mask under SDPA), used until the first merge so
        # that r = 0 reproduces the plain model bit for bit.
        initial_mask = create_bidirectional_mask(config=self.config, inputs_embeds=hidden, attention_mask=full_mask)
        size = None  # (B, n) token sizes, None while every token is a single patch
        tokens_per_layer = []
        all_hidden_states = (hidden,) if output_hidden_states else None
        for layer, r in zip(self.layers, self.tome_r, strict=True):  # a loop over layers only
            tokens_per_layer.append(hidden.shape[1])
            hidden, size = self._merging_layer(layer, hidden, size, initial_mask, r)
            if output_hidden_states:
                all_hidden_states += (hidden,)
        hidden = self.post_layernorm(hidden)
        if size is None:
            size = torch.ones(hidden.shape[:2], dtype=hidden.dtype, device=hidden.device)
        return ToMeVisionOutput(
            last_hidden_state=hidden,
            pooler_output=hidden[:, 0],
            hidden_states=all_hidden_states,
            attention_mask=torch.ones(hidden.shape[:2], dtype=torch.bool, device=hidden.device),
            token_indices=None,
            token_sizes=size,
            tokens_per_layer=tuple(tokens_per_layer),
        )

    def _merging_layer(self, layer: ViTLayer, hidden, size, initial_mask, r: int):
        """``ViTLayer.forward`` with ToMe between the attention and the MLP; returns (hidden, size)."""
        if size is None:
            attention_mask = initial_mask
        elif self.tome_proportional_attention:
            # log(size) added to every query's logit of that key: a key of size s counts like s identical keys.
            attention_mask = size.log().to(hidden.dtype)[:, None, None, :]
        else:
            attention_mask = None  # no padding in ViT3D: nothing to mask
        residual = hidden
        attention_output, keys = _attention_with_keys(layer.attention, layer.layernorm_before(hidden), attention_mask)
        hidden = layer.dropout(attention_output) + residual
        r = min(r, (hidden.shape[1] - _PROTECTED) // 2)
        if r > 0:
            matching = bipartite_soft_matching(keys.mean(dim=1), r, protect_first=True)
            if size is None:
                size = torch.ones(hidden.shape[:2], dtype=torch.float32, device=hidden.device)
            hidden, size = merge_weighted_average(hidden, size, matching)
        residual = hidden
        hidden = layer.dropout(layer.mlp(layer.layernorm_after(hidden))) + residual
        return hidden, size


def _vision_transformer(model) -> TrajViT2VisionTransformer:
    if isinstance(model, (TrajViT2Model, TrajViT2VisionModel)):
        return model.vision_model
    if isinstance(model, TrajViT2VisionTransformer):
        return model
    raise TypeError(
        f"model must be a TrajViT2Model, TrajViT2VisionModel or TrajViT2VisionTransformer, got {type(model).__name__}"
    )


def apply_token_merging(model, r: int | Sequence[int], proportional_attention: bool = True):
    """Make the ViT3D vision tower of ``model`` merge tokens ToMe-style (in place; returns ``model``).

    Calling it again on a patched model changes ``r``; :func:`remove_token_merging` undoes it. Weights are untouched.

    Args:
        model: a [`TrajViT2Model`], [`TrajViT2VisionModel`] or `TrajViT2VisionTransformer` with
            ``vision_tokenizer="vit3d"``.
        r: tokens merged per layer: an int (the same in every layer, as ToMe's ``r``) or one int per encoder layer
            (e.g. from :func:`tome_r_for_token_count`). Values above what a layer can merge are clamped at run time.
        proportional_attention: add log(token size) to the attention logits (ToMe's default for off-the-shelf
            models).

    Raises:
        TypeError: ``model`` is not a TrajViT2 model.
        ValueError: ``model`` uses the TrajTok tokenizer, ``r`` is malformed, or proportional attention is requested
            with an attention backend that cannot take an additive mask.
    """
    vision = _vision_transformer(model)
    if vision.config.vision_tokenizer != "vit3d":
        raise ValueError(
            f"model: token merging applies to the ViT3D baseline (vision_tokenizer='vit3d'), got "
            f"vision_tokenizer={vision.config.vision_tokenizer!r} (trajectory tokens are already few and padded)"
        )
    if not isinstance(proportional_attention, bool):
        raise ValueError(f"proportional_attention must be a bool, got {proportional_attention!r}")
    schedule = _normalize_schedule(r, len(vision.layers))
    backend = vision.config._attn_implementation
    if proportional_attention and backend not in _ADDITIVE_MASK_BACKENDS:
        raise ValueError(
            f"model: proportional attention needs an attention backend that takes an additive float mask "
            f"({[b for b in _ADDITIVE_MASK_BACKENDS if b]}), the model uses {backend!r}"
        )
    for index, layer in enumerate(vision.layers):
        attention = getattr(layer, "attention", None)
        if not isinstance(layer, ViTLayer) or not all(
            hasattr(attention, name) for name in ("q_proj", "k_proj", "v_proj", "o_proj", "head_dim", "scaling")
        ):
            # Fails loudly if a transformers release restructures ViTLayer/ViTAttention.
            raise TypeError(f"model: encoder layer {index} is not a transformers ViTLayer with q/k/v/o projections")
    vision.__class__ = ToMeVisionTransformer
    vision.tome_r = schedule
    vision.tome_proportional_attention = proportional_attention
    return model


def remove_token_merging(model):
    """Undo :func:`apply_token_merging` (in place; returns ``model``). A no-op on an unpatched model."""
    vision = _vision_transformer(model)
    if isinstance(vision, ToMeVisionTransformer):
        vision.__class__ = TrajViT2VisionTransformer
        for name in ("tome_r", "tome_proportional_attention"):
            vision.__dict__.pop(name, None)
    return model
