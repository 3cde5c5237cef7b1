"""Whether a ``save_pretrained`` folder can be published: :func:`validate_folder` and the :class:`FolderReport` it
returns (what the model card and the push are built from, and the folder the pushed files are read from)."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .errors import FolderValidationError
from .files import check_weights, read_json, select_files
from .inputs import render_clip, validation_geometry, validation_inputs
from .remote_code import check_remote_code_files, check_remote_code_subprocess
from .specs import MODEL_SPECS, ModelSpec
from .staging import prepare_upload_folder

__all__ = ["FolderReport", "validate_folder"]


@dataclass
class FolderReport:
    """What :func:`validate_folder` found. ``inputs`` are the forward kwargs it used (CPU tensors); ``outputs`` the
    tensors of the forward's output; ``clip`` the rendered clip (uint8 ``(T, H, W, 3)``) and ``caption``.

    ``files`` are read from ``upload_folder``: ``folder`` itself, or, when ``folder`` lacks the remote code its
    ``auto_map`` names, a staged temporary folder (alive as long as this report) with links to ``folder``'s files and
    the ``remote_code_written`` files the installed trajtok_hf wrote (:mod:`.staging`)."""

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
    upload_folder: Path | None = None  # None: ``folder``
    remote_code_written: list[str] = field(default_factory=list)
    staging: tempfile.TemporaryDirectory | None = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        if self.upload_folder is None:
            self.upload_folder = self.folder


def validate_folder(
    folder: str | os.PathLike,
    *,
    check_remote_code: bool = False,
    remote_code_timeout: float = 600.0,
    seed: int = 0,
) -> FolderReport:
    """Check that ``folder`` can be published (see :mod:`trajtok_hf.hub`). Returns a :class:`FolderReport`.

    Raises :class:`FolderValidationError` with the reason when the folder has no config, an unknown ``model_type``,
    no safetensors weights, missing remote code, does not load (or loads with missing / unexpected weights), its
    processor does not load, or the forward fails or returns non-finite values. A folder without the remote code
    its ``auto_map`` names is staged with the installed package's (:func:`~.staging.prepare_upload_folder`);
    ``check_remote_code=True`` then loads the staged folder. The folder itself is only read."""
    import trajtok_hf  # noqa: F401  (registers the Auto classes)

    folder = Path(folder)
    model_type, spec, config_json = _read_config(folder)
    files, skipped = select_files(folder)
    check_weights(folder, files, skipped)
    model = _load_model(folder, spec)
    processor_auto = _processor_auto_class(folder)
    processor = _load_processor(folder, processor_auto)
    upload = prepare_upload_folder(folder, config_json, files, skipped, model, processor)
    check_remote_code_files(upload.path, upload.files, spec, config_json)

    geometry = validation_geometry(spec, model.config, processor)
    clip = render_clip(*geometry, seed=seed)
    caption = clip["caption"] if spec.model_type != "trajvlm" else "Describe the video."
    inputs, outputs, warnings = _forward(folder, spec, model, processor, clip, caption, geometry)

    report = FolderReport(
        folder=folder,
        model_type=model_type,
        spec=spec,
        config=model.config,
        model_class=type(model).__name__,
        num_parameters=sum(p.numel() for p in model.parameters()),
        files=upload.files,
        skipped=upload.skipped,
        processor_class=type(processor).__name__ if processor is not None else None,
        processor_auto_class=processor_auto,
        geometry=geometry,
        inputs=inputs,
        outputs=outputs,
        clip=clip["video"],
        caption=caption,
        warnings=warnings,
        upload_folder=upload.path,
        remote_code_written=upload.written,
        staging=upload.staging,
    )
    if check_remote_code:
        check_remote_code_subprocess(report, timeout=remote_code_timeout)
        report.remote_code_checked = True
    return report


def _read_config(folder: Path) -> tuple[str, ModelSpec, dict]:
    """(model_type, its spec, config.json) of a folder written by ``save_pretrained`` for a trajtok_hf model."""
    if not folder.is_dir():
        raise FolderValidationError(f"{folder} is not a folder")
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise FolderValidationError(f"{folder} has no config.json: not a folder written by save_pretrained")
    config_json = read_json(config_path, "config")
    model_type = config_json.get("model_type")
    if model_type not in MODEL_SPECS:
        raise FolderValidationError(
            f"{config_path}: model_type {model_type!r} is not a trajtok_hf model (known: {sorted(MODEL_SPECS)})"
        )
    return model_type, MODEL_SPECS[model_type], config_json


def _load_model(folder: Path, spec: ModelSpec):
    """The model in eval mode, loaded with its Auto class; every weight must match the model (none missing, none
    unexpected, none of another shape)."""
    import transformers

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
    return model.eval()


def _processor_auto_class(folder: Path) -> str | None:
    """The Auto class that loads the folder's processor, from the processor files it has; None without any."""
    if (folder / "processor_config.json").is_file():
        return "AutoProcessor"
    if (folder / "video_preprocessor_config.json").is_file():
        return "AutoVideoProcessor"
    if (folder / "preprocessor_config.json").is_file():
        return "AutoProcessor"
    return None


def _load_processor(folder: Path, processor_auto: str | None):
    """The folder's processor (None when it has no processor file); one that does not load refuses the folder."""
    if processor_auto is None:
        return None
    import transformers

    try:
        return getattr(transformers, processor_auto).from_pretrained(folder)
    except Exception as error:  # noqa: BLE001
        raise FolderValidationError(
            f"{folder} has a processor file but transformers.{processor_auto}.from_pretrained fails: "
            f"{type(error).__name__}: {error}"
        ) from error


def _forward(
    folder: Path, spec: ModelSpec, model, processor, clip: dict, caption: str, geometry: tuple[int, int, int]
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], list[str]]:
    """(inputs, output tensors, warnings) of one forward pass under ``no_grad``; the outputs must be finite."""
    try:
        inputs, warnings = validation_inputs(spec, model.config, processor, clip, caption)
        with torch.no_grad():
            outputs = _output_tensors(model(**inputs))
    except Exception as error:  # noqa: BLE001
        frames, height, width = geometry
        raise FolderValidationError(
            f"{folder}: the forward pass on a generated {frames}×{height}×{width} clip fails: "
            f"{type(error).__name__}: {error}"
        ) from error
    bad = [k for k, v in outputs.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise FolderValidationError(f"{folder}: the forward pass returns non-finite values in {bad}")
    return inputs, outputs, warnings


def _output_tensors(output: Any) -> dict[str, torch.Tensor]:
    """The tensors of a model output (a ``ModelOutput`` or a bare tensor), detached."""
    items = output.items() if hasattr(output, "items") else [("output", output)]
    return {k: v.detach() for k, v in items if isinstance(v, torch.Tensor)}
