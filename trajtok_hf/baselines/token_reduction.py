"""Run-length tokenization and space-time token pooling for the ViT3D baseline: token-reduction peers at inference.

Both act on ViT3D's tubelet tokens *before* the encoder (ToMe, in :mod:`.token_merging`, acts inside it), so the
encoder runs on fewer tokens from its first layer, as it does on TrajViT2's trajectory tokens. Neither needs
training: they are applied to a trained ViT3D model, which is how the quality–compute frontier
(``benchmarks/pareto.py``) compares them with TrajViT2 at several budgets.

**Run-length tokenization** (RLT; Choudhury et al., "Don't Look Twice: Faster Video Transformers with Run-Length
Tokenization", NeurIPS 2024). A tubelet patch that repeats the patch at the same place in the previous tubelet is
dropped: with ``x`` the processor's (normalised) pixel values of a patch, all frames of its tubelet and all channels,
the patch at tubelet index ``t ≥ 1`` is kept when ``mean |x_t − x_{t−1}| > threshold``; every patch of the first
tubelet is kept. Dropped tokens leave the sequence through the encoder's token mask (``compact_tokens`` cuts the
padded sequence to the batch's largest count). Differences from the paper's method:

- RLT adds a learned embedding of each kept token's run length (how many repeats followed it); that embedding needs
  training, so this inference-only version has none (the paper's "RLT without length encoding" ablation).
- RLT compares a patch with the same patch of the previous tubelet; here too, on the pixel values the processor
  returns (mean/std-normalised), so ``threshold`` is in those units.

**Space-time pooling**: the ``(t, h, w)`` grid of tubelet tokens, position embeddings included, is average-pooled
with a ``(kt, kh, kw)`` kernel and the same stride; windows at a border that the kernel does not tile average the
tokens they hold (the count excludes the missing ones). A ``(2, 2, 2)`` kernel turns ViT3D's 64 tokens of an
8-frame 64² clip into 8.

Scope: ViT3D only (``vision_tokenizer="vit3d"``): TrajTok's trajectory tokens have no grid. Each function swaps
the class of the model's tokenizer module in place (weights and ``state_dict`` unchanged, so ``save_pretrained``
saves the plain model) and :func:`remove_token_reduction` swaps it back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..models.modeling_vit3d import ViT3DPatchTokenizer, ViT3DTokenizerOutput, complete_last_tubelet
from .token_merging import _vision_transformer

__all__ = [
    "PooledViT3DTokenizer",
    "RunLengthViT3DTokenizer",
    "apply_run_length_tokenization",
    "apply_token_pooling",
    "pooled_grid_size",
    "remove_token_reduction",
    "run_length_keep_mask",
    "tubelet_changes",
]


def _tubelet_patches(pixel_values_videos: torch.Tensor, tubelet_size: int, patch_size: int) -> torch.Tensor:
    """(B, T, C, H, W) → (B, t, h·w, tubelet·C·p·p): the pixels of each tubelet patch, in ViT3D's raster order, with
    the last tubelet completed as :class:`ViT3DPatchTokenizer` completes it."""
    if not isinstance(pixel_values_videos, torch.Tensor) or pixel_values_videos.ndim != 5:
        raise ValueError(
            f"pixel_values_videos must be a (B, T, C, H, W) tensor, got "
            f"{tuple(getattr(pixel_values_videos, 'shape', ())) or type(pixel_values_videos).__name__}"
        )
    for name, value in (("tubelet_size", tubelet_size), ("patch_size", patch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    batch, frames, channels, height, width = pixel_values_videos.shape
    if min(batch, frames) < 1 or height % patch_size or width % patch_size or height == 0 or width == 0:
        raise ValueError(
            f"pixel_values_videos must hold at least one frame of a height and width that are positive multiples of "
            f"patch_size ({patch_size}), got shape {tuple(pixel_values_videos.shape)}"
        )
    pixel_values_videos = complete_last_tubelet(pixel_values_videos, tubelet_size)
    t, h, w = pixel_values_videos.shape[1] // tubelet_size, height // patch_size, width // patch_size
    x = pixel_values_videos.reshape(batch, t, tubelet_size, channels, h, patch_size, w, patch_size)
    return x.permute(0, 1, 4, 6, 2, 3, 5, 7).reshape(batch, t, h * w, -1)


def tubelet_changes(pixel_values_videos: torch.Tensor, tubelet_size: int, patch_size: int) -> torch.Tensor:
    """(B, t − 1, h·w): each patch's mean absolute change from the same patch of the previous tubelet (tubelets 1 …
    t − 1, patches in row-major order), the quantity RLT thresholds."""
    patches = _tubelet_patches(pixel_values_videos, tubelet_size, patch_size).float()
    return (patches[:, 1:] - patches[:, :-1]).abs().mean(dim=-1)


def run_length_keep_mask(
    pixel_values_videos: torch.Tensor, tubelet_size: int, patch_size: int, threshold: float
) -> torch.Tensor:
    """RLT's keep mask (B, t·h·w) in ViT3D's (t, row, col) token order: True for the first tubelet's patches and for
    every patch whose mean absolute difference to the same patch of the previous tubelet exceeds ``threshold``."""
    change = tubelet_changes(pixel_values_videos, tubelet_size, patch_size)
    first = torch.ones(change.shape[0], 1, change.shape[-1], dtype=torch.bool, device=change.device)
    return torch.cat((first, change > threshold), dim=1).flatten(1)


def pooled_grid_size(grid_size: Sequence[int], kernel: Sequence[int]) -> tuple[int, int, int]:
    """The token grid after :class:`PooledViT3DTokenizer`'s pooling: ``⌈n / k⌉`` per axis."""
    if len(grid_size) != 3 or len(kernel) != 3:
        raise ValueError(f"grid_size and kernel must have 3 entries (t, h, w), got {grid_size!r} and {kernel!r}")
    return tuple(math.ceil(n / k) for n, k in zip(grid_size, kernel, strict=True))


class RunLengthViT3DTokenizer(ViT3DPatchTokenizer):
    """ViT3D tokenizer whose token mask drops the tubelet patches that repeat the previous tubelet's (RLT)."""

    rlt_threshold: float

    def forward(self, pixel_values_videos: torch.Tensor) -> ViT3DTokenizerOutput:
        output = super().forward(pixel_values_videos)
        keep = run_length_keep_mask(pixel_values_videos, self.tubelet_size, self.patch_size, self.rlt_threshold)
        return ViT3DTokenizerOutput(tokens=output.tokens, token_mask=keep, grid_size=output.grid_size)


class PooledViT3DTokenizer(ViT3DPatchTokenizer):
    """ViT3D tokenizer whose tokens (positions included) are average-pooled over space-time windows."""

    pool_kernel: tuple[int, int, int]

    def forward(self, pixel_values_videos: torch.Tensor) -> ViT3DTokenizerOutput:
        output = super().forward(pixel_values_videos)
        batch, _, width = output.tokens.shape
        grid = output.tokens.transpose(1, 2).reshape(batch, width, *output.grid_size)
        pooled = F.avg_pool3d(grid, self.pool_kernel, stride=self.pool_kernel, ceil_mode=True, count_include_pad=False)
        tokens = pooled.flatten(2).transpose(1, 2)
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        return ViT3DTokenizerOutput(tokens=tokens, token_mask=mask, grid_size=tuple(pooled.shape[2:]))


_REDUCED_TOKENIZERS = (RunLengthViT3DTokenizer, PooledViT3DTokenizer)
_ATTRIBUTES = ("rlt_threshold", "pool_kernel")


def _vit3d_tokenizer(model, what: str) -> ViT3DPatchTokenizer:
    vision = _vision_transformer(model)
    if vision.config.vision_tokenizer != "vit3d":
        raise ValueError(
            f"model: {what} applies to the ViT3D baseline (vision_tokenizer='vit3d'), got "
            f"vision_tokenizer={vision.config.vision_tokenizer!r}"
        )
    return vision.tokenizer


def apply_run_length_tokenization(model, threshold: float):
    """Make the ViT3D tower of ``model`` drop repeated tubelet patches, RLT-style (in place; returns ``model``).

    Calling it again changes the threshold; another reduction applied before is replaced.

    Args:
        model: a [`TrajViT2Model`], [`TrajViT2VisionModel`] or `TrajViT2VisionTransformer` with
            ``vision_tokenizer="vit3d"``.
        threshold: a patch is kept when its mean absolute change from the previous tubelet's patch, in the
            processor's normalised pixel units, exceeds it (≥ 0; 0 keeps every patch that changes at all).

    Raises:
        TypeError: ``model`` is not a TrajViT2 model.
        ValueError: the model uses the TrajTok tokenizer or attends to inactive tokens (the mask would be ignored),
            or ``threshold`` is not a finite number ≥ 0.
    """
    tokenizer = _vit3d_tokenizer(model, "run-length tokenization")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold < math.inf:
        raise ValueError(f"threshold must be a finite number >= 0, got {threshold!r}")
    if _vision_transformer(model).config.attend_to_inactive_tokens:
        raise ValueError(
            "model: run-length tokenization drops tokens through the token mask, which attend_to_inactive_tokens=True "
            "ignores"
        )
    remove_token_reduction(model)
    tokenizer.__class__ = RunLengthViT3DTokenizer
    tokenizer.rlt_threshold = float(threshold)
    return model


def apply_token_pooling(model, kernel: int | Sequence[int]):
    """Make the ViT3D tower of ``model`` average-pool its tubelet tokens over space-time windows (in place; returns
    ``model``). Calling it again changes the kernel; another reduction applied before is replaced.

    Args:
        model: a [`TrajViT2Model`], [`TrajViT2VisionModel`] or `TrajViT2VisionTransformer` with
            ``vision_tokenizer="vit3d"``.
        kernel: ``(kt, kh, kw)`` tubelets per window along time, rows and columns (one int: the same on all three),
            each ≥ 1.

    Raises:
        TypeError: ``model`` is not a TrajViT2 model.
        ValueError: the model uses the TrajTok tokenizer, or ``kernel`` is not 1 or 3 positive ints.
    """
    tokenizer = _vit3d_tokenizer(model, "token pooling")
    values = (kernel,) * 3 if isinstance(kernel, int) and not isinstance(kernel, bool) else kernel
    if (
        not isinstance(values, Sequence)
        or len(values) != 3
        or not all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in values)
    ):
        raise ValueError(f"kernel must be a positive int or 3 positive ints (kt, kh, kw), got {kernel!r}")
    remove_token_reduction(model)
    tokenizer.__class__ = PooledViT3DTokenizer
    tokenizer.pool_kernel = tuple(values)
    return model


def remove_token_reduction(model):
    """Undo :func:`apply_run_length_tokenization` or :func:`apply_token_pooling` (in place; returns ``model``). A no-op
    on a model without either."""
    tokenizer = _vision_transformer(model).tokenizer
    if isinstance(tokenizer, _REDUCED_TOKENIZERS):
        tokenizer.__class__ = ViT3DPatchTokenizer
        for name in _ATTRIBUTES:
            tokenizer.__dict__.pop(name, None)
    return model
