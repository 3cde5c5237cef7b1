"""Atomic folder writes: a save that a kill can interrupt leaves the previous folder (or none), never a half-written
one that looks complete. Used by the training checkpoints, every end-of-run save and the converters."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

__all__ = ["TMP_PREFIX", "TRASH_PREFIX", "atomic_folder", "commit_folder", "fresh_folder", "fsync_dir", "fsync_tree"]

TMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"


def fsync_tree(path: Path) -> None:
    """Flush every file under ``path`` and the folders themselves to disk (so a rename commits complete data)."""
    for root, _, files in os.walk(path):
        for name in files:
            with open(os.path.join(root, name), "rb") as handle:
                os.fsync(handle.fileno())
        fsync_dir(Path(root))


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fresh_folder(path: Path) -> Path:
    """An empty ``path`` (a left-over of a crashed save is removed first)."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def commit_folder(tmp: Path, final: Path) -> None:
    """fsync ``tmp`` and rename it to ``final`` (atomic): ``final`` is its previous complete version, the new complete
    one, or absent (a previous ``final`` is moved aside just before the rename and removed after), never a
    half-written folder."""
    fsync_tree(tmp)
    trash = None
    if final.exists():
        trash = final.parent / f"{TRASH_PREFIX}{final.name}"
        shutil.rmtree(trash, ignore_errors=True)
        os.replace(final, trash)
    os.replace(tmp, final)
    fsync_dir(final.parent)
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)


@contextlib.contextmanager
def atomic_folder(folder: str | os.PathLike):
    """Write a whole folder atomically: the ``with`` body writes into the yielded temporary sibling
    (``.tmp-<name>``), which is fsynced and renamed to ``folder`` when the body ends without an error. A kill or an
    error in the body leaves the previous ``folder`` (or none), never a half-written one; the temporary folder is
    removed by the next save. The new folder replaces the old one whole."""
    folder = Path(folder)
    tmp = fresh_folder(folder.parent / f"{TMP_PREFIX}{folder.name}")
    yield tmp
    commit_folder(tmp, folder)
