"""What each trajtok_hf ``model_type`` is on the Hub: its Auto class, card template, card metadata and task.

:data:`MODEL_SPECS` maps a ``config.json``'s ``model_type`` to its :class:`ModelSpec`; folder validation, the model
card and its ``EvalResult`` entries all read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["MODEL_SPECS", "ModelSpec", "get_config_value"]


@dataclass(frozen=True)
class ModelSpec:
    """How one ``model_type`` is published.

    auto_class: the transformers Auto class that loads it (also the key its ``auto_map`` must have);
    card: the template ``trajtok_hf/hub/templates/<card>.md``; pipeline_tag / tags: card metadata; task_type /
    task_name: the task of its ``EvalResult`` entries; config_rows: (label, dotted config attribute) pairs shown in
    the card; needs_text: the forward takes ``input_ids`` as well as ``pixel_values_videos``;
    default_training_command: the card's training command when the checkpoint did not record its own."""

    model_type: str
    auto_class: str
    card: str
    pipeline_tag: str
    tags: tuple[str, ...]
    task_type: str
    task_name: str
    config_rows: tuple[tuple[str, str], ...] = ()
    needs_text: bool = False
    default_training_command: str = ""


_COMMON_TAGS = ("trajtok", "video", "trajectory-tokens", "custom_code")

MODEL_SPECS: dict[str, ModelSpec] = {
    spec.model_type: spec
    for spec in (
        ModelSpec(
            model_type="trajtok",
            auto_class="AutoModel",
            card="trajtok-segmenter",
            # Class-agnostic masks (one trajectory id per pixel) + tokens: the closest Hub task is mask generation.
            pipeline_tag="mask-generation",
            tags=_COMMON_TAGS + ("video-segmentation", "video-tokenizer"),
            task_type="mask-generation",
            task_name="Video trajectory segmentation",
            config_rows=(
                ("backbone", "backbone_config.model_type"),
                ("timm model", "backbone_config.backbone"),  # timm_backbone only (rows without a value are left out)
                ("backbone widths", "backbone_config.hidden_sizes"),
                ("feature width D", "hidden_size"),
                ("trajectory slots K per chunk", "num_trajectories"),
                ("frames per chunk", "chunk_size"),
                ("tokens per trajectory (choices)", "tokens_per_trajectory_choices"),
                ("refinement query init", "query_init"),
            ),
            default_training_command="python examples/train_segmenter.py --output_dir runs/seg --preset tiny "
            "--max_steps 200",
        ),
        ModelSpec(
            model_type="trajvit2",
            auto_class="AutoModel",
            card="trajvit2",
            # X-CLIP, the closest video-text CLIP on the Hub, is tagged video-classification (zero-shot).
            pipeline_tag="video-classification",
            tags=_COMMON_TAGS + ("video-text-retrieval", "zero-shot", "clip"),
            task_type="video-text-retrieval",
            task_name="Video-text retrieval",
            config_rows=(
                ("video tokenizer", "vision_config.vision_tokenizer"),
                ("video encoder width", "vision_config.hidden_size"),
                ("video encoder layers", "vision_config.num_hidden_layers"),
                ("text encoder", "text_config.model_type"),
                ("text encoder layers", "text_config.num_hidden_layers"),
                ("embedding dim", "projection_dim"),
            ),
            needs_text=True,
            default_training_command="python examples/train_trajvit2.py --output_dir runs/clip --preset tiny "
            "--segmenter runs/seg/final",
        ),
        ModelSpec(
            model_type="trajvit2_vision_model",
            auto_class="AutoModel",
            card="trajvit2",
            pipeline_tag="feature-extraction",
            tags=_COMMON_TAGS + ("video-encoder",),
            task_type="video-text-retrieval",
            task_name="Video-text retrieval",
            config_rows=(
                ("video tokenizer", "vision_tokenizer"),
                ("video encoder width", "hidden_size"),
                ("video encoder layers", "num_hidden_layers"),
            ),
            default_training_command="python examples/train_trajvit2.py --output_dir runs/clip --preset tiny "
            "--segmenter runs/seg/final",
        ),
        ModelSpec(
            model_type="trajadapter",
            auto_class="AutoModelForVideoClassification",
            card="trajadapter",
            pipeline_tag="video-classification",
            tags=_COMMON_TAGS + ("probe", "frozen-backbone"),
            task_type="video-classification",
            task_name="Video classification (probe on a frozen backbone)",
            config_rows=(
                ("frozen backbone", "backbone_config.model_type"),
                ("backbone frames", "backbone_config.num_frames"),
                ("backbone frame size", "backbone_config.image_size"),
                ("probe", "probe_type"),
                ("tokens per trajectory", "tokens_per_trajectory"),
                ("classes", "num_labels"),
            ),
            default_training_command="python examples/train_adapter.py --output_dir runs/adapter --probe trajectory "
            "--tokens_per_trajectory 2",
        ),
        ModelSpec(
            model_type="trajvlm",
            auto_class="AutoModelForImageTextToText",
            card="trajvlm",
            pipeline_tag="video-text-to-text",
            tags=_COMMON_TAGS + ("video-llm", "video-question-answering"),
            task_type="video-text-to-text",
            task_name="Video question answering",
            config_rows=(
                ("connector", "connector_type"),
                ("vision tower", "vision_config.model_type"),
                ("vision tower frame size", "vision_config.image_size"),
                ("language model", "text_config.model_type"),
                ("language model width", "text_config.hidden_size"),
                ("frames per chunk", "chunk_size"),
                ("tokens per trajectory", "tokens_per_trajectory"),
            ),
            needs_text=True,
            default_training_command="python examples/train_trajvlm_caption.py --output_dir runs/trajvlm-caption "
            "--connector trajtok",
        ),
    )
}


def get_config_value(config: Any, dotted: str) -> Any:
    """The value at a dotted attribute path (``"backbone_config.hidden_sizes"``) of a config or dict; None if absent."""
    value = config
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else getattr(value, part, None)
        if value is None:
            return None
    return value
