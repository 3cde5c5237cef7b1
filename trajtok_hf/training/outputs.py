"""What a training run leaves behind besides its checkpoints: ``metrics.jsonl`` (:func:`log_jsonl`) and the final
model + processor folder (:func:`save_final`, atomic like a checkpoint)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..file_utils import atomic_folder
from .hooks import maybe_fault


def log_jsonl(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """Append one JSON line (main process only; the caller checks)."""
    with open(path, "a") as handle:
        handle.write(json.dumps(record, sort_keys=True) + "\n")


def save_final(accelerator, model, processor, output_dir: str | os.PathLike) -> str:
    """End of training: ``save_pretrained`` of the unwrapped model and its processor into ``output_dir/final``
    (main process), after every process has finished; returns that folder.

    Atomic like a checkpoint: written into ``output_dir/.tmp-final``, fsynced, then renamed, so that a kill during the
    save leaves the previous ``final`` (or none), never a half-written folder that looks complete."""
    accelerator.wait_for_everyone()
    final_dir = Path(output_dir) / "final"
    if accelerator.is_main_process:
        with atomic_folder(final_dir) as tmp:
            accelerator.unwrap_model(model).save_pretrained(tmp)
            processor.save_pretrained(tmp)
            maybe_fault("final_before_commit")
        accelerator.print(f"saved model + processor to {final_dir}")
    accelerator.wait_for_everyone()
    return str(final_dir)
