"""TrajTok: the trajectory tokenizer (Zheng et al., CVPR 2026, arXiv 2602.22779, Sec. 3).

One forward pass clusters every pixel of a chunk of frames into at most K trajectories and turns each non-empty
trajectory into n ∈ {1, 2, 4} tokens:

1. Dense features: a transformers ConvNeXt (or timm) backbone per frame; each stage map → linear projection to D →
   LayerNorm → bilinear to the 1/4 grid → summed: F ∈ R^{T·h·w × D}, flattened (t, row, col). The frames of all
   chunks go through the ConvNeXt in passes of ``backbone_frames_per_pass`` (CPU default: ~4 frames of 224², which
   keeps activations in cache); every op is per frame, so this changes no value.
2. Trajectory queries: a Perceiver resampler with 1D RoPE over **detached** features (K learned queries).
3. Assignment (Eq. 1): ℓ_{p,k} = s · cos(MLP(q_k), MLP(F_p)), s = min(softplus(σ)+1, 20); soft mask = softmax over
   K; hard mask id_p = argmax_k; trajectory k is active iff some pixel has id_p = k.
4. Initial tokens (Eq. 2): z_k = Σ_p M_kp F_p (``soft_pool_normalization="sum"``, as the paper writes it) or its
   mass-normalised mean (default; the sum grows with region size).
5. Hard-mask refinement: a second Perceiver whose queries see only their own trajectory's pixels (hard mask) and sibling
   sub-tokens; features not detached. Computed with a segment softmax, the pixel values summed per trajectory
   before the value projection (see ``attention_trajtok.py``).
6. Matryoshka tokens: sub-token queries z_k + n Fourier-ring offsets.

Differences from the official release (hellomuffin/trajtok), all config options whose defaults keep the paper's form:
ConvNeXt-Tiny backbone by default (release: DINOv3 ConvNeXt-S → ``backbone_config`` of type ``dinov3_convnext``);
one LayerNorm per stage (release: shared, ``shared_stage_layernorm``); the last stage without the backbone's final
norm (release: ``backbone_final_layernorm``); refinement queries from soft pooling (release: learned latents,
``query_init="latent"``); hard mask without the release's "last 2 pixels always visible" quirk
(``refinement_visible_last_pixels``); RoPE over all head dims (release: half, ``rope_fraction=0.5``); Perceiver
residual stream with a final norm (release: ``latent_norm_placement="every_layer"``). Chunks shorter than
``chunk_size`` are tokenized as they are (never padded with fake frames).

An addition of this implementation, off by default: ``frame_difference_input`` feeds each frame to the backbone with
its differences to the neighbouring frames (9 channels), a motion cue for segmenters trained from scratch on few
images (see ``TrajTokConfig``); ``frame_difference_alignment="translation"`` adds the same differences after the
camera's translation is taken out (15 channels), so that a panning camera does not light up the whole background.
Two more, also off by default: ``pixel_context_layers`` mixes each chunk's features over space and time with 3-D
ConvNeXt blocks before steps 2–5 (the paper's features are per frame), and ``query_update_iterations`` follows Eq. 1
with clustering updates of the query embeddings toward the centres of the pixels they win, the logits computed again
after each (the cluster-wise argmax update of k-means mask transformers).

What a loss on the trajectory tokens trains (e.g. TrajViT2's contrastive loss): with ``query_init="soft_pool"`` the
refinement queries are the soft-mask pools of Eq. 2, so its gradient reaches the grouping (query Perceiver, query
latents, both assignment heads, the logit scale) through the soft mask. With the release's ``query_init="latent"``
the tokens depend on the grouping only through the hard mask (the argmax ids: which pixels each query sees, which
slots are active), which has no gradient, so that gradient into the grouping is exactly zero: the grouping learns
from the segmentation loss alone, and a token loss trains the features and the refinement part. This is the release's
design (its ``SegmentTokenizer`` with ``add_mean_traj: false`` starts the refinement from learned latents and masks
it with the argmax), kept for parity; ``"latent_plus_soft_pool"`` adds the soft path back on top of the latents.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from huggingface_hub import is_offline_mode
from torch import nn
from transformers import AutoBackbone, AutoConfig, PreTrainedConfig, PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput, logging

from .configuration_trajtok import (
    ALIGNED_FRAME_DIFFERENCE_CHANNELS,
    FRAME_DIFFERENCE_ALIGNMENTS,
    FRAME_DIFFERENCE_CHANNELS,
    SUPPORTED_BACKBONES,
    TIMM_BACKBONE,
    TRAJECTORY_MOTION_FUSIONS,
    TrajTokConfig,
)
from .modeling_utils_trajtok import SafetensorsFileCheckMixin, check_video_pixels, from_sub_config
from .perceiver_trajtok import HardMask, TrajTokPerceiver

HARD_MASK_IMPLEMENTATIONS = ("segment", "dense")

logger = logging.get_logger(__name__)


@dataclass
class TrajTokOutput(ModelOutput):
    r"""
    Output of [`TrajTokModel`]. Shapes use B = batch, T = frames, (h, w) = the 1/4 mask grid (56×56 at 224²),
    K = ``config.num_trajectories``, C = number of chunks (⌈T / chunk_size⌉), n = tokens per trajectory,
    N = C·K·n, D = ``config.token_size``.

    Args:
        trajectory_tokens (`torch.FloatTensor` of shape `(B, N, D)`):
            Tokens of every trajectory slot, chunk-major, then trajectory, then sub-token: token
            ``(c·K + k)·n + s`` is sub-token s of trajectory k of chunk c. Slots of empty trajectories hold finite
            values that carry no information: consumers must only attend to or pool over tokens where
            `trajectory_mask` is True.
        trajectory_mask (`torch.BoolTensor` of shape `(B, N)`):
            True where the token's trajectory is non-empty (at least one pixel of the chunk has it as argmax).
        assignment_logits (`torch.FloatTensor` of shape `(B, T, h, w, K)`):
            Scaled cosine logits ℓ of Eq. 1 of every pixel of the mask grid over its chunk's K queries.
        trajectory_ids (`torch.LongTensor` of shape `(B, T, h, w)`):
            The hard mask: ``c·K + argmax_k ℓ``, i.e. the global trajectory index (unique across chunks; trajectory
            identity is not linked across chunks, ``trajtok_hf.long_video`` links it). Token indices of pixel p's
            trajectory: ``id·n … id·n + n − 1``.
        num_trajectories (`torch.LongTensor` of shape `(B,)`):
            Number of active trajectories per video, summed over chunks (tokens = n × this).
        trajectory_queries (`torch.FloatTensor` of shape `(B, C·K, hidden_size)`):
            Output of the trajectory-query Perceiver (the segmenter's queries).
        soft_masks (`torch.FloatTensor` of shape `(B, T, h, w, K)`, *optional*):
            softmax over K of `assignment_logits` (Eq. 1), returned when ``output_soft_masks=True``.
        pixel_features (`torch.FloatTensor` of shape `(B, T, h, w, hidden_size)`, *optional*):
            The summed multi-scale features F, returned when ``output_pixel_features=True``.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*):
            Returned when ``output_hidden_states`` is set (argument or config): the latent stream of the query
            Perceiver — its input queries and the output of each of its ``query_perceiver_depth`` layers, each
            `(B, C·K, hidden_size)` — followed, unless ``output_trajectory_tokens=False``, by that of the refinement
            Perceiver, ``refinement_perceiver_depth`` + 1 tensors `(B, N, hidden_size)` (before the output
            projection). Layer outputs are taken before the Perceiver's final LayerNorm. Given a list of indices
            (transformers' convention, negative ones count from the end), the other entries are None.
        attentions (`tuple(torch.FloatTensor)`, *optional*):
            Returned when ``output_attentions`` is set: the attention weights of each query-Perceiver layer,
            `(B, heads, C·K, K + T·h·w)`, then of each refinement layer, `(B, heads, N, K·n + T·h·w)`. Keys are the
            query's own chunk's latents, then every pixel of the video in (t, row, col) order; pixels of other
            chunks (and, in the refinement, of other trajectories: the hard mask) have weight 0. Computed written
            out, so these are (L × keys) tensors per layer.
        query_update_logits (`tuple(torch.FloatTensor)`, *optional*):
            Returned when ``output_query_update_logits=True``: the logits of Eq. 1 before each of the
            ``config.query_update_iterations`` clustering updates, each `(B, T, h, w, K)` — first those of the query
            Perceiver's own queries, then those after each update but the last (`assignment_logits` are after the
            last). Empty for a model without updates. For a loss on every stage (deep supervision, as k-means mask
            transformers train their cluster-centre updates).
    """

    trajectory_tokens: torch.FloatTensor | None = None
    trajectory_mask: torch.BoolTensor | None = None
    assignment_logits: torch.FloatTensor | None = None
    trajectory_ids: torch.LongTensor | None = None
    num_trajectories: torch.LongTensor | None = None
    trajectory_queries: torch.FloatTensor | None = None
    soft_masks: torch.FloatTensor | None = None
    pixel_features: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    query_update_logits: tuple[torch.FloatTensor, ...] | None = None


def _merge_chunks(parts: list, batch: int) -> torch.Tensor:
    """[(c, (B·c, ...)), ...] of the chunk groups → (B, C, ...), concatenated along chunks."""
    merged = [tensor.reshape(batch, count, *tensor.shape[1:]) for count, tensor in parts]
    return torch.cat(merged, dim=1) if len(merged) > 1 else merged[0]


def _merge_frames(parts: list, batch: int) -> torch.Tensor:
    """[(c, (B·c, t, ...)), ...] of the chunk groups → (B, c·t summed = T, ...), concatenated along frames."""
    merged = [tensor.reshape(batch, -1, *tensor.shape[2:]) for _, tensor in parts]
    return torch.cat(merged, dim=1) if len(merged) > 1 else merged[0]


def _merge_attention_maps(parts: list, batch: int, num_latent_keys: int) -> torch.Tensor:
    """Per-chunk attention weights [(c, (B·c, h, L, K_lat + P_chunk)), ...] → one map (B, h, C·L, K_lat + P_video):
    the latent keys stay per chunk, each chunk's pixel keys go to its own columns of the video's pixels (zero
    elsewhere, block-diagonal over chunks)."""
    total_pixels = sum(count * (tensor.shape[-1] - num_latent_keys) for count, tensor in parts)
    rows, offset = [], 0
    for count, tensor in parts:
        maps = tensor.reshape(batch, count, *tensor.shape[1:])  # (B, c, h, L, K_lat + P)
        latent, pixel = maps[..., :num_latent_keys], maps[..., num_latent_keys:]
        eye = torch.eye(count, dtype=maps.dtype, device=maps.device).view(1, count, 1, 1, count, 1)
        blocks = (pixel.unsqueeze(-2) * eye).flatten(-2)  # (B, c, h, L, c·P): chunk i's pixels in column block i
        width = blocks.shape[-1]
        blocks = F.pad(blocks, (offset, total_pixels - offset - width))
        rows.append(torch.cat((latent, blocks), dim=-1).transpose(1, 2).flatten(2, 3))
        offset += width
    return torch.cat(rows, dim=2)


def _select_hidden_states(hidden_states: tuple, selection) -> tuple:
    """transformers' ``output_hidden_states`` convention: True keeps all; an int or a list of indices (negative ones
    from the end) keeps those and puts None elsewhere."""
    if isinstance(selection, bool):
        return hidden_states
    indices = [selection] if isinstance(selection, int) else list(selection)
    count = len(hidden_states)
    kept = {i % count for i in indices if -count <= i < count}
    return tuple(state if i in kept else None for i, state in enumerate(hidden_states))


def add_frame_differences(videos: torch.Tensor, alignment: str = "none") -> torch.Tensor:
    """(B, T, 3, H, W) → (B, T, 9, H, W): each frame, its difference to the previous frame and the next frame's
    difference to it (zeros at the first and last frame; an image gets zeros). The backbone input of
    ``config.frame_difference_input``. With ``alignment="translation"`` (``config.frame_difference_alignment``),
    (B, T, 15, H, W): the same two differences follow again, taken after the neighbouring frame is moved onto the
    frame by the camera's translation (:func:`camera_translations`; out-of-frame pixels differ by zero)."""
    if alignment not in FRAME_DIFFERENCE_ALIGNMENTS:
        raise ValueError(f"alignment must be one of {FRAME_DIFFERENCE_ALIGNMENTS}, got {alignment!r}")
    _check_frames("videos", videos)
    step = videos[:, 1:] - videos[:, :-1]
    edge = torch.zeros_like(videos[:, :1])
    channels = [videos, torch.cat([edge, step], dim=1), torch.cat([step, edge], dim=1)]
    if alignment == "translation":
        shifts = camera_translations(videos)  # (B, T - 1, 2): frame t's content moves by it into frame t + 1
        previous, previous_valid = shift_frames(videos[:, :-1], shifts)  # frame t moved onto frame t + 1
        following, following_valid = shift_frames(videos[:, 1:], -shifts)  # frame t + 1 moved onto frame t
        to_previous = (videos[:, 1:] - previous) * previous_valid
        to_following = (following - videos[:, :-1]) * following_valid
        channels += [torch.cat([edge, to_previous], dim=1), torch.cat([to_following, edge], dim=1)]
    return torch.cat(channels, dim=2)


MAX_CAMERA_SHIFT_FRACTION = 0.25  # the largest translation camera_translations looks for, per axis


def _check_frames(name: str, frames) -> None:
    if not isinstance(frames, torch.Tensor) or frames.ndim != 5 or not frames.is_floating_point():
        got = (
            f"shape {tuple(frames.shape)}, {frames.dtype}"
            if isinstance(frames, torch.Tensor)
            else type(frames).__name__
        )
        raise ValueError(f"{name} must be a floating tensor of shape (B, T, C, H, W), got {got}")


def camera_translations(videos: torch.Tensor, max_shift_fraction: float = MAX_CAMERA_SHIFT_FRACTION) -> torch.Tensor:
    """The camera's translation between consecutive frames, in whole pixels, by phase correlation.

    (B, T, C, H, W) → (B, T - 1, 2) int64 ``(dy, dx)``: frame ``t + 1`` shows frame ``t``'s content moved by
    ``(dy, dx)`` (down and right positive), as far as one translation explains the two frames. The grey frames,
    centred and Hann-windowed, give the normalised cross-power spectrum whose inverse FFT peaks at the dominant shift
    (Kuglin & Hines, 1975); the peak is searched within ``max_shift_fraction`` of each side. The textured background
    dominates that peak in a panned shot; a flat background leaves the choice to whatever is textured. Computed in
    float32 whatever the input dtype; no gradient."""
    _check_frames("videos", videos)
    if isinstance(max_shift_fraction, bool) or not isinstance(max_shift_fraction, (int, float)):
        raise TypeError(f"max_shift_fraction must be a float, got {type(max_shift_fraction).__name__}")
    if not 0 < max_shift_fraction <= 0.5:
        raise ValueError(f"max_shift_fraction must lie in (0, 0.5] (a fraction of each side), got {max_shift_fraction}")
    batch, frames, _, height, width = videos.shape
    if frames < 2:
        return torch.zeros(batch, 0, 2, dtype=torch.int64, device=videos.device)
    with torch.no_grad():
        grey = videos.float().mean(dim=2)
        grey = grey - grey.mean(dim=(-2, -1), keepdim=True)
        window = torch.outer(
            torch.hann_window(height, periodic=False, device=videos.device),
            torch.hann_window(width, periodic=False, device=videos.device),
        )
        spectrum = torch.fft.rfft2(grey * window)
        cross = spectrum[:, 1:] * spectrum[:, :-1].conj()
        surface = torch.fft.irfft2(cross / cross.abs().clamp_min(1e-12), s=(height, width))
        dy = torch.arange(height, device=videos.device)
        dx = torch.arange(width, device=videos.device)
        dy = torch.where(dy > height // 2, dy - height, dy)  # wrap to signed shifts
        dx = torch.where(dx > width // 2, dx - width, dx)
        reach = (dy.abs() <= max_shift_fraction * height)[:, None] & (dx.abs() <= max_shift_fraction * width)[None, :]
        peak = surface.masked_fill(~reach, float("-inf")).flatten(-2).argmax(dim=-1)
        return torch.stack([dy[peak // width], dx[peak % width]], dim=-1)


def shift_frames(frames: torch.Tensor, shifts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Move each frame's content by whole pixels: (B, N, C, H, W) frames and (B, N, 2) ``(dy, dx)`` → the moved
    frames (out-of-frame pixels repeat the nearest edge pixel) and a (B, N, 1, H, W) mask of the pixels that have a
    source inside the frame (in the frames' dtype)."""
    _check_frames("frames", frames)
    batch, count, channels, height, width = frames.shape
    if not isinstance(shifts, torch.Tensor) or shifts.shape != (batch, count, 2) or shifts.is_floating_point():
        got = tuple(shifts.shape) if isinstance(shifts, torch.Tensor) else type(shifts).__name__
        raise ValueError(f"shifts must be an integer tensor of shape {(batch, count, 2)} (dy, dx), got {got}")
    rows = torch.arange(height, device=frames.device) - shifts[..., :1]  # (B, N, H): source row of each row
    cols = torch.arange(width, device=frames.device) - shifts[..., 1:]  # (B, N, W)
    valid = ((rows >= 0) & (rows < height))[..., :, None] & ((cols >= 0) & (cols < width))[..., None, :]
    source = rows.clamp(0, height - 1)[..., :, None] * width + cols.clamp(0, width - 1)[..., None, :]
    index = source.flatten(-2)[:, :, None, :].expand(batch, count, channels, height * width)
    moved = frames.flatten(-2).gather(-1, index).view(batch, count, channels, height, width)
    return moved, valid[:, :, None].to(frames.dtype)


def fourier_ring_offsets(num_points: int, num_frequencies: int, projection: torch.Tensor) -> torch.Tensor:
    """Matryoshka sub-token offsets (paper Sec. 3): n evenly spaced angles on a ring, [sin(fθ), cos(fθ)] for
    f = 1..F, projected by ``projection`` (2F, D)."""
    angles = torch.arange(num_points, dtype=torch.float64) * (2 * math.pi / num_points)
    freqs = torch.arange(1, num_frequencies + 1, dtype=torch.float64)
    phases = angles[:, None] * freqs[None, :]
    features = torch.cat((phases.sin(), phases.cos()), dim=-1)
    return (features @ projection.to(torch.float64)).to(torch.float32)


def fourier_grid_latents(num_latents: int, num_frequencies: int, projection: torch.Tensor) -> torch.Tensor:
    """K distinct query initialisations: points of a near-square 2-D grid (12×11 for K=128, as the release) with
    2-D Fourier features, projected by ``projection`` (4F, D)."""
    cols = math.ceil(math.sqrt(num_latents))
    rows = math.ceil(num_latents / cols)
    index = torch.arange(num_latents, dtype=torch.float64)
    y = (index // cols + 0.5) / rows
    x = (index % cols + 0.5) / cols
    freqs = torch.arange(1, num_frequencies + 1, dtype=torch.float64) * math.pi
    phases = torch.cat((y[:, None] * freqs, x[:, None] * freqs), dim=-1)
    features = torch.cat((phases.sin(), phases.cos()), dim=-1)
    return (features @ projection.to(torch.float64)).to(torch.float32)


def random_orthonormal(rows: int, cols: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A (rows, cols) matrix with orthonormal rows (if rows ≤ cols) or columns."""
    big, small = max(rows, cols), min(rows, cols)
    q, _ = torch.linalg.qr(torch.randn(big, small, generator=generator, dtype=torch.float64))
    return (q if rows >= cols else q.T).to(torch.float32)


def init_linear_and_norm(module: nn.Module, std: float, linear_types=(nn.Linear,)) -> bool:
    """Truncated-normal weights and zero biases for linear layers, identity LayerNorms; True if ``module`` was one of
    them. Shared by every model of the package so that they initialise alike."""
    if isinstance(module, linear_types):
        init.trunc_normal_(module.weight, std=std)
        if module.bias is not None:
            init.zeros_(module.bias)
        return True
    if isinstance(module, nn.LayerNorm):
        init.ones_(module.weight)
        init.zeros_(module.bias)
        return True
    return False


class TrajTokPreTrainedModel(SafetensorsFileCheckMixin, PreTrainedModel):
    config_class = TrajTokConfig
    config: TrajTokConfig
    base_model_prefix = "trajtok"
    main_input_name = "pixel_values_videos"
    input_modalities = ("video",)
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _no_split_modules = ["TrajTokPerceiverLayer"]

    def _init_weights(self, module):
        std = self.config.initializer_range
        if init_linear_and_norm(module, std):
            return
        if isinstance(module, TrajTokPixelContextBlock):
            init.trunc_normal_(module.depthwise.weight, std=std)
            init.zeros_(module.depthwise.bias)
            init.constant_(module.layer_scale, PIXEL_CONTEXT_LAYER_SCALE_INIT)
            return
        if isinstance(module, TrajTokModel):
            config = self.config
            init.constant_(module.logit_scale, config.logit_scale_init_value)
            if module.query_update_gates is not None:
                init.ones_(module.query_update_gates)
            freqs = config.subtoken_fourier_frequencies
            init.copy_(
                module.query_latents,
                fourier_grid_latents(config.num_trajectories, freqs, random_orthonormal(4 * freqs, config.hidden_size)),
            )
            # One shared orthonormal projection for every Matryoshka level, scaled by 0.02.
            projection = random_orthonormal(2 * freqs, config.hidden_size)
            offsets = torch.cat(
                [fourier_ring_offsets(n, freqs, projection) for n in config.tokens_per_trajectory_choices]
            )
            if module.subtoken_offsets is not None:
                init.copy_(module.subtoken_offsets, offsets * config.subtoken_init_scale)
            if module.refinement_latents is not None:
                slots = offsets[None].expand(config.num_trajectories, -1, -1) * config.subtoken_init_scale
                init.copy_(module.refinement_latents, slots + torch.randn_like(slots) * std)
            for projection in (module.position_projection, module.motion_projection):
                if projection is None:
                    continue
                weight_std = config.trajectory_motion_init_std if projection is module.motion_projection else 0.0
                if weight_std > 0:  # breaks the clip / mirror-image symmetry of a model trained from scratch
                    init.normal_(projection.weight, std=weight_std)
                else:  # zero: switching it on changes no output until trained
                    init.zeros_(projection.weight)
                init.zeros_(projection.bias)
            if module.motion_fusion is not None:  # its output layer starts at zero (its children come first)
                init.zeros_(module.motion_fusion.fc2.weight)
                init.zeros_(module.motion_fusion.fc2.bias)


# Pixels per ConvNeXt pass on CPU when config.backbone_frames_per_pass is None (4 frames of 224²).
CPU_PIXELS_PER_BACKBONE_PASS = 4 * 224 * 224

# Fields of a ConvNeXt-family config that fix the architecture: a pretrained backbone must agree with
# ``backbone_config`` on each (the weight shapes check widths and depths again; the activation and the norm epsilon
# change values, not shapes).
BACKBONE_ARCHITECTURE_FIELDS = (
    "model_type",
    "backbone",  # timm_backbone: the timm model name
    "num_channels",
    "patch_size",
    "num_stages",
    "depths",
    "hidden_sizes",
    "hidden_act",
    "layer_norm_eps",
)
# Weights that only transformers' ``*Backbone`` classes have: ConvNeXt(V2)Backbone's per-stage output norms. A
# checkpoint saved from ``ConvNextModel`` or an image classifier lacks them; ``from_pretrained`` then initialises them
# as a fresh backbone has them (LayerNorm weight 1, bias 0).
BACKBONE_ONLY_WEIGHT_PREFIXES = ("hidden_states_norms.",)
# The ``from_pretrained`` options a pretrained backbone is fetched with (anything else would become a config field).
PRETRAINED_BACKBONE_KWARGS = ("revision", "cache_dir", "token", "local_files_only", "force_download", "subfolder")


def load_pretrained_backbone_config(name_or_path: str, **hub_kwargs) -> PreTrainedConfig:
    """The config of a pretrained backbone (local folder or Hub id), with an error that says what to do when it
    cannot be read, or is not a ConvNeXt-family model."""
    unknown = sorted(set(hub_kwargs) - set(PRETRAINED_BACKBONE_KWARGS))
    if unknown:
        raise TypeError(f"unknown pretrained-backbone options {unknown}; allowed: {PRETRAINED_BACKBONE_KWARGS}")
    try:
        config = AutoConfig.from_pretrained(name_or_path, **hub_kwargs)
    except OSError as error:
        hub = "not in the local Hub cache (offline mode: HF_HUB_OFFLINE)" if is_offline_mode() else "not on the Hub"
        raise OSError(
            f"cannot load the pretrained backbone {name_or_path!r}: it is not a local folder with a config.json and "
            f"{hub}. Where the Hub is reachable, `hf download {name_or_path} --local-dir DIR` and pass DIR. "
            f"({error})"
        ) from error
    if config.model_type not in SUPPORTED_BACKBONES:
        raise ValueError(
            f"the pretrained backbone {name_or_path!r} is a {config.model_type!r} model; TrajTok needs one of the "
            f"backbones {SUPPORTED_BACKBONES}"
        )
    return config


def backbone_config_differences(pretrained: PreTrainedConfig, expected: PreTrainedConfig) -> list[str]:
    """``field=pretrained (backbone_config: expected)`` for each architecture field of both configs on which they
    differ."""

    def value(config, field):
        found = getattr(config, field)
        return list(found) if isinstance(found, tuple) else found

    return [
        f"{field}={value(pretrained, field)!r} (backbone_config: {value(expected, field)!r})"
        for field in BACKBONE_ARCHITECTURE_FIELDS
        if hasattr(pretrained, field)
        and hasattr(expected, field)
        and value(pretrained, field) != value(expected, field)
    ]


def _check_backbone_loading_info(info: dict, name_or_path: str) -> None:
    """Fails unless every backbone weight came from the checkpoint (or is one of the backbone-only norms)."""
    missing = [key for key in info["missing_keys"] if not key.startswith(BACKBONE_ONLY_WEIGHT_PREFIXES)]
    if missing or info["mismatched_keys"]:
        raise ValueError(
            f"the pretrained backbone {name_or_path!r} does not fill the backbone: missing weights {missing}, "
            f"mismatched shapes {info['mismatched_keys']}"
        )
    if len(missing) < len(info["missing_keys"]):
        logger.info(f"{name_or_path!r} has no per-stage output norms (a Model checkpoint): they start as identity")
    if info["unexpected_keys"]:
        logger.info(f"weights of {name_or_path!r} that the backbone does not use: {sorted(info['unexpected_keys'])}")


def _timm_backbone_state_dict(name_or_path: str, backbone: nn.Module, **hub_kwargs) -> dict[str, torch.Tensor]:
    """The weights of a saved ``TimmBackbone`` (model.safetensors of a local folder or Hub repo) as ``backbone``'s
    state dict. BatchNorm step counters (``num_batches_tracked``) are the only keys that may differ: frozen
    BatchNorms (``freeze_batch_norm_2d``) have none, and ``backbone`` keeps its own where the file lacks them; any
    other missing, unexpected or misshapen weight is an error that names it."""
    from safetensors.torch import load_file
    from transformers.utils import cached_file

    path = cached_file(name_or_path, "model.safetensors", **hub_kwargs)
    weights = load_file(path)
    target = backbone.state_dict()
    counter = "num_batches_tracked"
    weights = {key: value for key, value in weights.items() if key in target or not key.endswith(counter)}
    weights.update({key: value for key, value in target.items() if key.endswith(counter) and key not in weights})
    missing, unexpected = sorted(set(target) - set(weights)), sorted(set(weights) - set(target))
    mismatched = [
        f"{key}: {tuple(weights[key].shape)} vs {tuple(value.shape)}"
        for key, value in target.items()
        if key in weights and weights[key].shape != value.shape
    ]
    if missing or unexpected or mismatched:
        raise ValueError(
            f"the pretrained backbone {name_or_path!r} does not fill the backbone: missing weights {missing}, "
            f"unexpected weights {unexpected}, mismatched shapes {mismatched}"
        )
    return weights


class TrajTokFeatureExtractor(nn.Module):
    """Dense features (paper Sec. 3): backbone stage maps → per-stage projection to D + LayerNorm → bilinear to
    the 1/4 grid → sum."""

    def __init__(self, config: TrajTokConfig):
        super().__init__()
        self.backbone = from_sub_config(AutoBackbone, config.backbone_config)
        stage_widths = list(self.backbone.channels)  # ConvNeXt: hidden_sizes; timm: its feature levels' widths
        self.projections = nn.ModuleList(nn.Linear(width, config.hidden_size) for width in stage_widths)
        num_norms = 1 if config.shared_stage_layernorm else len(stage_widths)
        self.layer_norms = nn.ModuleList(
            nn.LayerNorm(config.hidden_size, eps=config.feature_layer_norm_eps) for _ in range(num_norms)
        )
        self.final_layernorm = nn.LayerNorm(stage_widths[-1], eps=1e-6) if config.backbone_final_layernorm else None
        self.frames_per_pass = config.backbone_frames_per_pass

    def load_pretrained_backbone(self, name_or_path: str, **hub_kwargs) -> None:
        """Copies the weights of a pretrained backbone into ``self.backbone``: the concrete backbone class
        (``ConvNextBackbone``, ``DINOv3ConvNextBackbone``, ...) loads them with ``from_pretrained``, then a strict
        ``load_state_dict`` moves them over, so every key maps exactly. The checkpoint's architecture must be
        ``backbone_config``'s."""
        expected = self.backbone.config
        differences = backbone_config_differences(load_pretrained_backbone_config(name_or_path, **hub_kwargs), expected)
        if differences:
            raise ValueError(
                f"the pretrained backbone {name_or_path!r} does not match backbone_config: {', '.join(differences)}. "
                f"TrajTokModel.from_pretrained_backbone builds a model with the checkpoint's backbone_config"
            )
        if expected.model_type == TIMM_BACKBONE:
            # TimmBackbone.from_pretrained treats its argument as a timm model name (timm's own download), so the
            # saved weights are read here: the folder's (or Hub repo's) model.safetensors, every key strict.
            self.backbone.load_state_dict(_timm_backbone_state_dict(name_or_path, self.backbone, **hub_kwargs))
        else:
            pretrained, info = type(self.backbone).from_pretrained(
                name_or_path, config=copy.deepcopy(expected), output_loading_info=True, **hub_kwargs
            )
            _check_backbone_loading_info(info, name_or_path)
            self.backbone.load_state_dict(pretrained.state_dict())
        if self.final_layernorm is not None:
            logger.warning(
                "backbone_final_layernorm: the final LayerNorm is not loaded from the pretrained backbone; it keeps "
                "its initialisation (weight 1, bias 0) and trains with the segmenter"
            )

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """frames (M, C, H, W) → features (M, h, w, D) on the grid of the first stage (stride 4).

        Every op is per frame, so running the frames in passes (``config.backbone_frames_per_pass``) changes no
        value; on CPU small passes keep the ConvNeXt activations in cache."""
        step = self.frames_per_pass
        if step is None:
            # A pixel budget of ~4 frames of 224² a pass on CPU keeps activations in cache, while a fixed frame
            # count would make passes of small frames too short (per-op overhead outweighs the cache gain).
            step = (
                max(1, CPU_PIXELS_PER_BACKBONE_PASS // (frames.shape[-2] * frames.shape[-1]))
                if frames.device.type == "cpu"
                else frames.shape[0]
            )
        if frames.shape[0] <= step:
            return self._features(frames)
        return torch.cat([self._features(part) for part in frames.split(step)])

    def _features(self, frames: torch.Tensor) -> torch.Tensor:
        maps = self.backbone(frames).feature_maps
        grid = maps[0].shape[-2:]
        summed = None
        for index, feature_map in enumerate(maps):
            x = feature_map.permute(0, 2, 3, 1)  # channels-last: the projection and LayerNorm act per position
            if index == len(maps) - 1 and self.final_layernorm is not None:
                x = self.final_layernorm(x)
            x = self.layer_norms[index % len(self.layer_norms)](self.projections[index](x))
            if x.shape[1:3] != grid:
                x = F.interpolate(x.permute(0, 3, 1, 2), size=grid, mode="bilinear", align_corners=False)
                x = x.permute(0, 2, 3, 1)
            summed = x if summed is None else summed + x
        return summed


class TrajTokAssignmentHead(nn.Sequential):
    """D → 128 → ReLU → 64: maps queries or pixel features into the space of Eq. 1's cosine."""

    def __init__(self, config: TrajTokConfig):
        super().__init__(
            nn.Linear(config.hidden_size, config.assignment_hidden_size),
            nn.ReLU(),
            nn.Linear(config.assignment_hidden_size, config.assignment_embed_dim),
        )


# Layer-scale initialisation of the pixel-context blocks (ConvNeXt's): a block starts as (almost) the identity.
PIXEL_CONTEXT_LAYER_SCALE_INIT = 1e-6


class TrajTokPixelContextBlock(nn.Module):
    """A ConvNeXt block in 3-D over one chunk's feature grid (``TrajTokConfig.pixel_context_layers``): depthwise
    3×7×7 convolution over (frame, row, column), LayerNorm, MLP (×4, GELU), layer scale, residual."""

    def __init__(self, hidden_size: int, layer_norm_eps: float):
        super().__init__()
        self.depthwise = nn.Conv3d(hidden_size, hidden_size, (3, 7, 7), padding=(1, 3, 3), groups=hidden_size)
        self.layer_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.fc1 = nn.Linear(hidden_size, 4 * hidden_size)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(4 * hidden_size, hidden_size)
        self.layer_scale = nn.Parameter(torch.empty(hidden_size))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features (b, t, h, w, D) → (b, t, h, w, D)."""
        mixed = self.depthwise(features.permute(0, 4, 1, 2, 3)).permute(0, 2, 3, 4, 1)
        mixed = self.fc2(self.act(self.fc1(self.layer_norm(mixed))))
        return features + self.layer_scale * mixed


class TrajTokMotionFusion(nn.Module):
    """Binds a token to its trajectory's path (``trajectory_motion_fusion="mlp"``; not in the paper): an MLP of the
    layer-normed token and the path, ``Linear(D + 3·chunk_size, D)`` → GELU → ``Linear(D, D)``, whose output is
    added to the token. The last layer starts at zero, so switching it on changes no output until trained."""

    def __init__(self, hidden_size: int, path_size: int, layer_norm_eps: float):
        super().__init__()
        self.norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.fc1 = nn.Linear(hidden_size + path_size, hidden_size)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_size, hidden_size)

    def forward(self, tokens: torch.Tensor, paths: torch.Tensor) -> torch.Tensor:
        """tokens (b, N, D) and their trajectories' paths (b, N, 3·chunk_size) → (b, N, D) to add to the tokens."""
        return self.fc2(self.act(self.fc1(torch.cat((self.norm(tokens), paths), dim=-1))))


def _check_count(field: str, count) -> int:
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"{field} must be an int >= 0, got {count!r}")
    return count


def _build_perceiver(config: TrajTokConfig, depth: int) -> TrajTokPerceiver:
    """A Perceiver (query or refinement, paper Sec. 3) of ``depth`` layers with the tokenizer's width, heads and
    options; its attention follows the tokenizer's ``attn_implementation``."""
    return TrajTokPerceiver(
        config.hidden_size,
        config.num_attention_heads,
        depth,
        config.perceiver_ff_mult,
        rope_theta=config.rope_theta,
        rope_fraction=config.rope_fraction,
        latent_norm_placement=config.latent_norm_placement,
        attention_config=config,
    )


class _PerceiverStreams:
    """Runs the Perceivers of one chunk batch, collecting their hidden states and attention weights when asked."""

    def __init__(self, output_hidden_states: bool = False, output_attentions: bool = False):
        self.flags = {"output_hidden_states": output_hidden_states, "output_attentions": output_attentions}
        self.hidden_states, self.attentions, self.num_latent_keys = (), (), ()

    def run(self, perceiver: TrajTokPerceiver, latents, context, hard_mask: HardMask | None = None) -> torch.Tensor:
        if not any(self.flags.values()):
            return perceiver(latents, context, hard_mask)
        latents_out, hidden_states, attentions = perceiver(latents, context, hard_mask, **self.flags)
        self.hidden_states += hidden_states or ()
        self.attentions += attentions or ()
        self.num_latent_keys += (latents.shape[1],) * len(attentions or ())
        return latents_out


class TrajTokModel(TrajTokPreTrainedModel):
    """The TrajTok tokenizer: video (B, T, 3, H, W) → trajectory tokens, their mask and the hard segmentation."""

    def __init__(self, config: TrajTokConfig):
        super().__init__(config)
        hidden, num_traj = config.hidden_size, config.num_trajectories
        self.feature_extractor = TrajTokFeatureExtractor(config)
        self.pixel_context = (
            nn.ModuleList(
                TrajTokPixelContextBlock(hidden, config.feature_layer_norm_eps)
                for _ in range(config.pixel_context_layers)
            )
            if config.pixel_context_layers
            else None
        )
        self.query_latents = nn.Parameter(torch.empty(num_traj, hidden))
        self.query_perceiver = _build_perceiver(config, config.query_perceiver_depth)
        self.query_head = TrajTokAssignmentHead(config)
        self.pixel_head = TrajTokAssignmentHead(config)
        self.logit_scale = nn.Parameter(torch.empty(1))
        # The learned gates of the clustering update of the query embeddings (one per iteration), only when it is on.
        self.query_update_gates = (
            nn.Parameter(torch.empty(config.query_update_iterations)) if config.query_update_iterations else None
        )
        # Matryoshka Fourier-ring sub-token offsets are only added to soft-pooled queries; the latent query inits carry
        # their own per-slot latents instead, so a converted release checkpoint has no unused parameter.
        self.subtoken_offsets = (
            nn.Parameter(torch.empty(config.max_subtokens, hidden)) if config.query_init == "soft_pool" else None
        )
        self.refinement_latents = (
            nn.Parameter(torch.empty(num_traj, config.max_subtokens, hidden))
            if config.query_init in ("latent", "latent_plus_soft_pool")
            else None
        )
        self.refinement_perceiver = _build_perceiver(config, config.refinement_perceiver_depth)
        self.position_projection = (
            nn.Linear(6 * config.subtoken_fourier_frequencies, hidden) if config.token_position_encoding else None
        )
        self.motion_projection = nn.Linear(3 * config.chunk_size, hidden) if config.trajectory_motion_encoding else None
        self.motion_fusion = (
            TrajTokMotionFusion(hidden, 3 * config.chunk_size, config.feature_layer_norm_eps)
            if config.trajectory_motion_fusion == "mlp"
            else None
        )
        self.output_projection = nn.Linear(hidden, config.token_size)
        self.gradient_checkpointing = False
        self.post_init()

    # ------------------------------------------------------------------ pretrained backbone
    @classmethod
    def from_pretrained_backbone(
        cls, pretrained_backbone_name_or_path: str | os.PathLike, config: TrajTokConfig | None = None, **hub_kwargs
    ) -> TrajTokModel:
        """A new tokenizer whose backbone starts from a pretrained transformers ConvNeXt-family checkpoint or saved
        ``TimmBackbone`` (local folder or Hub id) and whose other modules are freshly initialised: how the release
        trains its segmenter, from DINOv3 ConvNeXt-S. As ``VisionEncoderDecoderModel.from_encoder_decoder_pretrained``,
        the sub-model's architecture comes from its checkpoint: ``config.backbone_config`` is replaced by the
        checkpoint's config (with a warning naming each architecture field that changes), and
        ``pretrained_backbone_name_or_path`` records where it came from.

        Args:
            pretrained_backbone_name_or_path (`str` or `os.PathLike`):
                Folder written by ``save_pretrained`` of a ConvNeXt, ConvNeXtV2 or DINOv3-ConvNeXt model, backbone or
                image classifier, or of a ``TimmBackbone`` (feature levels 1-4), or the Hub id of one.
            config ([`TrajTokConfig`], *optional*):
                Every other hyper-parameter (defaults: `TrajTokConfig()`); not modified. With
                `frame_difference_input=True` the RGB checkpoint loads first and the stem is then widened
                ([`~TrajTokModel.with_frame_difference_input`]), so the model starts from the backbone's RGB features.
            hub_kwargs:
                `revision`, `cache_dir`, `token`, `local_files_only`, `force_download`, `subfolder` of
                `from_pretrained`.
        """
        name = os.fspath(pretrained_backbone_name_or_path)
        config = config if config is not None else cls.config_class()
        backbone_config = load_pretrained_backbone_config(name, **hub_kwargs)
        rgb_config = copy.deepcopy(config.backbone_config)
        rgb_config.num_channels = 3  # the checkpoint is an RGB backbone; frame differences widen it below
        differences = backbone_config_differences(backbone_config, rgb_config)
        if differences:
            logger.warning(f"backbone_config taken from the pretrained backbone {name!r}: {', '.join(differences)}")
        # The checkpoint is an RGB backbone: with frame_difference_input the RGB model loads it, then widens its stem
        # (with_frame_difference_input: the difference channels start at zero).
        frame_difference_input = config.frame_difference_input
        alignment = config.frame_difference_alignment
        config = cls.config_class.from_dict(
            {
                **config.to_dict(),
                "backbone_config": backbone_config.to_dict(),
                "pretrained_backbone_name_or_path": name,
                "frame_difference_input": False,
                "frame_difference_alignment": "none",
            }
        )
        model = cls(config)
        model.load_pretrained_backbone(**hub_kwargs)
        return model.with_frame_difference_input(alignment) if frame_difference_input else model

    def load_pretrained_backbone(
        self, pretrained_backbone_name_or_path: str | os.PathLike | None = None, **hub_kwargs
    ) -> None:
        """Loads pretrained weights into the backbone of this model, in place; nothing else changes. Building a model
        never loads them (construction stays offline); this is the one place that does.

        Args:
            pretrained_backbone_name_or_path (`str` or `os.PathLike`, *optional*):
                Folder or Hub id of a ConvNeXt-family checkpoint or saved ``TimmBackbone`` whose architecture is
                `config.backbone_config`'s
                (else a `ValueError` lists the fields that differ). Defaults to
                `config.pretrained_backbone_name_or_path`, and is recorded there.
            hub_kwargs:
                As in [`~TrajTokModel.from_pretrained_backbone`].
        """
        name = pretrained_backbone_name_or_path or self.config.pretrained_backbone_name_or_path
        if name is None:
            raise ValueError(
                "load_pretrained_backbone needs a folder or Hub id: pass one or set "
                "config.pretrained_backbone_name_or_path"
            )
        name = os.fspath(name)
        self.feature_extractor.load_pretrained_backbone(name, **hub_kwargs)
        self.config.pretrained_backbone_name_or_path = name

    def with_frame_difference_input(self, alignment: str = "none") -> TrajTokModel:
        """A copy of this model with ``config.frame_difference_input=True`` and ``config.frame_difference_alignment``
        set to ``alignment``, whose outputs are those of this model until it trains: the backbone's stem takes 9
        (``"none"``) or 15 (``"translation"``) channels, its weights on the added inputs start at zero, and every
        other weight is copied. How a trained appearance-only segmenter starts learning the motion cue, and how a
        9-channel one starts learning the camera-aligned differences. The model must have fewer input channels."""
        if alignment not in FRAME_DIFFERENCE_ALIGNMENTS:
            raise ValueError(f"alignment must be one of {FRAME_DIFFERENCE_ALIGNMENTS}, got {alignment!r}")
        target = FRAME_DIFFERENCE_CHANNELS if alignment == "none" else ALIGNED_FRAME_DIFFERENCE_CHANNELS
        current = self.config.backbone_config.num_channels
        if current >= target:
            raise ValueError(
                f"with_frame_difference_input: this model already has frame_difference_input="
                f"{self.config.frame_difference_input} with frame_difference_alignment="
                f"{self.config.frame_difference_alignment!r} ({current} input channels); alignment={alignment!r} "
                f"needs {target}"
            )
        config = copy.deepcopy(self.config)
        config.frame_difference_input = True
        config.frame_difference_alignment = alignment
        config.backbone_config.num_channels = target
        widened = type(self)(config).to(device=self.device, dtype=self.dtype)
        state = self.state_dict()
        stem = [
            name
            for name, value in state.items()
            if name.startswith("feature_extractor.backbone.") and value.ndim == 4 and value.shape[1] == current
        ]
        if len(stem) != 1:
            raise ValueError(
                f"with_frame_difference_input: expected one {current}-channel stem convolution, found {stem}"
            )
        weight = state[stem[0]]
        added = weight.new_zeros(weight.shape[0], target - current, *weight.shape[2:])
        state[stem[0]] = torch.cat([weight, added], dim=1)
        widened.load_state_dict(state, strict=True)
        widened.train(self.training)
        return widened

    def with_query_update_iterations(self, iterations: int) -> TrajTokModel:
        """A copy of this model with ``config.query_update_iterations = iterations``: every weight is copied, the
        gates of iterations this model lacks start at 1 and those it has keep their values (``iterations=0`` drops
        the update). How a trained segmenter starts training with the clustering update of its queries."""
        return self._with_added_parts("query_update_iterations", _check_count("query_update_iterations", iterations))

    def with_pixel_context_layers(self, layers: int) -> TrajTokModel:
        """A copy of this model with ``config.pixel_context_layers = layers``: every weight is copied, the blocks
        this model lacks are added as initialised (layer scale 1e-6: the outputs barely move until the model
        trains), and blocks beyond ``layers`` are dropped."""
        return self._with_added_parts("pixel_context_layers", _check_count("pixel_context_layers", layers))

    def with_trajectory_motion_fusion(self, fusion: str) -> TrajTokModel:
        """A copy of this model with ``config.trajectory_motion_fusion = fusion``: every weight is copied; a fusion
        MLP this model lacks starts with its output layer at zero (no output changes until the model trains), and
        ``"add"`` drops it. How a trained model with ``trajectory_motion_encoding`` starts learning to bind."""
        if fusion not in TRAJECTORY_MOTION_FUSIONS:
            raise ValueError(f"trajectory_motion_fusion must be one of {TRAJECTORY_MOTION_FUSIONS}, got {fusion!r}")
        if fusion != "add" and not self.config.trajectory_motion_encoding:
            raise ValueError(f"trajectory_motion_fusion={fusion!r} needs a model with trajectory_motion_encoding=True")
        return self._with_added_parts("trajectory_motion_fusion", fusion)

    def _with_added_parts(self, field: str, setting) -> TrajTokModel:
        """A copy with ``config.<field> = setting`` (checked by the caller): weights this model has are copied, parts it
        lacks start as initialised, parts the new config has no room for are dropped."""
        config = copy.deepcopy(self.config)
        setattr(config, field, setting)
        converted = type(self)(config).to(device=self.device, dtype=self.dtype)
        state = converted.state_dict()
        for name, value in self.state_dict().items():
            if field == "query_update_iterations" and name == "query_update_gates" and name in state:
                kept = min(setting, value.numel())
                state[name][:kept] = value[:kept]
            elif name in state:  # pixel-context blocks beyond the new count are dropped
                state[name] = value
        converted.load_state_dict(state, strict=True)
        converted.train(self.training)
        return converted

    # ------------------------------------------------------------------ input checks
    def _check_pixel_values(self, pixel_values_videos) -> None:
        check_video_pixels(pixel_values_videos)
        height, width = pixel_values_videos.shape[-2:]
        min_size = self.min_input_size
        if height < min_size or width < min_size:
            raise ValueError(
                f"pixel_values_videos frames must be at least {min_size}×{min_size} (the backbone's total stride), "
                f"got {height}×{width}"
            )

    @property
    def min_input_size(self) -> int:
        # Four stages at strides 4, 8, 16, 32: the last stage needs at least one position.
        return 32

    def _resolve_tokens_per_trajectory(self, tokens_per_trajectory) -> int:
        choices = self.config.tokens_per_trajectory_choices
        if tokens_per_trajectory is None:
            if self.training and len(choices) > 1:
                # Matryoshka training: sample the level L ~ U{0..}, n = 2^L, per step.
                return int(choices[int(torch.randint(len(choices), (1,)).item())])
            return int(self.config.tokens_per_trajectory)
        if isinstance(tokens_per_trajectory, bool) or tokens_per_trajectory not in choices:
            raise ValueError(f"tokens_per_trajectory must be one of {choices} (or None), got {tokens_per_trajectory!r}")
        return int(tokens_per_trajectory)

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        pixel_values_videos: torch.FloatTensor,
        tokens_per_trajectory: int | None = None,
        output_soft_masks: bool = False,
        output_pixel_features: bool = False,
        hard_mask_implementation: str = "segment",
        output_trajectory_tokens: bool = True,
        output_hidden_states: bool | int | list[int] | None = None,
        output_attentions: bool | None = None,
        output_query_update_logits: bool = False,
        return_dict: bool | None = None,
        **kwargs,
    ) -> TrajTokOutput | tuple:
        r"""
        Args:
            pixel_values_videos (`torch.FloatTensor` of shape `(batch, frames, 3, height, width)`):
                Frames normalized by [`TrajTokVideoProcessor`]. Height and width ≥ 32; an image is one frame.
            tokens_per_trajectory (`int`, *optional*):
                n ∈ ``config.tokens_per_trajectory_choices``. None: sampled per step in training mode (Matryoshka),
                ``config.tokens_per_trajectory`` in eval mode.
            output_soft_masks (`bool`, *optional*, defaults to `False`):
                Also return the soft masks (softmax over K of the logits).
            output_pixel_features (`bool`, *optional*, defaults to `False`):
                Also return the multi-scale features F.
            output_trajectory_tokens (`bool`, *optional*, defaults to `True`):
                `False` skips the hard-mask refinement Perceiver and returns `trajectory_tokens=None`: segmentation
                pre-training only needs the assignment logits, so it skips the refinement's compute.
            hard_mask_implementation (`str`, *optional*, defaults to `"segment"`):
                `"segment"`: the per-pixel segment-softmax fast path; `"dense"`: the dense masked reference.
            output_hidden_states (`bool`, `int` or `list[int]`, *optional*):
                Return the Perceivers' latent streams (see [`TrajTokOutput`]); indices select some of them.
                Defaults to ``config.output_hidden_states``.
            output_attentions (`bool`, *optional*):
                Return the Perceivers' attention weights (see [`TrajTokOutput`]). Defaults to
                ``config.output_attentions``.
            output_query_update_logits (`bool`, *optional*, defaults to `False`):
                Also return the logits before each clustering update of the queries (see [`TrajTokOutput`]).

        Floating inputs are cast to the model's dtype, so a bf16/fp16 model runs on the processor's float32 output.
        """
        if kwargs:
            raise TypeError(f"TrajTokModel.forward got unexpected arguments {sorted(kwargs)}")
        self._check_pixel_values(pixel_values_videos)
        pixel_values_videos = pixel_values_videos.to(self.dtype)
        if self.config.frame_difference_input:
            pixel_values_videos = add_frame_differences(pixel_values_videos, self.config.frame_difference_alignment)
        if output_hidden_states is None:
            output_hidden_states = getattr(self.config, "output_hidden_states", False)
        if output_attentions is None:
            output_attentions = getattr(self.config, "output_attentions", False)
        if not isinstance(output_query_update_logits, bool):
            raise TypeError(
                f"output_query_update_logits must be a bool, got {type(output_query_update_logits).__name__}"
            )
        outputs_asked = {
            "hidden_states": output_hidden_states is not False,
            "attentions": bool(output_attentions),
            "query_update_logits": output_query_update_logits,
        }
        if hard_mask_implementation not in HARD_MASK_IMPLEMENTATIONS:
            raise ValueError(
                f"hard_mask_implementation must be one of {HARD_MASK_IMPLEMENTATIONS}, got {hard_mask_implementation!r}"
            )
        n = self._resolve_tokens_per_trajectory(tokens_per_trajectory)
        return_dict = return_dict if return_dict is not None else self.config.return_dict

        batch, frames = pixel_values_videos.shape[:2]
        chunk = self.config.chunk_size
        num_full, remainder = divmod(frames, chunk)
        # All full chunks of all videos run as one batch; a shorter last chunk runs as its own batch (padding it
        # with frames would create fake trajectories).
        # The chunk results are bound to locals before the list is built: torch.compile breaks the graph inside
        # _tokenize_chunks, and a bound method or tuple left on the stack across that break (``groups.append(...)``)
        # is a new object on every call, which invalidates the compiled continuation each time.
        full_groups = remainder_groups = None
        if num_full:
            full = pixel_values_videos[:, : num_full * chunk].reshape(
                batch * num_full, chunk, *pixel_values_videos.shape[2:]
            )
            full_groups = self._tokenize_chunks(
                full, n, hard_mask_implementation, output_trajectory_tokens, outputs_asked
            )
        if remainder:
            remainder_groups = self._tokenize_chunks(
                pixel_values_videos[:, num_full * chunk :],
                n,
                hard_mask_implementation,
                output_trajectory_tokens,
                outputs_asked,
            )
        groups = [(count, g) for count, g in ((num_full, full_groups), (1, remainder_groups)) if g is not None]

        def per_chunk(index):
            return _merge_chunks([(count, g[index]) for count, g in groups], batch)

        def per_frame(index):
            return _merge_frames([(count, g[index]) for count, g in groups], batch)

        active = per_chunk(1).flatten(1)  # (B, C·K)
        logits = per_frame(2)  # (B, T, h, w, K)
        frame_chunk = torch.arange(frames, device=logits.device) // chunk
        trajectory_ids = per_frame(3) + (frame_chunk * self.config.num_trajectories).view(1, frames, 1, 1)
        output = TrajTokOutput(
            trajectory_tokens=per_chunk(0).flatten(1, 2) if output_trajectory_tokens else None,
            trajectory_mask=active.repeat_interleave(n, dim=1),
            assignment_logits=logits,
            trajectory_ids=trajectory_ids,
            num_trajectories=active.sum(dim=1),
            trajectory_queries=per_chunk(4).flatten(1, 2),
            soft_masks=logits.softmax(dim=-1) if output_soft_masks else None,
            pixel_features=per_frame(5) if output_pixel_features else None,
        )
        if outputs_asked["hidden_states"]:
            hidden_states = tuple(
                _merge_chunks([(count, g[6][i]) for count, g in groups], batch).flatten(1, 2)
                for i in range(len(groups[0][1][6]))
            )
            output.hidden_states = _select_hidden_states(hidden_states, output_hidden_states)
        if outputs_asked["attentions"]:
            output.attentions = tuple(
                _merge_attention_maps([(count, g[7][i]) for count, g in groups], batch, num_latent_keys)
                for i, num_latent_keys in enumerate(groups[0][1][8])
            )
        if output_query_update_logits:
            output.query_update_logits = tuple(
                _merge_frames([(count, g[9][i]) for count, g in groups], batch) for i in range(len(groups[0][1][9]))
            )
        return output if return_dict else output.to_tuple()

    def _tokenize_chunks(
        self,
        chunks: torch.Tensor,
        n: int,
        hard_mask_implementation: str,
        output_trajectory_tokens: bool = True,
        outputs_asked: dict | None = None,
    ):
        """Tokenize a batch of chunks (b, t, C, H, W) (C = 3, or 9 with frame differences) independently.

        Returns tokens (b, K·n, D), active (b, K), logits (b, t, h, w, K), ids (b, t, h, w), queries (b, K, hidden),
        features (b, t, h, w, hidden), then the Perceivers' hidden states and attention weights (tuples, query
        Perceiver first; empty unless ``outputs_asked``), the number of latent keys of each attention map and the
        logits before each query update (a tuple of (b, t, h, w, K); empty unless ``outputs_asked``)."""
        asked = outputs_asked or {}
        perceiver_flags = {
            "output_hidden_states": asked.get("hidden_states", False),
            "output_attentions": asked.get("attentions", False),
        }
        b, t = chunks.shape[:2]
        features = self.feature_extractor(chunks.flatten(0, 1))  # (b·t, h, w, D)
        h, w = features.shape[1:3]
        if self.pixel_context is not None:
            grid = features.reshape(b, t, h, w, -1)
            for block in self.pixel_context:
                grid = block(grid)
            features = grid
        features = features.reshape(b, t * h * w, -1)  # (t, row, col) raster order, t slowest

        streams = _PerceiverStreams(**perceiver_flags)
        queries = streams.run(
            self.query_perceiver,
            self.query_latents.unsqueeze(0).expand(b, -1, -1),
            features.detach() if self.config.detach_features else features,
        )

        # Eq. 1: cosine between the two heads' embeddings, scaled by s = min(softplus(σ) + 1, max).
        scale = (F.softplus(self.logit_scale) + 1.0).clamp(max=self.config.logit_scale_max)
        query_embed = F.normalize(self.query_head(queries), dim=-1)
        pixel_embed = F.normalize(self.pixel_head(features), dim=-1)
        logits = torch.einsum("bpe,bke->bpk", pixel_embed, query_embed) * scale  # (b, N, K)
        stages = [] if asked.get("query_update_logits") else None
        if self.query_update_gates is not None:
            logits = self._update_queries(logits, pixel_embed, query_embed, scale, stages)

        ids = logits.argmax(dim=-1)  # (b, N), first index on ties
        num_traj = self.config.num_trajectories
        active = torch.zeros(b, num_traj, dtype=torch.bool, device=ids.device).scatter_(1, ids, True)

        if not output_trajectory_tokens:
            tokens = None
        else:
            tokens = self._refine(logits, features, ids, n, hard_mask_implementation, streams, grid=(t, h, w))
        return (
            tokens,
            active,
            logits.reshape(b, t, h, w, num_traj),
            ids.reshape(b, t, h, w),
            queries,
            features.reshape(b, t, h, w, -1),
            streams.hidden_states,
            streams.attentions,
            streams.num_latent_keys,
            tuple(stage.reshape(b, t, h, w, num_traj) for stage in stages or ()),
        )

    def _update_queries(self, logits, pixel_embed, query_embed, scale, stages: list | None = None) -> torch.Tensor:
        """``config.query_update_iterations`` clustering updates (kMaX-style): each query embedding moves toward the
        normalised sum of the pixel embeddings that pick it (its cluster centre), weighted by a learned gate; a slot
        that no pixel picks keeps its embedding (a zero sum normalises to zero). The update runs in float32 (in half
        precision the normalisation's epsilon underflows and an empty slot's zero sum would give NaN). Returns the
        final logits (b, N, K); ``stages``, when given, receives the logits before each update."""
        dtype = query_embed.dtype
        pixels = pixel_embed.float()
        for gate in self.query_update_gates:
            if stages is not None:
                stages.append(logits)
            ids = logits.argmax(dim=-1)  # (b, N): the hard assignment, no gradient through it
            index = ids.unsqueeze(-1).expand(-1, -1, pixels.shape[-1])
            centres = pixels.new_zeros(query_embed.shape).scatter_add(1, index, pixels)
            query_embed = F.normalize(query_embed.float() + gate.float() * F.normalize(centres, dim=-1), dim=-1)
            query_embed = query_embed.to(dtype)
            logits = torch.einsum("bpe,bke->bpk", pixel_embed, query_embed) * scale
        return logits

    def _position_features(self, frames: int, height: int, width: int, like: torch.Tensor) -> torch.Tensor:
        """(t·h·w, hidden): the learned embedding of each pixel's (frame, row, column) in its chunk, each scaled to
        [−1, 1] and expanded in sines and cosines of F octave frequencies (``token_position_encoding``)."""
        axes = [
            torch.linspace(-1.0, 1.0, size, device=like.device) if size > 1 else like.new_zeros(1)
            for size in (frames, height, width)
        ]
        grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)  # (t·h·w, 3), t slowest
        scales = 2.0 ** torch.arange(self.config.subtoken_fourier_frequencies, device=like.device) * (math.pi / 2)
        angles = (grid[:, :, None] * scales).flatten(1)  # (t·h·w, 3F)
        fourier = torch.cat((angles.sin(), angles.cos()), dim=-1).to(like.dtype)
        return self.position_projection(fourier)

    def _refine(
        self,
        logits,
        features,
        ids,
        n: int,
        hard_mask_implementation: str,
        streams: _PerceiverStreams | None = None,
        grid: tuple[int, int, int] | None = None,
    ) -> torch.Tensor:
        """The hard-mask refinement Perceiver (paper Sec. 3) + output projection → tokens (b, K·n, D_out)."""
        if self.position_projection is not None:
            features = features + self._position_features(*grid, like=features)
        refinement_queries = self._initial_queries(logits, features, n)  # (b, K·n, D)
        hard_mask = None
        if self.config.use_hard_mask:
            hard_mask = HardMask(
                trajectory_ids=ids,
                tokens_per_trajectory=n,
                visible_last_pixels=min(self.config.refinement_visible_last_pixels, features.shape[1]),
                implementation=hard_mask_implementation,
            )
        streams = streams or _PerceiverStreams()
        refined = streams.run(self.refinement_perceiver, refinement_queries, features, hard_mask)
        if self.motion_projection is not None:
            paths = self._trajectory_paths(ids, grid, features.dtype)  # (b, K, 3·C)
            motion = self.motion_projection(paths).repeat_interleave(n, dim=1)  # (b, K·n, D)
            if self.motion_fusion is not None:  # per token: the fusion reads each sub-token's own refined state
                motion = motion + self.motion_fusion(refined, paths.repeat_interleave(n, dim=1))
            refined = refined + motion
        return self.output_projection(refined)

    def _trajectory_paths(self, ids: torch.Tensor, grid: tuple[int, int, int], dtype: torch.dtype) -> torch.Tensor:
        """(b, K, 3·chunk_size): per frame, each trajectory's presence and centroid (row, column) in [−1, 1]
        (``trajectory_motion_encoding``); frames past a shorter chunk's end are zeros."""
        frames, height, width = grid
        b, num_traj = ids.shape[0], self.config.num_trajectories
        frame = torch.arange(frames, device=ids.device).repeat_interleave(height * width)  # (t·h·w,)
        rows = torch.linspace(-1.0, 1.0, height, device=ids.device) if height > 1 else torch.zeros(1, device=ids.device)
        cols = torch.linspace(-1.0, 1.0, width, device=ids.device) if width > 1 else torch.zeros(1, device=ids.device)
        row = rows.repeat_interleave(width).repeat(frames)
        col = cols.repeat(height * frames)
        codes = (ids * frames + frame).reshape(-1) + (
            torch.arange(b, device=ids.device) * num_traj * frames
        ).repeat_interleave(ids.shape[1])
        size = b * num_traj * frames
        count = torch.bincount(codes, minlength=size).to(torch.float32)
        row_sum = torch.bincount(codes, weights=row.repeat(b), minlength=size)
        col_sum = torch.bincount(codes, weights=col.repeat(b), minlength=size)
        present = (count > 0).float()
        centre = torch.stack((row_sum, col_sum), dim=-1) / count.clamp(min=1)[:, None]
        path = torch.cat((present[:, None], centre), dim=-1).view(b, num_traj, frames, 3)
        limit = self.motion_projection.in_features // 3
        if frames > limit:
            raise ValueError(
                f"trajectory_motion_encoding was built for chunks of at most {limit} frames, got a chunk of {frames}"
            )
        path = F.pad(path, (0, 0, 0, limit - frames))  # a shorter last chunk
        return path.flatten(2).to(dtype)

    def _initial_queries(self, logits: torch.Tensor, features: torch.Tensor, n: int) -> torch.Tensor:
        """Refinement queries (b, K·n, D), trajectory-major: initial tokens (Eq. 2) and/or latents, plus offsets.
        With ``query_init="latent"`` they do not depend on ``logits``: no gradient reaches the grouping this way."""
        config = self.config
        level = config.subtoken_slice(n)
        b, num_traj = logits.shape[0], config.num_trajectories
        if config.query_init == "latent":
            slots = self.refinement_latents[:, level].unsqueeze(0).expand(b, -1, -1, -1)
        else:
            soft_mask = logits.softmax(dim=-1)  # Eq. 1: softmax over trajectories
            pooled = torch.einsum("bpk,bpd->bkd", soft_mask, features)  # Eq. 2 (sum form)
            if config.soft_pool_normalization == "mean":
                pooled = pooled / (soft_mask.sum(dim=1).unsqueeze(-1) + 1e-6)
            extra = (
                self.refinement_latents[:, level].unsqueeze(0)
                if config.query_init == "latent_plus_soft_pool"
                else self.subtoken_offsets[level].view(1, 1, n, -1)
            )
            slots = pooled.unsqueeze(2) + extra
        return slots.reshape(b, num_traj * n, -1)


__all__ = ["TrajTokModel", "TrajTokPreTrainedModel", "TrajTokOutput"]
