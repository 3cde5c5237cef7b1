"""Configuration of the TrajTok tokenizer (paper Sec. 3, Eq. 1–2).

Every hyper-parameter of the tokenizer is a documented field with the official default. Where the public release
(hellomuffin/trajtok) differs from the paper, the release's behaviour is an option whose default stays the paper's
form; the converters switch those options on.
"""

from __future__ import annotations

import difflib
import functools
import math
import warnings

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec
from transformers.utils import logging

logger = logging.get_logger(__name__)

# Backbones whose AutoBackbone returns one feature map per stage at strides 4, 8, 16, 32: the ConvNeXt family, and
# transformers' wrapper of timm models (``timm_backbone``, feature levels 1-4: strides 4-32 for timm's CNNs).
CONVNEXT_BACKBONES = ("convnext", "convnextv2", "dinov3_convnext")
TIMM_BACKBONE = "timm_backbone"
SUPPORTED_BACKBONES = (*CONVNEXT_BACKBONES, TIMM_BACKBONE)
TIMM_FEATURE_LEVELS = [1, 2, 3, 4]
QUERY_INITS = ("soft_pool", "latent", "latent_plus_soft_pool")
SOFT_POOL_NORMALIZATIONS = ("sum", "mean")
LATENT_NORM_PLACEMENTS = ("final", "every_layer")
MATCHING_TIE_BREAKS = ("index", "soft")  # loss_trajtok.TIE_BREAKS (the config must not import the loss)
ALLOWED_TOKENS_PER_TRAJECTORY = (1, 2, 4)
TRAJECTORY_MOTION_FUSIONS = ("add", "mlp")
FRAME_DIFFERENCE_CHANNELS = 9  # RGB, RGB − previous RGB, next RGB − RGB
FRAME_DIFFERENCE_ALIGNMENTS = ("none", "translation")
# frame_difference_alignment="translation" adds the two differences again, to the camera-aligned neighbours
ALIGNED_FRAME_DIFFERENCE_CHANNELS = 15

# ConvNeXt-Tiny (paper Sec. 3): depths 3/3/9/3, widths 96-768. All four stages are returned.
_DEFAULT_BACKBONE = {
    "depths": [3, 3, 9, 3],
    "hidden_sizes": [96, 192, 384, 768],
    "layer_norm_eps": 1e-6,
    "out_features": ["stage1", "stage2", "stage3", "stage4"],
}


class TrajTokConfig(PreTrainedConfig):
    r"""
    Configuration of [`TrajTokModel`], the trajectory tokenizer. Defaults reproduce the paper's tokenizer with a
    ConvNeXt-Tiny backbone, width 512 and K=128 trajectories per chunk.

    Args:
        backbone_config (`dict` or `PreTrainedConfig`, *optional*):
            A transformers ConvNeXt-family config (`convnext`, `convnextv2` or `dinov3_convnext`) for the per-frame
            backbone (dense features), or a `timm_backbone` config naming a timm CNN (transformers' `TimmBackbone`;
            needs the `timm` package), such as `tf_efficientnet_lite0`. Defaults to ConvNeXt-Tiny. `out_features` is
            forced to all four stages (for timm: feature levels 1-4, strides 4 to 32). Building the model never
            downloads: a timm backbone starts from random weights, as a ConvNeXt does.
        pretrained_backbone_name_or_path (`str`, *optional*):
            A local folder or Hub id of a pretrained transformers ConvNeXt-family backbone (for instance DINOv3
            ConvNeXt-S, the release's backbone) or of a saved `TimmBackbone` (config.json + model.safetensors, as
            `python -m trajtok_hf.convert.convert_efficientnet_lite` writes), whose weights
            [`TrajTokModel.load_pretrained_backbone`] loads, and which [`TrajTokModel.from_pretrained_backbone`]
            records. Saved in config.json as the backbone's
            provenance; neither building the model nor `from_pretrained` reads it (construction stays offline, and a
            saved TrajTok checkpoint already holds its backbone weights).
        hidden_size (`int`, *optional*, defaults to 512):
            Feature width D of the summed multi-scale features and of both Perceivers.
        num_trajectories (`int`, *optional*, defaults to 128):
            K, the number of trajectory queries = the maximum number of trajectories per chunk.
        feature_layer_norm_eps (`float`, *optional*, defaults to 1e-5):
            Epsilon of the LayerNorm after each stage's 1×1 projection.
        shared_stage_layernorm (`bool`, *optional*, defaults to `False`):
            Release option: one LayerNorm shared by the four stage projections (the paper: one per stage).
        backbone_final_layernorm (`bool`, *optional*, defaults to `False`):
            Release option: pass the last stage map through the backbone's final norm (DINOv3
            `get_intermediate_layers(norm=True)`), as the official segmenter does.
        query_perceiver_depth (`int`, *optional*, defaults to 2):
            Layers of the trajectory-query Perceiver resampler.
        refinement_perceiver_depth (`int`, *optional*, defaults to 2):
            Layers of the hard-mask refinement Perceiver.
        num_attention_heads (`int`, *optional*, defaults to 8):
            Heads of both Perceivers; head dim = hidden_size / heads (64 at the defaults).
        perceiver_ff_mult (`int`, *optional*, defaults to 4):
            Width multiplier of the Perceivers' gated feed-forward.
        rope_theta (`float`, *optional*, defaults to 10000.0):
            Base of the 1D rotary embedding over the flattened (latents; t, row, col) sequence index.
        rope_fraction (`float`, *optional*, defaults to 1.0):
            Fraction of each head's dims that are rotated. Paper: all of them; release: 0.5 (first 32 of 64).
        latent_norm_placement (`str`, *optional*, defaults to `"final"`):
            `"final"`: Flamingo-style residual stream with one LayerNorm on the Perceiver output (paper).
            `"every_layer"`: release form, the latent LayerNorm replaces the residual stream at every layer and the
            output is not normalized.
        assignment_hidden_size (`int`, *optional*, defaults to 128):
            Hidden width of the two assignment MLP heads (D→128→64, Eq. 1).
        assignment_embed_dim (`int`, *optional*, defaults to 64):
            Output width of the two assignment heads, the space of the cosine similarity (Eq. 1).
        logit_scale_init_value (`float`, *optional*, defaults to log(16)):
            Initial σ of the learnable logit scale s = min(softplus(σ) + 1, logit_scale_max) (Eq. 1).
        logit_scale_max (`float`, *optional*, defaults to 20.0):
            Upper clamp of the logit scale.
        query_init (`str`, *optional*, defaults to `"soft_pool"`):
            How refinement queries start: `"soft_pool"` = z_k (Eq. 2) + Matryoshka offsets (paper),
            `"latent"` = learned per-slot latents (release), `"latent_plus_soft_pool"` = both summed. The model has
            the Fourier-ring offsets (`subtoken_offsets`) only with `"soft_pool"` and the per-slot latents
            (`refinement_latents`) only with the two latent variants. With `"latent"` the trajectory tokens depend
            on the grouping only through the hard (argmax) mask, so a loss on the tokens (TrajViT2's contrastive loss)
            sends exactly zero gradient into the query Perceiver, query latents, assignment heads and logit scale,
            as in the release; the soft-pool variants pass it through the soft mask (Eq. 2).
        soft_pool_normalization (`str`, *optional*, defaults to `"mean"`):
            Eq. 2 as written in the paper is the sum Σ_p M_kp F_p (`"sum"`); it grows with region size, so the
            default divides by the soft mass Σ_p M_kp + 1e-6 (`"mean"`, as the release's soft pool).
        detach_features (`bool`, *optional*, defaults to `True`):
            Feed the query Perceiver with F.detach() (the paper's most important ablation).
        matching_tie_break (`str`, *optional*, defaults to `"index"`):
            Training only: how the Hungarian matching of the segmentation loss breaks ties of equal hard IoU,
            `"index"` (scipy's choice, as the release) or `"soft"` (the slot with the most soft-mask mass on the
            GT trajectory); see `loss_trajtok.py`. Read by the training scripts and by [`TrajViT2Model`]'s
            segmentation loss.
        pixel_context_layers (`int`, *optional*, defaults to 0):
            Not in the paper (0 = its per-frame features). Blocks that mix the dense features F of a chunk over space
            and time before the Perceivers and the assignment read them: each is a ConvNeXt block in 3-D (depthwise
            3×7×7 convolution over (frame, row, column) of the 1/4 grid, LayerNorm, MLP ×4 with GELU, a layer scale
            initialised to 1e-6, residual), zero-padded at the chunk's first and last frame, so chunks stay
            independent. The paper's features come from a per-frame backbone, so a pixel's embedding sees neither
            its neighbours in time nor the motion of the region around it; these blocks let it.
        query_update_iterations (`int`, *optional*, defaults to 0):
            Not in the paper (0 = its Eq. 1 as written). Each iteration moves every query embedding of Eq. 1 toward
            the centre of the pixels it wins: q_k ← normalize(q_k + g_i · normalize(Σ_{p: argmax ℓ_p = k} e_p))
            with e_p the pixel embeddings and g_i a learned gate (`query_update_gates`, initialised to 1), then the
            logits are computed again; a slot that wins no pixel keeps its query. This is the cluster-wise argmax
            update of k-means mask transformers (kMaX-DeepLab): the queries of the Perceiver only start the
            clustering. Why: queries built from the mean pixel embedding of each ground-truth trajectory segment
            real-photo composites far better than the Perceiver's own queries (docs/results.md), so the query side,
            not the pixel embeddings alone, limits the segmentation. The assignment gradient does not flow through
            the argmax; the centres pass gradient to the pixel embeddings and the gates. Switching it on for a
            trained model changes its segmentation (the gates start at 1).
        use_hard_mask (`bool`, *optional*, defaults to `True`):
            Refinement tokens attend only to their own trajectory's pixels (hard mask). `False` = unmasked ablation.
        refinement_visible_last_pixels (`int`, *optional*, defaults to 0):
            Release quirk: every refinement query also sees the last N pixels of the chunk (release: 2).
        tokens_per_trajectory (`int`, *optional*, defaults to 1):
            n, tokens per trajectory used at inference when `forward` is not told otherwise (Matryoshka tokens).
        tokens_per_trajectory_choices (`list[int]`, *optional*, defaults to `[1, 2, 4]`):
            Matryoshka levels: training samples n uniformly from these when `forward` is not told otherwise.
        token_position_encoding (`bool`, *optional*, defaults to `False`):
            Adds a learned projection (zero at initialisation) of Fourier features of every pixel's (frame, row,
            column) within its chunk to the features the refinement Perceiver and the initial queries read, so that
            a trajectory token carries where and when its pixels are, and so which way it moves and in which order
            things happen. Not in the paper, whose tokens only see positions through the attention's rotary
            embedding (which weights the pixels but adds nothing to the values); off for converted checkpoints.
        trajectory_motion_encoding (`bool`, *optional*, defaults to `False`):
            Adds to every token a learned projection (zero at initialisation) of its trajectory's path through the
            chunk: per frame, whether it has pixels there and its centroid (row, column), scaled to [−1, 1] (frames
            past a shorter chunk's end are zeros). A direct cue of where a trajectory goes and when it appears or
            leaves. Not in the paper; off for converted checkpoints.
        trajectory_motion_init_std (`float`, *optional*, defaults to 0.0):
            Std of the normal initialisation of the `trajectory_motion_encoding` projection. `0` (zeros) keeps a
            warm-started model's outputs unchanged when the encoding is switched on. With zeros, a clip and its
            mirror image embed identically at the start, so the caption tower gets no gradient that tells "left" from
            "right" and, unless the captions already differ, the video tower none that tells the two paths apart (a
            symmetric saddle of the contrastive loss); a non-zero draw starts away from it. Not in the paper.
        trajectory_motion_fusion (`str`, *optional*, defaults to `"add"`):
            How the `trajectory_motion_encoding` path joins a token. `"add"`: its linear projection is added, so a
            token is (appearance) + (path) and the sum of a clip's tokens is the same when two objects exchange their
            paths — which object makes which motion is then left to the encoder's non-linear layers. `"mlp"`: a
            per-token MLP of the layer-normed token and the path, `Linear(D + 3·chunk_size, D)` → GELU →
            `Linear(D, D)` with the last layer zero at initialisation, is added as well, so a token can carry features
            of *this* appearance with *this* path (binding). Needs `trajectory_motion_encoding`. Not in the paper;
            `"add"` for converted checkpoints.
        subtoken_fourier_frequencies (`int`, *optional*, defaults to 16):
            F, the number of ring frequencies of the Fourier initialisation of the sub-token offsets.
        subtoken_init_scale (`float`, *optional*, defaults to 0.02):
            Scale of the Fourier-ring initialisation of the sub-token offsets.
        chunk_size (`int`, *optional*, defaults to 16):
            Frames per chunk; chunks are tokenized independently as one batch.
        frame_difference_input (`bool`, *optional*, defaults to `False`):
            Not in the paper (whose per-frame ConvNeXt sees appearance only): each frame enters the backbone with 9
            channels, the frame and its differences to the previous and to the next frame of the video (zeros at the
            first and last frame), so the dense features carry a motion cue. A segmenter trained from scratch on few
            images separates objects from a similar background by their motion; a pretrained backbone (paper:
            DINOv3) has appearance features that need no such cue. `backbone_config.num_channels` must be 9 (a
            backbone config left at 3 channels is set to 9). [`TrajTokModel.with_frame_difference_input`] turns a
            trained 3-channel model into one whose outputs are unchanged until it trains on.
        frame_difference_alignment (`str`, *optional*, defaults to `"none"`):
            Not in the paper. With `frame_difference_input`, `"translation"` adds six more channels (15 in all): the two
            differences again, taken after each neighbouring frame is moved onto the frame by the camera's
            translation between them (whole pixels, estimated by phase correlation of the grey frames; out-of-frame
            pixels differ by zero). When the camera pans, the plain differences are large over the whole textured
            background; the aligned ones are large only where something moves against it. Needs
            `frame_difference_input=True`; `backbone_config.num_channels` must be 15 (a backbone config left at 3
            channels is set to 15). [`TrajTokModel.with_frame_difference_input`] widens a trained 3- or 9-channel
            model with unchanged outputs.
        backbone_frames_per_pass (`int`, *optional*):
            Speed only, never the result: the ConvNeXt runs over the frames of all chunks in passes of this many
            frames. `None` (default): on CPU, passes of about 4 frames of 224² (max(1, 200704 // (H·W)) frames, so
            the activations stay in cache; a pixel budget rather than a fixed frame count, since passes of few small
            frames cost more in per-op overhead than they gain); on other devices all frames in one pass.
        output_size (`int`, *optional*):
            Width of the output tokens (after the output projection). Defaults to `hidden_size`.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Std of the truncated-normal initialisation of linear layers.

    Example:

    ```python
    >>> from trajtok_hf import TrajTokConfig, TrajTokModel
    >>> model = TrajTokModel(TrajTokConfig())
    ```
    """

    model_type = "trajtok"
    sub_configs_defaults = {
        "backbone_config": SubConfigSpec(config_class=AutoConfig, model_type="convnext", init_kwargs=_DEFAULT_BACKBONE)
    }

    backbone_config: dict | PreTrainedConfig | None = None
    pretrained_backbone_name_or_path: str | None = None
    hidden_size: int = 512
    num_trajectories: int = 128
    feature_layer_norm_eps: float = 1e-5
    shared_stage_layernorm: bool = False
    backbone_final_layernorm: bool = False
    query_perceiver_depth: int = 2
    refinement_perceiver_depth: int = 2
    num_attention_heads: int = 8
    perceiver_ff_mult: int = 4
    rope_theta: float = 10000.0
    rope_fraction: float = 1.0
    latent_norm_placement: str = "final"
    assignment_hidden_size: int = 128
    assignment_embed_dim: int = 64
    logit_scale_init_value: float = math.log(16.0)
    logit_scale_max: float = 20.0
    query_init: str = "soft_pool"
    soft_pool_normalization: str = "mean"
    detach_features: bool = True
    matching_tie_break: str = "index"
    pixel_context_layers: int = 0
    query_update_iterations: int = 0
    use_hard_mask: bool = True
    refinement_visible_last_pixels: int = 0
    tokens_per_trajectory: int = 1
    tokens_per_trajectory_choices: list[int] | tuple[int, ...] = (1, 2, 4)
    token_position_encoding: bool = False
    trajectory_motion_encoding: bool = False
    trajectory_motion_init_std: float = 0.0
    trajectory_motion_fusion: str = "add"
    subtoken_fourier_frequencies: int = 16
    subtoken_init_scale: float = 0.02
    chunk_size: int = 16
    frame_difference_input: bool = False
    frame_difference_alignment: str = "none"
    backbone_frames_per_pass: int | None = None
    output_size: int | None = None
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        _warn_unknown_kwargs(type(self), kwargs)
        if isinstance(self.backbone_config, dict):
            backbone = dict(self.backbone_config)
            backbone.setdefault("model_type", "convnext")
            if backbone["model_type"] not in SUPPORTED_BACKBONES:
                raise ValueError(
                    f"backbone_config must be one of the supported backbone configs {SUPPORTED_BACKBONES}, got "
                    f"model_type {backbone['model_type']!r}"
                )
            self.backbone_config = backbone
        elif self.backbone_config is not None and not isinstance(self.backbone_config, PreTrainedConfig):
            raise TypeError(
                f"backbone_config must be a dict, a PreTrainedConfig or None, got {type(self.backbone_config).__name__}"
            )
        super().__post_init__(**kwargs)
        self._validate_trajtok()

    def _validate_trajtok(self):
        backbone = self.backbone_config
        if backbone.model_type not in SUPPORTED_BACKBONES:
            raise ValueError(
                f"backbone_config must be one of the supported backbone configs {SUPPORTED_BACKBONES}, got model_type "
                f"{backbone.model_type!r}"
            )
        if backbone.model_type == TIMM_BACKBONE:
            if not isinstance(getattr(backbone, "backbone", None), str) or not backbone.backbone:
                raise ValueError(f"a timm_backbone config must name a timm model, got backbone={backbone.backbone!r}")
        elif len(backbone.hidden_sizes) != 4:
            raise ValueError(f"backbone_config.hidden_sizes must have 4 stages, got {list(backbone.hidden_sizes)}")
        for name in ("token_position_encoding", "trajectory_motion_encoding"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")
        std = self.trajectory_motion_init_std
        if isinstance(std, bool) or not isinstance(std, (int, float)) or not std >= 0 or std == float("inf"):
            raise ValueError(f"trajectory_motion_init_std must be a finite float >= 0, got {std!r}")
        fusion = self.trajectory_motion_fusion
        if fusion not in TRAJECTORY_MOTION_FUSIONS:
            raise ValueError(f"trajectory_motion_fusion must be one of {TRAJECTORY_MOTION_FUSIONS}, got {fusion!r}")
        if fusion != "add" and not self.trajectory_motion_encoding:
            raise ValueError(f"trajectory_motion_fusion={fusion!r} needs trajectory_motion_encoding=True")
        if not isinstance(self.frame_difference_input, bool):
            raise ValueError(f"frame_difference_input must be a bool, got {self.frame_difference_input!r}")
        if self.frame_difference_alignment not in FRAME_DIFFERENCE_ALIGNMENTS:
            raise ValueError(
                f"frame_difference_alignment must be one of {FRAME_DIFFERENCE_ALIGNMENTS}, "
                f"got {self.frame_difference_alignment!r}"
            )
        aligned = self.frame_difference_alignment != "none"
        if aligned and not self.frame_difference_input:
            raise ValueError(
                f"frame_difference_alignment={self.frame_difference_alignment!r} needs frame_difference_input=True"
            )
        expected_channels, inputs = 3, "RGB"
        if self.frame_difference_input:
            expected_channels, inputs = FRAME_DIFFERENCE_CHANNELS, "RGB + two frame differences"
        if aligned:
            expected_channels, inputs = ALIGNED_FRAME_DIFFERENCE_CHANNELS, f"{inputs} + two camera-aligned ones"
        if self.frame_difference_input and backbone.num_channels == 3:
            backbone.num_channels = expected_channels
        if backbone.num_channels != expected_channels:
            raise ValueError(
                f"backbone_config.num_channels must be {expected_channels} with frame_difference_input="
                f"{self.frame_difference_input} and frame_difference_alignment={self.frame_difference_alignment!r} "
                f"({inputs}), got {backbone.num_channels}"
            )
        # All four stages feed the multi-scale sum (paper Sec. 3): the ablation without them loses ~3 R@5.
        if backbone.model_type == TIMM_BACKBONE:
            backbone.out_indices = list(TIMM_FEATURE_LEVELS)
        else:
            backbone.out_features = ["stage1", "stage2", "stage3", "stage4"]
            if hasattr(backbone, "out_indices"):
                backbone.out_indices = [1, 2, 3, 4]

        for name in (
            "hidden_size",
            "num_trajectories",
            "query_perceiver_depth",
            "refinement_perceiver_depth",
            "num_attention_heads",
            "perceiver_ff_mult",
            "assignment_hidden_size",
            "assignment_embed_dim",
            "subtoken_fourier_frequencies",
            "chunk_size",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        for name in ("pixel_context_layers", "query_update_iterations"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        pretrained = self.pretrained_backbone_name_or_path
        if pretrained is not None and (not isinstance(pretrained, str) or not pretrained):
            raise ValueError(
                f"pretrained_backbone_name_or_path must be None or a non-empty folder or Hub id, got {pretrained!r}"
            )
        if self.output_size is not None and (not isinstance(self.output_size, int) or self.output_size <= 0):
            raise ValueError(f"output_size must be None or a positive int, got {self.output_size!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by "
                f"num_attention_heads ({self.num_attention_heads})"
            )
        head_dim = self.hidden_size // self.num_attention_heads
        if not 0.0 <= self.rope_fraction <= 1.0:
            raise ValueError(f"rope_fraction must lie in [0, 1], got {self.rope_fraction!r}")
        if int(head_dim * self.rope_fraction) % 2:
            raise ValueError(
                f"rope_fraction ({self.rope_fraction}) × head dim ({head_dim}) must be an even number of dims"
            )
        for name, allowed in (
            ("query_init", QUERY_INITS),
            ("soft_pool_normalization", SOFT_POOL_NORMALIZATIONS),
            ("latent_norm_placement", LATENT_NORM_PLACEMENTS),
            ("matching_tie_break", MATCHING_TIE_BREAKS),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        for name in ("detach_features", "use_hard_mask", "shared_stage_layernorm", "backbone_final_layernorm"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")
        choices = self.tokens_per_trajectory_choices
        if (
            not isinstance(choices, (list, tuple))
            or not choices
            or any(c not in ALLOWED_TOKENS_PER_TRAJECTORY for c in choices)
            or len(set(choices)) != len(choices)
        ):
            raise ValueError(
                f"tokens_per_trajectory_choices must be a non-empty list of distinct values from "
                f"{ALLOWED_TOKENS_PER_TRAJECTORY}, got {choices!r}"
            )
        self.tokens_per_trajectory_choices = sorted(int(c) for c in choices)
        if self.tokens_per_trajectory not in self.tokens_per_trajectory_choices:
            raise ValueError(
                f"tokens_per_trajectory must be one of tokens_per_trajectory_choices "
                f"{self.tokens_per_trajectory_choices}, got {self.tokens_per_trajectory!r}"
            )
        frames_per_pass = self.backbone_frames_per_pass
        if frames_per_pass is not None and (
            isinstance(frames_per_pass, bool) or not isinstance(frames_per_pass, int) or frames_per_pass < 1
        ):
            raise ValueError(f"backbone_frames_per_pass must be None or an int >= 1, got {frames_per_pass!r}")
        if (
            isinstance(self.refinement_visible_last_pixels, bool)
            or not isinstance(self.refinement_visible_last_pixels, int)
            or self.refinement_visible_last_pixels < 0
        ):
            raise ValueError(
                f"refinement_visible_last_pixels must be an int >= 0, got {self.refinement_visible_last_pixels!r}"
            )
        if not self.logit_scale_max > 1.0:
            raise ValueError(f"logit_scale_max must be > 1 (s = softplus(σ) + 1), got {self.logit_scale_max!r}")
        if not self.subtoken_init_scale >= 0:
            raise ValueError(f"subtoken_init_scale must be >= 0, got {self.subtoken_init_scale!r}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def token_size(self) -> int:
        """Width of the output trajectory tokens."""
        return self.output_size if self.output_size is not None else self.hidden_size

    @property
    def max_subtokens(self) -> int:
        """Number of sub-token slots over all Matryoshka levels (1 + 2 + 4 = 7 at the defaults)."""
        return sum(self.tokens_per_trajectory_choices)

    def subtoken_slice(self, n: int) -> slice:
        """The slots of level n inside the concatenated sub-token parameters."""
        start = 0
        for c in self.tokens_per_trajectory_choices:
            if c == n:
                return slice(start, start + c)
            start += c
        raise ValueError(f"tokens_per_trajectory must be one of {self.tokens_per_trajectory_choices}, got {n!r}")


# Keys that transformers itself writes into or passes with a saved config; never reported as unknown.
_SERIALIZATION_KEYS = frozenset(
    {"auto_map", "model_type", "transformers_version", "architectures", "attn_implementation", "dtype", "torch_dtype"}
)
# Similarity (difflib ratio) above which an unknown key is reported with the field it most likely meant: loose
# enough that prefixes and abbreviations match (``num_traj`` → ``num_trajectories``, ratio 0.58).
_CLOSE_MATCH_CUTOFF = 0.5


def _warn_unknown_kwargs(config_class, kwargs: dict) -> None:
    """transformers' convention for unknown config keys: they are kept as attributes (so a saved config with extra
    keys reloads), with a logger warning naming the closest field of ``config_class`` when there is one, so that a
    misspelt hyper-parameter (``num_traj=64``) does not leave the default in force without a word."""
    inherited = set(getattr(PreTrainedConfig, "__dataclass_fields__", ()))
    own = [f for f in config_class.__dataclass_fields__ if not f.startswith("_") and f not in inherited]
    for key in kwargs:
        # Private keys (``_name_or_path`` in a nested config dict) and transformers' own fields are never reported.
        if key in own or key.startswith("_") or key in _SERIALIZATION_KEYS or hasattr(PreTrainedConfig, key):
            continue
        close = difflib.get_close_matches(key, own, n=1, cutoff=_CLOSE_MATCH_CUTOFF)
        hint = f": did you mean {close[0]!r}?" if close else ""
        logger.warning(
            f"{config_class.__name__} got an unknown argument {key!r}; it is kept as an attribute but the model does "
            f"not read it{hint}"
        )


def rename_deprecated_keys(values: dict, renames: dict[str, str], owner: str) -> dict:
    """A copy of ``values`` with each deprecated key of ``renames`` (old name → new name) moved to its new name, with
    a ``FutureWarning`` per key moved. Giving a value under both names raises a ``ValueError`` naming both."""
    values = dict(values)
    for old, new in renames.items():
        if old not in values:
            continue
        if new in values:
            raise ValueError(f"{owner} got both {old!r} (deprecated) and {new!r}: pass only {new!r}")
        _warn_renamed(owner, old, new, stacklevel=4)  # the caller of the function that renames
        values[new] = values.pop(old)
    return values


def _warn_renamed(owner: str, old: str, new: str, stacklevel: int) -> None:
    warnings.warn(
        f"{owner}: {old!r} is deprecated and will be removed in a future version; use {new!r} instead",
        FutureWarning,
        stacklevel=stacklevel,
    )


class _RenamedAttribute:
    """The old name of a renamed config attribute: reads and writes go to the new name, with a ``FutureWarning``.
    Not an instance attribute, so ``to_dict``/``save_pretrained`` never write it."""

    def __init__(self, old: str, new: str):
        self.old, self.new = old, new

    def __get__(self, config, owner=None):
        if config is None:
            return self
        _warn_renamed(type(config).__name__, self.old, self.new, stacklevel=3)
        return getattr(config, self.new)

    def __set__(self, config, value):
        _warn_renamed(type(config).__name__, self.old, self.new, stacklevel=3)
        setattr(config, self.new, value)


def accept_renamed_arguments(renames: dict[str, str]):
    """Class decorator of a config whose arguments were renamed (``renames``: old name → new name), as transformers
    handles renamed config keys (the legacy key is taken from the keyword arguments, as ``torch_dtype`` → ``dtype``,
    and announced with a ``FutureWarning``, as ``rope_scaling`` → ``rope_parameters``): a config built with an old
    keyword, or loaded from a ``config.json`` that has an old key, gets the value under the new name with a
    ``FutureWarning``; saving writes only the new name; both names at once raise a ``ValueError``. The old attribute
    name stays readable and writable, with the same warning."""

    def decorate(config_class):
        init = config_class.__init__

        @functools.wraps(init)
        def __init__(self, *args, **kwargs):
            init(self, *args, **rename_deprecated_keys(kwargs, renames, config_class.__name__))

        config_class.__init__ = __init__
        for old, new in renames.items():
            setattr(config_class, old, _RenamedAttribute(old, new))
        return config_class

    return decorate


__all__ = ["TrajTokConfig"]
