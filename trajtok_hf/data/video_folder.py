"""Video-text datasets from a local folder of video files plus ``metadata.jsonl`` / ``metadata.csv``.

This is the layout MSR-VTT / VATEX users can produce (and :func:`trajtok_hf.data.write_video_folder` writes)::

    my_videos/
      metadata.jsonl        {"file_name": "video0.mp4", "captions": ["a man ...", "someone ..."]}
      video0.mp4            {"file_name": "video1.mp4", "caption": "a dog ...", "masks_file": "video1.npz"}
      video1.mp4
      video1.npz

Metadata columns: ``file_name`` (relative to the metadata file's folder, or absolute), ``caption`` (str) and/or
``captions`` (list; in CSV a JSON list such as ``["a", "b"]``), optional ``masks_file`` (``.npz``/``.npy``, see
:func:`load_masks`), and any extra columns, which are passed through.

:func:`load_video_text_dataset` returns a ``datasets.Dataset`` of metadata rows whose format transform
(:class:`VideoClipDecoder`) decodes only the rows you index, with PyAV, sampling ``num_frames`` frames uniformly
(centre of ``num_frames`` equal segments, TSN-style). Nothing is decoded up front.

Failure policy:

* A metadata row naming a file that does not exist is a data-preparation error found at load time: by default a
  ``ValueError`` lists every offending metadata line number; with ``skip_missing=True`` those rows are dropped
  with one warning that lists the line numbers.
* A video that exists but cannot be decoded (truncated, garbage) only shows up when it is read, possibly hours
  into an epoch. The decoder never raises for it: the row comes back with ``video=None`` and a
  ``decode_error`` message, the decoder counts it (``num_failed``) and warns; :class:`VideoTextCollator` then
  drops such rows from the batch and counts them too. Training loops need no special case except a batch in
  which *every* clip failed, where the collator returns ``None`` (skip it).
"""

from __future__ import annotations

import csv
import json
import os
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..models.video_io_trajtok import check_num_frames, read_video_pyav, uniform_frame_indices
from .pseudo_labels import downsample_labels, trajectories_to_pixel_labels

METADATA_FILENAMES = ("metadata.jsonl", "metadata.csv")
_RESERVED = ("video_path", "masks_path")


# --------------------------------------------------------------------------------------------------------------
# Decoding

# The centre frame of each of ``num_frames`` equal segments (short videos repeat frames); the processor's rule.
sample_frame_indices = uniform_frame_indices


def read_video(path: str | os.PathLike, num_frames: int | None = 16) -> tuple[np.ndarray, np.ndarray, int]:
    """Decode ``num_frames`` uniformly sampled frames (all frames if ``None``) of a video file with PyAV.

    Returns ``(frames uint8 (num_frames, H, W, 3), frame_indices (num_frames,), total_frames)``, where
    ``total_frames`` counts the frames that decode. The decoding, the sampling and the handling of truncated files
    are the video processor's (:func:`~trajtok_hf.models.video_io_trajtok.read_video_pyav`); every failure is a
    ``ValueError`` naming the file.
    """
    return _read_frames(path, num_frames)


def _read_frames(
    source: str | os.PathLike | bytes, num_frames: int | None, name: str | None = None
) -> tuple[np.ndarray, np.ndarray, int]:
    """:func:`read_video` of a path or of an encoded file's bytes; errors name ``name`` (default: the path)."""
    check_num_frames(num_frames)

    def sample(metadata):
        return uniform_frame_indices(metadata.total_num_frames, num_frames)

    frames, metadata = read_video_pyav(source, None if num_frames is None else sample, name=name)
    return frames, np.asarray(metadata.frames_indices, dtype=np.int64), metadata.total_num_frames


def load_masks(path: str | os.PathLike, mask_stride: int = 4) -> np.ndarray:
    """Read per-pixel trajectory labels ``(T, h, w)`` int64 from a ``.npz`` or ``.npy`` file.

    Recognised ``.npz`` contents, in order of preference: ``segmentation_labels`` (already on the mask grid);
    ``segmentation`` (full resolution, downsampled by ``mask_stride`` with the majority vote);
    ``instance_masks`` + ``trajectory_graph`` (the official pseudo-label format, converted with
    :func:`trajectories_to_pixel_labels`, then downsampled). A ``.npy`` file holds ``segmentation_labels``.
    """
    path = os.fspath(path)
    return _read_masks(path, path.endswith(".npy"), mask_stride, path)


def _read_masks(source: Any, is_npy: bool, mask_stride: int, name: str) -> np.ndarray:
    """:func:`load_masks` of a path or a binary file object (``io.BytesIO`` of a masks file's bytes); ``is_npy``
    picks the format, ``name`` is what errors call the file. Never unpickles (``allow_pickle=False``: an object
    array is refused with a ``ValueError``)."""
    if is_npy:
        return np.load(source, allow_pickle=False).astype(np.int64)
    with np.load(source, allow_pickle=False) as data:
        keys = set(data.files)
        if "segmentation_labels" in keys:
            return data["segmentation_labels"].astype(np.int64)
        if "segmentation" in keys:
            return downsample_labels(data["segmentation"], mask_stride)
        if {"instance_masks", "trajectory_graph"} <= keys:
            labels = trajectories_to_pixel_labels(data["instance_masks"], data["trajectory_graph"])
            return downsample_labels(labels, mask_stride)
    raise ValueError(
        f"masks file {name} has keys {sorted(keys)}; expected 'segmentation_labels', 'segmentation' or "
        "'instance_masks' + 'trajectory_graph'"
    )


def _align_masks(
    labels: np.ndarray, indices: np.ndarray, total: int, mask_size: tuple[int, int] | None, name: str
) -> np.ndarray:
    """The mask track ``(T', h, w)`` at the clip's sampled frame ``indices`` of ``total`` (a track of another length
    is mapped proportionally in time), resized (nearest) to ``mask_size`` when given."""
    if labels.ndim != 3:
        raise ValueError(f"masks in {name} must have shape (T, h, w), got {labels.shape}")
    mask_frames = labels.shape[0]
    mask_indices = indices if mask_frames == total else (indices * mask_frames) // total
    labels = labels[np.minimum(mask_indices, mask_frames - 1)]
    if mask_size is not None and labels.shape[1:] != mask_size:
        labels = _resize_nearest(labels, mask_size)
    return labels


def _resize_nearest(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    rows = np.minimum(((np.arange(h) + 0.5) * labels.shape[-2] / h).astype(np.int64), labels.shape[-2] - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * labels.shape[-1] / w).astype(np.int64), labels.shape[-1] - 1)
    return labels[..., rows[:, None], cols[None, :]]


class _ClipDecoder:
    """What every clip decoder shares: argument checks, the failure counter and warning, decoding one clip (frames
    sampled uniformly, masks aligned to them) and assembling a ``datasets`` batch with the ``transform`` outputs.

    Subclasses say where a clip's bytes come from (a file path, or bytes read from a shard) and what a failure is
    called. ``strict`` (False here) turns a failure into a ``ValueError`` instead of a counted ``decode_error``.
    """

    strict = False

    def __init__(
        self,
        num_frames: int = 16,
        transform: Callable[[list[np.ndarray]], Mapping[str, Any]] | None = None,
        *,
        load_masks: bool = True,
        mask_size: tuple[int, int] | None = None,
        mask_stride: int = 4,
        warn: bool = True,
    ):
        if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
            raise ValueError(f"`num_frames` must be a positive int, got {num_frames!r}")
        if transform is not None and not callable(transform):
            raise TypeError(f"`transform` must be callable, got {type(transform).__name__}")
        if mask_size is not None:
            if len(mask_size) != 2 or any(not isinstance(s, (int, np.integer)) or s < 1 for s in mask_size):
                raise ValueError(f"`mask_size` must be a pair of positive ints, got {mask_size!r}")
            mask_size = (int(mask_size[0]), int(mask_size[1]))
        self.num_frames = int(num_frames)
        self.transform = transform
        self.load_masks = load_masks
        self.mask_size = mask_size
        self.mask_stride = mask_stride
        self.warn = warn
        self.num_failed = 0
        self.failures: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def __getstate__(self):
        state = self.__dict__.copy()
        del state["_lock"]  # locks do not pickle (DataLoader workers, datasets fingerprinting)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _record_failure(self, path: str, error: BaseException) -> str:
        message = f"{type(error).__name__}: {error}"
        with self._lock:
            self.num_failed += 1
            self.failures = (self.failures + [(path, message)])[-100:]
            count = self.num_failed
        if self.warn:
            warnings.warn(
                f"skipping undecodable video {path} ({message}); {count} failed so far in this process",
                RuntimeWarning,
                stacklevel=4,
            )
        return message

    def _decode_clip(
        self,
        video: str | os.PathLike | bytes,
        name: str,
        read_masks: Callable[[], np.ndarray] | None = None,
        masks_name: str | None = None,
        *,
        invalid: str | None = None,
    ) -> dict[str, Any]:
        """Decode one clip from ``video`` (a path or the file's bytes) and, if ``read_masks`` is given (a callable
        returning the stored labels) and masks are wanted, its labels at the sampled frames. ``name`` is what the
        failure (counted, warned, or raised when ``strict``) calls the clip, ``masks_name`` the masks file;
        ``invalid`` is a failure the caller found before decoding (the row holds no video)."""
        try:
            if invalid is not None:
                raise ValueError(invalid)
            # A path names its own errors (as read_video's do); bytes are called `name`.
            label = None if isinstance(video, (str, os.PathLike)) else name
            frames, indices, total = _read_frames(video, self.num_frames, label)
            labels = None
            if self.load_masks and read_masks is not None:
                labels = _align_masks(read_masks(), indices, total, self.mask_size, masks_name)
        except Exception as error:  # any bad file must cost one sample, never the epoch
            if self.strict:
                raise ValueError(f"could not decode clip {name}: {type(error).__name__}: {error}") from error
            return {
                "video": None,
                "frame_indices": None,
                "segmentation_labels": None,
                "decode_error": self._record_failure(name, error),
            }
        return {"video": frames, "frame_indices": indices, "segmentation_labels": labels, "decode_error": None}

    def _assemble(
        self, batch: Mapping[str, Sequence[Any]], decoded: list[dict[str, Any]], drop: Sequence[str] = ()
    ) -> dict[str, list[Any]]:
        """The batch's columns (less ``drop``) plus ``frame_indices``, ``decode_error``, ``segmentation_labels``
        (when any clip has masks) and ``video`` or the ``transform`` outputs (None for the failed clips)."""
        out: dict[str, list[Any]] = {key: list(values) for key, values in batch.items() if key not in drop}
        for key in ("frame_indices", "decode_error"):
            out[key] = [d[key] for d in decoded]
        if any(d["segmentation_labels"] is not None for d in decoded):
            out["segmentation_labels"] = [d["segmentation_labels"] for d in decoded]
        ok = [i for i, d in enumerate(decoded) if d["video"] is not None]
        if self.transform is None:
            out["video"] = [d["video"] for d in decoded]
            return out
        processed = self.transform([decoded[i]["video"] for i in ok]) if ok else {}
        if not isinstance(processed, Mapping):
            raise TypeError(f"`transform` must return a mapping of batched values, got {type(processed).__name__}")
        for key, values in processed.items():
            column: list[Any] = [None] * len(decoded)
            for position, item in enumerate(ok):
                column[item] = values[position]
            out[key] = column
        return out


class VideoClipDecoder(_ClipDecoder):
    """``datasets`` format transform: metadata rows → decoded clips (see the module docstring for failures).

    Args:
        num_frames: frames per clip, sampled uniformly over the whole video.
        transform: optional callable applied to the successfully decoded clips of each batch, e.g.
            ``lambda videos: video_processor(videos=videos, return_tensors="pt")``. It receives a list of uint8
            ``(T, H, W, 3)`` arrays and returns a mapping of batched values (``pixel_values_videos`` ...); item
            ``k`` of every value is given to the ``k``-th decoded clip. Without it, clips are returned as
            ``video`` uint8 ``(T, H, W, 3)`` numpy arrays. Exceptions from ``transform`` propagate — they are
            bugs, not bad data.
        load_masks: read ``masks_file`` when the row has one and return ``segmentation_labels`` ``(T, h, w)``
            int64, sampled at the same frames as the video (a mask track with a different number of frames than
            the video is mapped proportionally in time).
        mask_size: ``(h, w)`` to resize ``segmentation_labels`` to (nearest), e.g. the mask grid of a processor
            that resizes the frames; ``None`` keeps the stored size.
        mask_stride: stride used when a masks file stores full-resolution labels.
        warn: emit a warning for every failed clip.

    Attributes:
        num_failed: clips that could not be decoded in this process (DataLoader workers count separately).
        failures: ``(path, message)`` of the most recent failures (at most 100).
    """

    def decode_one(self, video_path: str, masks_path: str | None = None) -> dict[str, Any]:
        """Decode one clip.

        Returns ``video``, ``frame_indices``, ``segmentation_labels`` (None without masks) and ``decode_error``
        (None on success; on failure the other values are None and the failure is counted).
        """
        read_masks = (lambda: load_masks(masks_path, self.mask_stride)) if masks_path else None
        return self._decode_clip(video_path, video_path, read_masks, masks_path)

    def __call__(self, batch: Mapping[str, Sequence[Any]]) -> dict[str, list[Any]]:
        if "video_path" not in batch:
            raise ValueError("`batch` must have a 'video_path' column (rows from load_video_text_dataset)")
        paths = list(batch["video_path"])
        masks = list(batch.get("masks_path", [None] * len(paths)))
        decoded = [self.decode_one(p, m) for p, m in zip(paths, masks, strict=True)]
        return self._assemble(batch, decoded)


# --------------------------------------------------------------------------------------------------------------
# Metadata


def _read_metadata(metadata: Path) -> list[tuple[int, dict[str, Any]]]:
    """Rows of ``metadata.jsonl`` / ``metadata.csv`` with their 1-based line numbers (CSV header = line 1)."""
    rows: list[tuple[int, dict[str, Any]]] = []
    if metadata.suffix == ".jsonl":
        with metadata.open(encoding="utf-8") as handle:
            for line_number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{metadata}, line {line_number}: invalid JSON ({err})") from err
                if not isinstance(row, dict):
                    raise ValueError(f"{metadata}, line {line_number}: expected a JSON object, got {row!r}")
                rows.append((line_number, row))
    elif metadata.suffix == ".csv":
        with metadata.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            for row in reader:
                # line_num is where the row *ends*; equal to its start unless a quoted field spans lines.
                line_number = reader.line_num
                if not any(v for v in row.values()):
                    continue
                captions = row.get("captions")
                if captions and captions.lstrip().startswith("["):
                    try:
                        row["captions"] = json.loads(captions)
                    except json.JSONDecodeError as err:
                        raise ValueError(f"{metadata}, line {line_number}: `captions` is not a JSON list") from err
                elif captions:
                    row["captions"] = [captions]
                rows.append((line_number, {k: v for k, v in row.items() if k is not None}))
    else:
        raise ValueError(f"metadata file must be .jsonl or .csv, got {metadata.name}")
    return rows


def _normalise_row(row: dict[str, Any], line_number: int, metadata: Path) -> dict[str, Any]:
    where = f"{metadata}, line {line_number}"
    file_name = row.get("file_name")
    if not isinstance(file_name, str) or not file_name:
        raise ValueError(f"{where}: missing or empty `file_name`")
    caption, captions = row.get("caption"), row.get("captions")
    if captions is not None:
        if isinstance(captions, str) or not isinstance(captions, (list, tuple)) or not captions:
            raise ValueError(f"{where}: `captions` must be a non-empty list of strings")
        if not all(isinstance(c, str) for c in captions):
            raise ValueError(f"{where}: `captions` must be a non-empty list of strings")
        captions = list(captions)
    if caption is not None and not isinstance(caption, str):
        raise ValueError(f"{where}: `caption` must be a string, got {type(caption).__name__}")
    if caption is None and captions is None:
        raise ValueError(f"{where}: needs a `caption` or `captions` column")
    for reserved in _RESERVED:
        if reserved in row:
            raise ValueError(f"{where}: column `{reserved}` is reserved (it is derived from `file_name`)")
    out = dict(row)
    out["caption"] = caption if caption is not None else captions[0]
    out["captions"] = captions if captions is not None else [caption]
    masks = row.get("masks_file") or None
    out["masks_file"] = masks
    return out


def _find_metadata(root: Path, metadata_file: str | os.PathLike | None) -> Path:
    if metadata_file is not None:
        metadata = Path(metadata_file)
        if not metadata.is_absolute():
            metadata = root / metadata
        if not metadata.is_file():
            raise ValueError(f"`metadata_file` {metadata} does not exist")
        return metadata
    found = [root / name for name in METADATA_FILENAMES if (root / name).is_file()]
    if not found:
        raise ValueError(f"`path` {root} has no {' or '.join(METADATA_FILENAMES)}")
    if len(found) > 1:
        raise ValueError(f"`path` {root} has both {METADATA_FILENAMES}; choose one with `metadata_file`")
    return found[0]


def load_video_text_dataset(
    path: str | os.PathLike,
    num_frames: int = 16,
    *,
    metadata_file: str | os.PathLike | None = None,
    transform: Callable[[list[np.ndarray]], Mapping[str, Any]] | None = None,
    skip_missing: bool = False,
    load_masks: bool = True,
    mask_size: tuple[int, int] | None = None,
    mask_stride: int = 4,
    decode: bool = True,
):
    """Load a folder of videos + ``metadata.jsonl``/``metadata.csv`` as a lazily decoded ``datasets.Dataset``.

    Args:
        path: the folder (or directly a metadata file).
        num_frames: frames sampled uniformly from each video when a row is accessed.
        metadata_file: metadata file name/path when the folder holds several; default: the folder's
            ``metadata.jsonl`` or ``metadata.csv``.
        transform, load_masks, mask_size, mask_stride: see :class:`VideoClipDecoder`.
        skip_missing: rows whose ``file_name`` (or ``masks_file``) does not exist raise a ``ValueError`` listing
            their metadata line numbers (default), or are dropped with a warning listing them (``True``).
        decode: ``False`` returns the bare metadata rows, without the decoding transform.

    Returns:
        A ``datasets.Dataset`` with columns ``file_name``, ``video_path`` (absolute), ``caption`` (first
        caption), ``captions`` (list), ``masks_file``, ``masks_path`` (absolute or None), ``line_number`` and the
        extra metadata columns. With ``decode=True`` indexing returns, in addition, ``video`` (or the
        ``transform`` outputs), ``frame_indices``, ``segmentation_labels`` (when masks exist) and
        ``decode_error`` (None when the clip decoded). The decoder is
        ``dataset.format["format_kwargs"]["transform"]`` (its ``num_failed`` counts failures).
    """
    import datasets

    root, metadata_file = _resolve_folder(path, metadata_file)
    decoder = (
        VideoClipDecoder(num_frames, transform, load_masks=load_masks, mask_size=mask_size, mask_stride=mask_stride)
        if decode
        else None
    )
    metadata, records = _folder_records(root, metadata_file, skip_missing)

    # Union of keys, so a column present only in later rows is neither dropped nor misaligned.
    columns: list[str] = []
    for record in records:
        columns.extend(k for k in record if k not in columns)
    table = {key: [record.get(key) for record in records] for key in columns}
    try:
        dataset = datasets.Dataset.from_dict(table)
    except Exception as err:  # heterogeneous extra columns
        raise ValueError(f"{metadata}: could not build a dataset from the metadata columns ({err})") from err
    if decoder is not None:
        dataset = dataset.with_transform(decoder)
    return dataset


def _resolve_folder(
    path: str | os.PathLike, metadata_file: str | os.PathLike | None
) -> tuple[Path, str | os.PathLike | None]:
    """The video folder and metadata file named by ``path`` (a folder, or directly a metadata file)."""
    root = Path(path)
    if root.is_file():
        metadata_file, root = root, root.parent
    if not root.is_dir():
        raise ValueError(f"`path` {root} is not a directory")
    return root, metadata_file


def _folder_records(
    root: Path, metadata_file: str | os.PathLike | None, skip_missing: bool
) -> tuple[Path, list[dict[str, Any]]]:
    """The metadata file and its normalised rows, as plain JSON values (with ``video_path``, ``masks_path`` and
    ``line_number``); rows naming missing files raise or are dropped (``skip_missing``) as
    :func:`load_video_text_dataset` documents."""
    metadata = _find_metadata(root, metadata_file)
    base = metadata.parent

    records: list[dict[str, Any]] = []
    missing: list[str] = []
    for line_number, row in _read_metadata(metadata):
        record = _normalise_row(row, line_number, metadata)
        video_path = Path(record["file_name"])
        video_path = video_path if video_path.is_absolute() else base / video_path
        masks_path = None
        if record["masks_file"]:
            masks_path = Path(record["masks_file"])
            masks_path = masks_path if masks_path.is_absolute() else base / masks_path
        absent = [str(p) for p in (video_path, masks_path) if p is not None and not p.is_file()]
        if absent:
            missing.append(f"line {line_number}: {', '.join(absent)}")
            continue
        record["video_path"] = str(video_path.resolve())
        record["masks_path"] = None if masks_path is None else str(masks_path.resolve())
        record["line_number"] = line_number
        records.append(record)
    if missing:
        listing = "; ".join(missing[:20]) + (f"; ... ({len(missing)} in all)" if len(missing) > 20 else "")
        if not skip_missing:
            raise ValueError(
                f"{metadata}: {len(missing)} row(s) name files that do not exist — {listing}. "
                "Fix the metadata or pass skip_missing=True to drop them."
            )
        warnings.warn(
            f"{metadata}: skipped {len(missing)} row(s) naming missing files — {listing}", UserWarning, stacklevel=3
        )
    if not records:
        raise ValueError(f"{metadata}: no usable rows")
    return metadata, records


def get_decoder(dataset) -> VideoClipDecoder | None:
    """The :class:`VideoClipDecoder` attached to a dataset by :func:`load_video_text_dataset` (for its counters)."""
    transform = dataset.format.get("format_kwargs", {}).get("transform")
    return transform if isinstance(transform, VideoClipDecoder) else None


__all__ = [
    "VideoClipDecoder",
    "get_decoder",
    "load_masks",
    "load_video_text_dataset",
    "read_video",
    "sample_frame_indices",
]
