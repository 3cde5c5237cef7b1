"""Sharded video-text data: a video folder written as Parquet or WebDataset shards, streamed back with ``datasets``,
split by node and by DataLoader worker, shuffled deterministically, decoded with PyAV in the workers, and resumable
mid-epoch.

How to use::

    from trajtok_hf.data import VideoTextCollator, shard_dataloader, write_video_shards

    # once (or: python examples/write_shards.py --video_folder my_videos --output_dir my_shards)
    write_video_shards("my_videos", "my_shards", clips_per_shard=256)

    collator = VideoTextCollator(tokenizer, video_processor=video_processor)
    for epoch in range(num_epochs):
        loader = shard_dataloader(
            "my_shards", batch_size=8, collate_fn=collator, num_workers=4, num_frames=16,
            seed=0, epoch=epoch, rank=rank, world_size=world_size,
        )
        for batch in loader:
            if batch is None:  # every clip of the batch failed to decode
                continue
            ...
        # mid-epoch checkpoint: save (epoch, loader.state_dict()); to resume, build the loader with the same
        # arguments and call loader.load_state_dict(state) before iterating: it yields exactly the remaining batches.

Layout written by :func:`write_video_shards` (from a folder :func:`load_video_text_dataset` reads)::

    my_shards/
      shards.json                          the index: format, version, num_clips, shards [{file, num_clips, ...}]
      shard-00000-of-00004.parquet         columns key, video, video_format, caption, captions, masks,
      ...                                  masks_format, metadata; row groups of ``rows_per_group`` clips
    (or shard-00000-of-00004.tar           members {key}.mp4, {key}.json, {key}.npz — the WebDataset layout)

A clip's ``video`` is its file's bytes, unchanged (no re-encoding: the shards decode to exactly the frames of the
folder); ``masks`` the bytes of its ``.npz``/``.npy`` masks file; ``metadata`` the JSON of the folder's extra
metadata columns. Clips are assigned to shards in a seeded random permutation, so every shard is a random sample.

Reading (:func:`load_video_shards`) is a ``datasets.IterableDataset`` built with ``from_generator`` over the list
of shard files, so ``datasets`` hands whole shards to nodes (:func:`datasets.distributed.split_dataset_by_node`)
and, within a node, to DataLoader workers. Order, without any shuffle buffer:

* the shard list is permuted by ``np.random.default_rng([seed, epoch])`` (the same on every node, so the nodes
  split one list);
* inside a Parquet shard the row groups are permuted, then the rows of each row group, by an rng seeded with
  ``(seed, epoch, crc32(shard file name))``; inside a tar, the clips (keys) are permuted by the same rng. One row
  group (or one clip) is in memory at a time.

The order is a function of ``(seed, epoch)`` only; pass the epoch to :func:`load_video_shards` rather than calling
``IterableDataset.set_epoch`` (which would shuffle the shard list once more, by datasets' own rule). Resuming
mid-epoch is exact: the position (shard and row within it, per DataLoader worker) is the dataset's
``state_dict``, which :func:`shard_dataloader`'s ``StatefulDataLoader`` saves and restores.

Failure policy:

* :func:`write_video_shards` raises ``ValueError`` on data-preparation errors (missing files, bad metadata: the
  folder reader's errors), on a non-empty ``output_dir`` without ``overwrite=True``, and never deletes a folder that
  has no ``shards.json``. The shards are written with :func:`~trajtok_hf.file_utils.atomic_folder`: a crash leaves
  the previous shard folder (or none), never a half-written one.
* A shard file that is missing raises when the dataset is built; one that is not a readable Parquet file or tar
  raises while iterating, naming the shard: these are storage errors (``shards.json`` records each shard's sha256
  for checks).
* An undecodable *clip* (garbage bytes, a truncated file, bad masks) costs that one sample: :class:`ShardClipDecoder`
  returns it with ``video=None`` and a ``decode_error`` naming ``shard:key``, counts it and warns, exactly like
  :class:`~trajtok_hf.data.VideoClipDecoder`; :class:`~trajtok_hf.data.VideoTextCollator` drops it. With
  ``strict=True`` it raises a ``ValueError`` naming shard and key instead. Masks are read with
  ``allow_pickle=False``: an object array is refused, never unpickled.

When the number of shards is not a multiple of ``world_size`` a warning says so: ``datasets`` then gives each node
every ``world_size``-th example, so every node reads (and, with :func:`shard_dataloader`, decodes) every shard.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
import warnings
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..file_utils import atomic_folder
from .video_folder import METADATA_FILENAMES, _ClipDecoder, _folder_records, _read_masks, _resolve_folder

__all__ = [
    "INDEX_FILE",
    "SHARD_FORMATS",
    "SPLIT_MODES",
    "ShardClipDecoder",
    "load_video_shards",
    "shard_dataloader",
    "write_video_shards",
]

SHARD_FORMATS = ("parquet", "webdataset")
SPLIT_MODES = ("shard", "example")
INDEX_FILE = "shards.json"
INDEX_VERSION = 1
_SUFFIXES = {"parquet": ".parquet", "webdataset": ".tar"}
_FORMAT_OF_SUFFIX = {suffix: name for name, suffix in _SUFFIXES.items()}
_MASK_FORMATS = ("npz", "npy")
_JSON_MEMBER = "json"
# Columns of a folder row that are not passed through as `metadata` (they are stored in their own columns or are
# derived from `file_name` by the folder reader).
_FOLDER_COLUMNS = ("file_name", "caption", "captions", "masks_file", "video_path", "masks_path", "line_number")
_BYTES_TYPES = (bytes, bytearray, memoryview)


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"`{name}` must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}, got {value}")
    return int(value)


def _check_bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"`{name}` must be a bool, got {type(value).__name__} {value!r}")
    return value


def _shard_rng(seed: int, epoch: int, shard_name: str) -> np.random.Generator:
    """The rng of one shard's internal order: a function of the seed, the epoch and the shard's file name only."""
    return np.random.default_rng([seed, epoch, zlib.crc32(shard_name.encode("utf-8"))])


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------------------------
# Writing


def _clip_keys(records: list[dict[str, Any]]) -> list[str]:
    """One key per clip: its ``file_name`` without the suffix, with every character other than letters, digits,
    ``_`` and ``-`` replaced by ``_`` (WebDataset splits a member name at its first dot); a key taken by an earlier
    clip gets ``-L<metadata line>`` appended."""
    keys: list[str] = []
    taken: set[str] = set()
    for record in records:
        stem = str(Path(record["file_name"]).with_suffix("")).lstrip("/\\")
        key = re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_") or "clip"
        candidate, extra = key, 0
        while candidate in taken:
            extra += 1
            candidate = f"{key}-L{record['line_number']}" + (f"-{extra}" if extra > 1 else "")
        taken.add(candidate)
        keys.append(candidate)
    return keys


def _clip_entry(record: dict[str, Any], key: str) -> dict[str, Any]:
    """What a shard stores of one folder row (the files are read when its shard is written)."""
    video_format = Path(record["video_path"]).suffix.lstrip(".").lower() or "video"
    if video_format in (_JSON_MEMBER, *_MASK_FORMATS):
        raise ValueError(
            f"line {record['line_number']}: video file {record['file_name']!r} has the suffix .{video_format}, "
            "which a WebDataset member of the clip's metadata or masks uses; rename the video"
        )
    masks_path = record["masks_path"]
    extras = {k: v for k, v in record.items() if k not in _FOLDER_COLUMNS}
    return {
        "key": key,
        "video_path": record["video_path"],
        "video_format": video_format,
        "caption": record["caption"],
        "captions": list(record["captions"]),
        "masks_path": masks_path,
        # load_masks' rule: a file ending in .npy holds the labels array, anything else is an .npz archive.
        "masks_format": None if masks_path is None else ("npy" if masks_path.endswith(".npy") else "npz"),
        "metadata": json.dumps(extras, ensure_ascii=False),
    }


def _parquet_schema():
    import pyarrow as pa

    # large_binary: a row group of big clips may exceed binary's 2 GiB offsets; both are BYTE_ARRAY in the file.
    return pa.schema(
        [
            ("key", pa.string()),
            ("video", pa.large_binary()),
            ("video_format", pa.string()),
            ("caption", pa.string()),
            ("captions", pa.list_(pa.string())),
            ("masks", pa.large_binary()),
            ("masks_format", pa.string()),
            ("metadata", pa.string()),
        ]
    )


def _write_parquet_shard(path: Path, entries: list[dict[str, Any]], rows_per_group: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _parquet_schema()
    # Videos and npz masks are compressed already: their pages are stored as is; the small text columns use zstd.
    compression = {name: "zstd" for name in schema.names}
    compression["video"] = "none"
    with pq.ParquetWriter(
        path,
        schema,
        compression=compression,
        use_dictionary=["video_format", "masks_format"],
        write_statistics=False,
    ) as writer:
        for start in range(0, len(entries), rows_per_group):  # one row group in memory at a time
            group = entries[start : start + rows_per_group]
            columns = {
                "key": [e["key"] for e in group],
                "video": [Path(e["video_path"]).read_bytes() for e in group],
                "video_format": [e["video_format"] for e in group],
                "caption": [e["caption"] for e in group],
                "captions": [e["captions"] for e in group],
                "masks": [None if e["masks_path"] is None else Path(e["masks_path"]).read_bytes() for e in group],
                "masks_format": [e["masks_format"] for e in group],
                "metadata": [e["metadata"] for e in group],
            }
            writer.write_table(pa.Table.from_pydict(columns, schema=schema), row_group_size=len(group))


def _tar_member(tar: tarfile.TarFile, name: str, size: int, handle) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0  # fixed metadata: the same folder gives the same bytes
    tar.addfile(info, handle)


def _write_tar_shard(path: Path, entries: list[dict[str, Any]]) -> None:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            key = e["key"]
            with open(e["video_path"], "rb") as handle:  # streamed into the tar, never read whole
                _tar_member(tar, f"{key}.{e['video_format']}", os.fstat(handle.fileno()).st_size, handle)
            text = {
                "caption": e["caption"],
                "captions": e["captions"],
                "metadata": json.loads(e["metadata"]),
                "video_format": e["video_format"],
                "masks_format": e["masks_format"],
            }
            data = json.dumps(text, ensure_ascii=False).encode("utf-8")
            _tar_member(tar, f"{key}.{_JSON_MEMBER}", len(data), io.BytesIO(data))
            if e["masks_path"] is not None:
                with open(e["masks_path"], "rb") as handle:
                    _tar_member(tar, f"{key}.{e['masks_format']}", os.fstat(handle.fileno()).st_size, handle)


def _check_output_dir(output: Path, overwrite: bool, source: Path) -> None:
    if output.exists() and not output.is_dir():
        raise ValueError(f"`output_dir` {output} exists and is not a folder")
    resolved, source = output.resolve(), source.resolve()
    if resolved == source or resolved in source.parents:
        raise ValueError(f"`output_dir` {output} would replace the video folder {source} (or a folder holding it)")
    if not output.is_dir() or not any(output.iterdir()):
        return
    if not (output / INDEX_FILE).is_file():
        raise ValueError(
            f"`output_dir` {output} is not empty and has no {INDEX_FILE}: it is not a shard folder, so it is never "
            "replaced (even with overwrite=True); choose another `output_dir`"
        )
    if not overwrite:
        raise ValueError(f"`output_dir` {output} already holds shards; pass overwrite=True to replace them")


def write_video_shards(
    folder: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    format: str = "parquet",
    clips_per_shard: int = 64,
    rows_per_group: int = 8,
    seed: int = 0,
    overwrite: bool = False,
    metadata_file: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Write a video folder (the layout :func:`~trajtok_hf.data.load_video_text_dataset` reads) as shards.

    Args:
        folder: the video folder (or directly its metadata file).
        output_dir: the shard folder to create; written atomically. An existing non-empty folder is refused
            unless it is a shard folder (has ``shards.json``) and ``overwrite=True``.
        format: ``"parquet"`` (``shard-*.parquet``, row groups of ``rows_per_group`` clips) or ``"webdataset"``
            (``shard-*.tar`` with members ``{key}.{video suffix}``, ``{key}.json``, ``{key}.npz``/``.npy``).
        clips_per_shard: clips per shard (the last shard holds the rest). Pick it so that the number of shards is
            a multiple of (nodes × DataLoader workers per node): shards are the unit of distribution.
        rows_per_group: clips per Parquet row group: the unit read into memory and shuffled within.
        seed: seed of the permutation that assigns clips to shards.
        overwrite: replace an existing shard folder.
        metadata_file: the metadata file when the folder has several (as in ``load_video_text_dataset``).

    Returns:
        The index written to ``shards.json``: ``format``, ``version``, ``num_clips``, ``num_shards``,
        ``num_bytes`` (all shards), ``source`` (folder, metadata file, bytes of its videos and masks),
        ``clips_per_shard``, ``rows_per_group``, ``seed`` and ``shards`` (``file``, ``num_clips``, ``num_bytes``,
        ``sha256``).
    """
    if format not in SHARD_FORMATS:
        raise ValueError(f"`format` must be one of {SHARD_FORMATS}, got {format!r}")
    clips_per_shard = _check_int(clips_per_shard, "clips_per_shard", 1)
    rows_per_group = _check_int(rows_per_group, "rows_per_group", 1)
    seed = _check_int(seed, "seed", 0)
    _check_bool(overwrite, "overwrite")
    if not isinstance(output_dir, (str, os.PathLike)):
        raise TypeError(f"`output_dir` must be a path, got {type(output_dir).__name__}")
    if not isinstance(folder, (str, os.PathLike)):
        raise TypeError(f"`folder` must be a path, got {type(folder).__name__}")
    if not Path(folder).exists():
        raise ValueError(f"`folder` {folder} does not exist")
    if metadata_file is None and Path(folder).is_dir():
        if not any((Path(folder) / name).is_file() for name in METADATA_FILENAMES):
            raise ValueError(f"`folder` {folder} has no {' or '.join(METADATA_FILENAMES)} (not a video folder)")

    root, metadata_file = _resolve_folder(folder, metadata_file)
    metadata, records = _folder_records(root, metadata_file, skip_missing=False)
    output = Path(output_dir)
    _check_output_dir(output, overwrite, root)
    entries = [_clip_entry(record, key) for record, key in zip(records, _clip_keys(records), strict=True)]
    source_bytes = sum(os.path.getsize(p) for e in entries for p in (e["video_path"], e["masks_path"]) if p is not None)

    order = np.random.default_rng(seed).permutation(len(entries))
    num_shards = -(-len(entries) // clips_per_shard)
    suffix = _SUFFIXES[format]
    shards = []
    with atomic_folder(output) as tmp:
        for index in range(num_shards):
            name = f"shard-{index:05d}-of-{num_shards:05d}{suffix}"
            members = [entries[i] for i in order[index * clips_per_shard : (index + 1) * clips_per_shard]]
            if format == "parquet":
                _write_parquet_shard(tmp / name, members, rows_per_group)
            else:
                _write_tar_shard(tmp / name, members)
            shards.append(
                {
                    "file": name,
                    "num_clips": len(members),
                    "num_bytes": (tmp / name).stat().st_size,
                    "sha256": _sha256(tmp / name),
                }
            )
        index = {
            "format": format,
            "version": INDEX_VERSION,
            "num_clips": len(entries),
            "num_shards": num_shards,
            "num_bytes": sum(s["num_bytes"] for s in shards),
            "clips_per_shard": clips_per_shard,
            "rows_per_group": rows_per_group if format == "parquet" else None,
            "seed": seed,
            "source": {"folder": str(root.resolve()), "metadata_file": metadata.name, "num_bytes": source_bytes},
            "shards": shards,
        }
        (tmp / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return index


# --------------------------------------------------------------------------------------------------------------
# Reading


def _row(
    key: str,
    shard: str,
    video: Any,
    video_format: str | None,
    caption: str | None,
    captions: list[str] | None,
    masks: Any,
    masks_format: str | None,
    metadata: str | None,
) -> dict[str, Any]:
    return {
        "key": key,
        "shard": shard,
        "video": video,
        "video_format": video_format,
        "caption": caption,
        "captions": captions,
        "masks": masks,
        "masks_format": masks_format,
        "metadata": metadata,
    }


def _iter_parquet_shard(path: str, rng: np.random.Generator) -> Iterator[dict[str, Any]]:
    import pyarrow.parquet as pq

    shard = os.path.basename(path)
    try:
        parquet = pq.ParquetFile(path)
    except Exception as err:
        raise ValueError(f"shard {path} is not a readable Parquet file: {err}") from err
    with parquet:
        for group in rng.permutation(parquet.num_row_groups):
            columns = parquet.read_row_group(int(group)).to_pydict()  # one row group in memory
            for i in rng.permutation(len(columns["key"])):
                yield _row(
                    columns["key"][i],
                    shard,
                    columns["video"][i],
                    columns["video_format"][i],
                    columns["caption"][i],
                    columns["captions"][i],
                    columns["masks"][i],
                    columns["masks_format"][i],
                    columns["metadata"][i],
                )


def _iter_tar_shard(path: str, rng: np.random.Generator) -> Iterator[dict[str, Any]]:
    shard = os.path.basename(path)
    try:
        tar = tarfile.open(path, "r:")
    except Exception as err:
        raise ValueError(f"shard {path} is not a readable tar file: {err}") from err
    with tar:
        clips: dict[str, dict[str, tarfile.TarInfo]] = {}
        for member in tar.getmembers():  # headers only: the member list, in the order written
            if member.isfile():
                key, _, extension = os.path.basename(member.name).partition(".")
                clips.setdefault(key, {})[extension] = member
        keys = list(clips)
        for i in rng.permutation(len(keys)):
            key, members = keys[i], clips[keys[i]]
            text = {}
            if _JSON_MEMBER in members:
                try:
                    text = json.loads(tar.extractfile(members[_JSON_MEMBER]).read())
                except json.JSONDecodeError as err:
                    raise ValueError(f"shard {path}: member {members[_JSON_MEMBER].name} is not JSON ({err})") from err
            video_format = text.get("video_format") or next(
                (ext for ext in members if ext not in (_JSON_MEMBER, *_MASK_FORMATS)), None
            )
            masks_format = text.get("masks_format") or next((ext for ext in _MASK_FORMATS if ext in members), None)
            video = tar.extractfile(members[video_format]).read() if video_format in members else None
            masks = tar.extractfile(members[masks_format]).read() if masks_format in members else None
            captions = text.get("captions")
            caption = text.get("caption", captions[0] if captions else None)
            yield _row(
                key,
                shard,
                video,
                video_format,
                caption,
                captions if captions is not None else ([caption] if caption is not None else None),
                masks,
                masks_format if masks is not None else None,
                json.dumps(text.get("metadata", {}), ensure_ascii=False),
            )


def _generate_shard_rows(
    shards: list[list[Any]], seed: int, epoch: int, rank: int = 0, world_size: int = 1
) -> Iterator[dict[str, Any]]:
    """The ``from_generator`` generator: the raw rows of ``shards`` (``[path, first global index]`` pairs; datasets
    passes each call its own shards). With ``world_size > 1`` (``split_by="example"``) only the rows whose global
    index (the shard's first index plus the row's position in the shard's order) is ``rank`` modulo ``world_size``
    are yielded: the others are skipped before anything is decoded."""
    for path, first in shards:
        rng = _shard_rng(seed, epoch, os.path.basename(path))
        rows = _iter_parquet_shard(path, rng) if path.endswith(_SUFFIXES["parquet"]) else _iter_tar_shard(path, rng)
        for position, row in enumerate(rows):
            if (first + position) % world_size == rank:
                yield row


def _shard_sizes(files: list[str]) -> list[int]:
    """Clips per shard file (Parquet footers; tar member headers)."""
    import pyarrow.parquet as pq

    sizes = []
    for path in files:
        try:
            if path.endswith(_SUFFIXES["parquet"]):
                sizes.append(pq.ParquetFile(path).metadata.num_rows)
            else:
                with tarfile.open(path, "r:") as tar:
                    keys = {os.path.basename(m.name).partition(".")[0] for m in tar.getmembers() if m.isfile()}
                sizes.append(len(keys))
        except Exception as err:
            raise ValueError(f"shard {path} is not a readable shard file: {err}") from err
    return sizes


def _shard_features():
    import datasets

    string_list = getattr(datasets, "List", None) or datasets.Sequence
    return datasets.Features(
        {
            "key": datasets.Value("string"),
            "shard": datasets.Value("string"),
            "video": datasets.Value("binary"),
            "video_format": datasets.Value("string"),
            "caption": datasets.Value("string"),
            "captions": string_list(datasets.Value("string")),
            "masks": datasets.Value("binary"),
            "masks_format": datasets.Value("string"),
            "metadata": datasets.Value("string"),
        }
    )


def _shard_files(path: Any) -> list[str]:
    """The shard files named by ``path``: a shard folder (its ``shards.json``), its ``shards.json``, one shard file,
    or a list of shard files."""
    if isinstance(path, (str, os.PathLike)):
        target = Path(path)
        if target.is_dir():
            target = target / INDEX_FILE
            if not target.is_file():
                raise ValueError(f"`path` {path} has no {INDEX_FILE} (write it with write_video_shards)")
        if target.name == INDEX_FILE and target.is_file():
            try:
                index = json.loads(target.read_text(encoding="utf-8"))
                names = [entry["file"] for entry in index["shards"]]
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise ValueError(f"`path` {target} is not a shard index: {err}") from err
            if index.get("format") not in SHARD_FORMATS:
                raise ValueError(f"`path` {target}: unknown shard format {index.get('format')!r}")
            files = [target.parent / name for name in names]
        else:
            files = [target]
    elif isinstance(path, Sequence) and not isinstance(path, (bytes, bytearray)):
        files = [Path(p) if isinstance(p, (str, os.PathLike)) else p for p in path]
        bad = [p for p in files if not isinstance(p, Path)]
        if bad:
            raise TypeError(f"`path` must list shard file paths, got {type(bad[0]).__name__}")
    else:
        raise TypeError(f"`path` must be a shard folder or a list of shard files, got {type(path).__name__}")
    if not files:
        raise ValueError("`path` names no shard files")
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        raise ValueError(f"`path`: {len(missing)} shard file(s) do not exist: {', '.join(missing[:10])}")
    unknown = [str(p) for p in files if p.suffix not in _FORMAT_OF_SUFFIX]
    if unknown:
        raise ValueError(f"`path`: shard files must end in .parquet or .tar, got {', '.join(unknown[:10])}")
    return [str(p.resolve()) for p in files]


def load_video_shards(
    path: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    seed: int = 0,
    epoch: int = 0,
    rank: int = 0,
    world_size: int = 1,
    split_by: str = "shard",
):
    """Stream the clips of Parquet / WebDataset shards as a ``datasets.IterableDataset`` of raw (undecoded) rows.

    Args:
        path: a shard folder written by :func:`write_video_shards` (or its ``shards.json``), or a list of shard
            files (``.parquet`` / ``.tar``; the two may be mixed).
        seed, epoch: the order (see the module docstring): the same pair gives the same order, on every node.
        rank, world_size: this node and the number of nodes.
        split_by: how the nodes share the clips. ``"shard"`` (default): whole shards per node
            (``datasets.distributed.split_dataset_by_node``), each node reads only its shards — what a large run
            wants; their number should be a multiple of ``world_size`` (otherwise a warning, and datasets gives
            each node every ``world_size``-th example of every shard, decoded first). ``"example"``: every node reads
            every shard and keeps the clips whose position in the epoch's global order is ``rank`` modulo
            ``world_size``, skipped before decoding; then ``world_size`` nodes with batches of ``B`` see, together,
            exactly the global batches of ``world_size × B`` clips that one node sees (with 0 DataLoader workers),
            so a run's data does not depend on its number of processes.

    Returns:
        An ``IterableDataset`` whose rows are ``key``, ``shard`` (file name), ``video`` (the encoded file's
        bytes), ``video_format``, ``caption``, ``captions``, ``masks`` (the masks file's bytes or None),
        ``masks_format`` (``"npz"``/``"npy"`` or None) and ``metadata`` (JSON of the extra metadata columns).
        Decode with ``dataset.map(ShardClipDecoder(...), batched=True, batch_size=...,
        remove_columns=list(ShardClipDecoder.RAW_COLUMNS))``, or use :func:`shard_dataloader`.
    """
    import datasets
    from datasets.distributed import split_dataset_by_node

    seed = _check_int(seed, "seed", 0)
    epoch = _check_int(epoch, "epoch", 0)
    world_size = _check_int(world_size, "world_size", 1)
    rank = _check_int(rank, "rank", 0)
    if rank >= world_size:
        raise ValueError(f"`rank` must be < `world_size` ({world_size}), got {rank}")
    if split_by not in SPLIT_MODES:
        raise ValueError(f"`split_by` must be one of {SPLIT_MODES}, got {split_by!r}")
    files = _shard_files(path)
    files = [files[i] for i in np.random.default_rng([seed, epoch]).permutation(len(files))]
    by_example = split_by == "example" and world_size > 1
    firsts = np.concatenate([[0], np.cumsum(_shard_sizes(files))[:-1]]).tolist() if by_example else [0] * len(files)
    dataset = datasets.IterableDataset.from_generator(
        _generate_shard_rows,
        features=_shard_features(),
        gen_kwargs={
            "shards": [[file, int(first)] for file, first in zip(files, firsts, strict=True)],
            "seed": seed,
            "epoch": epoch,
            "rank": rank if by_example else 0,
            "world_size": world_size if by_example else 1,
        },
    )
    if by_example or world_size == 1:
        return dataset
    if len(files) % world_size:
        warnings.warn(
            f"{len(files)} shards do not split evenly over world_size={world_size} nodes: every node reads every "
            f"shard and keeps 1 clip in {world_size} (write a multiple of {world_size} shards to give each node "
            "whole shards, or pass split_by='example' to skip the other nodes' clips before decoding)",
            UserWarning,
            stacklevel=2,
        )
    return split_dataset_by_node(dataset, rank=rank, world_size=world_size)


# --------------------------------------------------------------------------------------------------------------
# Decoding


class ShardClipDecoder(_ClipDecoder):
    """Decode the raw rows of :func:`load_video_shards`: ``video`` bytes → frames, ``masks`` bytes → labels.

    Use it as ``dataset.map(decoder, batched=True, batch_size=B, remove_columns=list(decoder.RAW_COLUMNS))``
    (``remove_columns`` drops the raw bytes so that decoded batches stay small; the decoded ``video`` is kept), or
    call it on one row or a batch (dict of lists); its output never holds the raw bytes. The outputs, the sampling
    (``num_frames`` uniformly over the clip, the video processor's rule), the masks handling and the failure policy
    are :class:`~trajtok_hf.data.VideoClipDecoder`'s: a clip that cannot be decoded comes back with ``video=None``
    (or None ``transform`` outputs) and a ``decode_error``, is counted in ``num_failed`` and warned about, naming
    ``shard:key``; with ``strict=True`` a ``ValueError`` naming ``shard:key`` is raised instead. Masks bytes are
    loaded with ``allow_pickle=False``.

    Args:
        num_frames, transform, load_masks, mask_size, mask_stride, warn: as in
            :class:`~trajtok_hf.data.VideoClipDecoder`.
        strict: raise on the first undecodable clip instead of skipping it.

    Attributes:
        num_failed: clips that could not be decoded in this process (DataLoader workers count separately).
        failures: ``("shard:key", message)`` of the most recent failures (at most 100).
    """

    RAW_COLUMNS = ("video", "masks")

    def __init__(
        self,
        num_frames: int = 16,
        transform: Callable[[list[np.ndarray]], Mapping[str, Any]] | None = None,
        *,
        strict: bool = False,
        load_masks: bool = True,
        mask_size: tuple[int, int] | None = None,
        mask_stride: int = 4,
        warn: bool = True,
    ):
        super().__init__(
            num_frames, transform, load_masks=load_masks, mask_size=mask_size, mask_stride=mask_stride, warn=warn
        )
        self.strict = _check_bool(strict, "strict")

    def decode_one(
        self,
        video: bytes | None,
        *,
        key: str,
        shard: str = "",
        masks: bytes | None = None,
        masks_format: str | None = None,
    ) -> dict[str, Any]:
        """Decode one clip from its bytes; returns what :meth:`VideoClipDecoder.decode_one` returns."""
        name = f"{shard}:{key}"
        invalid = None
        if not isinstance(video, _BYTES_TYPES):
            invalid = f"the row holds no video bytes (got {type(video).__name__})"
        read_masks = None
        if masks is not None:
            is_npy = masks_format == "npy"
            read_masks = lambda: _read_masks(io.BytesIO(masks), is_npy, self.mask_stride, name)  # noqa: E731
        return self._decode_clip(video, name, read_masks, f"{name}.{masks_format}", invalid=invalid)

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(batch, Mapping):
            raise TypeError(f"`batch` must be a row or a batch (dict of lists), got {type(batch).__name__}")
        missing = [c for c in ("key", "video") if c not in batch]
        if missing:
            raise ValueError(f"`batch` must have the columns {missing} (rows of load_video_shards)")
        single = isinstance(batch["key"], str)
        rows = {k: [v] for k, v in batch.items()} if single else batch
        keys = list(rows["key"])
        n = len(keys)
        shards = list(rows.get("shard", [""] * n))
        masks = list(rows.get("masks", [None] * n))
        masks_formats = list(rows.get("masks_format", [None] * n))
        decoded = [
            self.decode_one(video, key=key, shard=shard, masks=m, masks_format=f)
            for video, key, shard, m, f in zip(rows["video"], keys, shards, masks, masks_formats, strict=True)
        ]
        out = self._assemble(rows, decoded, drop=self.RAW_COLUMNS)
        return {k: v[0] for k, v in out.items()} if single else out


def shard_dataloader(
    path: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    batch_size: int,
    collate_fn: Callable[[list[dict[str, Any]]], Any],
    num_workers: int = 0,
    seed: int = 0,
    epoch: int = 0,
    rank: int = 0,
    world_size: int = 1,
    num_frames: int = 16,
    transform: Callable[[list[np.ndarray]], Mapping[str, Any]] | None = None,
    strict: bool = False,
    mask_size: tuple[int, int] | None = None,
    split_by: str = "shard",
    **dataloader_kwargs: Any,
):
    """A resumable DataLoader of decoded clips from shards: :func:`load_video_shards` mapped by a
    :class:`ShardClipDecoder` (in the workers), batched by a ``torchdata`` ``StatefulDataLoader``.

    Args:
        path, seed, epoch, rank, world_size, split_by: see :func:`load_video_shards`.
        batch_size: clips per batch (also the decoder's batch, so ``transform`` sees whole batches).
        collate_fn: turns a list of decoded rows into a batch, e.g. :class:`~trajtok_hf.data.VideoTextCollator`
            (which drops failed clips and returns None when all failed).
        num_workers: DataLoader worker processes; each reads whole shards, so use at most
            ``num_shards / world_size`` of them.
        num_frames, transform, strict, mask_size: see :class:`ShardClipDecoder`.
        dataloader_kwargs: passed to ``StatefulDataLoader`` (``pin_memory``, ``prefetch_factor``, ...). Without a
            ``generator``, one seeded from ``(seed, epoch)`` seeds the workers, so that the loader never draws from the
            global torch RNG.

    Returns:
        A ``torchdata.stateful_dataloader.StatefulDataLoader``: ``state_dict()`` mid-epoch, and
        ``load_state_dict(state)`` on a loader built with the same arguments, continue with exactly the batches
        the interrupted run had left.
    """
    batch_size = _check_int(batch_size, "batch_size", 1)
    num_workers = _check_int(num_workers, "num_workers", 0)
    if not callable(collate_fn):
        raise TypeError(f"`collate_fn` must be callable, got {type(collate_fn).__name__}")
    try:
        from torchdata.stateful_dataloader import StatefulDataLoader
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("shard_dataloader needs torchdata (pip install 'torchdata>=0.11')") from err
    if "generator" not in dataloader_kwargs:
        # Worker seeds from (seed, epoch), not from the global torch RNG: creating or resuming a loader then leaves the
        # training's random stream untouched (a resumed run draws exactly what the uninterrupted one drew).
        import torch

        worker_seed = int(np.random.default_rng([seed, epoch, 1]).integers(2**62))
        dataloader_kwargs["generator"] = torch.Generator().manual_seed(worker_seed)
    decoder = ShardClipDecoder(num_frames, transform, strict=strict, mask_size=mask_size)
    dataset = load_video_shards(path, seed=seed, epoch=epoch, rank=rank, world_size=world_size, split_by=split_by)
    dataset = dataset.map(decoder, batched=True, batch_size=batch_size, remove_columns=list(decoder.RAW_COLUMNS))
    return StatefulDataLoader(
        dataset, batch_size=batch_size, collate_fn=collate_fn, num_workers=num_workers, **dataloader_kwargs
    )
