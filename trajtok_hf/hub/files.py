"""Which files of a ``save_pretrained`` folder go up, and the checks on its weights (safetensors only, readable,
every shard of the index present)."""

from __future__ import annotations

import fnmatch
import json
import os
from collections.abc import Sequence
from pathlib import Path

from ..models.modeling_utils_trajtok import check_safetensors_file
from .errors import FolderValidationError

__all__ = ["PUSH_PATTERNS", "check_weights", "read_json", "select_files"]

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


def read_json(path: Path, what: str) -> dict:
    """A JSON object from ``path``; FolderValidationError naming ``what`` it is when it cannot be read as one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise FolderValidationError(f"{what} {path} cannot be read as JSON: {error}") from error
    if not isinstance(data, dict):
        raise FolderValidationError(f"{what} {path} is not a JSON object")
    return data


def check_weights(folder: Path, files: Sequence[str], skipped: Sequence[tuple[str, str]]) -> None:
    """The weights to push are safetensors, each one readable, and the index names no shard that is absent."""
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
        shards = set((read_json(index, "weight index").get("weight_map") or {}).values())
        missing = sorted(shards - set(weights))
        if missing:
            raise FolderValidationError(f"{index} names shards that are not in the folder: {missing}")
