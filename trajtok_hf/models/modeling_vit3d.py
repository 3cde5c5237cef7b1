"""ViT3D: the space-time patch tokenizer of the TrajViT2 baseline (paper Sec. 4, the paper's "ViT3D" rows).

The paper compares trajectory tokens with a ViT3D under identical training and evaluation. Here that comparison is
structural: ViT3D is not a second CLIP model but a second *vision tokenizer* of [`TrajViT2VisionModel`]
(``TrajViT2VisionConfig(vision_tokenizer="vit3d")``). It emits patch tokens and an all-True mask; the [CLS] token,
the encoder (same width/depth), the final LayerNorm, CLS pooling, projections and losses are the very same code as
for trajectory tokens.

Tokenization:

- Tubelets of ``tubelet_size × patch_size × patch_size`` [2×16×16] embedded by one ``Conv3d`` (stride = kernel),
  giving ``⌈T/2⌉ · (H/16) · (W/16)`` tokens in (t, row, col) raster order (1568 for a 16-frame 224² clip).
- Space-time positions added to the tokens (the [CLS], prepended later by the shared encoder, gets none):
  ``"learned"`` — one vector per position of the default grid (``num_frames/tubelet × (image_size/patch)²``),
  trilinearly interpolated (``align_corners=False``) for other grids; e.g. an image (1 tubelet) gets the temporal
  centre of the clip's positions. ``"sinusoidal"`` — fixed 3-D sin/cos (a third of the width per axis, MAE-style),
  defined for any grid.
- Frames not filling the last tubelet are completed by **repeating the last frame** (never zero or fake frames). An
  image (T=1) thus becomes a 2-frame still clip, and its tubelet embedding equals a 2-D patch embedding with the two
  temporal kernel slices summed, the usual way to run images through a video patch model.
- Height and width must be multiples of ``patch_size`` (the processor gives 224²); a strided Conv3d would silently
  drop a border otherwise.

Imports only torch and transformers: the file is copied beside the modeling files as remote code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers.utils import ModelOutput

__all__ = ["ViT3DPatchTokenizer", "ViT3DTokenizerOutput", "complete_last_tubelet", "sinusoidal_position_embedding_3d"]


@dataclass
class ViT3DTokenizerOutput(ModelOutput):
    r"""
    Output of [`ViT3DPatchTokenizer`]. L = t·h·w tubelet positions, D = `hidden_size`.

    Args:
        tokens (`torch.FloatTensor` of shape `(B, L, D)`):
            Tubelet embeddings plus space-time positions, (t, row, col) raster order.
        token_mask (`torch.BoolTensor` of shape `(B, L)`):
            All True (every patch is a token); the same interface as TrajTok's `trajectory_mask`.
        grid_size (`tuple[int, int, int]`):
            (t, h, w) of the tubelet grid.
    """

    tokens: torch.FloatTensor | None = None
    token_mask: torch.BoolTensor | None = None
    grid_size: tuple[int, int, int] | None = None


def sinusoidal_position_embedding_3d(
    grid_size: tuple[int, int, int], dim: int, device=None, dtype=torch.float32
) -> torch.Tensor:
    """Fixed 3-D sin/cos positions (t·h·w, dim), (t, row, col) raster order.

    Each axis gets ``2·⌊dim/6⌋`` dims: ``[sin(p·ω_i), cos(p·ω_i)]`` with ``ω_i = 10000^(-i/m)``, i < m = ⌊dim/6⌋;
    the remaining ``dim mod 6`` dims are zero.
    """
    m = dim // 6
    if m == 0:
        raise ValueError(f"sinusoidal 3-D positions need hidden_size >= 6, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(m, dtype=torch.float64, device=device) / m)
    axes = []
    for size in grid_size:
        phase = torch.arange(size, dtype=torch.float64, device=device)[:, None] * omega[None, :]
        axes.append(torch.cat((phase.sin(), phase.cos()), dim=-1))  # (size, 2m)
    t, h, w = grid_size
    emb = torch.cat(
        (
            axes[0][:, None, None, :].expand(t, h, w, 2 * m),
            axes[1][None, :, None, :].expand(t, h, w, 2 * m),
            axes[2][None, None, :, :].expand(t, h, w, 2 * m),
        ),
        dim=-1,
    ).reshape(t * h * w, 6 * m)
    if dim > 6 * m:
        emb = F.pad(emb, (0, dim - 6 * m))
    return emb.to(dtype)


def complete_last_tubelet(pixel_values_videos: torch.Tensor, tubelet_size: int) -> torch.Tensor:
    """(B, T, C, H, W) → (B, ⌈T / tubelet⌉ · tubelet, C, H, W): the frames missing from the last tubelet repeat the
    last frame (never zero or fake frames)."""
    missing = -pixel_values_videos.shape[1] % tubelet_size
    if not missing:
        return pixel_values_videos
    last = pixel_values_videos[:, -1:].expand(-1, missing, -1, -1, -1)
    return torch.cat((pixel_values_videos, last), dim=1)


class ViT3DPatchTokenizer(nn.Module):
    """Video (B, T, C, H, W) → tubelet tokens (B, t·h·w, D) with space-time positions and an all-True mask.

    `config` needs `hidden_size`, `num_channels`, `patch_size`, `tubelet_size`, `image_size`, `num_frames` and
    `position_embedding_type` (a [`TrajViT2VisionConfig`] has them).
    """

    def __init__(self, config):
        super().__init__()
        self.hidden_size = config.hidden_size
        self.num_channels = config.num_channels
        self.patch_size = config.patch_size
        self.tubelet_size = config.tubelet_size
        self.position_embedding_type = config.position_embedding_type
        kernel = (config.tubelet_size, config.patch_size, config.patch_size)
        self.projection = nn.Conv3d(config.num_channels, config.hidden_size, kernel_size=kernel, stride=kernel)
        side = config.image_size // config.patch_size
        self.default_grid = (math.ceil(config.num_frames / config.tubelet_size), side, side)
        if config.position_embedding_type == "learned":
            num_positions = self.default_grid[0] * side * side
            self.position_embeddings = nn.Parameter(torch.empty(1, num_positions, config.hidden_size))
        else:
            self.position_embeddings = None

    def _check_pixel_values(self, pixel_values_videos) -> None:
        # The model that owns this tokenizer checks type, shape and values at its public boundary; what only ViT3D
        # needs is a frame size that the tubelet patches tile.
        height, width = pixel_values_videos.shape[-2:]
        if height % self.patch_size or width % self.patch_size or height == 0 or width == 0:
            raise ValueError(
                f"pixel_values_videos frames must have a height and width that are positive multiples of patch_size "
                f"({self.patch_size}) for ViT3D, got {height}×{width}"
            )

    def position_embedding(self, grid_size: tuple[int, int, int], dtype, device) -> torch.Tensor:
        """Positions (1, t·h·w, D) for a tubelet grid; learned ones are interpolated when the grid differs."""
        if self.position_embeddings is None:
            return sinusoidal_position_embedding_3d(grid_size, self.hidden_size, device=device, dtype=dtype)[None]
        if tuple(grid_size) == self.default_grid:
            return self.position_embeddings.to(dtype)
        grid = self.position_embeddings.reshape(1, *self.default_grid, self.hidden_size).permute(0, 4, 1, 2, 3)
        grid = F.interpolate(grid.float(), size=tuple(grid_size), mode="trilinear", align_corners=False)
        return grid.permute(0, 2, 3, 4, 1).reshape(1, -1, self.hidden_size).to(dtype)

    def forward(self, pixel_values_videos: torch.Tensor) -> ViT3DTokenizerOutput:
        self._check_pixel_values(pixel_values_videos)
        pixel_values_videos = complete_last_tubelet(pixel_values_videos, self.tubelet_size)
        x = self.projection(pixel_values_videos.transpose(1, 2).to(self.projection.weight.dtype))  # (B, D, t, h, w)
        grid_size = tuple(x.shape[2:])
        tokens = x.flatten(2).transpose(1, 2)  # (B, t·h·w, D), (t, row, col) raster order
        tokens = tokens + self.position_embedding(grid_size, tokens.dtype, tokens.device)
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        return ViT3DTokenizerOutput(tokens=tokens, token_mask=mask, grid_size=grid_size)
