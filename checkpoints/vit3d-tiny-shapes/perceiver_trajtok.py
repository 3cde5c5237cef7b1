"""Perceiver resamplers of TrajTok: the trajectory-query Perceiver (method spec §3) and the hard-mask refinement
Perceiver (§6), with 1D rotary position embedding over the flattened (latents; t, row, col) sequence.

Layer layout follows the official ``perceiver_resampler.py`` (Flamingo style): per layer, the latents attend to
keys/values from ``[latents ; features]``, then a gated (SiLU) feed-forward, both residual. Differences from the
official code, each an option of ``TrajTokConfig``:

- ``latent_norm_placement="final"`` (default): a standard residual stream with one LayerNorm on the output. The
  release instead re-applies that LayerNorm to the latents at the start of every layer (``"every_layer"``), which
  replaces the residual stream; converted checkpoints use it.
- ``rope_fraction=1.0`` (default): RoPE rotates all head dims; the release rotates the first half (0.5).

Hard-mask attention (§6): each pixel belongs to exactly one trajectory, so the masked attention of the K·n
refinement queries over ``[latents ; pixels]`` is computed per pixel with a *segment softmax*: each pixel is scored
against its own trajectory's n queries only, maxima and sums are reduced per trajectory with scatter ops, and the
values are accumulated with ``index_add``. That is O(N·n·D) work and memory instead of the O(K·n·N) of a dense
masked attention. :func:`dense_hard_mask_attention` is the dense reference kept for tests; the two agree to ≤ 1e-5
in outputs and gradients. Inactive trajectories (no pixel) still see their own sub-token latents, so no attention
row is ever empty and nothing produces NaN.

Values of the segment path are aggregated before they are projected: with ``x_p`` the normalised pixel features and
``W_v,h`` head h's rows of the value projection, ``Σ_p a_{k,h,p} W_v,h x_p = W_v,h Σ_p a_{k,h,p} x_p``. Every pixel
has weights for its own trajectory only (n·h of them), so the sum on the right is a sparse (K·n·h × N) by (N × D)
product (:class:`SegmentWeightedSum`, CSR) costing N·n·h·D instead of the N·D² of projecting every pixel's value,
and ``W_v`` is applied K·n times instead of N times. At the release size (D=512, 8 heads, n=1) that removes half of
the refinement's pixel projections; the keys cannot be treated this way because RoPE rotates each pixel's key by its
own position. Same result as projecting first up to float summation order (≤ 1e-5, tested against the dense path).

Streaming (inference on CPU only, :meth:`TrajTokPerceiverAttention._streams`): with no autograd graph to keep, the
pixel keys are projected, rotated and used in blocks of :data:`STREAM_BLOCK_PIXELS` rows (over all chunks of the
batch) instead of as (B·N, D) tensors — in the query Perceiver with an online softmax over the blocks
(:func:`streamed_context_attention`), in the refinement by computing the per-pixel segment scores block by block.
The blocks stay in the last-level cache: measured here at T = 64 (4 chunks of 16 frames at 224², release width;
interleaved A/B, ``benchmarks/bench_streaming.py``), query Perceiver 7.4 → 5.2 s, refinement 4.4 → 3.1 s, peak
memory −24 %; same outputs up to float order (≤ 1e-5, tested). The official code materialises every key.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer


def rotary_multiplier(num_positions: int, head_dim: int, rotary_dim: int, theta: float, device) -> torch.Tensor:
    """Complex RoPE multipliers (num_positions, head_dim/2) for interleaved pairs: pair i < rotary_dim/2 of position
    m is rotated by m·θ_i, θ_i = theta^(-2i/rotary_dim); pairs past rotary_dim are multiplied by 1 (not rotated).

    Computed in float32 on the fly (never a saved buffer: ``from_pretrained`` builds on the meta device; the
    release's fp16 positions also rounded indices above 2048). θ_i is evaluated as ``1 / theta^(2i/rotary_dim)``,
    rotary-embedding-torch's expression, so that converted release checkpoints get bitwise the same frequencies."""
    inv_freq = 1.0 / theta ** (torch.arange(0, rotary_dim, 2, device=device, dtype=torch.float32) / max(rotary_dim, 1))
    angles = torch.arange(num_positions, device=device, dtype=torch.float32)[:, None] * inv_freq[None, :]
    angles = F.pad(angles, (0, head_dim // 2 - angles.shape[1]))
    return torch.polar(torch.ones_like(angles), angles)


def apply_rotary(x: torch.Tensor, multiplier: torch.Tensor) -> torch.Tensor:
    """RoPE on x (B, S, h, d) with multipliers (S, d/2): the pair (x_2i, x_2i+1), read as the complex number
    x_2i + i·x_2i+1, is multiplied by e^{iθ}, i.e. (x_2i cos − x_2i+1 sin, x_2i+1 cos + x_2i sin) — one complex
    product instead of the usual rotate-half/concatenate."""
    pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))
    return torch.view_as_real(pairs * multiplier[:, None, :]).flatten(-2).to(x.dtype)


def dense_hard_mask_attention(
    query: torch.Tensor,
    latent_key: torch.Tensor,
    latent_value: torch.Tensor,
    pixel_key: torch.Tensor,
    pixel_value: torch.Tensor,
    trajectory_ids: torch.Tensor,
    tokens_per_trajectory: int,
    visible_last_pixels: int = 0,
) -> torch.Tensor:
    """Reference hard-mask attention with an explicit dense (L × (L+N)) boolean mask, through SDPA.

    Args:
        query, latent_key, latent_value: (B, h, L, d) with L = K·n, trajectory-major (slot l = k·n + s).
        pixel_key, pixel_value: (B, h, N, d).
        trajectory_ids: (B, N) long, the hard mask id_p ∈ [0, K).
        tokens_per_trajectory: n.
        visible_last_pixels: release quirk, the last E pixels are visible to every query.
    Returns:
        (B, h, L, d)
    """
    mask = hard_mask_allowed(trajectory_ids, query.shape[2], tokens_per_trajectory, visible_last_pixels)
    key = torch.cat((latent_key, pixel_key), dim=2)
    value = torch.cat((latent_value, pixel_value), dim=2)
    return F.scaled_dot_product_attention(query, key, value, attn_mask=mask[:, None])


def hard_mask_allowed(
    trajectory_ids: torch.Tensor, length: int, tokens_per_trajectory: int, visible_last_pixels: int = 0
) -> torch.Tensor:
    """The dense boolean mask (B, L, L + N) of §6 over ``[latents ; pixels]``: slot l = k·n + s sees the n sub-token
    latents of trajectory k and the pixels whose hard id is k (plus the last ``visible_last_pixels`` pixels)."""
    num_pixels = trajectory_ids.shape[1]
    slot_trajectory = torch.arange(length, device=trajectory_ids.device) // tokens_per_trajectory
    latent_allowed = slot_trajectory[:, None] == slot_trajectory[None, :]
    pixel_allowed = trajectory_ids[:, None, :] == slot_trajectory[None, :, None]
    if visible_last_pixels:
        pixel_allowed[..., num_pixels - visible_last_pixels :] = True
    return torch.cat((latent_allowed.expand(trajectory_ids.shape[0], -1, -1), pixel_allowed), dim=-1)


class SegmentWeightedSum(torch.autograd.Function):
    """``out[s, j] = Σ_{p: segment[p] = s} weights[p, j] · inputs[p]`` as one sparse CSR × dense product.

    ``weights`` (P, J), ``inputs`` (P, D), ``segment`` (P,) long in ``[0, S)`` → ``(S, J, D)``. Each pixel p is one
    CSR column with J non-zeros (rows ``segment[p]·J + j``), so the work is P·J·D multiply-adds whatever S is, with
    no (P, J, D) intermediate. Backward: the input gradient is the transposed product (a CSR matrix with J sorted
    non-zeros per row, built without sorting) and the weight gradient is one (P, D) row-dot per j."""

    @staticmethod
    def forward(ctx, weights, inputs, segment, num_segments: int):
        num_pixels, width = weights.shape
        rows = (segment[:, None] * width + torch.arange(width, device=segment.device)).reshape(-1)  # (P·J,)
        order = torch.argsort(rows, stable=True)  # CSR row order; stable keeps pixels ascending within a row
        counts = torch.bincount(rows, minlength=num_segments * width)
        crow = torch.cat((counts.new_zeros(1), counts.cumsum(0)))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            matrix = torch.sparse_csr_tensor(
                crow,
                torch.div(order, width, rounding_mode="floor"),
                weights.reshape(-1)[order],
                size=(num_segments * width, num_pixels),
                check_invariants=False,
            )
        ctx.save_for_backward(weights, inputs, segment)
        ctx.num_segments = num_segments
        return (matrix @ inputs).view(num_segments, width, inputs.shape[1])

    @staticmethod
    def backward(ctx, grad_output):
        weights, inputs, segment = ctx.saved_tensors
        num_pixels, width = weights.shape
        grad_output = grad_output.contiguous()
        grad_weights = grad_inputs = None
        if ctx.needs_input_grad[1]:
            device = segment.device
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
                transposed = torch.sparse_csr_tensor(
                    torch.arange(0, num_pixels * width + 1, width, device=device),
                    (segment[:, None] * width + torch.arange(width, device=device)).reshape(-1),
                    weights.reshape(-1),
                    size=(num_pixels, ctx.num_segments * width),
                    check_invariants=False,
                )
            grad_inputs = transposed @ grad_output.view(-1, grad_output.shape[-1])
        if ctx.needs_input_grad[0]:
            # A loop over the J = n·heads weight columns (≤ 64), each a gather + row-dot over the P pixels.
            grad_weights = torch.stack(
                [(grad_output[:, j].index_select(0, segment) * inputs).sum(-1) for j in range(width)], dim=1
            )
        return grad_weights, grad_inputs, None, None


# Pixel rows per block (over the whole batch of chunks) when the Perceivers stream their pixel keys (inference on
# CPU, see TrajTokPerceiverAttention): a block's normalised features, keys, values and scores (~4096·D floats each at
# D = 512) stay in the last-level cache instead of (B·N)-row tensors.
STREAM_BLOCK_PIXELS = 4096


def stream_block_pixels(batch: int) -> int:
    """Pixels of each sequence per streamed block: :data:`STREAM_BLOCK_PIXELS` rows over the ``batch`` sequences."""
    return max(1, STREAM_BLOCK_PIXELS // max(batch, 1))


# Sparse CSR × dense products exist for these dtypes on every backend; others project the values first.
_SPARSE_DTYPES = (torch.float32, torch.float64)


def segment_hard_mask_attention(
    query: torch.Tensor,
    latent_key: torch.Tensor,
    latent_value: torch.Tensor,
    pixel_key: torch.Tensor,
    pixel_value: torch.Tensor,
    trajectory_ids: torch.Tensor,
    tokens_per_trajectory: int,
    visible_last_pixels: int = 0,
    pixel_inputs: torch.Tensor | None = None,
    value_weight: torch.Tensor | None = None,
    num_pixels: int | None = None,
) -> torch.Tensor:
    """Hard-mask attention as a per-pixel segment softmax; same arguments and result as
    :func:`dense_hard_mask_attention`, without any (L × N) tensor.

    Instead of ``pixel_value`` (pass ``None``), the unprojected ``pixel_inputs`` (B, N, D_in) and the value projection
    ``value_weight`` (h·d, D_in) may be given: the values are then aggregated per trajectory before the projection
    (module docstring).

    ``pixel_key`` may also be a function ``(start, stop) -> (B, stop − start, h, d)`` giving the keys of pixels
    ``start:stop`` (``num_pixels`` then gives N): the per-pixel scores are then computed in blocks of
    :func:`stream_block_pixels` pixels, and only those (B·N, n, h) scores are kept, never an (N, D) key or gathered-query
    tensor."""
    if pixel_value is None:
        if pixel_inputs is None or value_weight is None:
            raise ValueError("segment_hard_mask_attention needs pixel_value, or pixel_inputs and value_weight")
        if pixel_inputs.dtype not in _SPARSE_DTYPES:
            pixel_value = F.linear(pixel_inputs, value_weight).unflatten(-1, (query.shape[1], -1)).transpose(1, 2)
    batch, heads, length, dim = query.shape
    n = tokens_per_trajectory
    num_traj = length // n
    streamed_keys = callable(pixel_key)
    if streamed_keys:
        if num_pixels is None:
            raise ValueError("segment_hard_mask_attention: a pixel_key function needs num_pixels")
        key_of = pixel_key
    else:
        num_pixels = pixel_key.shape[2]
        k_pix = pixel_key.permute(0, 2, 1, 3)  # (B, N, h, d)
        key_of = lambda start, stop: k_pix[:, start:stop]  # noqa: E731
    scale = 1.0 / math.sqrt(dim)

    # (B, K, n, h, d): trajectory-major slots split into (trajectory, sub-token).
    q = query.permute(0, 2, 1, 3).reshape(batch, num_traj, n, heads, dim)
    k_lat = latent_key.permute(0, 2, 1, 3).reshape(batch, num_traj, n, heads, dim)
    v_lat = latent_value.permute(0, 2, 1, 3).reshape(batch, num_traj, n, heads, dim)
    v_pix = pixel_value.permute(0, 2, 1, 3) if pixel_value is not None else None

    # Latent keys: each sub-token sees the n sub-tokens of its own trajectory (block-diagonal).
    s_lat = torch.einsum("bkqhd,bkmhd->bkqmh", q, k_lat) * scale  # (B, K, n, n, h)

    # Pixel keys: each pixel against its own trajectory's n queries only.
    batch_ids = trajectory_ids + torch.arange(batch, device=query.device)[:, None] * num_traj  # (B, N)
    flat_ids = batch_ids.reshape(-1)
    q_flat = q.reshape(batch * num_traj, n, heads, dim)

    def pixel_scores(start: int, stop: int) -> torch.Tensor:  # (B, stop − start, n, h)
        q_of_pixel = q_flat.index_select(0, batch_ids[:, start:stop].reshape(-1))  # (B·P, n, h, d)
        keys = key_of(start, stop).reshape(-1, heads, dim)
        return torch.einsum("pqhd,phd->pqh", q_of_pixel, keys).view(batch, stop - start, n, heads) * scale

    if streamed_keys:
        block = stream_block_pixels(batch)
        s_pix = torch.cat(
            [pixel_scores(start, min(start + block, num_pixels)) for start in range(0, num_pixels, block)], dim=1
        )
    else:
        s_pix = pixel_scores(0, num_pixels)
    s_pix = s_pix.reshape(batch * num_pixels, n, heads)

    segment_count = batch * num_traj
    if visible_last_pixels:
        # The release exposes the clip's last E pixels to every query: treat them as shared dense keys and take
        # them out of the per-trajectory segments so that no pixel is counted twice.
        k_ext = key_of(num_pixels - visible_last_pixels, num_pixels)
        if v_pix is not None:
            v_ext = v_pix[:, num_pixels - visible_last_pixels :]
        else:
            v_ext = F.linear(pixel_inputs[:, num_pixels - visible_last_pixels :], value_weight).unflatten(
                -1, (heads, dim)
            )
        s_ext = torch.einsum("bkqhd,behd->bkqeh", q, k_ext) * scale  # (B, K, n, E, h)
        in_segment = torch.ones(batch, num_pixels, dtype=torch.bool, device=query.device)
        in_segment[:, num_pixels - visible_last_pixels :] = False
        s_pix = s_pix.masked_fill(~in_segment.reshape(-1, 1, 1), float("-inf"))

    # Softmax is shift-invariant: a detached per-row maximum keeps it stable and leaves gradients exact.
    with torch.no_grad():
        row_max = s_lat.amax(dim=3)  # (B, K, n, h)
        pix_max = torch.full((segment_count, n, heads), float("-inf"), dtype=s_pix.dtype, device=s_pix.device)
        pix_max = pix_max.scatter_reduce(0, flat_ids.view(-1, 1, 1).expand_as(s_pix), s_pix, "amax")
        row_max = torch.maximum(row_max, pix_max.view(batch, num_traj, n, heads))
        if visible_last_pixels:
            row_max = torch.maximum(row_max, s_ext.amax(dim=3))

    e_lat = torch.exp(s_lat - row_max[:, :, :, None])  # (B, K, n, n, h)
    e_pix = torch.exp(s_pix - row_max.reshape(segment_count, n, heads).index_select(0, flat_ids))  # (B·N, n, h)

    denominator = e_lat.sum(dim=3).reshape(segment_count, n, heads)
    denominator = denominator.index_add(0, flat_ids, e_pix)
    numerator = torch.einsum("bkqmh,bkmhd->bkqhd", e_lat, v_lat).reshape(segment_count, n, heads, dim)
    if v_pix is not None:
        numerator = numerator.index_add(0, flat_ids, e_pix[..., None] * v_pix.reshape(-1, 1, heads, dim))
    else:
        summed = SegmentWeightedSum.apply(  # weights in the inputs' dtype: under autocast the scores may be bf16
            e_pix.reshape(batch * num_pixels, n * heads).to(pixel_inputs.dtype),
            pixel_inputs.reshape(batch * num_pixels, -1),
            flat_ids,
            segment_count,
        ).view(segment_count, n, heads, -1)  # Σ_p e·x per (trajectory, sub-token, head): (B·K, n, h, D_in)
        numerator = numerator + torch.einsum("gshi,hdi->gshd", summed, value_weight.view(heads, dim, -1))
    if visible_last_pixels:
        e_ext = torch.exp(s_ext - row_max[:, :, :, None])
        denominator = denominator + e_ext.sum(dim=3).reshape(segment_count, n, heads)
        numerator = numerator + torch.einsum("bkqeh,behd->bkqhd", e_ext, v_ext).reshape(segment_count, n, heads, dim)

    out = numerator / denominator[..., None]  # (B·K, n, h, d)
    return out.reshape(batch, length, heads, dim).permute(0, 2, 1, 3)


def eager_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, allowed: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q·kᵀ/√d)·v written out: (output (B, h, L, d), weights (B, h, L, S)), the ``attn_implementation=
    "eager"`` path and the one that returns attention maps. ``allowed`` (B, L, S) bool masks keys out (the §6 hard
    mask; every row keeps its own latents, so no row is empty). Same result as SDPA up to float rounding; it rounds
    like the official einsum/softmax Perceiver (converted checkpoints reproduce the release's scale-20 assignment
    logits ~3× closer with it), at the cost of an (L × S) score tensor."""
    scores = torch.matmul(query, key.transpose(-1, -2)) * query.shape[-1] ** -0.5
    if allowed is not None:
        scores = scores.masked_fill(~allowed[:, None], float("-inf"))
    weights = scores.softmax(dim=-1)
    return torch.matmul(weights, value), weights


def streamed_context_attention(
    query: torch.Tensor,
    latent_key: torch.Tensor,
    latent_value: torch.Tensor,
    num_pixels: int,
    project_context,
    block_pixels: int | None = None,
) -> torch.Tensor:
    """softmax(q·[k_lat ; k_ctx]ᵀ/√d)·[v_lat ; v_ctx] with the context keys/values made block by block.

    ``query``, ``latent_key``, ``latent_value``: (B, h, L, d). ``project_context(start, stop)`` returns the keys and
    values (B, h, stop − start, d) of context rows ``start:stop`` out of ``num_pixels`` (norm, projection and RoPE of
    those rows only).
    An online softmax (running maximum, rescaled sums) merges the blocks, so no (B, N, 2D) key/value tensor and no
    (L, N) score matrix is ever materialised: the work of each block stays in cache. Same result as one SDPA call
    over the concatenated keys up to float summation order (≤ 1e-5, tested)."""
    block_pixels = block_pixels or stream_block_pixels(query.shape[0])
    scale = query.shape[-1] ** -0.5
    q = query * scale
    scores = torch.matmul(q, latent_key.transpose(-1, -2))
    running_max = scores.amax(dim=-1, keepdim=True)
    weights = torch.exp(scores - running_max)
    denominator = weights.sum(dim=-1, keepdim=True)
    numerator = torch.matmul(weights, latent_value)
    for start in range(0, num_pixels, block_pixels):
        key, value = project_context(start, min(start + block_pixels, num_pixels))
        scores = torch.matmul(q, key.transpose(-1, -2))
        new_max = torch.maximum(running_max, scores.amax(dim=-1, keepdim=True))
        correction = torch.exp(running_max - new_max)
        weights = torch.exp(scores - new_max)
        denominator = denominator * correction + weights.sum(dim=-1, keepdim=True)
        numerator = numerator * correction + torch.matmul(weights, value)
        running_max = new_max
    return numerator / denominator


class TrajTokPerceiverAttention(nn.Module):
    """Latents attend to ``[latents ; context]`` (Flamingo); no biases, as the release.

    Without a hard mask the attention runs through SDPA, or written out when ``config._attn_implementation`` is
    ``"eager"`` (``from_pretrained(..., attn_implementation="eager")``); the hard-mask path is the segment softmax."""

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

    @staticmethod
    def _streams(context: torch.Tensor) -> bool:
        """Inference on CPU over more than :data:`STREAM_BLOCK_PIXELS` pixel rows (all chunks of the batch
        together): the pixel keys (and, without a hard mask, values) are made and used in cache-sized blocks instead
        of as (B·N, D) tensors. Without autograd nothing must be kept for a backward pass, so blocks cost no
        recomputation; training keeps the one-shot path."""
        return (
            not torch.is_grad_enabled()
            and context.device.type == "cpu"
            and context.shape[0] * context.shape[1] > STREAM_BLOCK_PIXELS
        )

    def _latent_keys_values(self, latents: torch.Tensor, rope: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys (rotated at the latents' positions 0..L−1) and values of the (normalised) latents, (B, h, L, d) each:
        the latent half of ``[latents ; context]`` for the paths that handle the pixels apart."""
        heads = (self.num_heads, self.head_dim)
        key, value = self.to_kv(latents).unflatten(-1, (2, -1)).unbind(2)
        return (
            apply_rotary(key.unflatten(-1, heads), rope[: latents.shape[1]]).transpose(1, 2),
            value.unflatten(-1, heads).transpose(1, 2),
        )

    def forward(
        self,
        latents: torch.Tensor,
        context: torch.Tensor,
        rope: torch.Tensor,
        hard_mask: dict | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Returns the attention output (B, L, D) and, with ``output_attentions``, the weights (B, h, L, L + N) over
        ``[latents ; context]`` (computed written out, whatever the attention implementation)."""
        num_latents = latents.shape[1]
        latents = self.norm_latents(latents)
        heads = (self.num_heads, self.head_dim)
        query = apply_rotary(self.to_q(latents).unflatten(-1, heads), rope[:num_latents]).transpose(1, 2)
        if output_attentions:
            key, value = self._keys_values(latents, context, rope)
            allowed = None
            if hard_mask is not None:
                allowed = hard_mask_allowed(
                    hard_mask["trajectory_ids"],
                    num_latents,
                    hard_mask["tokens_per_trajectory"],
                    hard_mask["visible_last_pixels"],
                )
            out, weights = eager_attention(query, key, value, allowed)
            return self._merge_heads(out), weights
        if hard_mask is not None and hard_mask["implementation"] == "segment":
            # Pixel values are aggregated per trajectory before W_v (module docstring): project only their keys.
            key_weight, value_weight = self.to_kv.weight.chunk(2, dim=0)
            context = self.norm_media(context)
            pixel_rope = rope[num_latents:]

            def pixel_key(start: int, stop: int) -> torch.Tensor:  # (B, stop − start, h, d)
                return apply_rotary(
                    F.linear(context[:, start:stop], key_weight).unflatten(-1, heads), pixel_rope[start:stop]
                )

            if not self._streams(context):
                pixel_key = pixel_key(0, context.shape[1]).transpose(1, 2)
            out = segment_hard_mask_attention(
                query,
                *self._latent_keys_values(latents, rope),
                pixel_key,
                None,
                hard_mask["trajectory_ids"],
                hard_mask["tokens_per_trajectory"],
                hard_mask["visible_last_pixels"],
                pixel_inputs=context,
                value_weight=value_weight,
                num_pixels=context.shape[1],
            )
            return self._merge_heads(out), None
        eager = self.config is not None and getattr(self.config, "_attn_implementation", None) == "eager"
        if hard_mask is None and not eager and self._streams(context):

            def project_context(start: int, stop: int):
                block_key, block_value = (
                    self.to_kv(self.norm_media(context[:, start:stop])).unflatten(-1, (2, -1)).unbind(2)
                )
                positions = rope[num_latents + start : num_latents + stop]
                return (
                    apply_rotary(block_key.unflatten(-1, heads), positions).transpose(1, 2),
                    block_value.unflatten(-1, heads).transpose(1, 2),
                )

            out = streamed_context_attention(
                query,
                *self._latent_keys_values(latents, rope),
                context.shape[1],
                project_context,
            )
            return self._merge_heads(out), None
        key, value = self._keys_values(latents, context, rope)
        if hard_mask is None:
            if eager:
                out = eager_attention(query, key, value)[0]
            else:
                out = F.scaled_dot_product_attention(query, key, value)
        else:
            out = dense_hard_mask_attention(
                query,
                key[:, :, :num_latents],
                value[:, :, :num_latents],
                key[:, :, num_latents:],
                value[:, :, num_latents:],
                hard_mask["trajectory_ids"],
                hard_mask["tokens_per_trajectory"],
                hard_mask["visible_last_pixels"],
            )
        return self._merge_heads(out), None

    def _keys_values(self, latents: torch.Tensor, context: torch.Tensor, rope: torch.Tensor):
        """Rotated keys and values (B, h, L + N, d) of ``[latents ; context]`` (latents already normalised). One
        projection over the concatenation (positions 0..L+N-1) instead of two plus a concatenation of keys."""
        heads = (self.num_heads, self.head_dim)
        key, value = self.to_kv(torch.cat((latents, self.norm_media(context)), dim=1)).unflatten(-1, (2, -1)).unbind(2)
        return apply_rotary(key.unflatten(-1, heads), rope).transpose(1, 2), value.unflatten(-1, heads).transpose(1, 2)

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
    """A Perceiver resampler over a flattened space-time feature sequence (§3 and §6).

    ``forward(latents (B, L, D), context (B, N, D), hard_mask=None) -> (B, L, D)``. With ``hard_mask`` (a dict with
    ``trajectory_ids`` (B, N), ``tokens_per_trajectory``, ``visible_last_pixels`` and ``implementation`` ∈
    {"segment", "dense"}) each latent slot sees only its own trajectory's pixels and sub-tokens.

    With ``output_hidden_states`` or ``output_attentions`` it returns ``(latents, hidden_states, attentions)``:
    hidden_states = the latents entering the first layer and leaving each layer (before the final LayerNorm),
    depth + 1 tensors (B, L, D); attentions = each layer's weights (B, h, L, L + N) over ``[latents ; context]``
    (None where not asked for).
    """

    def __init__(self, config, depth: int):
        super().__init__()
        hidden = config.hidden_size
        self.norm_context = nn.LayerNorm(hidden, eps=1e-6)
        self.norm_latents = nn.LayerNorm(hidden, eps=1e-6)
        self.layers = nn.ModuleList(
            TrajTokPerceiverLayer(hidden, config.num_attention_heads, config.perceiver_ff_mult, config)
            for _ in range(depth)
        )
        self.latent_norm_placement = config.latent_norm_placement
        self.head_dim = config.head_dim
        self.rotary_dim = int(config.head_dim * config.rope_fraction)
        self.rope_theta = config.rope_theta

    def forward(
        self,
        latents: torch.Tensor,
        context: torch.Tensor,
        hard_mask: dict | None = None,
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
