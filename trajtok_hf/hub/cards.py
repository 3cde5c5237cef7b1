"""Model cards: a ``huggingface_hub.ModelCard`` from the per-model template (package data: ``templates/<card>.md``)
and a ``ModelCardData`` header, and the local check of its metadata (:func:`validate_card_metadata`).

The evaluation may hold several datasets (one ``model-index`` entry each, every metric a row of the card's results
table) and breakdown tables of the main one (:data:`~trajtok_hf.hub.eval_results.BREAKDOWN_TABLES`), which the
segmenter's template shows as a "Real-photo composites" section."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from .eval_results import BREAKDOWN_TABLES, EvalMetrics, eval_results_from_metrics, find_eval_metrics
from .specs import ModelSpec, get_config_value
from .validation import FolderReport

__all__ = ["CITATION", "build_model_card", "read_card_template", "validate_card_metadata"]

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
TEMPLATE_PACKAGE, TEMPLATE_FOLDER = "trajtok_hf.hub", "templates"


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
    """A config or metric value as the card's tables show it."""
    if isinstance(value, float):
        return "—" if math.isnan(value) else f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return "—" if value is None else str(value)


def _format_cell(value: Any) -> str:
    """A number of a breakdown table: floats with 3 decimals (as ``examples/evaluate_segmenter.py`` prints them),
    counts as they are, a missing or NaN value as a dash."""
    if isinstance(value, float) and not math.isnan(value):
        return f"{value:.3f}"
    return _format_value(value)


def read_card_template(card: str, template_dir: str | os.PathLike | None = None) -> str:
    """The text of the card template ``<card>.md``: the package's own (``trajtok_hf/hub/templates/``), or the one in
    ``template_dir`` when given."""
    if template_dir is None:
        template = resources.files(TEMPLATE_PACKAGE).joinpath(TEMPLATE_FOLDER, f"{card}.md")
        package_path = TEMPLATE_PACKAGE.replace(".", "/")
        where = f"the installed package ({package_path}/{TEMPLATE_FOLDER}/: reinstall trajtok-hf)"
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
    """The ``huggingface_hub.ModelCard`` of a validated folder (see :mod:`trajtok_hf.hub` for where numbers come
    from). ``eval_metrics`` defaults to :func:`find_eval_metrics` of the folder; ``notes`` is Markdown placed as a
    "Notes" section before the limitations (e.g. why a text tower was chosen, measured results of a demo);
    ``template_dir`` is a folder of ``<card>.md`` templates to use instead of the package's own."""
    if notes is not None and not isinstance(notes, str):
        raise TypeError(f"notes must be a Markdown string or None, got {type(notes).__name__}")
    from huggingface_hub import ModelCard, ModelCardData

    spec = report.spec
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
    card = ModelCard.from_template(
        card_data,
        template_str=read_card_template(spec.card, template_dir),
        repo_id=repo_id,
        model_name=model_name,
        **_model_variables(report),
        **_eval_variables(eval_metrics, eval_results),
        training_command=command,
        training_command_source=command_source,
        citation=CITATION,
        notes=notes.strip() if notes else None,
    )
    validate_card_metadata(card)
    return card


def _model_variables(report: FolderReport) -> dict[str, Any]:
    """The template variables that describe the model: classes, size, config rows, validation clip, files."""
    spec, config = report.spec, report.config
    frames, height, width = report.geometry
    id2label = getattr(config, "id2label", None) or {}
    seg_weight = getattr(config, "segmentation_loss_weight", None)
    return {
        "model_type": report.model_type,
        "model_class": report.model_class,
        "auto_class": spec.auto_class,
        "processor_auto_class": report.processor_auto_class,
        "processor_class": report.processor_class,
        "num_parameters_m": f"{report.num_parameters / 1e6:.2f}",
        "config_rows": [
            (label, _format_value(value))
            for label, path in spec.config_rows
            if (value := get_config_value(config, path)) is not None
        ],
        "num_frames": frames,
        "height": height,
        "width": width,
        "labels": [id2label[k] for k in sorted(id2label, key=int)] if spec.model_type == "trajadapter" else [],
        "vision_only": report.model_type == "trajvit2_vision_model",
        "video_token_id": getattr(config, "video_token_id", None),
        # TrajViT2: the weight of the tokenizer's segmentation loss in training (None for 0: the segmenter was fixed)
        "segmentation_loss_weight": _format_value(float(seg_weight)) if seg_weight else None,
        "files": report.files + ["README.md"],
    }


def _eval_variables(eval_metrics: EvalMetrics | None, eval_results: list | None) -> dict[str, Any]:
    """The template variables of the evaluation section: result rows, where they were read, the last training loss."""
    final_train_loss = eval_metrics.extra.get("final_train_loss") if eval_metrics else None
    return {
        "eval_rows": [
            {
                "name": r.metric_name,
                "value": _format_value(r.metric_value),
                "dataset": r.dataset_name,
                "split": r.dataset_split or "—",
            }
            for r in (eval_results or [])
        ],
        "eval_source": Path(eval_metrics.source).name if eval_metrics else None,
        "eval_step": eval_metrics.step if eval_metrics else None,
        "final_train_loss": _format_value(final_train_loss) if final_train_loss is not None else None,
        "final_train_step": eval_metrics.extra.get("final_train_step") if eval_metrics else None,
        "breakdown_dataset": eval_metrics.dataset.get("name") if eval_metrics else None,
        "breakdown_composites": eval_metrics.extra.get("composites", "camouflaged") if eval_metrics else None,
        "breakdowns": _breakdown_tables(eval_metrics.breakdowns if eval_metrics else {}),
    }


def _breakdown_tables(breakdowns: dict[str, dict[str, dict[str, float]]]) -> list[dict[str, Any]]:
    """The breakdown tables as the templates render them: ``key`` (of :data:`BREAKDOWN_TABLES`), ``header`` (first
    column, then the columns in the order the rows name them), ``rows`` (label, then formatted cells; a cell a row
    lacks is a dash)."""
    tables = []
    for key, rows in breakdowns.items():
        columns = list(dict.fromkeys(column for row in rows.values() for column in row))
        tables.append(
            {
                "key": key,
                "header": [BREAKDOWN_TABLES[key], *columns],
                "rows": [
                    [label, *(_format_cell(row.get(column)) for column in columns)] for label, row in rows.items()
                ],
            }
        )
    return tables


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
