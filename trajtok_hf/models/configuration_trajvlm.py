"""Configuration of TrajVLM: TrajTok as the connector of a video LLM (paper Sec. 5).

Layout (what ``config.json`` holds):

```
TrajVLMConfig (model_type "trajvlm")
├── vision_config:    any transformers vision tower with a square patch grid (SigLIP-so400m/14 at 378²)
├── trajtok_config:   TrajTokConfig, the segmenter (only for connector_type="trajtok"; None for "patch_pool")
├── text_config:      any causal LM config (Qwen3-4B shape by default)
└── connector settings (connector_type, chunk size, tokens per trajectory, refinement Perceiver shape),
    projector settings, frame normalisations of the tower and of the segmenter, video_token_id
```

``connector_type="trajtok"`` (the paper's TrajVLM): the segmenter runs on the frames resized to
``segmenter_image_size`` with its own normalisation, its logits are resized to the tower's patch grid and argmax'd,
its queries are mapped to the tower width and a hard-mask refinement Perceiver pools the tower's patch features into
one token (or ``tokens_per_trajectory``) per active trajectory of each ``chunk_size``-frame chunk.
``connector_type="patch_pool"`` (the paper's PatchVLM baseline): ``patch_pool_size``² spatial (× optional
``patch_pool_temporal_size`` frames) average pooling of the same tower features. Both go through the same MLP
projector and the same placeholder expansion, so they are compared in one code path.

The deprecated names ``tokenizer_config`` (it collides with the text tokenizer's ``tokenizer_config.json``) and
``clip_length`` still load, with a ``FutureWarning``, and are saved as ``trajtok_config`` and ``chunk_size``.
"""

from __future__ import annotations

import math

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from .configuration_trajtok import TrajTokConfig, _warn_unknown_kwargs, accept_renamed_arguments

CONNECTOR_TYPES = ("trajtok", "patch_pool")
FEATURE_SELECT_STRATEGIES = ("full", "default")
ALLOWED_TOKENS_PER_TRAJECTORY = (1, 2, 4)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)

# SigLIP-so400m/14 at 378² → 27×27 patches per frame (paper Sec. 5 uses SigLIP2-so400m, whose
# non-NaFlex tower has this shape). No pooling head: the connector reads the patch features.
_DEFAULT_VISION = {
    "hidden_size": 1152,
    "intermediate_size": 4304,
    "patch_size": 14,
    "image_size": 378,
    "num_hidden_layers": 27,
    "num_attention_heads": 16,
    "vision_use_head": False,
}
# Qwen3-4B shape (the LLM of paper Sec. 5). Built from the config only: nothing is downloaded.
_DEFAULT_TEXT = {
    "vocab_size": 151936,
    "hidden_size": 2560,
    "intermediate_size": 9728,
    "num_hidden_layers": 36,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "max_position_embeddings": 40960,
    "tie_word_embeddings": True,
    "rope_theta": 1000000.0,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "pad_token_id": 151643,
}


@accept_renamed_arguments({"tokenizer_config": "trajtok_config", "clip_length": "chunk_size"})
class TrajVLMConfig(PreTrainedConfig):
    r"""
    Configuration of [`TrajVLMModel`] and [`TrajVLMForConditionalGeneration`].

    Args:
        vision_config (`dict` or `PreTrainedConfig`, *optional*):
            The vision tower (built with `AutoModel.from_config`; swap in a pretrained one with `from_pretrained` of
            the sub-model). It must expose `hidden_size`, `image_size` and `patch_size` and return one feature per
            patch (plus a leading [CLS] for `vision_feature_select_strategy="default"`). Defaults to a
            SigLIP-so400m/14 tower at 378² (27×27 patches).
        trajtok_config (`dict` or [`TrajTokConfig`], *optional*):
            The TrajTok segmenter (`connector_type="trajtok"` only). Defaults to `TrajTokConfig(chunk_size=chunk_size)`.
            Its `chunk_size` must equal this config's `chunk_size` (a chunk of the connector is a chunk of the
            segmenter). Deprecated name: `tokenizer_config`.
        text_config (`dict` or `PreTrainedConfig`, *optional*):
            Any causal LM (built with `AutoModel.from_config`; its base model, without head). Defaults to a Qwen3-4B
            shaped config.
        connector_type (`str`, *optional*, defaults to `"trajtok"`):
            `"trajtok"`: trajectory tokens (paper Sec. 5); `"patch_pool"`: the PatchVLM baseline (average pooling of the
            tower's patch features), same projector, same code path.
        video_token_id (`int`, *optional*, defaults to 151669):
            Id of the `<video>` placeholder. The prompt holds ONE placeholder per video; the model replaces it with
            that video's (variable number of) tokens.
        chunk_size (`int`, *optional*, defaults to 16):
            Frames per chunk. Long videos are cut into chunks that are tokenized independently (a last shorter chunk
            is kept as it is); the LLM sees the chunks' tokens in temporal order. Deprecated name: `clip_length`.
        tokens_per_trajectory (`int`, *optional*, defaults to 1):
            n ∈ {1, 2, 4} LLM tokens per active trajectory (sub-token queries = mapped query + Fourier-ring offsets,
            the Matryoshka tokens of paper Sec. 3).
        segmenter_image_size (`int`, *optional*, defaults to 224):
            Frames are resized (bilinear, antialiased) to this square size for the segmenter.
        segmenter_image_mean / segmenter_image_std (`list[float]`, *optional*, default to ImageNet's):
            Normalisation the segmenter was trained with.
        vision_image_mean / vision_image_std (`list[float]`, *optional*, default to SigLIP's 0.5 / 0.5):
            Normalisation of `pixel_values_videos` (the processor normalises for the tower). The segmenter's input is
            obtained by undoing this normalisation and applying the segmenter's.
        vision_feature_layer (`int`, *optional*, defaults to -1):
            Hidden state of the tower that is pooled (index into `hidden_states`; -1 = the last layer, before any
            post-LayerNorm).
        vision_feature_select_strategy (`str`, *optional*, defaults to `"full"`):
            `"full"`: every position is a patch (SigLIP); `"default"`: drop a leading [CLS] token (CLIP-style towers).
        connector_depth (`int`, *optional*, defaults to 2):
            Layers of the hard-mask refinement Perceiver (paper Sec. 3 / Sec. 5).
        connector_num_attention_heads (`int`, *optional*, defaults to 16):
            Heads of the refinement Perceiver; it runs at the tower width, which they must divide.
        connector_ff_mult (`int`, *optional*, defaults to 4):
            Feed-forward multiplier of the refinement Perceiver.
        connector_rope_theta (`float`, *optional*, defaults to 10000.0):
            RoPE base of the refinement Perceiver's 1-D positions over (latents; t, row, col).
        subtoken_fourier_frequencies (`int`, *optional*, defaults to 16):
            Ring frequencies of the sub-token offsets when `tokens_per_trajectory` > 1.
        subtoken_init_scale (`float`, *optional*, defaults to 0.02):
            Scale of the Fourier-ring initialisation of the sub-token offsets.
        patch_pool_size (`int`, *optional*, defaults to 3):
            `"patch_pool"`: p of the p×p spatial average pooling (a last partial window averages what it covers).
            At the defaults 27×27 → 9×9 = 81 tokens per frame.
        patch_pool_temporal_size (`int`, *optional*, defaults to 1):
            `"patch_pool"`: frames averaged together (inside a chunk), to match a token budget.
        projector_hidden_act (`str`, *optional*, defaults to `"gelu"`):
            Activation of the 2-layer MLP projector (tower width → LLM width → LLM width).
        multimodal_projector_bias (`bool`, *optional*, defaults to `True`):
            Biases of the projector.
        freeze_segmenter (`bool`, *optional*, defaults to `True`):
            Keep the segmenter frozen (no gradient, run under `no_grad`): the common practice, and what this package
            does by default. The paper's release trains connector and tower at 5e-6 and the LLM at 1e-5 on top of a
            segmentation-pre-trained segmenter; set `False` to let gradients reach the segmenter's queries.
        tie_word_embeddings (`bool`, *optional*):
            Tie the LM head to the input embeddings; unset, it follows `text_config.tie_word_embeddings`.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Std of the initialisation of the connector and projector.

    Example:

    ```python
    >>> from transformers import Qwen3Config, SiglipVisionConfig
    >>> from trajtok_hf import TrajTokConfig, TrajVLMConfig, TrajVLMForConditionalGeneration
    >>> config = TrajVLMConfig(
    ...     vision_config=SiglipVisionConfig(image_size=64, patch_size=8, hidden_size=32, num_hidden_layers=2,
    ...                                      num_attention_heads=4, intermediate_size=64, vision_use_head=False),
    ...     trajtok_config=TrajTokConfig(chunk_size=16),
    ...     text_config=Qwen3Config(vocab_size=128, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...                             num_key_value_heads=2, head_dim=8, intermediate_size=64),
    ...     video_token_id=5, connector_num_attention_heads=4, segmenter_image_size=64)
    >>> model = TrajVLMForConditionalGeneration(config)
    ```
    """

    model_type = "trajvlm"
    sub_configs_defaults = {
        "vision_config": SubConfigSpec(
            config_class=AutoConfig, model_type="siglip_vision_model", init_kwargs=_DEFAULT_VISION
        ),
        "trajtok_config": SubConfigSpec(config_class=TrajTokConfig, optional=True),
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="qwen3", init_kwargs=_DEFAULT_TEXT),
    }

    vision_config: dict | PreTrainedConfig | None = None
    trajtok_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    connector_type: str = "trajtok"
    video_token_id: int = 151669
    chunk_size: int = 16
    tokens_per_trajectory: int = 1
    segmenter_image_size: int = 224
    segmenter_image_mean: list[float] | tuple[float, ...] = IMAGENET_MEAN
    segmenter_image_std: list[float] | tuple[float, ...] = IMAGENET_STD
    vision_image_mean: list[float] | tuple[float, ...] = SIGLIP_MEAN
    vision_image_std: list[float] | tuple[float, ...] = SIGLIP_STD
    vision_feature_layer: int = -1
    vision_feature_select_strategy: str = "full"
    connector_depth: int = 2
    connector_num_attention_heads: int = 16
    connector_ff_mult: int = 4
    connector_rope_theta: float = 10000.0
    subtoken_fourier_frequencies: int = 16
    subtoken_init_scale: float = 0.02
    patch_pool_size: int = 3
    patch_pool_temporal_size: int = 1
    projector_hidden_act: str = "gelu"
    multimodal_projector_bias: bool = True
    freeze_segmenter: bool = True
    tie_word_embeddings: bool | None = None
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        _warn_unknown_kwargs(type(self), kwargs)
        if self.connector_type not in CONNECTOR_TYPES:
            raise ValueError(f"connector_type must be one of {CONNECTOR_TYPES}, got {self.connector_type!r}")
        if self.trajtok_config is None and self.connector_type == "trajtok":
            self.trajtok_config = {}
        if isinstance(self.trajtok_config, dict):
            self.trajtok_config = {"chunk_size": self.chunk_size, **self.trajtok_config}
        if self.trajtok_config is not None and not isinstance(self.trajtok_config, (dict, TrajTokConfig)):
            raise ValueError(
                f"trajtok_config must be a dict or a TrajTokConfig, got {type(self.trajtok_config).__name__}"
            )
        if isinstance(self.vision_config, dict) and "model_type" not in self.vision_config:
            self.vision_config = {**_DEFAULT_VISION, **self.vision_config}
        super().__post_init__(**kwargs)
        # Unset: the LM head follows the text model's tying (as LLaVA-OneVision), so a Qwen3-4B text config ties.
        if self.tie_word_embeddings is None:
            self.tie_word_embeddings = bool(getattr(self.text_config, "tie_word_embeddings", False))
        self._validate_trajvlm()

    def _validate_trajvlm(self):
        for name in (
            "chunk_size",
            "segmenter_image_size",
            "connector_depth",
            "connector_num_attention_heads",
            "connector_ff_mult",
            "subtoken_fourier_frequencies",
            "patch_pool_size",
            "patch_pool_temporal_size",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if isinstance(self.video_token_id, bool) or not isinstance(self.video_token_id, int) or self.video_token_id < 0:
            raise ValueError(f"video_token_id must be an int >= 0, got {self.video_token_id!r}")
        vocab = getattr(self.text_config, "vocab_size", None)
        if isinstance(vocab, int) and self.video_token_id >= vocab:
            raise ValueError(
                f"video_token_id ({self.video_token_id}) must be < text_config.vocab_size ({vocab}): the placeholder "
                "is a token of the LLM's vocabulary"
            )
        n = self.tokens_per_trajectory
        if n not in ALLOWED_TOKENS_PER_TRAJECTORY or isinstance(n, bool):
            raise ValueError(f"tokens_per_trajectory must be one of {ALLOWED_TOKENS_PER_TRAJECTORY}, got {n!r}")
        if self.vision_feature_select_strategy not in FEATURE_SELECT_STRATEGIES:
            raise ValueError(
                f"vision_feature_select_strategy must be one of {FEATURE_SELECT_STRATEGIES}, got "
                f"{self.vision_feature_select_strategy!r}"
            )
        if isinstance(self.vision_feature_layer, bool) or not isinstance(self.vision_feature_layer, int):
            raise ValueError(f"vision_feature_layer must be an int, got {self.vision_feature_layer!r}")
        for name in ("freeze_segmenter", "multimodal_projector_bias", "tie_word_embeddings"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")
        for name in ("segmenter_image_mean", "segmenter_image_std", "vision_image_mean", "vision_image_std"):
            value = getattr(self, name)
            if (
                not isinstance(value, (list, tuple))
                or len(value) != 3
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
            ):
                raise ValueError(f"{name} must be 3 finite numbers (one per RGB channel), got {value!r}")
            if name.endswith("std") and any(v <= 0 for v in value):
                raise ValueError(f"{name} must be positive, got {value!r}")
            setattr(self, name, [float(v) for v in value])
        for name in ("connector_rope_theta", "initializer_range"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if not self.subtoken_init_scale >= 0:
            raise ValueError(f"subtoken_init_scale must be >= 0, got {self.subtoken_init_scale!r}")

        vision = self.vision_config
        for attribute in ("hidden_size", "image_size", "patch_size"):
            if not isinstance(getattr(vision, attribute, None), int):
                raise ValueError(
                    f"vision_config ({type(vision).__name__}) must define an int {attribute} (a tower with a square "
                    "patch grid)"
                )
        if vision.image_size % vision.patch_size:
            raise ValueError(
                f"vision_config.image_size ({vision.image_size}) must be a multiple of its patch_size "
                f"({vision.patch_size})"
            )
        if not isinstance(getattr(self.text_config, "hidden_size", None), int):
            raise ValueError(f"text_config ({type(self.text_config).__name__}) must define an int hidden_size")

        if self.connector_type == "trajtok":
            if not isinstance(self.trajtok_config, TrajTokConfig):
                raise ValueError("connector_type='trajtok' needs a trajtok_config (the TrajTok segmenter)")
            if self.trajtok_config.chunk_size != self.chunk_size:
                raise ValueError(
                    f"trajtok_config.chunk_size ({self.trajtok_config.chunk_size}) must equal chunk_size "
                    f"({self.chunk_size}): a chunk of the connector is a chunk of the segmenter"
                )
            if vision.hidden_size % self.connector_num_attention_heads:
                raise ValueError(
                    f"connector_num_attention_heads ({self.connector_num_attention_heads}) must divide the tower width "
                    f"vision_config.hidden_size ({vision.hidden_size}): the refinement Perceiver runs at that width"
                )
            if (vision.hidden_size // self.connector_num_attention_heads) % 2:
                raise ValueError(
                    f"the refinement Perceiver's head dim (vision_config.hidden_size / connector_num_attention_heads "
                    f"= {vision.hidden_size // self.connector_num_attention_heads}) must be even (rotary embedding)"
                )
            if self.segmenter_image_size < 32:
                raise ValueError(
                    f"segmenter_image_size must be >= 32 (the segmenter backbone's stride), got "
                    f"{self.segmenter_image_size}"
                )

    @property
    def patch_grid(self) -> int:
        """Patches per side of a tower frame (27 at the defaults)."""
        return self.vision_config.image_size // self.vision_config.patch_size

    @property
    def num_slots_per_chunk(self) -> int:
        """Upper bound of the LLM tokens of one full chunk: K·n for TrajTok, the pooled grid for patch pooling."""
        if self.connector_type == "trajtok":
            return self.trajtok_config.num_trajectories * self.tokens_per_trajectory
        pooled = math.ceil(self.patch_grid / self.patch_pool_size) ** 2
        return pooled * math.ceil(self.chunk_size / self.patch_pool_temporal_size)

    @property
    def video_slot_layout(self) -> dict:
        """What [`TrajVLMProcessor`] needs to write one `<video>` per connector slot (the slot form): chunks of
        `chunk_size` frames, each `ceil(frames / slot_group_frames) * slots_per_group` slots."""
        if self.connector_type == "trajtok":
            group, per_group = self.chunk_size, self.num_slots_per_chunk
        else:
            group, per_group = self.patch_pool_temporal_size, math.ceil(self.patch_grid / self.patch_pool_size) ** 2
        return {"chunk_size": self.chunk_size, "slot_group_frames": group, "slots_per_group": per_group}


__all__ = ["TrajVLMConfig"]
