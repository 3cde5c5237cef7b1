"""Attention kernels of the TrajTok Perceivers (paper Sec. 3): the 1D rotary position embedding, the hard mask of the
refinement Perceiver (:class:`HardMask`) and one attention function per mode.

The latents of a Perceiver layer attend to ``[latents ; context]``. The modes, chosen per call by
``TrajTokPerceiverAttention`` (``perceiver_trajtok.py``):

- no mask: SDPA, the written-out softmax (:func:`eager_attention`, which also returns the weights), or, at inference
  on CPU, the context streamed in blocks (:func:`streamed_context_attention`);
- hard mask, segment form (the default): :func:`segment_hard_mask_attention`, optionally with streamed pixel keys;
- hard mask, dense form: :func:`dense_hard_mask_attention`, a boolean (L × (L + N)) mask through SDPA, the reference.

Hard-mask attention (paper Sec. 3, refinement): each pixel belongs to exactly one trajectory (its hard id
``id_p = argmax_k ℓ_{p,k}`` of Eq. (1)), so the masked attention of the K·n refinement queries over
``[latents ; pixels]`` is computed per pixel with a *segment softmax*: each pixel is scored against its own
trajectory's n queries only, maxima and sums are reduced per trajectory with scatter ops, and the values are
accumulated with ``index_add``. That is O(N·n·D) work and memory instead of the O(K·n·N) of a dense masked attention.
The dense form is kept for tests; the two agree to ≤ 1e-5 in outputs and gradients. Inactive trajectories (no pixel)
still see their own sub-token latents, so no attention row is ever empty and nothing produces NaN.

Values of the segment form are aggregated before they are projected: with ``x_p`` the normalised pixel features and
``W_v,h`` head h's rows of the value projection, ``Σ_p a_{k,h,p} W_v,h x_p = W_v,h Σ_p a_{k,h,p} x_p``. Every pixel
has weights for its own trajectory only (n·h of them), so the sum on the right is a sparse (K·n·h × N) by (N × D)
product (:class:`SegmentWeightedSum`, CSR) costing N·n·h·D instead of the N·D² of projecting every pixel's value,
and ``W_v`` is applied K·n times instead of N times. At the release size (D=512, 8 heads, n=1) that removes half of
the refinement's pixel projections; the keys cannot be treated this way because RoPE rotates each pixel's key by its
own position. Same result as projecting first up to float summation order (≤ 1e-5, tested against the dense form).

Streaming (inference on CPU only, :func:`streams_pixels`): with no autograd graph to keep, the pixel keys are
projected, rotated and used in blocks of :data:`STREAM_BLOCK_PIXELS` rows (over all chunks of the batch) instead of
as (B·N, D) tensors — without a mask by attending to each block on its own and merging the blocks by their
log-sum-exps (:func:`streamed_context_attention`; on CPU PyTorch's flash-attention kernel attends to a block), with
the hard mask by computing the per-pixel segment scores block by block. The blocks stay in the last-level cache; the
outputs are the same up to float summation order (≤ 1e-5, tested). The official code materialises every key.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = [
    "STREAM_BLOCK_PIXELS",
    "HardMask",
    "SegmentWeightedSum",
    "apply_rotary",
    "attention_with_log_sum_exp",
    "dense_hard_mask_attention",
    "eager_attention",
    "hard_mask_allowed",
    "rotary_multiplier",
    "segment_hard_mask_attention",
    "stream_block_pixels",
    "streamed_context_attention",
    "streams_pixels",
]

# Pixel rows per block (over the whole batch of chunks) when the Perceivers stream their pixel keys (inference on
# CPU, :func:`streams_pixels`): a block's normalised features, keys, values and scores (~4096·D floats each at
# D = 512) stay in the last-level cache instead of (B·N)-row tensors.
STREAM_BLOCK_PIXELS = 4096

# Sparse CSR × dense products exist for these dtypes on every backend; others project the values first.
_SPARSE_DTYPES = (torch.float32, torch.float64)

# ``(start, stop) -> (B, stop − start, h, d)``: keys or values of context rows ``start:stop``, made on demand.
RowsFunction = Callable[[int, int], torch.Tensor]


# ---------------------------------------------------------------------------------------------------------------------
# Rotary position embedding


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


# ---------------------------------------------------------------------------------------------------------------------
# The hard mask


@dataclass(frozen=True)
class HardMask:
    """The hard mask of the refinement Perceiver (paper Sec. 3): latent slot ``l = k·n + s`` (trajectory k, sub-token
    s) attends to the n sub-token latents of trajectory k and to the context positions p whose hard id
    ``id_p = argmax_k ℓ_{p,k}`` (Eq. (1)) is k.

    Attributes:
        trajectory_ids (`torch.LongTensor` of shape `(batch, num_pixels)`):
            The hard id ``id_p ∈ [0, K)`` of every context position, in the context's (t, row, col) order.
        tokens_per_trajectory (`int`):
            n, the latent slots (sub-tokens) of each trajectory; the K·n latents are trajectory-major.
        visible_last_pixels (`int`, *optional*, defaults to 0):
            E, a quirk of the official release: the context's last E positions are visible to every slot.
        implementation (`str`, *optional*, defaults to `"segment"`):
            `"segment"` (per-pixel segment softmax, :func:`segment_hard_mask_attention`) or `"dense"` (boolean mask
            through SDPA, :func:`dense_hard_mask_attention`).
    """

    trajectory_ids: torch.Tensor
    tokens_per_trajectory: int
    visible_last_pixels: int = 0
    implementation: str = "segment"

    def allowed(self, num_latents: int) -> torch.Tensor:
        """The dense boolean mask (B, L, L + N) over ``[latents ; pixels]`` (:func:`hard_mask_allowed`)."""
        return hard_mask_allowed(self.trajectory_ids, num_latents, self.tokens_per_trajectory, self.visible_last_pixels)


def hard_mask_allowed(
    trajectory_ids: torch.Tensor, length: int, tokens_per_trajectory: int, visible_last_pixels: int = 0
) -> torch.Tensor:
    """The dense boolean mask (B, L, L + N) of the hard mask over ``[latents ; pixels]``: slot l = k·n + s sees the
    n sub-token latents of trajectory k and the pixels whose hard id is k (plus the last ``visible_last_pixels``
    pixels)."""
    num_pixels = trajectory_ids.shape[1]
    slot_trajectory = torch.arange(length, device=trajectory_ids.device) // tokens_per_trajectory
    latent_allowed = slot_trajectory[:, None] == slot_trajectory[None, :]
    pixel_allowed = trajectory_ids[:, None, :] == slot_trajectory[None, :, None]
    if visible_last_pixels:
        pixel_allowed[..., num_pixels - visible_last_pixels :] = True
    return torch.cat((latent_allowed.expand(trajectory_ids.shape[0], -1, -1), pixel_allowed), dim=-1)


# ---------------------------------------------------------------------------------------------------------------------
# Streaming


def streams_pixels(context: torch.Tensor) -> bool:
    """Whether the pixel keys of ``context`` (B, N, D) are made and used in blocks: at inference on CPU over more
    than :data:`STREAM_BLOCK_PIXELS` pixel rows (all chunks of the batch together). Without autograd nothing must be
    kept for a backward pass, so blocks cost no recomputation; training keeps the one-shot path."""
    return (
        not torch.is_grad_enabled()
        and context.device.type == "cpu"
        and context.shape[0] * context.shape[1] > STREAM_BLOCK_PIXELS
    )


def stream_block_pixels(batch: int) -> int:
    """Pixels of each sequence per streamed block: :data:`STREAM_BLOCK_PIXELS` rows over the ``batch`` sequences."""
    return max(1, STREAM_BLOCK_PIXELS // max(batch, 1))


# ---------------------------------------------------------------------------------------------------------------------
# Plain attention over [latents ; context]


def eager_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, allowed: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q·kᵀ/√d)·v written out: (output (B, h, L, d), weights (B, h, L, S)), the ``attn_implementation=
    "eager"`` path and the one that returns attention maps. ``allowed`` (B, L, S) bool masks keys out (the hard
    mask; every row keeps its own latents, so no row is empty). Same result as SDPA up to float rounding; it rounds
    like the official einsum/softmax Perceiver (converted checkpoints reproduce the release's scale-20 assignment
    logits ~3× closer with it), at the cost of an (L × S) score tensor."""
    scores = torch.matmul(query, key.transpose(-1, -2)) * query.shape[-1] ** -0.5
    if allowed is not None:
        scores = scores.masked_fill(~allowed[:, None], float("-inf"))
    weights = scores.softmax(dim=-1)
    return torch.matmul(weights, value), weights


def _cpu_flash_attention():
    """PyTorch's CPU flash-attention kernel (the one SDPA dispatches to on CPU), which also returns the log-sum-exp of
    each query row; None where this PyTorch build lacks it."""
    try:
        return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default
    except (AttributeError, RuntimeError):
        return None


_CPU_FLASH_ATTENTION = _cpu_flash_attention()
_CPU_FLASH_DTYPES = (torch.float32, torch.bfloat16)


def attention_with_log_sum_exp(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q·kᵀ·scale)·v (B, h, L, d) and the log-sum-exp of each row's scores (B, h, L), at least float32.

    On CPU in float32 / bfloat16 this is one call of PyTorch's CPU flash-attention kernel: it reads ``key`` and
    ``value`` through their strides (no layout copies, which bfloat16 batched matmuls make for the (B, n, h, d) →
    (B, h, n, d) views of projected keys) and fuses the softmax, accumulating in float32. Elsewhere the scores are
    written out, with the softmax in at least float32."""
    if (
        _CPU_FLASH_ATTENTION is not None
        and query.device.type == "cpu"
        and query.dtype in _CPU_FLASH_DTYPES
        and key.dtype == value.dtype == query.dtype
    ):
        return _CPU_FLASH_ATTENTION(query, key, value, scale=scale)
    accumulate = torch.promote_types(query.dtype, torch.float32)
    scores = torch.matmul(query, key.transpose(-1, -2)).to(accumulate) * scale
    log_sum_exp = torch.logsumexp(scores, dim=-1)
    weights = torch.exp(scores - log_sum_exp[..., None])
    return torch.matmul(weights.to(value.dtype), value), log_sum_exp


def streamed_context_attention(
    query: torch.Tensor,
    latent_key: torch.Tensor,
    latent_value: torch.Tensor,
    num_pixels: int,
    project_context: Callable[[int, int], tuple[torch.Tensor, torch.Tensor]],
    block_pixels: int | None = None,
) -> torch.Tensor:
    """softmax(q·[k_lat ; k_ctx]ᵀ/√d)·[v_lat ; v_ctx] with the context keys/values made block by block.

    ``query``, ``latent_key``, ``latent_value``: (B, h, L, d). ``project_context(start, stop)`` returns the keys and
    values (B, h, stop − start, d) of context rows ``start:stop`` out of ``num_pixels`` (norm, projection and RoPE of
    those rows only); they may be strided views (heads transposed out of the projection's (B, n, h·d) output).
    Each block is attended on its own (:func:`attention_with_log_sum_exp`: on CPU the flash kernel), and the blocks
    are merged by their log-sum-exps in at least float32: o = Σ_b e^{lse_b − lse} o_b, lse = log Σ_b e^{lse_b}. So no
    (B, N, 2D) key/value tensor and no (L, N) score matrix is ever materialised: the work of each block stays in
    cache. Same result as one SDPA call over the concatenated keys up to float summation order (≤ 1e-5, tested)."""
    block_pixels = block_pixels or stream_block_pixels(query.shape[0])
    scale = query.shape[-1] ** -0.5
    out, log_sum_exp = attention_with_log_sum_exp(query, latent_key, latent_value, scale)
    accumulated = out.to(log_sum_exp.dtype)
    for start in range(0, num_pixels, block_pixels):
        key, value = project_context(start, min(start + block_pixels, num_pixels))
        block_out, block_log_sum_exp = attention_with_log_sum_exp(query, key, value, scale)
        merged = torch.logaddexp(log_sum_exp, block_log_sum_exp)
        accumulated = accumulated * torch.exp(log_sum_exp - merged)[..., None]
        accumulated = accumulated + block_out * torch.exp(block_log_sum_exp - merged)[..., None]
        log_sum_exp = merged
    return accumulated.to(query.dtype)


# ---------------------------------------------------------------------------------------------------------------------
# Hard-mask attention: the dense reference


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


# ---------------------------------------------------------------------------------------------------------------------
# Hard-mask attention: the segment softmax


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
        matrix = _sparse_csr(
            crow,
            torch.div(order, width, rounding_mode="floor"),
            weights.reshape(-1)[order],
            (num_segments * width, num_pixels),
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
            transposed = _sparse_csr(
                torch.arange(0, num_pixels * width + 1, width, device=device),
                (segment[:, None] * width + torch.arange(width, device=device)).reshape(-1),
                weights.reshape(-1),
                (num_pixels, ctx.num_segments * width),
            )
            grad_inputs = transposed @ grad_output.view(-1, grad_output.shape[-1])
        if ctx.needs_input_grad[0]:
            # A loop over the J = n·heads weight columns (≤ 64), each a gather + row-dot over the P pixels.
            grad_weights = torch.stack(
                [(grad_output[:, j].index_select(0, segment) * inputs).sum(-1) for j in range(width)], dim=1
            )
        return grad_weights, grad_inputs, None, None


def _sparse_csr(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A CSR matrix from indices built valid by construction (no invariant check, no beta warning)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, col, values, size=size, check_invariants=False)


def segment_hard_mask_attention(
    query: torch.Tensor,
    latent_key: torch.Tensor,
    latent_value: torch.Tensor,
    pixel_key: torch.Tensor | RowsFunction,
    pixel_value: torch.Tensor | None,
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
    :func:`stream_block_pixels` pixels, and only those (B·N, n, h) scores are kept, never an (N, D) key or
    gathered-query tensor."""
    pixel_value = _projected_pixel_values(query.shape[1], pixel_value, pixel_inputs, value_weight)
    key_of, num_pixels, streamed = _pixel_key_reader(pixel_key, num_pixels)
    batch, heads, length, dim = query.shape
    n = tokens_per_trajectory
    num_traj = length // n
    scale = 1.0 / math.sqrt(dim)
    q, k_lat, v_lat = (_trajectory_major(x, num_traj, n) for x in (query, latent_key, latent_value))

    # Latent keys: each sub-token sees the n sub-tokens of its own trajectory (block-diagonal).
    s_lat = torch.einsum("bkqhd,bkmhd->bkqmh", q, k_lat) * scale  # (B, K, n, n, h)
    # Pixel keys: each pixel against its own trajectory's n queries only.
    batch_ids = trajectory_ids + torch.arange(batch, device=query.device)[:, None] * num_traj  # (B, N)
    flat_ids = batch_ids.reshape(-1)
    s_pix = _segment_pixel_scores(q, batch_ids, key_of, num_pixels, streamed, scale)  # (B·N, n, h)
    shared = None
    if visible_last_pixels:
        # The release exposes the clip's last E pixels to every query: they are shared dense keys, taken out of the
        # per-trajectory segments so that no pixel is counted twice.
        first = num_pixels - visible_last_pixels
        s_ext = torch.einsum("bkqhd,behd->bkqeh", q, key_of(first, num_pixels)) * scale  # (B, K, n, E, h)
        shared = (s_ext, _pixel_values_from(first, heads, pixel_value, pixel_inputs, value_weight))
        s_pix = _exclude_last_pixels(s_pix, batch, first)

    row_max = _segment_row_max(s_lat, s_pix, flat_ids, shared)  # (B, K, n, h)
    segment_count = batch * num_traj
    e_lat = torch.exp(s_lat - row_max[:, :, :, None])  # (B, K, n, n, h)
    e_pix = torch.exp(s_pix - row_max.reshape(segment_count, n, heads).index_select(0, flat_ids))  # (B·N, n, h)

    denominator = e_lat.sum(dim=3).reshape(segment_count, n, heads)
    denominator = denominator.index_add(0, flat_ids, e_pix)
    numerator = torch.einsum("bkqmh,bkmhd->bkqhd", e_lat, v_lat).reshape(segment_count, n, heads, dim)
    numerator = _add_pixel_values(numerator, e_pix, flat_ids, pixel_value, pixel_inputs, value_weight)
    if shared is not None:
        s_ext, v_ext = shared
        e_ext = torch.exp(s_ext - row_max[:, :, :, None])
        denominator = denominator + e_ext.sum(dim=3).reshape(segment_count, n, heads)
        numerator = numerator + torch.einsum("bkqeh,behd->bkqhd", e_ext, v_ext).reshape(segment_count, n, heads, dim)

    out = numerator / denominator[..., None]  # (B·K, n, h, d)
    return out.reshape(batch, length, heads, dim).permute(0, 2, 1, 3)


def _projected_pixel_values(
    heads: int, pixel_value: torch.Tensor | None, pixel_inputs: torch.Tensor | None, value_weight: torch.Tensor | None
) -> torch.Tensor | None:
    """The pixel values (B, h, N, d) to attend to, or None where they are aggregated before the projection (given
    ``pixel_inputs`` and ``value_weight`` in a dtype that sparse products support)."""
    if pixel_value is not None:
        return pixel_value
    if pixel_inputs is None or value_weight is None:
        raise ValueError("segment_hard_mask_attention needs pixel_value, or pixel_inputs and value_weight")
    if pixel_inputs.dtype in _SPARSE_DTYPES:
        return None
    return F.linear(pixel_inputs, value_weight).unflatten(-1, (heads, -1)).transpose(1, 2)


def _pixel_key_reader(pixel_key: torch.Tensor | RowsFunction, num_pixels: int | None) -> tuple[RowsFunction, int, bool]:
    """``pixel_key`` (a (B, h, N, d) tensor or a function of a pixel range) as a function of a pixel range returning
    (B, stop − start, h, d), with N and whether the keys are streamed (made on demand)."""
    if callable(pixel_key):
        if num_pixels is None:
            raise ValueError("segment_hard_mask_attention: a pixel_key function needs num_pixels")
        return pixel_key, num_pixels, True
    k_pix = pixel_key.permute(0, 2, 1, 3)  # (B, N, h, d)
    return lambda start, stop: k_pix[:, start:stop], pixel_key.shape[2], False


def _trajectory_major(x: torch.Tensor, num_traj: int, n: int) -> torch.Tensor:
    """(B, h, K·n, d) with trajectory-major slots → (B, K, n, h, d), split into (trajectory, sub-token)."""
    batch, heads, _, dim = x.shape
    return x.permute(0, 2, 1, 3).reshape(batch, num_traj, n, heads, dim)


def _segment_pixel_scores(
    q: torch.Tensor, batch_ids: torch.Tensor, key_of: RowsFunction, num_pixels: int, streamed: bool, scale: float
) -> torch.Tensor:
    """Scaled scores (B·N, n, h) of each pixel against the n queries ``q`` (B, K, n, h, d) of its own trajectory
    (``batch_ids`` (B, N): its row in the (B·K) trajectories), in blocks of pixels when the keys are streamed."""
    batch, num_traj, n, heads, dim = q.shape
    q_flat = q.reshape(batch * num_traj, n, heads, dim)

    def pixel_scores(start: int, stop: int) -> torch.Tensor:  # (B, stop − start, n, h)
        q_of_pixel = q_flat.index_select(0, batch_ids[:, start:stop].reshape(-1))  # (B·P, n, h, d)
        keys = key_of(start, stop).reshape(-1, 1, heads, dim)
        # One dot product per (pixel, sub-token, head): an elementwise product and a sum over d. As an einsum it
        # becomes a batched matmul of (1 × d)·(d × 1) matrices, which bfloat16 runs several times slower.
        return torch.linalg.vecdot(q_of_pixel, keys).view(batch, stop - start, n, heads) * scale

    if streamed:
        block = stream_block_pixels(batch)
        s_pix = torch.cat(
            [pixel_scores(start, min(start + block, num_pixels)) for start in range(0, num_pixels, block)], dim=1
        )
    else:
        s_pix = pixel_scores(0, num_pixels)
    return s_pix.reshape(batch * num_pixels, n, heads)


def _pixel_values_from(
    first: int,
    heads: int,
    pixel_value: torch.Tensor | None,
    pixel_inputs: torch.Tensor | None,
    value_weight: torch.Tensor | None,
) -> torch.Tensor:
    """Values (B, N − first, h, d) of the pixels from ``first`` on: sliced from ``pixel_value`` (B, h, N, d), or
    projected from ``pixel_inputs`` with ``value_weight`` where the values are aggregated before the projection."""
    if pixel_value is not None:
        return pixel_value.permute(0, 2, 1, 3)[:, first:]
    return F.linear(pixel_inputs[:, first:], value_weight).unflatten(-1, (heads, -1))


def _exclude_last_pixels(s_pix: torch.Tensor, batch: int, first: int) -> torch.Tensor:
    """Per-pixel scores (B·N, n, h) with those of the pixels from ``first`` on (the shared dense keys) set to −∞."""
    in_segment = torch.ones(batch, s_pix.shape[0] // batch, dtype=torch.bool, device=s_pix.device)
    in_segment[:, first:] = False
    return s_pix.masked_fill(~in_segment.reshape(-1, 1, 1), float("-inf"))


def _segment_row_max(
    s_lat: torch.Tensor,
    s_pix: torch.Tensor,
    flat_ids: torch.Tensor,
    shared: tuple[torch.Tensor, torch.Tensor] | None,
) -> torch.Tensor:
    """Per-row maximum (B, K, n, h) over a slot's latent scores (B, K, n, n, h), its trajectory's pixel scores
    (B·N, n, h; ``flat_ids`` (B·N,) their segment) and the shared pixels' scores. Softmax is shift-invariant: a
    detached maximum keeps it stable and leaves gradients exact."""
    batch, num_traj, n, _, heads = s_lat.shape
    with torch.no_grad():
        row_max = s_lat.amax(dim=3)
        pix_max = torch.full((batch * num_traj, n, heads), float("-inf"), dtype=s_pix.dtype, device=s_pix.device)
        pix_max = pix_max.scatter_reduce(0, flat_ids.view(-1, 1, 1).expand_as(s_pix), s_pix, "amax")
        row_max = torch.maximum(row_max, pix_max.view(batch, num_traj, n, heads))
        if shared is not None:
            row_max = torch.maximum(row_max, shared[0].amax(dim=3))
    return row_max


def _add_pixel_values(
    numerator: torch.Tensor,
    e_pix: torch.Tensor,
    flat_ids: torch.Tensor,
    pixel_value: torch.Tensor | None,
    pixel_inputs: torch.Tensor | None,
    value_weight: torch.Tensor | None,
) -> torch.Tensor:
    """Adds Σ_p e_p·v_p per (trajectory, sub-token, head) to ``numerator`` (B·K, n, h, d), with the unnormalised
    weights ``e_pix`` (B·N, n, h) of each pixel's own segment ``flat_ids``: projected values by ``index_add``, or
    (no ``pixel_value``) ``W_v · Σ_p e_p·x_p`` with the sum as one sparse product (module docstring)."""
    segment_count, n, heads, dim = numerator.shape
    if pixel_value is not None:
        return numerator.index_add(
            0, flat_ids, e_pix[..., None] * pixel_value.permute(0, 2, 1, 3).reshape(-1, 1, heads, dim)
        )
    summed = SegmentWeightedSum.apply(  # weights in the inputs' dtype: under autocast the scores may be bf16
        e_pix.reshape(-1, n * heads).to(pixel_inputs.dtype),
        pixel_inputs.reshape(e_pix.shape[0], -1),
        flat_ids,
        segment_count,
    ).view(segment_count, n, heads, -1)  # Σ_p e·x per (trajectory, sub-token, head): (B·K, n, h, D_in)
    return numerator + torch.einsum("gshi,hdi->gshd", summed, value_weight.view(heads, dim, -1))
