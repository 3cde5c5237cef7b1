"""TrajAdapter: trajectory pooling as a probing head on a frozen video backbone (paper Sec. 5).

[`TrajAdapterForVideoClassification`] holds three parts:

1. **Frozen backbone** — any transformers video model with a space-time token grid (``BACKBONE_TOKEN_GRIDS`` in
   ``configuration_trajadapter.py``: VideoMAE, V-JEPA 2, TimeSformer, ViViT, VideoPrism). Its patch tokens are put
   in a canonical ``(B, t', h', w', D)`` grid ([CLS] dropped, TimeSformer's (row, col, t) order undone).
2. **Frozen segmenter** — a [`TrajTokModel`]. Its assignment logits ``(B, T, h, w, K)`` on the 1/4 mask grid are
   resized to the token grid (:func:`resize_assignment_logits`): the **mean of the logits over each tubelet's
   frames** (VideoMAE/V-JEPA tubelets of 2 frames → one token time step), then **bilinear** in space
   (``align_corners=False``, as the paper; ``segmenter_logits_antialias`` for an area-like average). The argmax is
   the hard mask of the backbone tokens. Trajectory ids are per segmenter chunk; they are made video-global as
   ``chunk · K + k`` (chunk of the tubelet's first frame; ``chunk_size`` must be a multiple of the tubelet, so a
   tubelet never spans two chunks), giving C·K trajectory slots for C chunks. A trajectory is **active** iff at
   least one backbone token has it as argmax (it may have had mask pixels yet vanish on the coarser token grid).
3. **Trainable adapter** — the segmenter's trajectory queries linearly mapped to the backbone width (as the TrajVLM
   connector), plus n Fourier-ring sub-token offsets (Matryoshka tokens, paper Sec. 3) for n tokens per trajectory, are
   refined by a hard-mask Perceiver ([`TrajTokPerceiver`], the hard-mask refinement of paper Sec. 3: each query sees
   only its own trajectory's backbone tokens and its sibling sub-tokens; segment-softmax attention, no dense mask) →
   trajectory tokens. Only the active trajectories' tokens enter an **attentive probe** (V-JEPA's probe: learned queries
   cross-attend to the tokens, with a key padding mask, so inactive tokens have no effect at all) → LayerNorm → Linear
   classifier.

Baselines in the same class (``probe_type``): ``"attentive"`` — the same attentive probe over all patch tokens;
``"linear"`` — the mean of all patch tokens → LayerNorm → Linear. They build no segmenter.

Frozen means: ``requires_grad=False``; kept in eval mode whatever ``model.train()`` says (dropout, drop-path and
batch statistics of the frozen parts never change); run under ``torch.no_grad()``, so no graph is kept for them.
Everything is saved (backbone, segmenter, adapter), so ``save_pretrained``/``from_pretrained`` round-trip exactly.
Because the frozen parts are deterministic, their outputs can be computed once and cached:
:meth:`TrajAdapterForVideoClassification.get_frozen_features` returns them and ``forward(frozen_features=...)``
skips the frozen parts (what ``benchmarks/bench_adapter_probe.py`` does to train several probes cheaply).

Not in the paper (choices made here): the segmenter runs through its public forward with n = 1 (its own refinement
Perceiver's tokens are not used — a small waste, but the forward stays the converter-checked one); the Perceiver
runs at the backbone width with 1D RoPE over the (t', row, col) raster of the token grid; the segmenter sees the same
``pixel_values_videos`` as the backbone unless ``segmenter_pixel_values_videos`` are given (its own size/norm, same
frame count).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import ImageClassifierOutput
from transformers.utils import ModelOutput, logging

from .configuration_trajadapter import BackboneTokenGrid, TrajAdapterConfig
from .configuration_trajtok import TrajTokConfig
from .modeling_trajtok import (
    HARD_MASK_IMPLEMENTATIONS,
    TrajTokModel,
    fourier_ring_offsets,
    init_linear_and_norm,
    random_orthonormal,
)
from .modeling_utils_trajtok import SafetensorsFileCheckMixin, check_video_pixels, from_sub_config
from .perceiver_trajtok import HardMask, TrajTokPerceiver

logger = logging.get_logger(__name__)

__all__ = [
    "TrajAdapterClassifierOutput",
    "TrajAdapterForVideoClassification",
    "TrajAdapterFrozenFeatures",
    "TrajAdapterPreTrainedModel",
    "backbone_patch_features",
    "resize_assignment_logits",
    "run_backbone",
    "token_grid_trajectory_ids",
]


# ---------------------------------------------------------------------------------------------------------------------
# Outputs


@dataclass
class TrajAdapterFrozenFeatures(ModelOutput):
    r"""
    What the frozen parts of [`TrajAdapterForVideoClassification`] compute (no gradient). B = batch, (t', h', w') =
    the backbone's token grid, D = backbone width, C = segmenter chunks, K = its trajectories per chunk.

    Args:
        patch_features (`torch.FloatTensor` of shape `(B, t', h', w', D)`):
            The backbone's patch tokens on their grid (prefix tokens such as [CLS] removed).
        trajectory_ids (`torch.LongTensor` of shape `(B, t', h', w')`, *optional*):
            Trajectory probe only: the hard mask on the token grid, video-global ids ``chunk · K + k`` in [0, C·K).
        segmenter_queries (`torch.FloatTensor` of shape `(B, C·K, segmenter hidden size)`, *optional*):
            Trajectory probe only: the segmenter's trajectory queries, chunk-major.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*, returned when `output_hidden_states` is set):
            The backbone's hidden states, as the backbone model itself returns them (VideoMAE: the embeddings and
            every layer's output, `num_hidden_layers + 1` tensors of shape `(B, prefix + t'·h'·w', D)`; with a list
            of layer indices, the other entries are None).
        attentions (`tuple(torch.FloatTensor)`, *optional*, returned when `output_attentions=True`):
            The backbone's attention weights, one `(B, heads, sequence, sequence)` tensor per layer, as the backbone
            returns them (empty for an attention implementation that computes no weights, such as SDPA: load the
            model with `attn_implementation="eager"`).
    """

    patch_features: torch.FloatTensor | None = None
    trajectory_ids: torch.LongTensor | None = None
    segmenter_queries: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class TrajAdapterClassifierOutput(ImageClassifierOutput):
    r"""
    Output of [`TrajAdapterForVideoClassification`]. N = C·K·n trajectory-token slots, trajectory-major
    (token ``(c·K + k)·n + s`` is sub-token s of trajectory k of chunk c).

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` are given):
            Classification loss (cross-entropy; MSE when `num_labels == 1`; BCE for multi-label), as transformers'
            classifiers (`config.problem_type`).
        logits (`torch.FloatTensor` of shape `(B, num_labels)`):
            Classification scores (before softmax).
        hidden_states (`tuple(torch.FloatTensor)`, *optional*, returned when `output_hidden_states` is set):
            The frozen backbone's hidden states, as a transformers video classifier returns its encoder's (VideoMAE:
            `num_hidden_layers + 1` tensors of shape `(B, prefix + t'·h'·w', D)`, the embeddings then each layer;
            with a list of layer indices, only those entries are tensors, the others None). Computed without
            gradient (the backbone is frozen).
        attentions (`tuple(torch.FloatTensor)`, *optional*, returned when `output_attentions=True`):
            The frozen backbone's attention weights, one tensor of shape `(B, heads, sequence, sequence)` per layer
            (load the model with `attn_implementation="eager"`: SDPA computes no weights).
        pooled_output (`torch.FloatTensor` of shape `(B, D)`):
            The probe's output (attentive probe output, or the mean patch token for the linear probe), before the
            classifier's LayerNorm.
        trajectory_tokens (`torch.FloatTensor` of shape `(B, N, D)`, *optional*):
            Trajectory probe only: the refinement Perceiver's tokens. Slots of inactive trajectories are zeros.
        trajectory_mask (`torch.BoolTensor` of shape `(B, N)`, *optional*):
            Trajectory probe only: True for tokens of active trajectories (≥ 1 backbone token), the only ones the
            attentive probe sees.
        trajectory_ids (`torch.LongTensor` of shape `(B, t', h', w')`, *optional*):
            Trajectory probe only: the hard mask on the backbone's token grid (video-global ids).
        num_trajectories (`torch.LongTensor` of shape `(B,)`, *optional*):
            Trajectory probe only: active trajectories per video.
    """

    pooled_output: torch.FloatTensor | None = None
    trajectory_tokens: torch.FloatTensor | None = None
    trajectory_mask: torch.BoolTensor | None = None
    trajectory_ids: torch.LongTensor | None = None
    num_trajectories: torch.LongTensor | None = None


# ---------------------------------------------------------------------------------------------------------------------
# Token grid: backbone tokens and resized segmenter logits


def run_backbone(backbone: nn.Module, grid: BackboneTokenGrid, pixel_values_videos: torch.Tensor, **kwargs):
    """Run ``backbone`` on ``(B, T, 3, H, W)``: (its patch tokens as a ``(B, t', h', w', D)`` grid, its output).

    ``kwargs`` (``output_hidden_states``, ``output_attentions``) go to the backbone's forward."""
    batch, frames, _, height, width = pixel_values_videos.shape
    t, h, w = grid.grid(frames, height, width)
    output = backbone(**{grid.input_name: pixel_values_videos}, **dict(grid.forward_kwargs), **kwargs, return_dict=True)
    tokens = output.last_hidden_state
    expected = grid.prefix_tokens + t * h * w
    if tokens.ndim != 3 or tokens.shape[0] != batch or tokens.shape[1] != expected:
        raise ValueError(
            f"the backbone ({type(backbone).__name__}) returned last_hidden_state of shape {tuple(tokens.shape)}; "
            f"expected (batch={batch}, {grid.prefix_tokens} prefix + {t}×{h}×{w} patch tokens, width) for input "
            f"frames/height/width {frames}/{height}/{width} (tubelet {grid.tubelet}, patch {grid.patch})"
        )
    tokens = tokens[:, grid.prefix_tokens :]
    if grid.layout == "hwt":
        return tokens.reshape(batch, h, w, t, -1).permute(0, 3, 1, 2, 4), output
    return tokens.reshape(batch, t, h, w, -1), output


def backbone_patch_features(
    backbone: nn.Module, grid: BackboneTokenGrid, pixel_values_videos: torch.Tensor
) -> torch.Tensor:
    """Run ``backbone`` on ``(B, T, 3, H, W)`` and return its patch tokens as a ``(B, t', h', w', D)`` grid."""
    return run_backbone(backbone, grid, pixel_values_videos)[0]


def resize_assignment_logits(
    assignment_logits: torch.Tensor, grid: tuple[int, int, int], tubelet: int, antialias: bool = False
) -> torch.Tensor:
    """Resize segmenter logits ``(B, T, h, w, K)`` to a token grid ``(B, t', h', w', K)``.

    Time: the **mean of the logits over each tubelet's frames** (frames ``j·tubelet … (j+1)·tubelet − 1`` → step j;
    ``T == t' · tubelet``). Space: bilinear (``align_corners=False``; ``antialias`` for an area-like average when
    shrinking). Both are linear, so their order does not matter; averaging first is cheaper.
    """
    batch, frames, height, width, num = assignment_logits.shape
    steps, rows, cols = grid
    if frames != steps * tubelet:
        raise ValueError(
            f"the segmenter logits have {frames} frames but the token grid has {steps} steps of {tubelet} frames"
        )
    x = assignment_logits.reshape(batch, steps, tubelet, height, width, num).mean(dim=2)
    if (height, width) != (rows, cols):
        x = x.permute(0, 1, 4, 2, 3).reshape(batch * steps, num, height, width)
        x = F.interpolate(x, size=(rows, cols), mode="bilinear", align_corners=False, antialias=antialias)
        x = x.reshape(batch, steps, num, rows, cols).permute(0, 1, 3, 4, 2)
    return x


def token_grid_trajectory_ids(
    assignment_logits: torch.Tensor,
    grid: tuple[int, int, int],
    tubelet: int,
    chunk_size: int,
    antialias: bool = False,
) -> torch.Tensor:
    """Hard mask of the backbone tokens ``(B, t', h', w')``: argmax over K of :func:`resize_assignment_logits`, made
    video-global as ``chunk · K + k`` with chunk = (first frame of the tubelet) // ``chunk_size``."""
    resized = resize_assignment_logits(assignment_logits, grid, tubelet, antialias)
    num = assignment_logits.shape[-1]
    chunk = torch.arange(grid[0], device=resized.device) * tubelet // chunk_size
    return resized.argmax(dim=-1) + (chunk * num).view(1, -1, 1, 1)


# ---------------------------------------------------------------------------------------------------------------------
# Adapter modules


class TrajAdapterAttentiveProbe(nn.Module):
    """V-JEPA's attentive probe: ``q ← q + CrossAttn(q, LN(x))``, ``q ← q + MLP(LN(q))``, mean over the queries.

    ``forward(tokens (B, S, D), mask (B, S) bool or None) -> (B, D)``. Keys where ``mask`` is False get zero
    attention weight and their values are zeroed first, so they have no effect whatever they hold."""

    def __init__(self, config: TrajAdapterConfig):
        super().__init__()
        width = config.backbone_hidden_size
        self.num_heads = config.num_attention_heads
        self.queries = nn.Parameter(torch.randn(config.probe_num_queries, width) * config.initializer_range)
        self.norm_tokens = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.to_q = nn.Linear(width, width)
        self.to_kv = nn.Linear(width, 2 * width)
        self.to_out = nn.Linear(width, width)
        hidden = int(width * config.probe_mlp_ratio)
        self.norm_mlp = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        batch, length, width = tokens.shape
        heads, dim = self.num_heads, width // self.num_heads
        if mask is not None:
            tokens = tokens.masked_fill(~mask.unsqueeze(-1), 0.0)
        queries = self.queries.unsqueeze(0).expand(batch, -1, -1).to(tokens.dtype)
        q = self.to_q(queries).unflatten(-1, (heads, dim)).transpose(1, 2)
        k, v = self.to_kv(self.norm_tokens(tokens)).unflatten(-1, (2, heads, dim)).unbind(2)
        attn_mask = None if mask is None else mask[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k.transpose(1, 2), v.transpose(1, 2), attn_mask=attn_mask)
        x = queries + self.to_out(out.transpose(1, 2).reshape(batch, -1, width))
        x = x + self.mlp(self.norm_mlp(x))
        return x.mean(dim=1)


# ---------------------------------------------------------------------------------------------------------------------
# Model


def _build_backbone(backbone_config) -> PreTrainedModel:
    """``AutoModel.from_config``, without a pooling layer when the class has one we would not use (ViViT)."""
    from transformers.models.auto.modeling_auto import MODEL_MAPPING

    kwargs = {}
    model_class = MODEL_MAPPING.get(type(backbone_config), None)
    if model_class is not None and "add_pooling_layer" in inspect.signature(model_class.__init__).parameters:
        kwargs["add_pooling_layer"] = False
    return from_sub_config(AutoModel, backbone_config, **kwargs)


def _build_refinement(config: TrajAdapterConfig) -> TrajTokPerceiver:
    """The hard-mask refinement Perceiver (paper Sec. 3) at the backbone's width; its attention follows the adapter's
    ``attn_implementation`` (read only without a hard mask, which the adapter never runs)."""
    return TrajTokPerceiver(
        config.backbone_hidden_size,
        config.num_attention_heads,
        config.refinement_depth,
        config.perceiver_ff_mult,
        rope_theta=config.rope_theta,
        rope_fraction=config.rope_fraction,
        latent_norm_placement=config.latent_norm_placement,
        attention_config=config,
    )


def _check_output_flags(output_attentions, output_hidden_states) -> None:
    if not isinstance(output_attentions, bool):
        raise TypeError(f"output_attentions must be a bool, got {output_attentions!r}")
    if isinstance(output_hidden_states, (list, tuple)):
        valid = all(isinstance(i, int) and not isinstance(i, bool) for i in output_hidden_states)
    else:
        valid = isinstance(output_hidden_states, int)  # a bool or one layer index
    if not valid:
        raise TypeError(
            "output_hidden_states must be a bool, a layer index or a list of layer indices (as for transformers' "
            f"models), got {output_hidden_states!r}"
        )


class TrajAdapterPreTrainedModel(SafetensorsFileCheckMixin, PreTrainedModel):
    config_class = TrajAdapterConfig
    config: TrajAdapterConfig
    base_model_prefix = "trajadapter"
    main_input_name = "pixel_values_videos"
    input_modalities = ("video",)
    _supports_sdpa = True
    _no_split_modules = ["TrajTokPerceiverLayer"]

    def _init_weights(self, module):
        # The backbone and the segmenter are PreTrainedModels: transformers dispatches their own _init_weights.
        std = self.config.initializer_range
        if init_linear_and_norm(module, std):
            return
        if isinstance(module, TrajAdapterAttentiveProbe):
            init.trunc_normal_(module.queries, std=std)
        elif isinstance(module, TrajAdapterForVideoClassification) and module.subtoken_offsets is not None:
            # Matryoshka offsets: n evenly spaced ring angles, Fourier features, one random orthonormal projection,
            # scaled by 0.02.
            config = self.config
            freqs = config.subtoken_fourier_frequencies
            projection = random_orthonormal(2 * freqs, config.backbone_hidden_size)
            offsets = fourier_ring_offsets(config.tokens_per_trajectory, freqs, projection)
            init.copy_(module.subtoken_offsets, offsets * config.subtoken_init_scale)


class TrajAdapterForVideoClassification(TrajAdapterPreTrainedModel):
    """Frozen video backbone + frozen TrajTok segmenter + trainable trajectory probe → video classes.

    See the module docstring. Only parameters outside ``backbone`` and ``segmenter`` train
    (:meth:`trainable_parameters`).

    Example:

    ```python
    >>> model = TrajAdapterForVideoClassification.from_backbone_pretrained(
    ...     "path/to/videomae", "path/to/trajtok_segmenter", num_labels=400, tokens_per_trajectory=2)
    >>> optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=1e-3)
    >>> out = model(pixel_values_videos=videos, labels=labels)   # videos (B, 16, 3, 224, 224), ImageNet-normalised
    >>> out.loss.backward(); optimizer.step()
    ```
    """

    def __init__(self, config: TrajAdapterConfig):
        super().__init__(config)
        width = config.backbone_hidden_size
        self.token_grid = config.token_grid
        self.backbone = _build_backbone(config.backbone_config)
        trajectory = config.probe_type == "trajectory"
        self.segmenter = TrajTokModel(config.trajtok_config) if trajectory else None
        self.query_projection = (
            nn.Linear(config.trajtok_config.hidden_size, width)
            if trajectory and config.query_init != "mean_pool"
            else None
        )
        self.subtoken_offsets = nn.Parameter(torch.empty(config.tokens_per_trajectory, width)) if trajectory else None
        self.refinement = _build_refinement(config) if trajectory else None
        self.probe = TrajAdapterAttentiveProbe(config) if config.probe_type != "linear" else None
        self.classifier_norm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(width, config.num_labels)
        self.post_init()
        self._freeze()

    def get_input_embeddings(self) -> nn.Module:
        """The frozen backbone's input embedding (its tubelet / patch embedding, as its own model returns it)."""
        return self.backbone.get_input_embeddings()

    # ------------------------------------------------------------------ frozen parts
    def frozen_modules(self) -> list[nn.Module]:
        """The backbone and (trajectory probe) the segmenter."""
        return [m for m in (self.backbone, self.segmenter) if m is not None]

    def _freeze(self) -> None:
        for module in self.frozen_modules():
            module.requires_grad_(False)
            module.eval()

    def train(self, mode: bool = True):
        """Train/eval the adapter; the backbone and the segmenter always stay in eval mode."""
        super().train(mode)
        for module in self.frozen_modules():
            module.eval()
        return self

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        # transformers' loader materialises fresh Parameters (requires_grad=True): freeze the frozen parts again.
        loaded = super().from_pretrained(*args, **kwargs)
        (loaded[0] if isinstance(loaded, tuple) else loaded)._freeze()
        return loaded

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters of the adapter (everything but the backbone and the segmenter)."""
        frozen = {id(p) for m in self.frozen_modules() for p in m.parameters()}
        return [p for p in self.parameters() if id(p) not in frozen]

    @classmethod
    def from_backbone_pretrained(
        cls,
        backbone_name_or_path,
        segmenter_name_or_path=None,
        config: TrajAdapterConfig | None = None,
        backbone_kwargs: dict | None = None,
        segmenter_kwargs: dict | None = None,
        **config_kwargs,
    ) -> TrajAdapterForVideoClassification:
        """A new adapter (random probe) on a pretrained backbone and, for the trajectory probe, a pretrained segmenter.

        Args:
            backbone_name_or_path: a folder (or Hub id) of a supported video model, loaded with `AutoModel`
                (a `...ForVideoClassification` checkpoint works too: its head is dropped).
            segmenter_name_or_path: a folder of a [`TrajTokModel`]; required for `probe_type="trajectory"`.
            config ([`TrajAdapterConfig`], *optional*): the probe settings; its `backbone_config` and
                `trajtok_config` are replaced by the pretrained models'. Without it,
                `TrajAdapterConfig(**config_kwargs)` is used.
            backbone_kwargs, segmenter_kwargs: passed to the two `from_pretrained` calls.
        """
        backbone = AutoModel.from_pretrained(backbone_name_or_path, **(backbone_kwargs or {}))
        segmenter = None
        if segmenter_name_or_path is not None:
            segmenter = AutoModel.from_pretrained(segmenter_name_or_path, **(segmenter_kwargs or {}))
            if not isinstance(segmenter.config, TrajTokConfig):
                raise ValueError(
                    f"segmenter_name_or_path {segmenter_name_or_path!r} holds a {type(segmenter).__name__}, not a "
                    "TrajTokModel"
                )
        if config is None:
            config_kwargs["backbone_config"] = backbone.config.to_dict()
            if segmenter is not None:
                config_kwargs["trajtok_config"] = segmenter.config.to_dict()
            config = TrajAdapterConfig(**config_kwargs)
        else:
            if config_kwargs:
                raise TypeError(f"pass either config or config keyword arguments, got both ({sorted(config_kwargs)})")
            values = config.to_dict()
            values["backbone_config"] = backbone.config.to_dict()
            if segmenter is not None:
                values["trajtok_config"] = segmenter.config.to_dict()
            config = TrajAdapterConfig.from_dict(values)
        if config.probe_type == "trajectory" and segmenter is None:
            raise ValueError("probe_type='trajectory' needs segmenter_name_or_path (a pretrained TrajTokModel folder)")
        model = cls(config)
        result = model.backbone.load_state_dict(backbone.state_dict(), strict=False)
        unexpected = [k for k in result.unexpected_keys if not k.startswith("pooler.")]
        if result.missing_keys or unexpected:
            raise ValueError(
                f"the pretrained backbone at {backbone_name_or_path!r} does not match: missing {result.missing_keys}, "
                f"unexpected {unexpected}"
            )
        if model.segmenter is not None and segmenter is not None:
            model.segmenter.load_state_dict(segmenter.state_dict())
        model._freeze()
        return model

    # ------------------------------------------------------------------ input checks
    def _check_backbone_input(self, pixel_values_videos: torch.Tensor) -> None:
        check_video_pixels(pixel_values_videos, "pixel_values_videos")
        grid = self.token_grid
        frames, height, width = pixel_values_videos.shape[1], *pixel_values_videos.shape[3:]
        backbone = type(self.backbone).__name__
        if grid.frames is not None and frames != grid.frames:
            raise ValueError(
                f"pixel_values_videos has {frames} frames but the backbone ({backbone}) takes exactly "
                f"{grid.frames} (backbone_config's position table)"
            )
        if frames % grid.tubelet:
            raise ValueError(
                f"pixel_values_videos has {frames} frames, not a multiple of the backbone's tubelet ({grid.tubelet})"
            )
        if grid.image_size is not None and (height, width) != grid.image_size:
            raise ValueError(
                f"pixel_values_videos frames are {height}×{width} but the backbone ({backbone}) takes "
                f"{grid.image_size[0]}×{grid.image_size[1]}"
            )
        if height % grid.patch[0] or width % grid.patch[1]:
            raise ValueError(
                f"pixel_values_videos frames ({height}×{width}) must be multiples of the patch size {grid.patch}"
            )

    # ------------------------------------------------------------------ frozen forward
    @torch.no_grad()
    def get_frozen_features(
        self,
        pixel_values_videos: torch.FloatTensor,
        segmenter_pixel_values_videos: torch.FloatTensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool | int | list[int] = False,
    ) -> TrajAdapterFrozenFeatures:
        r"""
        Run the frozen parts (no gradient, eval mode). Floating inputs are cast to the frozen parts' dtype (a
        bfloat16 model runs straight from the processor's float32 output).

        Args:
            pixel_values_videos (`torch.FloatTensor` of shape `(batch, frames, 3, height, width)`):
                Frames normalised for the backbone (and for the segmenter unless the next argument is given).
            segmenter_pixel_values_videos (`torch.FloatTensor` of shape `(batch, frames, 3, h', w')`, *optional*):
                The same frames normalised/sized for the segmenter (trajectory probe only).
            output_attentions (`bool`, *optional*, defaults to `False`):
                Return the backbone's attention weights.
            output_hidden_states (`bool`, `int` or `list[int]`, *optional*, defaults to `False`):
                Return the backbone's hidden states (an index or a list of indices selects some of them, as for
                transformers' models).
        """
        self._check_backbone_input(pixel_values_videos)
        _check_output_flags(output_attentions, output_hidden_states)
        if output_attentions and self.backbone.config._attn_implementation != "eager":
            logger.warning_once(
                f"output_attentions=True: the backbone's {self.backbone.config._attn_implementation!r} attention "
                "computes no weights; load the model with attn_implementation='eager' to get them"
            )
        grid = self.token_grid
        features, output = run_backbone(
            self.backbone,
            grid,
            pixel_values_videos.to(self.backbone.dtype),
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        recorded = {
            "hidden_states": output.get("hidden_states") if output_hidden_states is not False else None,
            "attentions": output.get("attentions") if output_attentions else None,
        }
        if self.segmenter is None:
            if segmenter_pixel_values_videos is not None:
                raise ValueError(
                    "segmenter_pixel_values_videos were given but "
                    f"probe_type={self.config.probe_type!r} has no segmenter"
                )
            return TrajAdapterFrozenFeatures(patch_features=features, **recorded)
        segmenter_pixels = pixel_values_videos
        if segmenter_pixel_values_videos is not None:
            check_video_pixels(segmenter_pixel_values_videos, "segmenter_pixel_values_videos")
            if segmenter_pixel_values_videos.shape[:2] != pixel_values_videos.shape[:2]:
                raise ValueError(
                    "segmenter_pixel_values_videos must hold the same videos and frames as pixel_values_videos: "
                    f"(batch, frames) {tuple(segmenter_pixel_values_videos.shape[:2])} vs "
                    f"{tuple(pixel_values_videos.shape[:2])}"
                )
            segmenter_pixels = segmenter_pixel_values_videos
        n_segmenter = min(self.segmenter.config.tokens_per_trajectory_choices)  # its tokens are not used
        segmentation = self.segmenter(
            segmenter_pixels.to(self.segmenter.dtype), tokens_per_trajectory=n_segmenter, return_dict=True
        )
        ids = token_grid_trajectory_ids(
            segmentation.assignment_logits,
            tuple(features.shape[1:4]),
            grid.tubelet,
            self.segmenter.config.chunk_size,
            self.config.segmenter_logits_antialias,
        )
        return TrajAdapterFrozenFeatures(
            patch_features=features, trajectory_ids=ids, segmenter_queries=segmentation.trajectory_queries, **recorded
        )

    # ------------------------------------------------------------------ adapter
    def _trajectory_tokens(self, frozen: TrajAdapterFrozenFeatures, hard_mask_implementation: str = "segment"):
        """Refinement Perceiver over the backbone tokens under the hard mask → tokens (B, S·n, D), mask (B, S·n)."""
        config = self.config
        features = frozen.patch_features.to(self.classifier.weight.dtype)
        batch, width = features.shape[0], features.shape[-1]
        context = features.reshape(batch, -1, width)  # (t', row, col) raster
        ids = frozen.trajectory_ids.reshape(batch, -1)
        num_slots = frozen.segmenter_queries.shape[1]
        n = config.tokens_per_trajectory
        if int(ids.min()) < 0 or int(ids.max()) >= num_slots:
            raise ValueError(f"trajectory_ids must lie in [0, {num_slots}) (the segmenter's C·K slots)")
        active = torch.zeros(batch, num_slots, dtype=torch.bool, device=ids.device).scatter_(1, ids, True)

        queries = 0
        if config.query_init != "mean_pool":
            queries = self.query_projection(frozen.segmenter_queries.to(context.dtype))  # (B, S, D)
        if config.query_init != "segmenter_queries":
            flat = (ids + torch.arange(batch, device=ids.device)[:, None] * num_slots).reshape(-1)
            sums = context.new_zeros(batch * num_slots, width).index_add_(0, flat, context.reshape(-1, width))
            counts = torch.bincount(flat, minlength=batch * num_slots).clamp_min(1).to(context.dtype)
            queries = queries + (sums / counts[:, None]).reshape(batch, num_slots, width)
        latents = (queries.unsqueeze(2) + self.subtoken_offsets.view(1, 1, n, width)).reshape(
            batch, num_slots * n, width
        )
        hard_mask = HardMask(trajectory_ids=ids, tokens_per_trajectory=n, implementation=hard_mask_implementation)
        tokens = self.refinement(latents, context, hard_mask)
        mask = active.repeat_interleave(n, dim=1)
        return tokens.masked_fill(~mask.unsqueeze(-1), 0.0), mask, active

    def forward(
        self,
        pixel_values_videos: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        segmenter_pixel_values_videos: torch.FloatTensor | None = None,
        frozen_features: TrajAdapterFrozenFeatures | None = None,
        hard_mask_implementation: str = "segment",
        output_attentions: bool | None = None,
        output_hidden_states: bool | int | list[int] | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> TrajAdapterClassifierOutput | tuple:
        r"""
        Args:
            pixel_values_videos (`torch.FloatTensor` of shape `(batch, frames, 3, height, width)`):
                Frames normalised for the backbone (e.g. ImageNet mean/std at 224² for VideoMAE, which is also
                what [`TrajTokVideoProcessor`] produces for the segmenter).
            labels (`torch.LongTensor` of shape `(batch,)`, *optional*):
                Class indices (float targets for regression / multi-label, as transformers' classifiers).
            segmenter_pixel_values_videos (`torch.FloatTensor` of shape `(batch, frames, 3, h', w')`, *optional*):
                The segmenter's own input when its size/normalisation differ from the backbone's.
            frozen_features ([`TrajAdapterFrozenFeatures`], *optional*):
                Cached output of [`get_frozen_features`]; replaces the two inputs above.
            hard_mask_implementation (`str`, *optional*, defaults to `"segment"`):
                Refinement attention: `"segment"` (per-token segment softmax, O(tokens)) or `"dense"` (an explicit
                (queries × tokens) mask; equal to ≤ 1e-5, faster when C·K·n × tokens is small, as in tiny models).
            output_attentions (`bool`, *optional*):
                Return the frozen backbone's attention weights (`attentions`). Defaults to `config.output_attentions`.
            output_hidden_states (`bool`, `int` or `list[int]`, *optional*):
                Return the frozen backbone's hidden states (`hidden_states`); an index or a list of indices selects
                some of them, as for transformers' models. Defaults to `config.output_hidden_states`. With
                `frozen_features`, both are taken from the cache (None unless [`get_frozen_features`] was asked).
            return_dict (`bool`, *optional*):
                Return a [`TrajAdapterClassifierOutput`] (default: `config.return_dict`) or a tuple of its non-None
                fields.

        Floating inputs are cast to the model's dtype: a model loaded in bfloat16 / float16 runs straight from the
        video processor's float32 output.
        """
        if kwargs:
            hint = " (the video goes in pixel_values_videos)" if "pixel_values" in kwargs else ""
            raise TypeError(
                f"TrajAdapterForVideoClassification.forward got unexpected arguments {sorted(kwargs)}{hint}"
            )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        _check_output_flags(output_attentions, output_hidden_states)
        if hard_mask_implementation not in HARD_MASK_IMPLEMENTATIONS:
            raise ValueError(
                f"hard_mask_implementation must be one of {HARD_MASK_IMPLEMENTATIONS}, got {hard_mask_implementation!r}"
            )
        if frozen_features is None:
            if pixel_values_videos is None:
                raise ValueError("pixel_values_videos is required (or frozen_features from get_frozen_features)")
            frozen_features = self.get_frozen_features(
                pixel_values_videos, segmenter_pixel_values_videos, output_attentions, output_hidden_states
            )
        elif pixel_values_videos is not None or segmenter_pixel_values_videos is not None:
            raise ValueError("pass either pixel_values_videos or frozen_features, not both")
        elif not isinstance(frozen_features, TrajAdapterFrozenFeatures):
            raise TypeError(
                "frozen_features must be the TrajAdapterFrozenFeatures of get_frozen_features, got "
                f"{type(frozen_features).__name__}"
            )
        if self.segmenter is not None and frozen_features.trajectory_ids is None:
            raise ValueError("frozen_features lack trajectory_ids/segmenter_queries (computed without a segmenter?)")

        tokens = mask = ids = num_trajectories = None
        probe_type = self.config.probe_type
        if probe_type == "trajectory":
            tokens, mask, active = self._trajectory_tokens(frozen_features, hard_mask_implementation)
            pooled = self.probe(tokens, mask)
            ids, num_trajectories = frozen_features.trajectory_ids, active.sum(dim=1)
        else:
            features = frozen_features.patch_features.to(self.classifier.weight.dtype)
            patches = features.reshape(features.shape[0], -1, features.shape[-1])
            pooled = self.probe(patches) if probe_type == "attentive" else patches.mean(dim=1)
        logits = self.classifier(self.dropout(self.classifier_norm(pooled)))

        loss = None
        if labels is not None:
            num_labels = self.config.num_labels
            if not isinstance(labels, torch.Tensor):
                raise TypeError(f"labels must be a torch.Tensor of shape (batch,), got {type(labels).__name__}")
            if labels.ndim == 0 or labels.shape[0] != logits.shape[0]:
                raise ValueError(
                    f"labels must have the videos' batch size {logits.shape[0]} in dim 0, "
                    f"got shape {tuple(labels.shape)}"
                )
            class_indices = not labels.is_floating_point() and num_labels > 1
            if class_indices and labels.numel() and not (0 <= int(labels.min()) and int(labels.max()) < num_labels):
                raise ValueError(f"labels must be class indices in [0, {num_labels}), got {labels.tolist()}")
            loss = self.loss_function(labels, logits, self.config)

        output = TrajAdapterClassifierOutput(
            loss=loss,
            logits=logits,
            pooled_output=pooled,
            trajectory_tokens=tokens,
            trajectory_mask=mask,
            trajectory_ids=ids,
            num_trajectories=num_trajectories,
            hidden_states=frozen_features.hidden_states if output_hidden_states is not False else None,
            attentions=frozen_features.attentions if output_attentions else None,
        )
        return output if return_dict else output.to_tuple()
