"""Configuration of TrajViT2, the video-text CLIP model over trajectory tokens (paper Sec. 4), and of its vision
tower, which holds either the TrajTok tokenizer or the ViT3D space-time patch baseline (same encoder, same CLIP code).

Layout (what ``config.json`` holds):

```
TrajViT2Config (model_type "trajvit2")
├── vision_config: TrajViT2VisionConfig (model_type "trajvit2_vision_model")
│     encoder over the token set (width, depth, heads, MLP, dropout, layer-norm eps), the choice of vision
│     tokenizer ("trajtok" | "vit3d"), the ViT3D patch settings, and
│     └── trajtok_config: TrajTokConfig (the TrajTok tokenizer; None for "vit3d")
├── text_config: any transformers text-encoder config (BERT-base by default)
└── projection_dim, logit_scale_init_value, segmentation/contrastive loss weights, text pooling
```

The TrajTok config is nested inside the vision config because [`TrajViT2VisionModel`] must be loadable on its own
(its config needs everything the vision tower needs). [`TrajViT2Config`] exposes it as ``config.trajtok_config`` and
accepts ``trajtok_config=...`` (and ``vision_tokenizer=...``) as constructor shortcuts. The deprecated name
``tokenizer_config`` (it collides with the text tokenizer's ``tokenizer_config.json``) still loads, with a
``FutureWarning``, and is saved as ``trajtok_config``.

Defaults: the paper's form (trajectory tokens with a padding mask); the release's encoder shape (width 512, 24 layers,
16 heads, MLP 2048; per-layer LayerNorm eps 1e-12 as its HF ViT layers, final LayerNorm eps 1e-5). Release options for
the checkpoint converter: ``attend_to_inactive_tokens=True`` (the released encoder ignores its padding mask), BERT with
``num_hidden_layers=9`` as ``text_config``.
"""

from __future__ import annotations

import math

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from .configuration_trajtok import TrajTokConfig, _warn_unknown_kwargs, accept_renamed_arguments

VISION_TOKENIZERS = ("trajtok", "vit3d")
POSITION_EMBEDDING_TYPES = ("learned", "sinusoidal")
TEXT_POOLINGS = ("cls", "pooler", "mean")
TOKEN_PACKING_MODES = ("off", "on", "auto")


def _check_positive_ints(config, names) -> None:
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


def _check_bools(config, names) -> None:
    for name in names:
        if not isinstance(getattr(config, name), bool):
            raise ValueError(f"{name} must be a bool, got {getattr(config, name)!r}")


def _check_choice(config, name, allowed) -> None:
    if getattr(config, name) not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {getattr(config, name)!r}")


@accept_renamed_arguments({"tokenizer_config": "trajtok_config"})
class TrajViT2VisionConfig(PreTrainedConfig):
    r"""
    Configuration of [`TrajViT2VisionModel`]: a vision tokenizer (TrajTok trajectory tokens, or ViT3D space-time
    patches) followed by a [CLS] token + pre-LN transformer encoder over the token set + a final LayerNorm.

    Args:
        vision_tokenizer (`str`, *optional*, defaults to `"trajtok"`):
            `"trajtok"`: the TrajTok tokenizer (paper Sec. 3) configured by `trajtok_config`;
            `"vit3d"`: the ViT3D baseline, tubelet patches with space-time positions (`modeling_vit3d.py`).
        trajtok_config (`dict` or [`TrajTokConfig`], *optional*):
            The TrajTok tokenizer. Defaults to `TrajTokConfig()` for `"trajtok"`; unused (None by default) for
            `"vit3d"`. Deprecated name: `tokenizer_config`.
        hidden_size (`int`, *optional*, defaults to 512):
            Width of the encoder (release: 512). Tokens of another width are linearly projected to it.
        num_hidden_layers (`int`, *optional*, defaults to 24):
            Encoder layers (release: 24, the depth of ViT-L).
        num_attention_heads (`int`, *optional*, defaults to 16):
            Attention heads per layer (release: 16 heads of 32 dims).
        intermediate_size (`int`, *optional*, defaults to 2048):
            Width of the MLP of each layer.
        hidden_act (`str`, *optional*, defaults to `"gelu"`):
            Activation of the MLP (exact GELU, as the release's HF ViT layers).
        hidden_dropout_prob (`float`, *optional*, defaults to 0.0):
            Dropout after the attention and MLP blocks.
        attention_probs_dropout_prob (`float`, *optional*, defaults to 0.0):
            Dropout on the attention probabilities.
        layer_norm_eps (`float`, *optional*, defaults to 1e-12):
            Epsilon of the two LayerNorms inside each layer (release: HF ViT's 1e-12).
        final_layer_norm_eps (`float`, *optional*, defaults to 1e-5):
            Epsilon of the LayerNorm after the last layer (release: `vision_encoder.norm`, 1e-5).
        qkv_bias (`bool`, *optional*, defaults to `True`):
            Bias of the query/key/value projections.
        attend_to_inactive_tokens (`bool`, *optional*, defaults to `False`):
            Release option: the released encoder ignores its padding mask and attends over all K·n token slots, empty
            trajectories included. `False` (paper Sec. 4): only the [CLS] and the active trajectory tokens take part;
            inactive slots have no effect at all.
        compact_tokens (`bool`, *optional*, defaults to `True`):
            Move the active tokens to the front (stable, so their order is kept) and truncate the sequence to the
            batch's largest active count before the encoder. Same result as keeping all K·n slots under the padding
            mask (tested), but attention and MLP cost scale with ~10–30 active trajectories instead of 128.
            Ignored when `attend_to_inactive_tokens=True`.
        token_packing (`str`, *optional*, defaults to `"auto"`):
            An addition to the paper and the official release (whose encoder pads every clip of a batch to the same
            length). `"off"`: the clips of a batch run as a padded `(B, 1 + L, D)` sequence under the padding mask
            (L: the batch's largest active count with `compact_tokens`, else all slots). `"on"`: the [CLS] and active
            tokens of all clips are concatenated into one sequence of N = Σ_b (1 + L_b) tokens that runs under a
            block-diagonal attention mask (each token attends to its own clip only), and the outputs are scattered
            back to the padded layout: the same result up to float summation order, with no compute spent on
            padding, but attention over one N×N matrix. `"auto"`: packs a batch only when a per-layer FLOP model
            (linear layers over N instead of B·(1 + L) tokens, attention over N² instead of B·(1 + L)² pairs;
            `modeling_trajvit2.encoder_layer_flops`) says it is cheaper. A batch without padding,
            `output_attentions=True` (the weights keep their per-clip layout), attention implementations other than
            `"eager"` and `"sdpa"`, and `attend_to_inactive_tokens=True` always run padded.
        max_chunk_positions (`int`, *optional*, defaults to 0):
            TrajTok: `0` (the paper) gives trajectory tokens no position, so the token set of a clip is the same
            whatever the order of its chunks. `N > 0` adds a learned embedding per chunk index (0..N-1) to every token
            of that chunk before the encoder, so the encoder sees which chunk (which stretch of time) a trajectory
            comes from and a clip differs from its chunk-shuffled copy: a deviation from the paper, off for converted
            checkpoints. Videos of more than N chunks raise a `ValueError`.
        image_size (`int`, *optional*, defaults to 224):
            ViT3D: frame size of the learned position grid (other sizes interpolate).
        patch_size (`int`, *optional*, defaults to 16):
            ViT3D: spatial patch size.
        tubelet_size (`int`, *optional*, defaults to 2):
            ViT3D: frames per tubelet.
        num_frames (`int`, *optional*, defaults to 16):
            ViT3D: frames of the learned position grid (other lengths interpolate).
        num_channels (`int`, *optional*, defaults to 3):
            ViT3D: input channels.
        position_embedding_type (`str`, *optional*, defaults to `"learned"`):
            ViT3D: `"learned"` (one vector per tubelet position of the default grid, trilinearly interpolated for
            other grids) or `"sinusoidal"` (fixed 3-D sin/cos over (t, row, col), any grid).
        initializer_range (`float`, *optional*, defaults to 0.02):
            Std of the truncated-normal initialisation of the encoder's linear layers, [CLS] and positions.

    Example:

    ```python
    >>> from trajtok_hf import TrajViT2VisionConfig, TrajViT2VisionModel
    >>> model = TrajViT2VisionModel(TrajViT2VisionConfig(num_hidden_layers=12))
    ```
    """

    model_type = "trajvit2_vision_model"
    base_config_key = "vision_config"
    sub_configs_defaults = {"trajtok_config": SubConfigSpec(config_class=TrajTokConfig, optional=True)}

    vision_tokenizer: str = "trajtok"
    trajtok_config: dict | PreTrainedConfig | None = None
    hidden_size: int = 512
    num_hidden_layers: int = 24
    num_attention_heads: int = 16
    intermediate_size: int = 2048
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    layer_norm_eps: float = 1e-12
    final_layer_norm_eps: float = 1e-5
    qkv_bias: bool = True
    attend_to_inactive_tokens: bool = False
    compact_tokens: bool = True
    token_packing: str = "auto"
    max_chunk_positions: int = 0
    image_size: int = 224
    patch_size: int = 16
    tubelet_size: int = 2
    num_frames: int = 16
    num_channels: int = 3
    position_embedding_type: str = "learned"
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        _warn_unknown_kwargs(type(self), kwargs)
        _check_choice(self, "vision_tokenizer", VISION_TOKENIZERS)
        if self.trajtok_config is None and self.vision_tokenizer == "trajtok":
            self.trajtok_config = {}
        if self.trajtok_config is not None and not isinstance(self.trajtok_config, (dict, TrajTokConfig)):
            raise ValueError(
                f"trajtok_config must be a dict or a TrajTokConfig, got {type(self.trajtok_config).__name__}"
            )
        super().__post_init__(**kwargs)
        self._validate_vision()

    def _validate_vision(self):
        _check_positive_ints(
            self,
            (
                "hidden_size",
                "num_hidden_layers",
                "num_attention_heads",
                "intermediate_size",
                "image_size",
                "patch_size",
                "tubelet_size",
                "num_frames",
                "num_channels",
            ),
        )
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                f"({self.num_attention_heads})"
            )
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be a float in [0, 1), got {value!r}")
        for name in ("layer_norm_eps", "final_layer_norm_eps", "initializer_range"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        _check_bools(self, ("qkv_bias", "attend_to_inactive_tokens", "compact_tokens"))
        value = self.max_chunk_positions
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"max_chunk_positions must be an int >= 0, got {value!r}")
        if value and self.vision_tokenizer != "trajtok":
            raise ValueError("max_chunk_positions applies to vision_tokenizer='trajtok' (ViT3D has its own positions)")
        _check_choice(self, "position_embedding_type", POSITION_EMBEDDING_TYPES)
        _check_choice(self, "token_packing", TOKEN_PACKING_MODES)
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size ({self.image_size}) must be a multiple of patch_size ({self.patch_size})")

    @property
    def token_width(self) -> int:
        """Width of the tokens the vision tokenizer emits (projected to `hidden_size` when different)."""
        if self.vision_tokenizer == "trajtok":
            return self.trajtok_config.token_size
        return self.hidden_size


@accept_renamed_arguments({"tokenizer_config": "trajtok_config"})
class TrajViT2Config(PreTrainedConfig):
    r"""
    Configuration of [`TrajViT2Model`], the video-text CLIP model of paper Sec. 4: vision tower (TrajTok or ViT3D
    tokens → [CLS] + transformer encoder), text encoder, two linear projections and a learnable logit scale.

    Args:
        vision_config (`dict` or [`TrajViT2VisionConfig`], *optional*):
            The vision tower, including the tokenizer choice and the TrajTok config. Defaults to
            `TrajViT2VisionConfig()` (TrajTok, width 512, 24 layers, 16 heads, MLP 2048).
        text_config (`dict` or `PreTrainedConfig`, *optional*):
            Any transformers text-encoder config (built with `AutoModel.from_config`). Defaults to BERT-base
            (`BertConfig()`); the release uses BERT-base with its first 9 layers (`num_hidden_layers=9`).
        trajtok_config (`dict` or [`TrajTokConfig`], *optional*):
            Shortcut for `vision_config.trajtok_config` (overrides it when given). Read back as
            `config.trajtok_config`. Deprecated name: `tokenizer_config`.
        vision_tokenizer (`str`, *optional*):
            Shortcut for `vision_config.vision_tokenizer` (`"trajtok"` or `"vit3d"`).
        projection_dim (`int`, *optional*, defaults to 256):
            Width of the joint video-text embedding space.
        projection_bias (`bool`, *optional*, defaults to `True`):
            Bias of the two projections (release: `vision_proj`/`text_proj` have biases).
        logit_scale_init_value (`float`, *optional*, defaults to ln(1/0.07)):
            Initial value of the learnable log logit scale: logits = exp(logit_scale) · cos (temperature 0.07).
        text_pooling (`str`, *optional*, defaults to `"cls"`):
            `"cls"`: the first token's last hidden state (release: CLS, no pooler; the text model is then built
            without a pooling layer when it supports `add_pooling_layer`); `"pooler"`: the text model's
            `pooler_output` (e.g. CLIP/SigLIP text towers); `"mean"`: mean over non-padding tokens.
        contrastive_loss_weight (`float`, *optional*, defaults to 1.0):
            Weight of the symmetric InfoNCE loss.
        segmentation_loss_weight (`float`, *optional*, defaults to 1.0):
            Weight of the Hungarian focal + Dice loss of the tokenizer (segmentation supervision, paper Sec. 3) when
            `segmentation_labels` are given.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Std of the truncated-normal initialisation of the projections.

    Example:

    ```python
    >>> from transformers import BertConfig
    >>> from trajtok_hf import TrajViT2Config, TrajViT2Model
    >>> config = TrajViT2Config(text_config=BertConfig(num_hidden_layers=9).to_dict())
    >>> model = TrajViT2Model(config)
    >>> baseline = TrajViT2Model(TrajViT2Config(vision_tokenizer="vit3d"))  # same encoder, patch tokens
    ```
    """

    model_type = "trajvit2"
    sub_configs_defaults = {
        "vision_config": TrajViT2VisionConfig,
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="bert"),
    }

    vision_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    projection_dim: int = 256
    projection_bias: bool = True
    logit_scale_init_value: float = math.log(1 / 0.07)
    text_pooling: str = "cls"
    contrastive_loss_weight: float = 1.0
    segmentation_loss_weight: float = 1.0
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        trajtok_config = kwargs.pop("trajtok_config", None)
        vision_tokenizer = kwargs.pop("vision_tokenizer", None)
        _warn_unknown_kwargs(type(self), kwargs)
        if vision_tokenizer is not None or trajtok_config is not None:
            # The shortcuts are applied to the vision config before it is built so that its validation (and its
            # default TrajTok config for "trajtok") sees them.
            vision = self.vision_config
            if isinstance(vision, PreTrainedConfig):
                vision = vision.to_dict()
            vision = dict(vision or {})
            if vision_tokenizer is not None:
                vision["vision_tokenizer"] = vision_tokenizer
            if trajtok_config is not None:
                vision["trajtok_config"] = trajtok_config
            self.vision_config = vision
        super().__post_init__(**kwargs)
        self._validate_trajvit2()

    def _validate_trajvit2(self):
        if not isinstance(self.vision_config, TrajViT2VisionConfig):
            raise ValueError(
                f"vision_config must be a TrajViT2VisionConfig (or its dict), got {type(self.vision_config).__name__}"
            )
        _check_positive_ints(self, ("projection_dim",))
        _check_bools(self, ("projection_bias",))
        _check_choice(self, "text_pooling", TEXT_POOLINGS)
        for name in ("contrastive_loss_weight", "segmentation_loss_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        value = self.logit_scale_init_value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"logit_scale_init_value must be a finite number, got {value!r}")
        if not isinstance(getattr(self.text_config, "hidden_size", None), int):
            raise ValueError(
                f"text_config ({type(self.text_config).__name__}) must define an int hidden_size for the text "
                "projection"
            )

    @property
    def trajtok_config(self) -> TrajTokConfig | None:
        """The TrajTok tokenizer config (stored as `vision_config.trajtok_config`)."""
        return self.vision_config.trajtok_config

    @property
    def vision_tokenizer(self) -> str:
        """`"trajtok"` or `"vit3d"` (stored as `vision_config.vision_tokenizer`)."""
        return self.vision_config.vision_tokenizer


__all__ = ["TrajViT2Config", "TrajViT2VisionConfig"]
