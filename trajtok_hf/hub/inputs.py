"""The inputs a folder is validated on: a synthetic clip at the model's frame size (from
:func:`trajtok_hf.data.synthetic.generate_clip`), prepared by the folder's own processor (TrajViT2: with a caption;
TrajVLM: with a ``<video>`` prompt), or by the package's video processor when the folder has none."""

from __future__ import annotations

from typing import Any

import torch

from .specs import ModelSpec, get_config_value

__all__ = ["render_clip", "validation_geometry", "validation_inputs"]


def _video_processor_of(processor: Any) -> Any:
    """The video processor inside a multimodal processor, or the processor itself."""
    return getattr(processor, "video_processor", processor)


def validation_geometry(spec: ModelSpec, config: Any, processor: Any) -> tuple[int, int, int]:
    """(frames, height, width) of the validation clip: the processor's size/num_frames, else the model's own."""
    video_processor = _video_processor_of(processor) if processor is not None else None
    size = getattr(video_processor, "size", None) or {}
    height, width = size.get("height"), size.get("width")
    if height is None and size.get("shortest_edge"):
        height = width = size["shortest_edge"]
    frames = getattr(video_processor, "num_frames", None) if video_processor is not None else None
    if spec.model_type == "trajtok":
        default_size, default_frames = 64, min(int(config.chunk_size), 4)
    elif spec.model_type == "trajvit2":
        vision = config.vision_config
        default_size, default_frames = int(vision.image_size), int(vision.num_frames)
    elif spec.model_type == "trajvit2_vision_model":
        default_size, default_frames = int(config.image_size), int(config.num_frames)
    elif spec.model_type == "trajadapter":
        backbone = config.backbone_config
        default_size = int(get_config_value(backbone, "image_size") or 224)
        default_frames = int(get_config_value(backbone, "num_frames") or 16)
        frames = default_frames  # the backbone takes exactly this many frames
    else:  # trajvlm
        default_size, default_frames = int(config.vision_config.image_size), min(int(config.chunk_size), 4)
    return (
        int(frames or default_frames),
        int(height or default_size),
        int(width or default_size),
    )


def render_clip(frames: int, height: int, width: int, seed: int = 0) -> dict:
    """One synthetic clip (``generate_clip``'s dict: uint8 ``video (T, H, W, 3)``, ``caption``, ...) of this size."""
    from ..data.synthetic import SyntheticVideoConfig, generate_clip

    stride = 4 if height % 4 == 0 and width % 4 == 0 else 1
    config = SyntheticVideoConfig(
        num_frames=frames, height=height, width=width, max_objects=2, mask_stride=stride, min_visible_cells=1
    )
    return generate_clip(config, seed=seed, index=0)


def _fallback_video_processor(spec: ModelSpec, config: Any, height: int, width: int):
    """The package's video processor, for folders saved without one (ImageNet normalisation; TrajVLM: the tower's)."""
    from ..models.video_processing_trajtok import TrajTokVideoProcessor

    kwargs: dict[str, Any] = {"size": {"height": height, "width": width}, "do_sample_frames": False}
    if spec.model_type == "trajvlm":
        kwargs.update(image_mean=list(config.vision_image_mean), image_std=list(config.vision_image_std))
    return TrajTokVideoProcessor(**kwargs)


def validation_inputs(spec: ModelSpec, config: Any, processor: Any, clip: dict, caption: str):
    """Forward kwargs for one clip (and one caption / prompt) and a list of warnings."""
    video = clip["video"]
    warnings: list[str] = []
    if processor is not None and spec.model_type == "trajvit2" and hasattr(processor, "tokenizer"):
        batch = processor(text=[caption], videos=[video], return_tensors="pt", padding=True)
    elif processor is not None and spec.model_type == "trajvlm" and hasattr(processor, "tokenizer"):
        batch = processor(text=[_video_prompt(processor, caption)], videos=[video], return_tensors="pt")
    else:
        if processor is None:
            _, height, width = video.shape[:3]
            processor = _fallback_video_processor(spec, config, height, width)
            if spec.needs_text:
                warnings.append(
                    f"no processor in the folder: a {spec.model_type} model needs one (tokenizer + video processor) "
                    "for users to prepare inputs; save it next to the model (processor.save_pretrained)"
                )
        batch = _video_only_batch(spec, config, processor, video)
    inputs = {k: v for k, v in dict(batch).items() if isinstance(v, torch.Tensor)}
    return inputs, warnings


def _video_prompt(processor: Any, question: str) -> str:
    """A TrajVLM prompt with the video placeholder: the processor's chat template when it has one."""
    token = getattr(processor, "video_token", "<video>")
    if getattr(processor, "chat_template", None):
        conversation = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}]
        return processor.apply_chat_template(conversation, add_generation_prompt=True)
    return f"{token}\n{question}"


def _video_only_batch(spec: ModelSpec, config: Any, processor: Any, video: Any) -> dict:
    """The video processor's output, plus placeholder text ids for models whose forward needs ``input_ids``."""
    batch = dict(_video_processor_of(processor)(video, return_tensors="pt"))
    if spec.model_type == "trajvit2":
        vocab = int(config.text_config.vocab_size)
        batch["input_ids"] = (torch.arange(1, 6) % vocab)[None]
        batch["attention_mask"] = torch.ones_like(batch["input_ids"])
    elif spec.model_type == "trajvlm":  # slot form: one <video> per connector slot (as its processor writes)
        from ..models.processing_trajvlm import num_video_slots

        slots = num_video_slots(batch["pixel_values_videos"].shape[1], **config.video_slot_layout)
        batch["input_ids"] = torch.full((1, slots), int(config.video_token_id))
        batch["attention_mask"] = torch.ones_like(batch["input_ids"])
    return batch
