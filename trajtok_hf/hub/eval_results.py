"""The evaluation numbers a model card quotes, read from the files the training and evaluation scripts write
(``metrics.jsonl``, ``eval.json``, an ``--eval_results`` JSON), and their ``huggingface_hub.EvalResult`` entries.

No number is typed into a card: :func:`find_eval_metrics` and :func:`load_eval_results_json` read them,
:func:`eval_results_from_metrics` turns them into the card's ``model-index``. One evaluation JSON may hold several
datasets: the main ``metrics`` + ``dataset``, and named blocks of their own (``examples/evaluate_segmenter.py --data
photos`` writes the held-out photo composites as the main dataset and the held-out shapes as ``"shapes"``), each an
entry of the ``model-index``; its breakdown tables (:data:`BREAKDOWN_TABLES`) are kept for the card's text.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from warnings import warn

from .specs import ModelSpec

__all__ = [
    "BREAKDOWN_TABLES",
    "SYNTHETIC_DATASET",
    "EvalMetrics",
    "eval_results_from_metrics",
    "find_eval_metrics",
    "load_eval_results_json",
]

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

_DATASET_FIELDS = ("type", "name", "split", "config")

BREAKDOWN_TABLES = {
    "by_photo": "held-out photo",
    "by_objects_per_clip": "objects per clip",
    "by_object_size": "object size",
}
"""The breakdown tables an evaluation JSON may carry for its main dataset (``examples/evaluate_segmenter.py --data
photos``): key → the name of the table's first column. Each is ``{row label: {column: number}}``."""
COMPOSITES = ("camouflaged", "mixed")
"""How the main dataset's photo composites were drawn (the JSON's ``composites``, kept in ``EvalMetrics.extra``):
every sprite cut from the row's photo, or from any held-out photo over the row's photo."""


@dataclass
class EvalMetrics:
    """Numbers read from an evaluation file: ``metrics`` {name: value}, where they came from (``source``, ``step``),
    and the dataset they were measured on (``dataset``: type / name / split). ``extra_datasets`` holds the same for
    further datasets of the file ({block name: EvalMetrics}, e.g. ``"shapes"``), ``breakdowns`` the tables of
    :data:`BREAKDOWN_TABLES` for the main dataset."""

    metrics: dict[str, float]
    source: str
    step: int | None = None
    dataset: dict[str, str] = field(default_factory=lambda: dict(SYNTHETIC_DATASET))
    extra: dict[str, Any] = field(default_factory=dict)
    extra_datasets: dict[str, EvalMetrics] = field(default_factory=dict)
    breakdowns: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)

    def datasets(self) -> list[tuple[str, EvalMetrics]]:
        """(block name, its numbers) of every dataset: ``"metrics"`` (the main one) first, then ``extra_datasets``."""
        return [("metrics", self), *self.extra_datasets.items()]


def _numeric(value: Any) -> bool:
    """A finite int or float (not a bool)."""
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
    ``{"metrics": {...}, "dataset": {"type", "name", "split"}, "step": N}``, e.g. written by an evaluation script.

    Any other top-level object with a ``metrics`` or ``dataset`` key is a further dataset of its own (e.g.
    ``"shapes": {"metrics": {...}, "dataset": {...}}``): it needs both, a ``type`` and a ``name`` in its ``dataset``,
    and a dataset other than the ones before it. The tables of :data:`BREAKDOWN_TABLES` are read when present
    (``tables_markdown``, their printed form, is not read). Anything malformed raises ValueError naming the file
    and the block."""
    path = Path(path)
    where = f"--eval_results {path}"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"{where}: cannot read JSON ({error})") from error
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a JSON object")
    result = _read_block(data, where, str(path), dataset=dict(SYNTHETIC_DATASET))
    for name, block in data.items():
        if _is_dataset_block(name, block):
            result.extra_datasets[name] = _read_extra_block(block, f"{where}: block {name!r}", str(path), result.step)
    result.breakdowns = {key: _read_table(data[key], f"{where}: {key!r}") for key in BREAKDOWN_TABLES if key in data}
    composites = data.get("composites")
    if composites is not None:
        if composites not in COMPOSITES:
            raise ValueError(f"{where}: 'composites' must be one of {COMPOSITES}, got {composites!r}")
        result.extra["composites"] = composites
    try:
        _check_distinct_datasets(result)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None
    return result


def _read_block(data: dict, where: str, source: str, dataset: dict[str, str], step: int | None = None) -> EvalMetrics:
    """The metrics of ``data`` (its ``metrics`` object, or its own numbers) and its ``dataset`` fields over
    ``dataset``."""
    raw = data.get("metrics", data)
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: 'metrics' must be an object of name → number")
    metrics = {k.removeprefix("eval/"): float(v) for k, v in raw.items() if _numeric(v) and k != "step"}
    if not metrics:
        raise ValueError(f"{where}: no numeric metrics in it")
    if isinstance(data.get("dataset"), dict):
        dataset.update({k: str(v) for k, v in data["dataset"].items() if k in _DATASET_FIELDS})
    step = data.get("step") if isinstance(data.get("step"), int) else step
    return EvalMetrics(metrics=metrics, source=source, step=step, dataset=dataset)


def _is_dataset_block(name: str, value: Any) -> bool:
    """A top-level entry of an evaluation JSON that is a further dataset: an object with ``metrics`` or ``dataset``
    (other objects, e.g. ``objects`` or a breakdown table, are not)."""
    return name not in ("metrics", "dataset") and isinstance(value, dict) and ("metrics" in value or "dataset" in value)


def _read_extra_block(block: dict, where: str, source: str, step: int | None) -> EvalMetrics:
    """A further dataset: ``{"metrics": {...}, "dataset": {"type", "name"[, "split", "config"]}}``."""
    described = block.get("dataset")
    missing = [k for k in ("type", "name") if not (isinstance(described, dict) and described.get(k))]
    if "metrics" not in block or missing:
        needs = "'metrics'" if "metrics" not in block else f"'dataset' with {missing}"
        raise ValueError(
            f"{where}: a dataset block needs 'metrics' (name → number) and 'dataset' (type, name[, split]); "
            f"it lacks {needs}"
        )
    return _read_block(block, where, source, dataset={}, step=step)


def _read_table(table: Any, where: str) -> dict[str, dict[str, float]]:
    """A breakdown table ``{row label: {column: number}}``, checked."""
    rows_ok = isinstance(table, dict) and table and all(isinstance(row, dict) for row in table.values())
    if not rows_ok or not all(_number(v) for row in table.values() for v in row.values()):
        raise ValueError(f"{where}: a breakdown table must be a non-empty object of row → {{column: number}}")
    return {str(label): dict(row) for label, row in table.items()}


def _number(value: Any) -> bool:
    """An int or float (not a bool); NaN allowed (a group without values)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# What huggingface_hub's model-index groups results by (``EvalResult.unique_identifier``, the task aside): the name is
# not part of it, so two datasets that differ only by name would be written as one entry under the first name.
_MODEL_INDEX_KEY = ("type", "config", "split")


def _check_distinct_datasets(metrics: EvalMetrics) -> None:
    """Two blocks that the card's ``model-index`` would merge into one entry (same type, config and split) are
    refused: the merged entry would quote the second block's numbers under the first one's name."""
    seen: dict[tuple, str] = {}
    for name, block in metrics.datasets():
        key = tuple(block.dataset.get(k) for k in _MODEL_INDEX_KEY)
        if key in seen:
            raise ValueError(
                f"blocks {seen[key]!r} and {name!r} describe the same dataset for the model card's model-index "
                f"(type, config and split {key}; a different name is not enough): give each its own 'type', "
                "'config' or 'split'"
            )
        seen[key] = name


def eval_results_from_metrics(metrics: EvalMetrics, spec: ModelSpec):
    """``huggingface_hub.EvalResult`` entries, one per metric, in the order the file lists them: the main dataset's,
    then those of each block of ``extra_datasets`` (one ``model-index`` entry per dataset)."""
    _check_distinct_datasets(metrics)
    return [
        _eval_result(name, value, block.dataset, spec)
        for _, block in metrics.datasets()
        for name, value in block.metrics.items()
    ]


def _eval_result(name: str, value: float, dataset: dict[str, str], spec: ModelSpec):
    """The ``EvalResult`` of one metric: its model-index type and display name, the dataset it was measured on."""
    from huggingface_hub import EvalResult

    base = name.split(" (")[0]
    metric_type, pretty = _METRIC_NAMES.get(base, (re.sub(r"[^a-z0-9@]+", "_", base.lower()).strip("_"), base))
    if name != base:  # "accuracy (colour)"
        metric_type, pretty = f"{metric_type}_{name[len(base) + 2 : -1]}", f"{pretty} ({name[len(base) + 2 : -1]})"
    return EvalResult(
        task_type=spec.task_type,
        task_name=spec.task_name,
        dataset_type=dataset["type"],
        dataset_name=dataset["name"],
        dataset_split=dataset.get("split"),
        dataset_config=dataset.get("config"),
        metric_type=metric_type,
        metric_name=pretty,
        metric_value=round(float(value), 6),
    )
