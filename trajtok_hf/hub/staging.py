"""The folder an upload is read from: the local ``save_pretrained`` folder itself when it holds the remote code its
``auto_map`` entries name, otherwise a staged temporary folder that adds the remote code of the installed trajtok_hf.

A checkpoint folder may hold only weights, configs, processor files and logs: the remote code (what a Hub user
without trajtok_hf runs with ``trust_remote_code=True``) is written when a model is saved or published. Staging
writes it with transformers' own mechanism, as ``save_pretrained`` does for classes marked with
``register_for_auto_class``: ``transformers.dynamic_module_utils.custom_object_save`` for the model and its
configuration (the module defining the class and every same-folder module it imports, without rewriting the
weights), and the processor's own ``save_pretrained``. The staged folder's other files are links to (or copies of)
the local folder's files, which are only read.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import FolderValidationError
from .remote_code import missing_remote_code

__all__ = ["REPLACED_REMOTE_CODE", "UploadFolder", "prepare_upload_folder", "write_remote_code"]

REPLACED_REMOTE_CODE = "replaced by the remote code of the installed trajtok_hf (the folder's own is incomplete)"


@dataclass
class UploadFolder:
    """Where the files to push are read from. ``path`` is the local folder, or a staged temporary folder (removed
    with ``staging``, when this object is garbage-collected, or by ``staging.cleanup()``); ``written`` lists the
    remote-code files the installed trajtok_hf wrote there (empty when the folder's own are used)."""

    path: Path
    files: list[str]
    skipped: list[tuple[str, str]]
    written: list[str] = field(default_factory=list)
    staging: tempfile.TemporaryDirectory | None = field(default=None, repr=False, compare=False)


def prepare_upload_folder(
    folder: Path,
    config_json: dict,
    files: Sequence[str],
    skipped: Sequence[tuple[str, str]],
    model: Any,
    processor: Any = None,
) -> UploadFolder:
    """The local folder when every module its ``auto_map`` entries name is there; otherwise a staged folder with the
    local ``files`` (but the ``*.py``) and the remote code :func:`write_remote_code` writes for ``model`` and
    ``processor``. Raises FolderValidationError when the installed package does not write a module the folder's
    ``auto_map`` names."""
    missing = missing_remote_code(folder, config_json)
    if not missing:
        return UploadFolder(path=folder, files=list(files), skipped=list(skipped))
    staging = tempfile.TemporaryDirectory(prefix="trajtok_upload_")
    try:
        path = Path(staging.name)
        for name in files:
            if not name.endswith(".py"):
                _link_or_copy(folder / name, path / name)
        written = write_remote_code(model, processor, path)
    except BaseException:
        staging.cleanup()
        raise
    absent = [name for name in missing if name not in written]
    if absent:
        staging.cleanup()
        raise FolderValidationError(
            f"the auto_map of {folder} names {', '.join(absent)}, which neither the folder holds nor the installed "
            f"trajtok_hf writes when it saves a {type(model).__name__} (it writes {', '.join(written) or 'nothing'})"
        )
    replaced = [(name, REPLACED_REMOTE_CODE) for name in files if name.endswith(".py")]
    staged = [name for name in files if not name.endswith(".py")] + written
    return UploadFolder(
        path=path, files=sorted(staged), skipped=sorted([*skipped, *replaced]), written=written, staging=staging
    )


def write_remote_code(model: Any, processor: Any, folder: Path) -> list[str]:
    """Write into ``folder`` the remote-code files ``save_pretrained`` writes for ``model`` (and its config) and
    ``processor``; returns their names, sorted. Nothing else lands in ``folder``."""
    from transformers.dynamic_module_utils import custom_object_save

    with tempfile.TemporaryDirectory(prefix="trajtok_remote_code_") as scratch:
        for obj in (model, model.config):
            if getattr(obj, "_auto_class", None) is not None:  # marked with register_for_auto_class
                custom_object_save(obj, scratch)
        if processor is not None:
            processor.save_pretrained(scratch)  # its own module and its sub-processors' (plus files not kept)
        written = sorted(path.name for path in Path(scratch).glob("*.py"))
        for name in written:
            shutil.copyfile(Path(scratch, name), folder / name)
    return written


def _link_or_copy(source: Path, target: Path) -> None:
    """A symbolic link to ``source`` (weights are not copied), or a copy where links cannot be made."""
    try:
        os.symlink(source.resolve(), target)
    except OSError:
        shutil.copyfile(source, target)
