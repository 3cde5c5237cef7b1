"""Publishing trajtok_hf models on the Hugging Face Hub: folder validation, model cards, push.

A folder written by ``save_pretrained`` (``examples/train_*.py``'s ``final/``, a converter's output, ...) goes up in
three steps, all before or without touching the folder itself:

1. :func:`validate_folder` — the folder must be something a Hub user can load. It reads ``config.json``, picks the
   Auto class registered for its ``model_type`` (:data:`MODEL_SPECS`), checks the weights are safetensors and that
   the remote-code files named in every ``auto_map`` are there (and import only their siblings, never trajtok_hf),
   loads the model (no missing / unexpected weights), loads the processor if the folder has one, and runs a forward
   pass in eval mode under ``no_grad`` on a clip of :func:`trajtok_hf.data.synthetic.generate_clip` at the model's
   frame size (TrajViT2: with a caption through the processor; TrajVLM: with a ``<video>`` prompt). With
   ``check_remote_code=True`` the same inputs also go through the folder's own ``*.py`` files
   (``trust_remote_code=True``) in a Python where trajtok_hf cannot be imported — what a Hub user without the
   package runs — and the outputs must match the installed package's. Any failure raises
   :class:`FolderValidationError`; nothing is uploaded.
2. :func:`build_model_card` — a ``huggingface_hub.ModelCard`` from the per-model template (package data:
   ``trajtok_hf/model_card_templates/<card>.md``) and a ``ModelCardData`` (``library_name: transformers``,
   ``pipeline_tag``, ``tags``, ``license``, ``datasets`` and ``base_model`` when given, and ``eval_results`` as
   ``EvalResult`` objects). The numbers come from the files the training/eval scripts write
   (:func:`find_eval_metrics`: ``metrics.jsonl``'s last ``eval/*`` record, ``finetune_trajvlm_lora.py``'s
   ``eval.json``) or from an ``--eval_results`` JSON — never typed into a card.
   ``ModelCard.validate()`` posts the card to ``{HF_ENDPOINT}/api/validate-yaml`` (network), so
   :func:`validate_card_metadata` checks the metadata locally instead (YAML parses, ``ModelCardData`` and the
   ``model-index`` round-trip to the same ``EvalResult`` list, required keys present). ``create_commit`` itself
   sends the README to the Hub's validator before any file is uploaded.
3. :func:`push_folder` — ``HfApi.create_repo(exist_ok=True)`` (+ ``create_branch`` for a ``revision``), then ONE
   ``create_commit`` with the selected files (:func:`select_files`: safetensors weights, configs, processor /
   tokenizer files, the remote-code ``*.py``) and the card as ``README.md`` from memory. The local folder is only
   read; any failure raises :class:`PushError` naming the step (repo creation, LFS upload, commit, ...) that failed.

``examples/push_to_hub.py`` is the command line around these functions.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import math
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from warnings import warn

import torch

from .models.modeling_utils_trajtok import check_safetensors_file

__all__ = [
    "MODEL_SPECS",
    "CITATION",
    "EvalMetrics",
    "FolderReport",
    "FolderValidationError",
    "ModelSpec",
    "PushError",
    "PushResult",
    "build_model_card",
    "eval_results_from_metrics",
    "find_eval_metrics",
    "load_eval_results_json",
    "push_folder",
    "read_card_template",
    "select_files",
    "validate_card_metadata",
    "validate_folder",
]


class FolderValidationError(ValueError):
    """The folder cannot be published as is (it does not load, has no safetensors, misses remote code, ...)."""


class PushError(RuntimeError):
    """The upload failed. The message names the step; the local folder was only read."""


# ---------------------------------------------------------------------------------------------------------------------
# What each model type is on the Hub


@dataclass(frozen=True)
class ModelSpec:
    """How one ``model_type`` is published.

    auto_class: the transformers Auto class that loads it (also the key its ``auto_map`` must have);
    card: the template ``model_card_templates/<card>.md``; pipeline_tag / tags: card metadata; task_type /
    task_name: the task of its ``EvalResult`` entries; config_rows: (label, dotted config attribute) pairs shown in
    the card; needs_text: the forward takes ``input_ids`` as well as ``pixel_values_videos``."""

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
                ("frames per clip", "clip_length"),
                ("tokens per trajectory", "tokens_per_trajectory"),
            ),
            needs_text=True,
            default_training_command="python examples/train_trajvlm_caption.py --output_dir runs/trajvlm-caption "
            "--connector trajtok",
        ),
    )
}

CITATION = """@inproceedings{zheng2026trajtok,
  title     = {TrajTok: Learning Trajectory Tokens enables better Video Understanding},
  author    = {Zheng and others},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2026},
  eprint    = {2602.22779},
  archivePrefix = {arXiv}
}"""

# The card templates are package data (read with importlib.resources, so an installed wheel can write cards);
# `build_model_card(template_dir=...)` reads them from another folder instead.
TEMPLATE_PACKAGE, TEMPLATE_FOLDER = "trajtok_hf", "model_card_templates"


# ---------------------------------------------------------------------------------------------------------------------
# Which files go up

# Pushed: weights (safetensors only), configs, processor / tokenizer files, remote code. Matched on the file name of
# top-level files; sub-folders (checkpoints/, runs, ...) are never pushed.
PUSH_PATTERNS = (
    "*.safetensors",
    "model.safetensors.index.json",
    "config.json",
    "generation_config.json",
    "processor_config.json",
    "preprocessor_config.json",
    "video_preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "*.model",  # sentencepiece
    "chat_template.jinja",
    "chat_template.json",
    "*.py",
)
_PICKLE_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")
_CONFIG_FILES_WITH_AUTO_MAP = (
    "config.json",
    "processor_config.json",
    "preprocessor_config.json",
    "video_preprocessor_config.json",
    "tokenizer_config.json",
)


def select_files(folder: str | os.PathLike) -> tuple[list[str], list[tuple[str, str]]]:
    """(files to push, [(file, why it is skipped)]) for a ``save_pretrained`` folder, names relative to it.

    ``README.md`` is always skipped: the card is generated. Pickle weights (``*.bin``, ``*.pt``, ...) are never
    pushed: the Hub copy is safetensors only."""
    folder = Path(folder)
    push, skipped = [], []
    for path in sorted(folder.iterdir()):
        name = path.name
        if path.is_dir():
            skipped.append((name + "/", "sub-folder (only the top level of a save_pretrained folder is pushed)"))
        elif name == "README.md":
            skipped.append((name, "replaced by the generated model card"))
        elif any(fnmatch.fnmatch(name, p) for p in _PICKLE_WEIGHTS):
            skipped.append((name, "pickle weights: the Hub copy is safetensors only"))
        elif any(fnmatch.fnmatch(name, p) for p in PUSH_PATTERNS):
            push.append(name)
        else:
            skipped.append((name, "not a model, config, processor or remote-code file"))
    return push, skipped


# ---------------------------------------------------------------------------------------------------------------------
# Validation


@dataclass
class FolderReport:
    """What :func:`validate_folder` found. ``inputs`` are the forward kwargs it used (CPU tensors); ``outputs`` the
    tensors of the forward's output; ``clip`` the rendered clip (uint8 ``(T, H, W, 3)``) and ``caption``."""

    folder: Path
    model_type: str
    spec: ModelSpec
    config: Any
    model_class: str
    num_parameters: int
    files: list[str]
    skipped: list[tuple[str, str]]
    processor_class: str | None
    processor_auto_class: str | None
    geometry: tuple[int, int, int]  # (frames, height, width) of the validation clip
    inputs: dict[str, torch.Tensor]
    outputs: dict[str, torch.Tensor]
    clip: Any = None
    caption: str = ""
    remote_code_checked: bool = False
    warnings: list[str] = field(default_factory=list)


def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise FolderValidationError(f"{what} {path} cannot be read as JSON: {error}") from error
    if not isinstance(data, dict):
        raise FolderValidationError(f"{what} {path} is not a JSON object")
    return data


def _auto_map_targets(auto_map: dict) -> Iterable[tuple[str, str]]:
    """(auto class, 'module.Class') pairs; tokenizer entries are [slow, fast] lists, 'repo--module.Class' strips."""
    for key, value in auto_map.items():
        for target in value if isinstance(value, (list, tuple)) else [value]:
            if target:
                yield key, str(target).split("--")[-1]


def _check_remote_code_files(folder: Path, files: Sequence[str], spec: ModelSpec, config_json: dict) -> None:
    """Static checks of the remote code: auto_map entries resolve to classes defined in the folder's files, the
    model's auto class is in config.json's auto_map, every relative import has its sibling, nothing imports
    trajtok_hf. Raises FolderValidationError."""
    auto_map = config_json.get("auto_map")
    if not isinstance(auto_map, dict) or not auto_map:
        raise FolderValidationError(
            f"{folder}/config.json has no auto_map: the Hub copy would not load without trajtok_hf installed. "
            "Save the model with trajtok_hf imported (it calls register_for_auto_class)."
        )
    if spec.auto_class not in auto_map:
        raise FolderValidationError(
            f"{folder}/config.json's auto_map has no {spec.auto_class} entry (has {sorted(auto_map)}): "
            f"a {spec.model_type} model loads with transformers.{spec.auto_class}"
        )
    python_files = {name for name in files if name.endswith(".py")}
    classes: dict[str, set[str]] = {}
    for name in sorted(python_files):
        source = (folder / name).read_text(encoding="utf-8")
        try:
            tree = ast.parse(source, filename=name)
        except SyntaxError as error:
            raise FolderValidationError(f"remote-code file {name} does not parse: {error}") from error
        classes[name[:-3]] = {node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level > 0:
                modules = [node.module] if node.module else [alias.name for alias in node.names]
                for module in modules:
                    sibling = module.split(".")[0] + ".py"
                    if sibling not in python_files:
                        raise FolderValidationError(
                            f"remote-code file {name} imports .{module}, but {sibling} is not in {folder}"
                        )
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                if any(n == "trajtok_hf" or n.startswith("trajtok_hf.") for n in names):
                    raise FolderValidationError(
                        f"remote-code file {name} imports trajtok_hf: it would fail on the Hub for users "
                        "without the package"
                    )
    for config_name in _CONFIG_FILES_WITH_AUTO_MAP:
        path = folder / config_name
        if not path.is_file():
            continue
        data = config_json if config_name == "config.json" else _read_json(path, "processor file")
        for key, target in _auto_map_targets(data.get("auto_map") or {}):
            module, _, class_name = target.rpartition(".")
            if module not in classes:
                raise FolderValidationError(
                    f"{config_name}'s auto_map[{key!r}] = {target!r}, but {module}.py is not in {folder}"
                )
            if class_name not in classes[module]:
                raise FolderValidationError(
                    f"{config_name}'s auto_map[{key!r}] = {target!r}, but {module}.py defines no class {class_name}"
                )


def _check_weights(folder: Path, files: Sequence[str], skipped: Sequence[tuple[str, str]]) -> None:
    weights = [name for name in files if name.endswith(".safetensors")]
    if not weights:
        pickles = [name for name, _ in skipped if any(fnmatch.fnmatch(name, p) for p in _PICKLE_WEIGHTS)]
        hint = (
            f" (it has {', '.join(pickles)}: load it and save again with save_pretrained, which writes safetensors)"
            if pickles
            else ""
        )
        raise FolderValidationError(f"{folder} has no *.safetensors weights{hint}")
    for name in weights:  # every one would be uploaded: a truncated or corrupt file is refused, by name
        try:
            check_safetensors_file(folder / name)
        except OSError as error:
            raise FolderValidationError(f"{folder} does not load: {error}") from error
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = set((_read_json(index, "weight index").get("weight_map") or {}).values())
        missing = sorted(shards - set(weights))
        if missing:
            raise FolderValidationError(f"{index} names shards that are not in the folder: {missing}")


def _get(config: Any, dotted: str) -> Any:
    value = config
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else getattr(value, part, None)
        if value is None:
            return None
    return value


def _processor_auto_class(folder: Path) -> str | None:
    if (folder / "processor_config.json").is_file():
        return "AutoProcessor"
    if (folder / "video_preprocessor_config.json").is_file():
        return "AutoVideoProcessor"
    if (folder / "preprocessor_config.json").is_file():
        return "AutoProcessor"
    return None


def _video_processor_of(processor: Any) -> Any:
    return getattr(processor, "video_processor", processor)


def _geometry(spec: ModelSpec, config: Any, processor: Any) -> tuple[int, int, int]:
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
        default_size = int(_get(backbone, "image_size") or 224)
        default_frames = int(_get(backbone, "num_frames") or 16)
        frames = default_frames  # the backbone takes exactly this many frames
    else:  # trajvlm
        default_size, default_frames = int(config.vision_config.image_size), min(int(config.clip_length), 4)
    return (
        int(frames or default_frames),
        int(height or default_size),
        int(width or default_size),
    )


def _render_clip(frames: int, height: int, width: int, seed: int = 0) -> dict:
    from .data.synthetic import SyntheticVideoConfig, generate_clip

    stride = 4 if height % 4 == 0 and width % 4 == 0 else 1
    config = SyntheticVideoConfig(
        num_frames=frames, height=height, width=width, max_objects=2, mask_stride=stride, min_visible_cells=1
    )
    return generate_clip(config, seed=seed, index=0)


def _fallback_video_processor(spec: ModelSpec, config: Any, height: int, width: int):
    """The package's video processor, for folders saved without one (ImageNet normalisation; TrajVLM: the tower's)."""
    from .models.video_processing_trajtok import TrajTokVideoProcessor

    kwargs: dict[str, Any] = {"size": {"height": height, "width": width}, "do_sample_frames": False}
    if spec.model_type == "trajvlm":
        kwargs.update(image_mean=list(config.vision_image_mean), image_std=list(config.vision_image_std))
    return TrajTokVideoProcessor(**kwargs)


def _validation_inputs(spec: ModelSpec, config: Any, processor: Any, clip: dict, caption: str):
    """Forward kwargs for one clip (and one caption / prompt) and a list of warnings."""
    video = clip["video"]
    warnings: list[str] = []
    if processor is not None and spec.model_type == "trajvit2" and hasattr(processor, "tokenizer"):
        batch = processor(text=[caption], videos=[video], return_tensors="pt", padding=True)
    elif processor is not None and spec.model_type == "trajvlm" and hasattr(processor, "tokenizer"):
        token = getattr(processor, "video_token", "<video>")
        if getattr(processor, "chat_template", None):
            conversation = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": caption}]}]
            prompt = processor.apply_chat_template(conversation, add_generation_prompt=True)
        else:
            prompt = f"{token}\n{caption}"
        batch = processor(text=[prompt], videos=[video], return_tensors="pt")
    else:
        if processor is None:
            _, height, width = video.shape[:3]
            processor = _fallback_video_processor(spec, config, height, width)
            if spec.needs_text:
                warnings.append(
                    f"no processor in the folder: a {spec.model_type} model needs one (tokenizer + video processor) "
                    "for users to prepare inputs; save it next to the model (processor.save_pretrained)"
                )
        batch = dict(_video_processor_of(processor)(video, return_tensors="pt"))
        if spec.model_type == "trajvit2":
            vocab = int(config.text_config.vocab_size)
            batch["input_ids"] = (torch.arange(1, 6) % vocab)[None]
            batch["attention_mask"] = torch.ones_like(batch["input_ids"])
        elif spec.model_type == "trajvlm":  # slot form: one <video> per connector slot (as its processor writes)
            from .models.processing_trajvlm import num_video_slots

            slots = num_video_slots(batch["pixel_values_videos"].shape[1], **config.video_slot_layout)
            batch["input_ids"] = torch.full((1, slots), int(config.video_token_id))
            batch["attention_mask"] = torch.ones_like(batch["input_ids"])
    inputs = {k: v for k, v in dict(batch).items() if isinstance(v, torch.Tensor)}
    return inputs, warnings


def _output_tensors(output: Any) -> dict[str, torch.Tensor]:
    items = output.items() if hasattr(output, "items") else [("output", output)]
    return {k: v.detach() for k, v in items if isinstance(v, torch.Tensor)}


def validate_folder(
    folder: str | os.PathLike,
    *,
    check_remote_code: bool = False,
    remote_code_timeout: float = 600.0,
    seed: int = 0,
) -> FolderReport:
    """Check that ``folder`` can be published; see the module docstring. Returns a :class:`FolderReport`.

    Raises :class:`FolderValidationError` with the reason when the folder has no config, an unknown ``model_type``,
    no safetensors weights, missing remote code, does not load (or loads with missing / unexpected weights), its
    processor does not load, or the forward fails or returns non-finite values."""
    import transformers

    import trajtok_hf  # noqa: F401  (registers the Auto classes)

    folder = Path(folder)
    if not folder.is_dir():
        raise FolderValidationError(f"{folder} is not a folder")
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise FolderValidationError(f"{folder} has no config.json: not a folder written by save_pretrained")
    config_json = _read_json(config_path, "config")
    model_type = config_json.get("model_type")
    if model_type not in MODEL_SPECS:
        raise FolderValidationError(
            f"{config_path}: model_type {model_type!r} is not a trajtok_hf model (known: {sorted(MODEL_SPECS)})"
        )
    spec = MODEL_SPECS[model_type]
    files, skipped = select_files(folder)
    _check_weights(folder, files, skipped)
    _check_remote_code_files(folder, files, spec, config_json)
    warnings: list[str] = []

    auto_class = getattr(transformers, spec.auto_class)
    try:
        model, info = auto_class.from_pretrained(folder, output_loading_info=True)
    except Exception as error:  # noqa: BLE001 - any loading failure refuses the folder
        raise FolderValidationError(
            f"{folder} does not load with transformers.{spec.auto_class}.from_pretrained: "
            f"{type(error).__name__}: {error}"
        ) from error
    problems = {k: sorted(info.get(k) or []) for k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    problems = {k: v for k, v in problems.items() if v}
    if problems:
        detail = "; ".join(f"{k}: {v[:5]}{' ...' if len(v) > 5 else ''} ({len(v)})" for k, v in problems.items())
        raise FolderValidationError(f"{folder}: the weights do not match the model ({detail})")
    model.eval()

    processor, processor_auto = None, _processor_auto_class(folder)
    if processor_auto is not None:
        try:
            processor = getattr(transformers, processor_auto).from_pretrained(folder)
        except Exception as error:  # noqa: BLE001
            raise FolderValidationError(
                f"{folder} has a processor file but transformers.{processor_auto}.from_pretrained fails: "
                f"{type(error).__name__}: {error}"
            ) from error

    frames, height, width = _geometry(spec, model.config, processor)
    clip = _render_clip(frames, height, width, seed=seed)
    caption = clip["caption"] if spec.model_type != "trajvlm" else "Describe the video."
    try:
        inputs, input_warnings = _validation_inputs(spec, model.config, processor, clip, caption)
        with torch.no_grad():
            outputs = _output_tensors(model(**inputs))
    except Exception as error:  # noqa: BLE001
        raise FolderValidationError(
            f"{folder}: the forward pass on a generated {frames}×{height}×{width} clip fails: "
            f"{type(error).__name__}: {error}"
        ) from error
    warnings += input_warnings
    bad = [k for k, v in outputs.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise FolderValidationError(f"{folder}: the forward pass returns non-finite values in {bad}")

    report = FolderReport(
        folder=folder,
        model_type=model_type,
        spec=spec,
        config=model.config,
        model_class=type(model).__name__,
        num_parameters=sum(p.numel() for p in model.parameters()),
        files=files,
        skipped=skipped,
        processor_class=type(processor).__name__ if processor is not None else None,
        processor_auto_class=processor_auto,
        geometry=(frames, height, width),
        inputs=inputs,
        outputs=outputs,
        clip=clip["video"],
        caption=caption,
        warnings=warnings,
    )
    if check_remote_code:
        _check_remote_code_subprocess(report, timeout=remote_code_timeout)
        report.remote_code_checked = True
    return report


_REMOTE_CODE_SCRIPT = r"""
import importlib.abc, sys

class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "trajtok_hf" or name.startswith("trajtok_hf."):
            raise ImportError("trajtok_hf is blocked: this check loads the folder's own remote code")

sys.meta_path.insert(0, _Block())
import torch, transformers
from safetensors.torch import load_file, save_file

folder, io_path, out_path, auto_class = sys.argv[1:5]
inputs = load_file(io_path)
model = getattr(transformers, auto_class).from_pretrained(folder, trust_remote_code=True).eval()
if not type(model).__module__.startswith("transformers_modules"):
    raise SystemExit(f"loaded {type(model).__module__}.{type(model).__name__}, not the folder's remote code")
with torch.no_grad():
    out = model(**inputs)
save_file({k: v.detach().clone().contiguous() for k, v in out.items() if isinstance(v, torch.Tensor)}, out_path)
print("REMOTE_CODE_OK", type(model).__name__)
"""


def _check_remote_code_subprocess(report: FolderReport, timeout: float, atol: float = 1e-4) -> None:
    """Load the folder with trust_remote_code=True where trajtok_hf cannot be imported; same inputs, same outputs."""
    from safetensors.torch import load_file, save_file

    with tempfile.TemporaryDirectory(prefix="trajtok_remote_code_") as tmp:
        io_path, out_path = os.path.join(tmp, "inputs.safetensors"), os.path.join(tmp, "outputs.safetensors")
        save_file({k: v.clone().contiguous() for k, v in report.inputs.items()}, io_path)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=os.path.join(tmp, "modules"))
        try:
            result = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    _REMOTE_CODE_SCRIPT,
                    str(report.folder.resolve()),
                    io_path,
                    out_path,
                    report.spec.auto_class,
                ],
                cwd=tmp,
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as error:
            raise FolderValidationError(f"the remote-code check did not finish in {timeout:.0f} s") from error
        if result.returncode != 0 or "REMOTE_CODE_OK" not in result.stdout:
            raise FolderValidationError(
                f"{report.folder} does not load or run with trust_remote_code=True without trajtok_hf installed "
                f"(what a Hub user runs):\n{(result.stdout + result.stderr)[-3000:]}"
            )
        remote = load_file(out_path)
    for key, expected in report.outputs.items():
        got = remote.get(key)
        if got is None or got.shape != expected.shape:
            raise FolderValidationError(f"remote-code output {key!r} is missing or has another shape")
        same = (
            torch.allclose(got, expected, atol=atol, rtol=atol)
            if expected.is_floating_point()
            else torch.equal(got, expected)
        )
        if not same:
            raise FolderValidationError(
                f"the folder's remote code gives a different {key!r} than the installed trajtok_hf: the *.py files "
                "are stale; save the model again with the current package"
            )


# ---------------------------------------------------------------------------------------------------------------------
# Evaluation results

_METRIC_NAMES = {
    # trajtok_hf.training.evaluate_segmentation (fractions)
    "ARI": ("ari", "ARI"),
    "FG-ARI": ("fg-ari", "Foreground ARI"),
    "mIoU": ("miou", "Matched mIoU"),
    "FG-mIoU": ("fg-miou", "Foreground matched mIoU"),
    # trajtok_hf.training.evaluate_retrieval (percent; ranks 1-based)
    **{
        f"{d}_R@{k}": (f"{d}_recall@{k}", f"{'Text→video' if d == 't2v' else 'Video→text'} R@{k}")
        for d in ("t2v", "v2t")
        for k in (1, 5, 10)
    },
    "t2v_MedR": ("t2v_median_rank", "Text→video median rank"),
    "v2t_MedR": ("v2t_median_rank", "Video→text median rank"),
    # train_adapter.py / finetune_trajvlm_lora.py
    "accuracy": ("accuracy", "Accuracy"),
    "loss": ("loss", "Held-out loss"),
}

SYNTHETIC_DATASET = {
    "type": "trajtok_hf-synthetic",
    "name": "Procedural videos (trajtok_hf.data.synthetic), held-out generator seed",
    "split": "held-out",
}


@dataclass
class EvalMetrics:
    """Numbers read from an evaluation file: ``metrics`` {name: value}, where they came from (``source``, ``step``),
    and the dataset they were measured on (``dataset``: type / name / split)."""

    metrics: dict[str, float]
    source: str
    step: int | None = None
    dataset: dict[str, str] = field(default_factory=lambda: dict(SYNTHETIC_DATASET))
    extra: dict[str, Any] = field(default_factory=dict)


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _last_eval_record(path: Path) -> tuple[dict[str, float], int | None, dict | None]:
    """The last ``eval/*`` record of a training script's metrics.jsonl, and the last training record."""
    last_eval, step, last_train = {}, None, None
    unreadable = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            unreadable.append(number)
            continue
        if not isinstance(record, dict):
            unreadable.append(number)
            continue
        evals = {k[len("eval/") :]: v for k, v in record.items() if k.startswith("eval/") and _numeric(v)}
        if evals:
            last_eval, step = evals, record.get("step")
        elif "loss" in record:
            last_train = record
    if unreadable:
        warn(f"{path}: skipped line(s) {unreadable}, not JSON records (a write cut short?)", stacklevel=3)
    return last_eval, step, last_train


def _eval_json_metrics(data: dict) -> dict[str, float]:
    """finetune_trajvlm_lora.py's eval.json: the ``after`` block (accuracy + per-question-type accuracy)."""
    block = data.get("after", data)
    metrics = {"accuracy": block["accuracy"]} if _numeric(block.get("accuracy")) else {}
    for kind, value in sorted((block.get("accuracy_by_type") or {}).items()):
        if _numeric(value):
            metrics[f"accuracy ({kind})"] = value
    return metrics


def find_eval_metrics(folder: str | os.PathLike) -> EvalMetrics | None:
    """Evaluation numbers the example scripts wrote for the model in ``folder``, or None.

    Looked for in the folder, then its parent and grandparent (``train_*.py`` write ``output_dir/metrics.jsonl`` and
    the model to ``output_dir/final``; checkpoints sit in ``output_dir/checkpoints/step_N``): ``eval.json``
    (``finetune_trajvlm_lora.py``) first, then the last ``eval/*`` record of ``metrics.jsonl``. A metrics.jsonl with
    training records only gives ``extra["final_train_loss"]`` and no metrics."""
    folder = Path(folder).resolve()
    training_only: EvalMetrics | None = None
    for directory in (folder, folder.parent, folder.parent.parent):
        eval_json = directory / "eval.json"
        if eval_json.is_file():
            try:
                data = json.loads(eval_json.read_text(encoding="utf-8"))
            except ValueError as error:
                warn(f"{eval_json} is not valid JSON ({error}): its metrics are not used", stacklevel=2)
                data = None
            try:
                metrics = _eval_json_metrics(data) if data is not None else {}
            except (KeyError, AttributeError):
                metrics = {}
            if metrics:
                return EvalMetrics(metrics=metrics, source=str(eval_json))
        metrics_jsonl = directory / "metrics.jsonl"
        if metrics_jsonl.is_file():
            metrics, step, last_train = _last_eval_record(metrics_jsonl)
            extra = {}
            if last_train is not None and _numeric(last_train.get("loss")):
                extra = {"final_train_loss": float(last_train["loss"]), "final_train_step": last_train.get("step")}
            if metrics:
                return EvalMetrics(metrics=metrics, source=str(metrics_jsonl), step=step, extra=extra)
            if training_only is None and extra:
                training_only = EvalMetrics(metrics={}, source=str(metrics_jsonl), extra=extra)
    return training_only


def load_eval_results_json(path: str | os.PathLike) -> EvalMetrics:
    """An ``--eval_results`` file: either ``{"metric": value, ...}`` (``eval/`` prefixes are dropped) or
    ``{"metrics": {...}, "dataset": {"type", "name", "split"}, "step": N}``, e.g. written by an evaluation script."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"--eval_results {path}: cannot read JSON ({error})") from error
    if not isinstance(data, dict):
        raise ValueError(f"--eval_results {path}: expected a JSON object")
    raw = data.get("metrics", data)
    if not isinstance(raw, dict):
        raise ValueError(f"--eval_results {path}: 'metrics' must be an object of name → number")
    metrics = {k.removeprefix("eval/"): float(v) for k, v in raw.items() if _numeric(v) and k != "step"}
    if not metrics:
        raise ValueError(f"--eval_results {path}: no numeric metrics in it")
    dataset = dict(SYNTHETIC_DATASET)
    if isinstance(data.get("dataset"), dict):
        dataset.update({k: str(v) for k, v in data["dataset"].items() if k in ("type", "name", "split", "config")})
    step = data.get("step") if isinstance(data.get("step"), int) else None
    return EvalMetrics(metrics=metrics, source=str(path), step=step, dataset=dataset)


def eval_results_from_metrics(metrics: EvalMetrics, spec: ModelSpec):
    """``huggingface_hub.EvalResult`` entries, one per metric, in the order the file lists them."""
    from huggingface_hub import EvalResult

    results = []
    for name, value in metrics.metrics.items():
        base = name.split(" (")[0]
        metric_type, pretty = _METRIC_NAMES.get(base, (re.sub(r"[^a-z0-9@]+", "_", base.lower()).strip("_"), base))
        if name != base:  # "accuracy (colour)"
            metric_type, pretty = f"{metric_type}_{name[len(base) + 2 : -1]}", f"{pretty} ({name[len(base) + 2 : -1]})"
        results.append(
            EvalResult(
                task_type=spec.task_type,
                task_name=spec.task_name,
                dataset_type=metrics.dataset["type"],
                dataset_name=metrics.dataset["name"],
                dataset_split=metrics.dataset.get("split"),
                dataset_config=metrics.dataset.get("config"),
                metric_type=metric_type,
                metric_name=pretty,
                metric_value=round(float(value), 6),
            )
        )
    return results


# ---------------------------------------------------------------------------------------------------------------------
# Model card


def _training_command(folder: Path, spec: ModelSpec, given: str | None) -> tuple[str, str]:
    """(command, where it comes from)."""
    if given:
        return given, "the command given at push time"
    for directory in (folder, folder.parent):
        args_file = directory / "train_args.json"
        if args_file.is_file() and spec.model_type == "trajvlm":
            try:
                args = json.loads(args_file.read_text(encoding="utf-8"))
            except ValueError:
                break
            parts = ["python examples/train_trajvlm_caption.py"]
            for key, value in args.items():
                if key == "train_seconds" or value is None or value is False:
                    continue
                parts.append(f"--{key}" if value is True else f"--{key} {value}")
            return " ".join(parts), f"recorded by the training script in {args_file.name}"
    return spec.default_training_command, (
        "the example script's default command; the exact command of this checkpoint was not recorded"
    )


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return "—" if value is None else str(value)


def read_card_template(card: str, template_dir: str | os.PathLike | None = None) -> str:
    """The text of the card template ``<card>.md``: the package's own (``trajtok_hf/model_card_templates/``), or the
    one in ``template_dir`` when given."""
    if template_dir is None:
        template = resources.files(TEMPLATE_PACKAGE).joinpath(TEMPLATE_FOLDER, f"{card}.md")
        where = f"the installed package ({TEMPLATE_PACKAGE}/{TEMPLATE_FOLDER}/: reinstall trajtok-hf)"
    else:
        template = Path(template_dir) / f"{card}.md"
        where = f"template_dir={os.fspath(template_dir)!r}"
    if not template.is_file():
        raise FileNotFoundError(f"model card template {card}.md not found in {where}")
    return template.read_text(encoding="utf-8")


def build_model_card(
    report: FolderReport,
    repo_id: str,
    *,
    eval_metrics: EvalMetrics | None = None,
    training_command: str | None = None,
    datasets: Sequence[str] = (),
    base_model: Sequence[str] = (),
    license: str = "apache-2.0",
    extra_tags: Sequence[str] = (),
    template_dir: str | os.PathLike | None = None,
    notes: str | None = None,
):
    """The ``huggingface_hub.ModelCard`` of a validated folder (see the module docstring for where numbers come
    from). ``eval_metrics`` defaults to :func:`find_eval_metrics` of the folder; ``notes`` is Markdown placed as a
    "Notes" section before the limitations (e.g. why a text tower was chosen, measured results of a demo);
    ``template_dir`` is a folder of ``<card>.md`` templates to use instead of the package's own."""
    if notes is not None and not isinstance(notes, str):
        raise TypeError(f"notes must be a Markdown string or None, got {type(notes).__name__}")
    from huggingface_hub import ModelCard, ModelCardData

    spec, config = report.spec, report.config
    if eval_metrics is None:
        eval_metrics = find_eval_metrics(report.folder)
    eval_results = eval_results_from_metrics(eval_metrics, spec) if eval_metrics and eval_metrics.metrics else None
    model_name = repo_id.split("/")[-1]
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag=spec.pipeline_tag,
        tags=list(dict.fromkeys([*spec.tags, *extra_tags])),
        license=license,
        datasets=list(datasets) or None,
        base_model=(list(base_model) if len(base_model) > 1 else base_model[0]) if base_model else None,
        model_name=model_name if eval_results else None,  # the model-index name
        eval_results=eval_results,
    )
    command, command_source = _training_command(report.folder, spec, training_command)
    frames, height, width = report.geometry
    id2label = getattr(config, "id2label", None) or {}
    card = ModelCard.from_template(
        card_data,
        template_str=read_card_template(spec.card, template_dir),
        repo_id=repo_id,
        model_name=model_name,
        model_type=report.model_type,
        model_class=report.model_class,
        auto_class=spec.auto_class,
        processor_auto_class=report.processor_auto_class,
        processor_class=report.processor_class,
        num_parameters_m=f"{report.num_parameters / 1e6:.2f}",
        config_rows=[(label, _format_value(_get(config, path))) for label, path in spec.config_rows],
        num_frames=frames,
        height=height,
        width=width,
        labels=[id2label[k] for k in sorted(id2label, key=int)] if spec.model_type == "trajadapter" else [],
        vision_only=report.model_type == "trajvit2_vision_model",
        video_token_id=getattr(config, "video_token_id", None),
        eval_rows=[
            {
                "name": r.metric_name,
                "value": _format_value(r.metric_value),
                "dataset": r.dataset_name,
                "split": r.dataset_split or "—",
            }
            for r in (eval_results or [])
        ],
        eval_source=Path(eval_metrics.source).name if eval_metrics else None,
        eval_step=eval_metrics.step if eval_metrics else None,
        final_train_loss=_format_value(eval_metrics.extra.get("final_train_loss"))
        if eval_metrics and eval_metrics.extra.get("final_train_loss") is not None
        else None,
        final_train_step=eval_metrics.extra.get("final_train_step") if eval_metrics else None,
        training_command=command,
        training_command_source=command_source,
        files=report.files + ["README.md"],
        citation=CITATION,
        notes=notes.strip() if notes else None,
    )
    validate_card_metadata(card)
    return card


def validate_card_metadata(card) -> dict:
    """Local check of a card's metadata (``ModelCard.validate()`` needs the network: it posts to the Hub's
    ``/api/validate-yaml``). The YAML header must parse to a mapping with ``library_name``, ``pipeline_tag``,
    ``license`` and ``tags``; ``ModelCardData`` must re-read it, and its ``model-index`` must round-trip to the same
    ``EvalResult`` list. Returns the parsed metadata; raises ValueError."""
    import yaml
    from huggingface_hub import ModelCard, ModelCardData

    text = str(card)
    match = re.match(r"^---\s*\n(.*?)\n---\s*\n", text, flags=re.S)
    if not match:
        raise ValueError("the model card has no YAML header between '---' lines")
    try:
        metadata = yaml.safe_load(match.group(1))
    except yaml.YAMLError as error:
        raise ValueError(f"the model card's YAML header does not parse: {error}") from error
    if not isinstance(metadata, dict):
        raise ValueError("the model card's YAML header is not a mapping")
    missing = [k for k in ("library_name", "pipeline_tag", "license", "tags") if not metadata.get(k)]
    if missing:
        raise ValueError(f"the model card's metadata lacks {missing}")
    reread = ModelCardData(**metadata)
    original = card.data.eval_results or []
    if [r.__dict__ for r in (reread.eval_results or [])] != [r.__dict__ for r in original]:
        raise ValueError("the model card's model-index does not round-trip to the same eval results")
    again = ModelCard(text)
    if again.data.to_dict() != card.data.to_dict():
        raise ValueError("the model card's metadata does not round-trip through ModelCard")
    return metadata


# ---------------------------------------------------------------------------------------------------------------------
# Push


@dataclass
class PushResult:
    repo_id: str
    revision: str
    commit_url: str
    commit_oid: str
    files: list[str]
    skipped: list[tuple[str, str]]


_STEP_BY_URL = (
    ("/api/repos/create", "creating the repository"),
    ("/branch/", "creating the branch"),
    ("/api/validate-yaml", "validating the model card metadata on the Hub"),
    ("/preupload/", "asking the Hub how to upload each file (preupload)"),
    ("/info/lfs/objects/batch", "requesting LFS upload URLs"),
    ("/commit/", "creating the commit"),
)


def _describe_failure(error: BaseException, default_step: str) -> str:
    step = default_step
    response = getattr(error, "response", None)
    url = str(getattr(getattr(response, "request", None), "url", "") or "")
    for fragment, description in _STEP_BY_URL:
        if fragment in url:
            step = description
            break
    else:
        if "Error while uploading" in str(error):
            step = "uploading a large file (LFS)"
        elif "Invalid metadata in README.md" in str(error):
            step = "validating the model card metadata on the Hub"
    status = getattr(response, "status_code", None)
    cause = f"{type(error).__name__}: {error}"
    if error.__cause__ is not None and str(error.__cause__) not in cause:
        cause += f" (caused by {type(error.__cause__).__name__}: {error.__cause__})"
    return f"{step}{f' (HTTP {status})' if status else ''}: {cause}"


def push_folder(
    report: FolderReport,
    repo_id: str,
    card,
    *,
    private: bool | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
    endpoint: str | None = None,
) -> PushResult:
    """Upload a validated folder's files (:func:`select_files`) and ``card`` as README.md in one commit.

    The folder is only read. Raises :class:`PushError` naming the step that failed; a failure before the commit
    leaves the repository as it was (the Hub commit is atomic), a failure at the commit may leave uploaded LFS
    objects that no commit references."""
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(endpoint=endpoint, token=token)
    where = f"{api.endpoint}/{repo_id}"
    untouched = f"The local folder {report.folder} was only read and is unchanged."
    try:
        repo_url = api.create_repo(repo_id, private=private, exist_ok=True)
        repo_id = repo_url.repo_id
        if revision and revision != "main":
            api.create_branch(repo_id, branch=revision, exist_ok=True)
    except Exception as error:  # noqa: BLE001
        raise PushError(
            f"push to {where} failed while {_describe_failure(error, 'creating the repository')}. {untouched}"
        ) from error

    operations = [
        CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(report.folder / name)) for name in report.files
    ]
    operations.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=str(card).encode("utf-8")))
    message = commit_message or f"Upload {report.model_class} ({report.model_type}) with trajtok_hf"
    try:
        commit = api.create_commit(repo_id, operations, commit_message=message, revision=revision)
    except Exception as error:  # noqa: BLE001
        raise PushError(
            f"push to {where} failed while {_describe_failure(error, 'uploading the files')}. No commit was made "
            f"(uploaded large files, if any, are not referenced by any commit). {untouched}"
        ) from error
    return PushResult(
        repo_id=repo_id,
        revision=revision or "main",
        commit_url=str(commit.commit_url),
        commit_oid=str(commit.oid),
        files=[op.path_in_repo for op in operations],
        skipped=report.skipped,
    )
