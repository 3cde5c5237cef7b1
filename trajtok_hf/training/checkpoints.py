"""Atomic training checkpoints written with safetensors and JSON only (:class:`CheckpointManager`).

Model, optimizer, scheduler and per-process RNG states go into a temporary folder, which is fsynced and renamed to
``checkpoints/step_NNNNNN`` (atomic); then the ``checkpoints/latest`` pointer file is replaced atomically. ``latest``
therefore never names a half-written checkpoint; left-over temporary folders are ignored and removed. A resume reads
only the files the save wrote and never unpickles anything.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from torch import nn

from ..file_utils import TMP_PREFIX, TRASH_PREFIX, commit_folder, fresh_folder, fsync_dir
from .hooks import maybe_fault
from .loop import TrainState
from .serialization import load_state, read_json, read_state_json, save_state, to_json, write_json
from .state import check_optimizer_state, load_model, matching_keys, rng_state, set_rng_state, unique_storage

logger = logging.getLogger(__name__)

# The files of a checkpoint folder (see CheckpointManager).
LATEST_FILE = "latest"
STATE_FILE = "trainer_state.json"
MODEL_FILE = "model.safetensors"
OPTIMIZER_STEM = "optimizer"  # optimizer.safetensors (state tensors) + optimizer.json (param_groups, scalars)
SCHEDULER_FILE = "scheduler.json"
SCALER_FILE = "scaler.json"
RNG_STEM = "rng_state_{}"  # per process: rng_state_N.safetensors (torch generators) + rng_state_N.json (random, numpy)
CHECKPOINT_FORMAT = "trajtok_hf-safetensors-json-1"


def _listing(path: Path) -> list[str]:
    """Relative paths of every file under ``path``, sorted."""
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if not p.is_dir())


def _load_into(folder: Path, files: str, what: str, restore) -> None:
    """Run ``restore()`` (which reads ``files`` of ``folder``), turning any error of a malformed value into a
    ``ValueError`` that names the file(s)."""
    where = " / ".join(str(folder / name) for name in files.split(" "))
    try:
        restore()
    except ValueError as error:
        message = str(error)  # already names its file when it comes from a reader
        raise ValueError(message if str(folder) in message else f"{where}: {message}") from None
    except (TypeError, KeyError, IndexError, OverflowError, RuntimeError) as error:
        raise ValueError(f"{where}: not a valid {what} for this run ({type(error).__name__}: {error})") from None


class CheckpointManager:
    """Atomic training checkpoints under ``checkpoint_dir``, written with safetensors and JSON only::

        checkpoint_dir/
          step_000100/       model.safetensors (the unwrapped model's keys) + the config / processor artifacts
                             optimizer.safetensors + optimizer.json (state tensors; param_groups and scalars)
                             scheduler.json, scaler.json (fp16 only)
                             rng_state_N.safetensors + rng_state_N.json (one pair per process: torch CPU / device
                             generators; python ``random``, numpy, accelerate's step counter)
                             trainer_state.json (TrainState + the list of files; written last)
          step_000200/
          latest             one line: "step_000200"

    Nothing in a checkpoint folder is ever unpickled: :meth:`load` reads only the files above, and refuses (with a
    ``ValueError`` naming the file) a folder holding any file the save did not write (e.g. accelerate's
    ``random_states_0.pkl`` / ``custom_checkpoint_0.pkl`` / ``optimizer.bin``) or a file that is malformed.

    Saving (all processes call :meth:`save`): the files are written into ``.tmp-step_NNNNNN``; then the main process
    adds ``trainer_state.json``, fsyncs, renames the folder to ``step_NNNNNN`` (atomic), and replaces ``latest``
    (write ``latest.tmp`` + fsync + ``os.replace``, atomic). A crash at any point leaves ``latest`` naming the previous
    complete checkpoint; temporary folders of crashed saves are removed by the next manager (and never read).
    ``total_limit`` keeps only the newest checkpoints (never removing the one ``latest`` names).
    """

    def __init__(self, checkpoint_dir: str | os.PathLike, total_limit: int | None = None, is_main_process: bool = True):
        if total_limit is not None and (
            isinstance(total_limit, bool) or not isinstance(total_limit, int) or total_limit < 1
        ):
            raise ValueError(f"total_limit must be None or a positive int, got {total_limit!r}")
        self.dir = Path(checkpoint_dir)
        self.total_limit = total_limit
        self.is_main_process = is_main_process
        if is_main_process and self.dir.is_dir():
            self.remove_stale()

    @staticmethod
    def name_for(step: int) -> str:
        return f"step_{step:06d}"

    def remove_stale(self) -> None:
        """Delete temporary folders left by crashed saves (they are never referenced by ``latest``)."""
        for entry in self.dir.iterdir():
            if entry.is_dir() and entry.name.startswith((TMP_PREFIX, TRASH_PREFIX)):
                shutil.rmtree(entry, ignore_errors=True)
        (self.dir / f"{LATEST_FILE}.tmp").unlink(missing_ok=True)

    @staticmethod
    def is_complete(path: str | os.PathLike) -> bool:
        return (Path(path) / STATE_FILE).is_file()

    def checkpoints(self) -> list[Path]:
        """Complete checkpoints, oldest first."""
        if not self.dir.is_dir():
            return []
        found = [p for p in self.dir.glob("step_*") if p.is_dir() and self.is_complete(p)]
        return sorted(found, key=lambda p: int(p.name.split("_")[1]))

    def latest(self) -> Path | None:
        """The checkpoint ``latest`` names; None when there is none yet."""
        pointer = self.dir / LATEST_FILE
        if not pointer.is_file():
            # No pointer (e.g. deleted by hand): fall back to the newest complete checkpoint, if any.
            found = self.checkpoints()
            return found[-1] if found else None
        name = pointer.read_text().strip()
        path = self.dir / name
        if not name or os.sep in name or not self.is_complete(path):
            raise RuntimeError(
                f"{pointer} names {name!r}, which is not a complete checkpoint in {self.dir}; pass "
                "--resume_from_checkpoint PATH explicitly or delete the pointer file"
            )
        return path

    def resolve(self, spec: str | os.PathLike | None) -> Path | None:
        """``None``/``""`` → None (start fresh); ``"latest"`` → :meth:`latest` (None when there is no checkpoint
        yet: the run starts from scratch, so the same command both starts and resumes a job); a path → that
        checkpoint (``ValueError`` when it is not a complete checkpoint)."""
        if spec is None or str(spec) == "":
            return None
        if str(spec) == "latest":
            return self.latest()
        path = Path(spec)
        if not path.is_dir():
            raise ValueError(f"--resume_from_checkpoint {spec}: no such checkpoint folder")
        if not self.is_complete(path):
            raise ValueError(f"--resume_from_checkpoint {spec}: not a complete checkpoint (no {STATE_FILE})")
        return path

    def save(
        self,
        accelerator,
        state: TrainState,
        model: nn.Module,
        optimizer,
        scheduler=None,
        artifacts=(),
        extra: dict | None = None,
    ) -> Path:
        """Save ``model`` (prepared or not), ``optimizer``, ``scheduler``, the RNG states of every process and
        ``state`` as checkpoint ``step_{state.step}``; call on every process.

        ``artifacts``: objects with ``save_pretrained`` (the model's config, the processor) written into the folder
        too, so that a checkpoint loads with ``AutoModel.from_pretrained`` / ``AutoProcessor.from_pretrained`` (its
        ``model.safetensors`` has the keys of the unwrapped model)."""
        from safetensors.torch import save_file

        name = self.name_for(state.step)
        final, tmp = self.dir / name, self.dir / f"{TMP_PREFIX}{name}"
        if accelerator.is_main_process:
            fresh_folder(tmp)
        accelerator.wait_for_everyone()
        model_state = accelerator.get_state_dict(model)  # a collective under FSDP / DeepSpeed: every process calls it
        if accelerator.is_main_process:
            save_file(unique_storage(model_state), str(tmp / MODEL_FILE), metadata={"format": "pt"})
            save_state(tmp, OPTIMIZER_STEM, optimizer.state_dict())
            if scheduler is not None:
                write_json(tmp / SCHEDULER_FILE, to_json(scheduler.state_dict(), None, "scheduler"))
            if accelerator.scaler is not None:
                write_json(tmp / SCALER_FILE, to_json(accelerator.scaler.state_dict(), None, "scaler"))
        save_state(tmp, RNG_STEM.format(accelerator.process_index), rng_state(accelerator))
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            for artifact in artifacts:
                artifact.save_pretrained(tmp)
            maybe_fault("before_commit", state.step)
            payload = {
                **dataclasses.asdict(state),
                **(extra or {}),
                "format": CHECKPOINT_FORMAT,
                "files": _listing(tmp),
            }
            write_json(tmp / STATE_FILE, payload)
            commit_folder(tmp, final)
            maybe_fault("before_pointer", state.step)
            self._point_latest_to(name)
            self._prune(keep=final)
        accelerator.wait_for_everyone()
        return final

    def _point_latest_to(self, name: str) -> None:
        """Replace the ``latest`` pointer atomically: write ``latest.tmp``, fsync, ``os.replace``."""
        pointer_tmp = self.dir / f"{LATEST_FILE}.tmp"
        with open(pointer_tmp, "w") as handle:
            handle.write(name + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(pointer_tmp, self.dir / LATEST_FILE)  # atomic pointer update
        fsync_dir(self.dir)

    def _prune(self, keep: Path) -> None:
        if self.total_limit is None:
            return
        found = [p for p in self.checkpoints() if p != keep]
        for path in found[: max(0, len(found) + 1 - self.total_limit)]:
            shutil.rmtree(path, ignore_errors=True)

    @staticmethod
    def load(accelerator, path: str | os.PathLike, model: nn.Module, optimizer, scheduler=None) -> TrainState:
        """Restore what :meth:`save` wrote into ``model``, ``optimizer``, ``scheduler``, this process's RNG states and
        accelerate's step counter, and return the counters; call on every process.

        Reads only safetensors and JSON. ``ValueError`` naming the file when the folder holds a file the save did
        not write (a pickle planted there is never opened), when a file is missing, malformed, or does not fit
        ``model`` / ``optimizer`` / ``scheduler``."""
        path = Path(path)
        payload = read_json(path / STATE_FILE)
        state = check_manifest(
            path,
            payload,
            CHECKPOINT_FORMAT,
            required=(MODEL_FILE, f"{OPTIMIZER_STEM}.json", f"{OPTIMIZER_STEM}.safetensors"),
        )
        unwrapped = accelerator.unwrap_model(model)
        _load_into(path, MODEL_FILE, "model state", lambda: load_model(unwrapped, path / MODEL_FILE))
        _load_into(
            path,
            f"{OPTIMIZER_STEM}.json {OPTIMIZER_STEM}.safetensors",
            "optimizer state",
            lambda: optimizer.load_state_dict(check_optimizer_state(load_state(path, OPTIMIZER_STEM), optimizer)),
        )
        if scheduler is not None:
            _load_into(
                path,
                SCHEDULER_FILE,
                "scheduler state",
                lambda: scheduler.load_state_dict(
                    matching_keys(read_state_json(path / SCHEDULER_FILE), scheduler.state_dict())
                ),
            )
        scaler = accelerator.scaler
        if scaler is not None:
            _load_into(
                path,
                SCALER_FILE,
                "gradient scaler state",
                lambda: scaler.load_state_dict(matching_keys(read_state_json(path / SCALER_FILE), scaler.state_dict())),
            )
        rng = RNG_STEM.format(accelerator.process_index)
        if (path / f"{rng}.json").is_file():
            _load_into(
                path,
                f"{rng}.json {rng}.safetensors",
                "RNG state",
                lambda: set_rng_state(accelerator, load_state(path, rng)),
            )
        else:  # resumed with more processes than saved it: exact resume is impossible anyway
            logger.warning(
                "%s has no %s.json: process %d starts with fresh random states", path, rng, accelerator.process_index
            )
        return state


def check_manifest(path: Path, payload: Any, checkpoint_format: str, required=()) -> TrainState:
    """The counters of ``trainer_state.json`` (``payload``), after checking its format and that the folder holds
    exactly the files it lists, among them ``required``."""
    state_file = path / STATE_FILE
    if not isinstance(payload, dict) or payload.get("format") != checkpoint_format:
        raise ValueError(
            f"{state_file}: not a checkpoint of format {checkpoint_format!r} (an older checkpoint written with "
            "accelerate's pickle-based save_state cannot be resumed without unpickling; start from its "
            f"{MODEL_FILE} instead, e.g. with --model / --segmenter)"
        )
    listed = payload.get("files")
    if not isinstance(listed, list) or not all(isinstance(name, str) for name in listed):
        raise ValueError(f"{state_file}: 'files' must be the list of the checkpoint's files")
    unexpected = sorted(set(_listing(path)) - set(listed) - {STATE_FILE})
    if unexpected:
        raise ValueError(
            f"{path / unexpected[0]}: unexpected file in the checkpoint (not written by its save; never "
            f"opened). Remove it to resume from {path}"
        )
    missing = sorted(name for name in set(required) | set(listed) if not (path / name).is_file())
    if missing:
        raise ValueError(f"{path / missing[0]}: missing from the checkpoint")
    counters = {}
    for field in dataclasses.fields(TrainState):
        value = payload.get(field.name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{state_file}: {field.name!r} must be an int >= 0, got {value!r}")
        counters[field.name] = value
    return TrainState(**counters)
