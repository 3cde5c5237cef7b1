"""Perceiver resamplers of TrajTok (paper Sec. 3): the trajectory-query Perceiver and the hard-mask refinement
Perceiver, with 1D rotary position embedding over the flattened (latents; t, row, col) sequence.

Layer layout follows the official release's Perceiver resampler (Flamingo style): per layer, the latents attend to
keys/values from ``[latents ; features]``, then a gated (SiLU) feed-forward, both residual. A Perceiver is built
from explicit arguments (width, heads, depth, feed-forward multiplier, RoPE and norm options), so any model builds
one from its own config. Differences from the official code, each an option of :class:`TrajTokPerceiver`:

- ``latent_norm_placement="final"`` (default): a standard residual stream with one LayerNorm on the output. The
  release instead re-applies that LayerNorm to the latents at the start of every layer (``"every_layer"``), which
  replaces the residual stream; converted checkpoints use it.
- ``rope_fraction=1.0`` (default): RoPE rotates all head dims; the release rotates the first half (0.5).

The attention kernels (plain, streamed, and the hard mask's segment-softmax and dense forms) live in
``attention_trajtok.py``; :class:`TrajTokPerceiverAttention` picks one per call.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer

from .attention_trajtok import (
    HardMask,
    SegmentWeightedSum,
    apply_rotary,
    dense_hard_mask_attention,
    eager_attention,
    hard_mask_allowed,
    rotary_multiplier,
    segment_hard_mask_attention,
    stream_block_pixels,
    streamed_context_attention,
    streams_pixels,
)

__all__ = [
    "HardMask",
    "SegmentWeightedSum",
    "TrajTokPerceiver",
    "TrajTokPerceiverAttention",
    "TrajTokPerceiverFeedForward",
    "TrajTokPerceiverLayer",
    "apply_rotary",
    "dense_hard_mask_attention",
    "eager_attention",
    "hard_mask_allowed",
    "rotary_multiplier",
    "segment_hard_mask_attention",
    "stream_block_pixels",
    "streamed_context_attention",
]


class TrajTokPerceiverAttention(nn.Module):
    """Latents attend to ``[latents ; context]`` (Flamingo); no biases, as the release.

    Modes, one method each: without a hard mask, SDPA, or the written-out softmax when ``config._attn_implementation``
    is ``"eager"`` (``from_pretrained(..., attn_implementation="eager")``; ``config`` is the owning model's, read at
    every call), or the context streamed in blocks at inference on CPU; with a :class:`HardMask`, its segment-softmax
    or dense form. ``output_attentions`` always takes the written-out softmax, the one that returns weights."""

    def __init__(self, hidden_size: int, num_heads: int, config=None):
        super().__init__()
        self.config = config
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.norm_media = nn.LayerNorm(hidden_size, eps=1e-5)
        self.norm_latents = nn.LayerNorm(hidden_size, eps=1e-5)
        self.to_q = nn.Linear(hidden_size, hidden_size, bias=False)
        self.to_kv = nn.Linear(hidden_size, 2 * hidden_size, bias=False)
        self.to_out = nn.Linear(hidden_size, hidden_size, bias=False)

    def forward(
        self,
        latents: torch.Tensor,
        context: torch.Tensor,
        rope: torch.Tensor,
        hard_mask: HardMask | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Returns the attention output (B, L, D) and, with ``output_attentions``, the weights (B, h, L, L + N) over
        ``[latents ; context]`` (computed written out, whatever the attention implementation)."""
        latents = self.norm_latents(latents)
        query = apply_rotary(self.to_q(latents).unflatten(-1, self._heads), rope[: latents.shape[1]]).transpose(1, 2)
        if output_attentions:
            out, weights = self._written_out_attention(query, latents, context, rope, hard_mask)
            return self._merge_heads(out), weights
        if hard_mask is None:
            out = self._context_attention(query, latents, context, rope)
        elif hard_mask.implementation == "segment":
            out = self._segment_masked_attention(query, latents, context, rope, hard_mask)
        else:
            out = self._dense_masked_attention(query, latents, context, rope, hard_mask)
        return self._merge_heads(out), None

    @property
    def _heads(self) -> tuple[int, int]:
        return self.num_heads, self.head_dim

    @property
    def _eager(self) -> bool:
        return self.config is not None and getattr(self.config, "_attn_implementation", None) == "eager"

    # ------------------------------------------------------------------ one method per mode
    def _written_out_attention(self, query, latents, context, rope, hard_mask: HardMask | None):
        """Written-out softmax over ``[latents ; context]`` (under the hard mask's dense form): output and weights."""
        allowed = hard_mask.allowed(latents.shape[1]) if hard_mask is not None else None
        return eager_attention(query, *self._keys_values(latents, context, rope), allowed)

    def _context_attention(self, query, latents, context, rope) -> torch.Tensor:
        """No mask: the written-out softmax (``"eager"``), the context streamed in blocks (inference on CPU, see
        :func:`streams_pixels`), or SDPA."""
        if self._eager:
            return eager_attention(query, *self._keys_values(latents, context, rope))[0]
        if streams_pixels(context):
            return self._streamed_context_attention(query, latents, context, rope)
        return F.scaled_dot_product_attention(query, *self._keys_values(latents, context, rope))

    def _streamed_context_attention(self, query, latents, context, rope) -> torch.Tensor:
        """No mask, context keys and values normalised, projected and rotated block by block, each block attended on
        its own and the blocks merged by their log-sum-exps (:func:`streamed_context_attention`)."""
        num_latents = latents.shape[1]

        def project_context(start: int, stop: int):
            key, value = self.to_kv(self.norm_media(context[:, start:stop])).unflatten(-1, (2, -1)).unbind(2)
            positions = rope[num_latents + start : num_latents + stop]
            return (
                apply_rotary(key.unflatten(-1, self._heads), positions).transpose(1, 2),
                value.unflatten(-1, self._heads).transpose(1, 2),
            )

        latent_key, latent_value = self._latent_keys_values(latents, rope)
        return streamed_context_attention(query, latent_key, latent_value, context.shape[1], project_context)

    def _segment_masked_attention(self, query, latents, context, rope, hard_mask: HardMask) -> torch.Tensor:
        """Hard mask, segment softmax: only the pixel keys are projected (streamed in blocks at inference on CPU);
        the pixel values are aggregated per trajectory before ``W_v`` (``attention_trajtok.py``)."""
        key_weight, value_weight = self.to_kv.weight.chunk(2, dim=0)
        context = self.norm_media(context)
        pixel_rope = rope[latents.shape[1] :]

        def pixel_key(start: int, stop: int) -> torch.Tensor:  # (B, stop − start, h, d)
            return apply_rotary(
                F.linear(context[:, start:stop], key_weight).unflatten(-1, self._heads), pixel_rope[start:stop]
            )

        if not streams_pixels(context):
            pixel_key = pixel_key(0, context.shape[1]).transpose(1, 2)
        return segment_hard_mask_attention(
            query,
            *self._latent_keys_values(latents, rope),
            pixel_key,
            None,
            hard_mask.trajectory_ids,
            hard_mask.tokens_per_trajectory,
            hard_mask.visible_last_pixels,
            pixel_inputs=context,
            value_weight=value_weight,
            num_pixels=context.shape[1],
        )

    def _dense_masked_attention(self, query, latents, context, rope, hard_mask: HardMask) -> torch.Tensor:
        """Hard mask, dense boolean mask through SDPA (the reference form)."""
        num_latents = latents.shape[1]
        key, value = self._keys_values(latents, context, rope)
        return dense_hard_mask_attention(
            query,
            key[:, :, :num_latents],
            value[:, :, :num_latents],
            key[:, :, num_latents:],
            value[:, :, num_latents:],
            hard_mask.trajectory_ids,
            hard_mask.tokens_per_trajectory,
            hard_mask.visible_last_pixels,
        )

    # ------------------------------------------------------------------ projections
    def _latent_keys_values(self, latents: torch.Tensor, rope: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys (rotated at the latents' positions 0..L−1) and values of the (normalised) latents, (B, h, L, d) each:
        the latent half of ``[latents ; context]`` for the paths that handle the pixels apart."""
        key, value = self.to_kv(latents).unflatten(-1, (2, -1)).unbind(2)
        return (
            apply_rotary(key.unflatten(-1, self._heads), rope[: latents.shape[1]]).transpose(1, 2),
            value.unflatten(-1, self._heads).transpose(1, 2),
        )

    def _keys_values(self, latents: torch.Tensor, context: torch.Tensor, rope: torch.Tensor):
        """Rotated keys and values (B, h, L + N, d) of ``[latents ; context]`` (latents already normalised). One
        projection over the concatenation (positions 0..L+N-1) instead of two plus a concatenation of keys."""
        key, value = self.to_kv(torch.cat((latents, self.norm_media(context)), dim=1)).unflatten(-1, (2, -1)).unbind(2)
        return (
            apply_rotary(key.unflatten(-1, self._heads), rope).transpose(1, 2),
            value.unflatten(-1, self._heads).transpose(1, 2),
        )

    def _merge_heads(self, out: torch.Tensor) -> torch.Tensor:
        """(B, h, L, d) → output projection of the concatenated heads (B, L, D)."""
        return self.to_out(out.transpose(1, 2).flatten(2))


class TrajTokPerceiverFeedForward(nn.Module):
    """Pre-norm gated feed-forward: down(silu(gate(x)) · up(x))."""

    def __init__(self, hidden_size: int, mult: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden_size, eps=1e-6)
        self.gate = nn.Linear(hidden_size, hidden_size * mult)
        self.up = nn.Linear(hidden_size, hidden_size * mult)
        self.down = nn.Linear(hidden_size * mult, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        return self.down(F.silu(self.gate(x)) * self.up(x))


class TrajTokPerceiverLayer(GradientCheckpointingLayer):
    def __init__(self, hidden_size: int, num_heads: int, ff_mult: int, config=None):
        super().__init__()
        self.attention = TrajTokPerceiverAttention(hidden_size, num_heads, config)
        self.feed_forward = TrajTokPerceiverFeedForward(hidden_size, ff_mult)

    def forward(self, latents, context, rope, hard_mask=None, output_attentions=False):
        """Returns the updated latents (B, L, D) and the attention weights (B, h, L, L + N) or None."""
        attended, weights = self.attention(latents, context, rope, hard_mask, output_attentions)
        latents = latents + attended
        return latents + self.feed_forward(latents), weights


class TrajTokPerceiver(nn.Module):
    """A Perceiver resampler over a flattened space-time feature sequence (paper Sec. 3: the trajectory queries and
    the hard-mask refinement).

    Args:
        hidden_size (`int`): width D of the latents and the context.
        num_heads (`int`): attention heads; head dim D / heads.
        depth (`int`): number of layers.
        ff_mult (`int`, *optional*, defaults to 4): width multiplier of the gated feed-forward.
        rope_theta (`float`, *optional*, defaults to 10000.0): base of the 1D RoPE.
        rope_fraction (`float`, *optional*, defaults to 1.0): fraction of each head's dims that RoPE rotates.
        latent_norm_placement (`str`, *optional*, defaults to `"final"`): `"final"` (one LayerNorm on the output)
            or `"every_layer"` (the release: the latents re-normalised before each layer).
        attention_config (`PretrainedConfig`, *optional*): the owning model's config, of which only
            `_attn_implementation` is read, at every call (`"eager"` → written-out softmax, otherwise SDPA).

    ``forward(latents (B, L, D), context (B, N, D), hard_mask=None) -> (B, L, D)``. With a :class:`HardMask` each
    latent slot sees only its own trajectory's pixels and sub-tokens.

    With ``output_hidden_states`` or ``output_attentions`` it returns ``(latents, hidden_states, attentions)``:
    hidden_states = the latents entering the first layer and leaving each layer (before the final LayerNorm),
    depth + 1 tensors (B, L, D); attentions = each layer's weights (B, h, L, L + N) over ``[latents ; context]``
    (None where not asked for).
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        depth: int,
        ff_mult: int = 4,
        *,
        rope_theta: float = 10000.0,
        rope_fraction: float = 1.0,
        latent_norm_placement: str = "final",
        attention_config=None,
    ):
        super().__init__()
        self.norm_context = nn.LayerNorm(hidden_size, eps=1e-6)
        self.norm_latents = nn.LayerNorm(hidden_size, eps=1e-6)
        self.layers = nn.ModuleList(
            TrajTokPerceiverLayer(hidden_size, num_heads, ff_mult, attention_config) for _ in range(depth)
        )
        self.latent_norm_placement = latent_norm_placement
        self.head_dim = hidden_size // num_heads
        self.rotary_dim = int(self.head_dim * rope_fraction)
        self.rope_theta = rope_theta

    def forward(
        self,
        latents: torch.Tensor,
        context: torch.Tensor,
        hard_mask: HardMask | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ):
        num_latents, num_pixels = latents.shape[1], context.shape[1]
        # 1D positions over the flattened sequence: latents 0..L-1, then pixel p at L + p (queries share the
        # latents' positions).
        rope = rotary_multiplier(
            num_latents + num_pixels, self.head_dim, self.rotary_dim, self.rope_theta, context.device
        )
        context = self.norm_context(context)
        hidden_states = [latents] if output_hidden_states else None
        attentions = [] if output_attentions else None
        for layer in self.layers:
            if self.latent_norm_placement == "every_layer":
                latents = self.norm_latents(latents)
            latents, weights = layer(latents, context, rope, hard_mask, output_attentions=output_attentions)
            if output_hidden_states:
                hidden_states.append(latents)
            if output_attentions:
                attentions.append(weights)
        if self.latent_norm_placement == "final":
            latents = self.norm_latents(latents)
        if not (output_hidden_states or output_attentions):
            return latents
        return latents, _as_tuple(hidden_states), _as_tuple(attentions)


def _as_tuple(items: list | None) -> tuple | None:
    return tuple(items) if items is not None else None
