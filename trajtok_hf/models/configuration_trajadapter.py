"""Configuration of TrajAdapter, trajectory pooling as a probing head on a frozen video backbone (paper Sec. 5).

Layout (what ``config.json`` holds):

```
TrajAdapterConfig (model_type "trajadapter")
├── backbone_config: a transformers video backbone with a space-time token grid (VideoMAE by default; V-JEPA 2,
│   TimeSformer, ViViT, VideoPrism vision) — frozen
├── trajtok_config: TrajTokConfig, the segmenter whose hard masks group the backbone tokens — frozen
│   (None for the "attentive" and "linear" baselines, which need no segmenter)
└── probe settings: probe_type, tokens_per_trajectory, refinement Perceiver, attentive probe, classifier; id2label
```

Which backbones are supported, and how their token grid is read, is the table :data:`BACKBONE_TOKEN_GRIDS`: each
entry says which forward argument takes the ``(B, T, 3, H, W)`` video, the tubelet length (frames per token), the
spatial patch size, how many non-patch tokens ([CLS]) precede the patch tokens, and the order of the patch tokens.
A backbone config outside the table (an image model, a text model) is rejected at construction with a
``ValueError`` naming ``backbone_config``.

The deprecated name ``tokenizer_config`` (it collides with a text tokenizer's ``tokenizer_config.json``) still loads,
with a ``FutureWarning``, and is saved as ``trajtok_config``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from .configuration_trajtok import TrajTokConfig, _warn_unknown_kwargs, accept_renamed_arguments

PROBE_TYPES = ("trajectory", "attentive", "linear")
QUERY_INITS = ("segmenter_queries", "mean_pool", "segmenter_queries_plus_mean_pool")
LATENT_NORM_PLACEMENTS = ("final", "every_layer")


def _pair(value) -> tuple[int, int]:
    if isinstance(value, (list, tuple)):
        return int(value[0]), int(value[1])
    return int(value), int(value)


@dataclass(frozen=True)
class BackboneTokenGrid:
    """How one transformers video model lays out its output tokens.

    Attributes:
        input_name: forward argument that takes the ``(B, T, 3, H, W)`` video.
        tubelet: frames per token (the temporal stride of the token grid).
        patch: spatial (height, width) patch size.
        prefix_tokens: tokens before the patch tokens in ``last_hidden_state`` ([CLS]).
        layout: order of the patch tokens: ``"thw"`` (time slowest, raster per frame) or ``"hwt"`` (row, column,
            then time fastest — TimeSformer).
        frames: the exact number of input frames the model needs (its position tables), or None (any multiple of
            the tubelet).
        image_size: the exact (height, width) the model needs, or None.
        forward_kwargs: extra arguments of the backbone's forward.
    """

    input_name: str
    tubelet: int
    patch: tuple[int, int]
    prefix_tokens: int
    layout: str
    frames: int | None
    image_size: tuple[int, int] | None
    forward_kwargs: tuple = ()

    def grid(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        """(t', h', w') of the token grid for a (frames, height, width) input."""
        return frames // self.tubelet, height // self.patch[0], width // self.patch[1]


def _videomae(c) -> BackboneTokenGrid:
    # VideoMAEModel: Conv3d tubelets flattened (t, row, col); fixed sin-cos positions for num_frames × image_size.
    return BackboneTokenGrid(
        "pixel_values", int(c.tubelet_size), _pair(c.patch_size), 0, "thw", int(c.num_frames), _pair(c.image_size)
    )


def _vjepa2(c) -> BackboneTokenGrid:
    # VJEPA2Model (encoder only: skip_predictor): Conv3d tubelets (t, row, col); 3-D RoPE whose rows/columns come
    # from crop_size (so the frame size is fixed) while the time axis extrapolates (any multiple of the tubelet).
    return BackboneTokenGrid(
        "pixel_values_videos",
        int(c.tubelet_size),
        _pair(c.patch_size),
        0,
        "thw",
        None,
        _pair(c.crop_size),
        (("skip_predictor", True),),
    )


def _timesformer(c) -> BackboneTokenGrid:
    # TimesformerModel: [CLS] + per-frame patches stored patch-major, frame fastest ((row, col, t)); the layers read
    # num_frames and image_size from the config, so both are fixed.
    if c.attention_type == "space_only":
        raise ValueError(
            "backbone_config: TimeSformer with attention_type='space_only' returns one sequence per frame, not a "
            "space-time token grid; use 'divided_space_time' or 'joint_space_time'"
        )
    return BackboneTokenGrid("pixel_values", 1, _pair(c.patch_size), 1, "hwt", int(c.num_frames), _pair(c.image_size))


def _vivit(c) -> BackboneTokenGrid:
    # VivitModel: [CLS] + Conv3d tubelets (t, row, col); learned positions for num_frames × image_size.
    t, ph, pw = (int(v) for v in c.tubelet_size)
    return BackboneTokenGrid("pixel_values", t, (ph, pw), 1, "thw", int(c.num_frames), _pair(c.image_size))


def _videoprism(c) -> BackboneTokenGrid:
    # VideoPrismVisionModel: factorised encoder, output reshaped to (t, row, col); learned positions.
    t, ph, pw = (int(v) for v in c.tubelet_size)
    return BackboneTokenGrid("pixel_values_videos", t, (ph, pw), 0, "thw", int(c.num_frames), _pair(c.image_size))


BACKBONE_TOKEN_GRIDS = {
    "videomae": _videomae,
    "vjepa2": _vjepa2,
    "timesformer": _timesformer,
    "vivit": _vivit,
    "videoprism_vision_model": _videoprism,
}
"""model_type → function(backbone config) → :class:`BackboneTokenGrid`."""


def backbone_token_grid(backbone_config) -> BackboneTokenGrid:
    """The :class:`BackboneTokenGrid` of a backbone config; ``ValueError`` naming ``backbone_config`` otherwise."""
    model_type = getattr(backbone_config, "model_type", None)
    if model_type not in BACKBONE_TOKEN_GRIDS:
        raise ValueError(
            f"backbone_config must be a video backbone with a space-time token grid, one of "
            f"{sorted(BACKBONE_TOKEN_GRIDS)}; got model_type {model_type!r} ({type(backbone_config).__name__}), "
            "which has no (frames × rows × columns) token grid TrajAdapter can pool"
        )
    return BACKBONE_TOKEN_GRIDS[model_type](backbone_config)


@accept_renamed_arguments({"tokenizer_config": "trajtok_config"})
class TrajAdapterConfig(PreTrainedConfig):
    r"""
    Configuration of [`TrajAdapterForVideoClassification`]: a frozen video backbone, a frozen TrajTok segmenter and a
    trainable probe that pools the backbone's patch tokens by trajectories (paper Sec. 5), plus the two usual
    baselines in the same class (`probe_type`).

    Args:
        backbone_config (`dict` or `PreTrainedConfig`, *optional*):
            The frozen video backbone: a config of a transformers model in [`BACKBONE_TOKEN_GRIDS`] (`videomae`,
            `vjepa2`, `timesformer`, `vivit`, `videoprism_vision_model`). Defaults to `VideoMAEConfig()` (ViT-B,
            16 frames at 224², tubelets of 2 frames × 16²). Load pretrained weights with
            [`TrajAdapterForVideoClassification.from_backbone_pretrained`].
        trajtok_config (`dict` or [`TrajTokConfig`], *optional*):
            The frozen segmenter. Defaults to `TrajTokConfig()` for `probe_type="trajectory"`; unused (None) for the
            baselines. Its `chunk_size` must be a multiple of the backbone's tubelet length (a tubelet never spans
            two chunks). Deprecated name: `tokenizer_config`.
        probe_type (`str`, *optional*, defaults to `"trajectory"`):
            `"trajectory"`: TrajAdapter (hard-mask refinement Perceiver → trajectory tokens → attentive probe);
            `"attentive"`: attentive probe over all patch tokens (V-JEPA's probe); `"linear"`: mean of all patch
            tokens → linear classifier.
        tokens_per_trajectory (`int`, *optional*, defaults to 1):
            n, tokens per trajectory (Matryoshka tokens; the paper evaluates 1, 2, 4). Each trajectory's n queries
            start from the same initial query plus n Fourier-ring offsets.
        query_init (`str`, *optional*, defaults to `"segmenter_queries"`):
            Initial refinement queries: `"segmenter_queries"` — the segmenter's trajectory queries linearly mapped
            to the backbone width (as the TrajVLM connector); `"mean_pool"` — the mean of the backbone tokens of
            the trajectory (hard mask); `"segmenter_queries_plus_mean_pool"` — their sum.
        refinement_depth (`int`, *optional*, defaults to 2):
            Layers of the hard-mask refinement Perceiver, run at the backbone's width.
        num_attention_heads (`int`, *optional*, defaults to 8):
            Heads of the refinement Perceiver and of the attentive probe; must divide the backbone width.
        perceiver_ff_mult (`int`, *optional*, defaults to 4):
            Width multiplier of the Perceiver's gated feed-forward.
        rope_theta (`float`, *optional*, defaults to 10000.0):
            Base of the Perceiver's 1D RoPE over the (latents; t', row, col) sequence.
        rope_fraction (`float`, *optional*, defaults to 1.0):
            Fraction of each head's dims rotated by RoPE.
        latent_norm_placement (`str`, *optional*, defaults to `"final"`):
            Perceiver norm placement (see [`TrajTokConfig`]).
        subtoken_fourier_frequencies (`int`, *optional*, defaults to 16):
            Ring frequencies of the Fourier initialisation of the sub-token offsets.
        subtoken_init_scale (`float`, *optional*, defaults to 0.02):
            Scale of the sub-token offsets' initialisation.
        segmenter_logits_antialias (`bool`, *optional*, defaults to `False`):
            Antialias the bilinear resize of the segmenter's logits to the token grid (a box-like average over the
            patch's mask cells). Default: plain bilinear, as the paper.
        probe_num_queries (`int`, *optional*, defaults to 1):
            Learned queries of the attentive probe; their outputs are averaged.
        probe_mlp_ratio (`float`, *optional*, defaults to 4.0):
            MLP width ratio of the attentive probe's cross-attention block.
        classifier_dropout (`float`, *optional*, defaults to 0.0):
            Dropout before the linear classifier.
        layer_norm_eps (`float`, *optional*, defaults to 1e-6):
            Epsilon of the probe's and classifier's LayerNorms.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Std of the truncated-normal initialisation of the adapter's linear layers and probe queries.
        num_labels / id2label / label2id:
            The classes, as for any transformers classifier (`problem_type` too).

    Example:

    ```python
    >>> from transformers import AutoModelForVideoClassification
    >>> from trajtok_hf import TrajAdapterConfig, TrajAdapterForVideoClassification
    >>> config = TrajAdapterConfig(num_labels=400, tokens_per_trajectory=2)        # VideoMAE-B + TrajTok defaults
    >>> model = TrajAdapterForVideoClassification(config)
    >>> baseline = TrajAdapterForVideoClassification(TrajAdapterConfig(num_labels=400, probe_type="attentive"))
    ```
    """

    model_type = "trajadapter"
    sub_configs_defaults = {
        "backbone_config": SubConfigSpec(config_class=AutoConfig, model_type="videomae"),
        "trajtok_config": SubConfigSpec(config_class=TrajTokConfig, optional=True),
    }

    backbone_config: dict | PreTrainedConfig | None = None
    trajtok_config: dict | PreTrainedConfig | None = None
    probe_type: str = "trajectory"
    tokens_per_trajectory: int = 1
    query_init: str = "segmenter_queries"
    refinement_depth: int = 2
    num_attention_heads: int = 8
    perceiver_ff_mult: int = 4
    rope_theta: float = 10000.0
    rope_fraction: float = 1.0
    latent_norm_placement: str = "final"
    subtoken_fourier_frequencies: int = 16
    subtoken_init_scale: float = 0.02
    segmenter_logits_antialias: bool = False
    probe_num_queries: int = 1
    probe_mlp_ratio: float = 4.0
    classifier_dropout: float = 0.0
    layer_norm_eps: float = 1e-6
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        _warn_unknown_kwargs(type(self), kwargs)
        if self.probe_type not in PROBE_TYPES:
            raise ValueError(f"probe_type must be one of {PROBE_TYPES}, got {self.probe_type!r}")
        if self.trajtok_config is None and self.probe_type == "trajectory":
            self.trajtok_config = {}
        if self.trajtok_config is not None and not isinstance(self.trajtok_config, (dict, TrajTokConfig)):
            raise ValueError(
                f"trajtok_config must be a dict or a TrajTokConfig, got {type(self.trajtok_config).__name__}"
            )
        if isinstance(self.backbone_config, dict):
            backbone = dict(self.backbone_config)
            backbone.setdefault("model_type", "videomae")
            self.backbone_config = backbone
        elif self.backbone_config is not None and not isinstance(self.backbone_config, PreTrainedConfig):
            raise ValueError(
                f"backbone_config must be a dict or a PreTrainedConfig, got {type(self.backbone_config).__name__}"
            )
        super().__post_init__(**kwargs)
        self._validate_trajadapter()

    def _validate_trajadapter(self):
        grid = backbone_token_grid(self.backbone_config)  # ValueError for a backbone without a token grid
        width = self.backbone_hidden_size
        for name in (
            "tokens_per_trajectory",
            "refinement_depth",
            "num_attention_heads",
            "perceiver_ff_mult",
            "subtoken_fourier_frequencies",
            "probe_num_queries",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        for name, allowed in (("query_init", QUERY_INITS), ("latent_norm_placement", LATENT_NORM_PLACEMENTS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if not isinstance(self.segmenter_logits_antialias, bool):
            raise ValueError(f"segmenter_logits_antialias must be a bool, got {self.segmenter_logits_antialias!r}")
        if width % self.num_attention_heads:
            raise ValueError(
                f"num_attention_heads ({self.num_attention_heads}) must divide the backbone width "
                f"(backbone_config.hidden_size = {width})"
            )
        if not 0.0 <= self.rope_fraction <= 1.0 or int(width // self.num_attention_heads * self.rope_fraction) % 2:
            raise ValueError(
                f"rope_fraction must lie in [0, 1] and rotate an even number of the head's "
                f"{width // self.num_attention_heads} dims, got {self.rope_fraction!r}"
            )
        for name in ("probe_mlp_ratio", "layer_norm_eps", "initializer_range", "rope_theta"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        for name in ("classifier_dropout", "subtoken_init_scale"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        if self.classifier_dropout >= 1:
            raise ValueError(f"classifier_dropout must be < 1, got {self.classifier_dropout!r}")
        if self.probe_type == "trajectory":
            if not isinstance(self.trajtok_config, TrajTokConfig):
                raise ValueError("probe_type='trajectory' needs a trajtok_config (the TrajTok segmenter)")
            if self.trajtok_config.chunk_size % grid.tubelet:
                raise ValueError(
                    f"trajtok_config.chunk_size ({self.trajtok_config.chunk_size}) must be a multiple of the "
                    f"backbone's tubelet length ({grid.tubelet} frames), so that no tubelet spans two segmenter chunks"
                )
        if self.num_labels is None or self.num_labels < 1:
            raise ValueError(f"num_labels must be >= 1, got {self.num_labels!r}")

    @property
    def backbone_hidden_size(self) -> int:
        """Width D of the backbone's tokens (the adapter runs at this width)."""
        width = getattr(self.backbone_config, "hidden_size", None)
        if isinstance(width, bool) or not isinstance(width, int):
            raise ValueError(f"backbone_config ({type(self.backbone_config).__name__}) must define an int hidden_size")
        return width

    @property
    def token_grid(self) -> BackboneTokenGrid:
        """The backbone's :class:`BackboneTokenGrid`."""
        return backbone_token_grid(self.backbone_config)


__all__ = ["BACKBONE_TOKEN_GRIDS", "BackboneTokenGrid", "TrajAdapterConfig", "backbone_token_grid"]
