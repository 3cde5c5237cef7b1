"""The evaluation numbers a model card quotes, read from the files the training and evaluation scripts write
(``metrics.jsonl``, ``eval.json``, an ``--eval_results`` JSON), and their ``huggingface_hub.EvalResult`` entries.

No number is typed into a card: :func:`find_eval_metrics` and :func:`load_eval_results_json` read them,
:func:`eval_results_from_metrics` turns them into the card's ``model-index``.
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
