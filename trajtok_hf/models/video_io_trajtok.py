"""Reading video files for TrajTok: one PyAV decoder and one frame-sampling rule for every caller.

The video processor (``TrajTokVideoProcessor.fetch_videos``) and the local video-folder datasets
(``trajtok_hf.data.video_folder``) both decode through :func:`read_video_pyav` and sample with
:func:`uniform_frame_indices`, so a clip read for training and the same clip given to the processor yield the same
frames.

* Sampling: ``num_frames`` frames at the centres of ``num_frames`` equal segments of the clip (TSN-style, exact
  integer arithmetic). A clip shorter than ``num_frames`` repeats frames uniformly; nothing is zero-padded, since
  fake frames could create trajectories (paper Sec. 3 tokenizes every pixel of every frame).
* Frame count: the container header's, or, when the header has none (Matroska, WebM, MPEG-TS), the number of
  packets of the video stream (counted without decoding).
* Truncated files: when fewer frames decode than the count promised, the frames are sampled again over the frames
  that do decode, unless fewer than half of them do: such a file is corrupt, and a clip of one repeated frame would
  be a silently wrong sample.
* Errors: every failure (missing file, unreadable container, no video stream, no frame, decoding error, truncation,
  frames changing size) is a ``ValueError`` that names the file.
* In-memory files: :func:`read_video_pyav` also takes the encoded file's bytes (a clip read from a Parquet or
  WebDataset shard), opened with ``av.open(io.BytesIO(...))`` for each pass over the stream, so bytes and the same
  file on disk give the same frames. Errors then name the ``name`` the caller gives (e.g. ``shard:key``), or
  ``'<bytes>'``.

Decoding converts to RGB24 with FFmpeg's swscale; rotation side-data of phone videos is not applied. This module
imports only numpy, transformers and (lazily) av, so a saved processor carries it as remote code.
"""

from __future__ import annotations

import dataclasses
import io
import os
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np
from transformers.video_utils import VideoMetadata

__all__ = [
    "MIN_DECODABLE_FRACTION",
    "VideoFrame",
    "check_num_frames",
    "iter_video_frames",
    "read_video_metadata",
    "read_video_pyav",
    "uniform_frame_indices",
]

# The encoded bytes of a whole video file, accepted by read_video_pyav in place of a path.
_BYTES_TYPES = (bytes, bytearray, memoryview)
_BYTES_NAME = "<bytes>"

# A file whose stream decodes to fewer than this fraction of the frames its header promises is refused as truncated.
MIN_DECODABLE_FRACTION = 0.5


def check_num_frames(num_frames: Any) -> None:
    """``num_frames`` must be None or a positive int (numpy integers included)."""
    if num_frames is None:
        return
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)):
        raise TypeError(f"`num_frames` must be a positive int or None, got {type(num_frames).__name__} {num_frames!r}")
    if num_frames <= 0:
        raise ValueError(f"`num_frames` must be a positive int (frames to sample per video), got {num_frames}")


def uniform_frame_indices(total_num_frames: int, num_frames: int) -> np.ndarray:
    """Indices of ``num_frames`` frames spread uniformly over a clip of ``total_num_frames`` frames.

    Frame ``i`` is the one under the centre of the i-th of ``num_frames`` equal segments:
    ``floor((2i + 1) * total / (2 * num_frames))``. When the clip is shorter than ``num_frames`` the same formula
    repeats frames uniformly (each frame ``floor`` or ``ceil`` of ``num_frames / total`` times, in temporal order).
    """
    total_num_frames = int(total_num_frames)
    if total_num_frames <= 0:
        raise ValueError(f"cannot sample frames from an empty video (total_frames={total_num_frames})")
    check_num_frames(num_frames)
    steps = 2 * np.arange(int(num_frames), dtype=np.int64) + 1
    return (steps * total_num_frames) // (2 * int(num_frames))


def _open_stream(source: str | bytes | bytearray | memoryview, name: str | None = None):
    """Open ``source`` (a path, or an encoded file's bytes: a fresh ``BytesIO`` each call); errors name ``name``."""
    import av  # lazy: only needed for file inputs

    name = _label(source, name)
    try:
        container = av.open(io.BytesIO(source) if isinstance(source, _BYTES_TYPES) else source)
    except Exception as err:  # av.error.* (InvalidDataError, ...), OSError
        raise ValueError(f"could not open video file {name!r} with PyAV: {err}") from err
    if not container.streams.video:
        container.close()
        raise ValueError(f"video file {name!r} has no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return container, stream


def _label(source: Any, name: str | None) -> str:
    """What errors call the video: ``name`` if given, else the path, else ``'<bytes>'``."""
    if name is not None:
        return name
    return _BYTES_NAME if isinstance(source, _BYTES_TYPES) else source


def _metadata(total: int, fps: float | None, height: int, width: int) -> VideoMetadata:
    return VideoMetadata(
        total_num_frames=total,
        fps=fps,
        width=width,
        height=height,
        duration=total / fps if fps else None,
        video_backend="pyav",
    )


def _probe(path: str | bytes | bytearray | memoryview, name: str | None = None) -> VideoMetadata:
    """Frame count, frame rate and frame size, from the header (packets counted when it has no frame count)."""
    container, stream = _open_stream(path, name)
    name = _label(path, name)
    with container:
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        total = int(stream.frames or 0)
        if total <= 0:
            try:
                total = sum(1 for packet in container.demux(stream) if packet.size)
            except Exception as err:
                raise ValueError(f"could not read video file {name!r} with PyAV: {err}") from err
        metadata = _metadata(
            total, float(rate) if rate else None, stream.codec_context.height, stream.codec_context.width
        )
    if total <= 0:
        raise ValueError(f"video file {name!r} is empty (0 frames)")
    return metadata


def read_video_metadata(path: str | os.PathLike) -> VideoMetadata:
    """Frame count, frame rate and frame size of a video file without decoding it (the header's frame count, or the
    number of packets when the header has none)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"video file {path!r} does not exist or is not a regular file")
    return _probe(path)


def _decode(
    path: str | bytes | bytearray | memoryview, indices: np.ndarray, name: str | None = None
) -> tuple[dict[int, np.ndarray], int]:
    """RGB frames at ``indices`` (decoding stops after the last one) and the number of frames decoded."""
    keep, last = set(indices.tolist()), int(indices.max())
    frames, seen = {}, 0
    container, stream = _open_stream(path, name)
    name = _label(path, name)
    with container:
        try:
            for index, frame in enumerate(container.decode(stream)):
                seen = index + 1
                if index in keep:
                    frames[index] = frame.to_ndarray(format="rgb24")
                if index >= last:
                    break
        except Exception as err:  # av.error.InvalidDataError etc. (some subclass ValueError): name the file
            raise ValueError(f"could not decode video file {name!r} with PyAV: {err}") from err
    return frames, seen


def _select(metadata: VideoMetadata, sample_indices_fn: Callable | None, path: str) -> np.ndarray:
    total = metadata.total_num_frames
    if sample_indices_fn is None:
        return np.arange(total)
    indices = np.asarray(sample_indices_fn(metadata=metadata), dtype=np.int64).reshape(-1)
    if indices.size == 0:
        raise ValueError(f"frame sampling selected no frames from {path!r}")
    if indices.min() < 0 or indices.max() >= total:
        raise ValueError(f"frame indices out of range [0, {total}) for {path!r}")
    return indices


def read_video_pyav(
    path: str | os.PathLike | bytes | bytearray | memoryview,
    sample_indices_fn: Callable | None = None,
    *,
    name: str | None = None,
) -> tuple[np.ndarray, VideoMetadata]:
    """Decode a video file with PyAV into uint8 RGB frames ``(T, H, W, 3)`` and their ``VideoMetadata``.

    Args:
        path: the video file, or its encoded bytes (``bytes``/``bytearray``/``memoryview``: the whole file, e.g. a
            clip stored in a shard), decoded from memory exactly as the file would be.
        sample_indices_fn: ``fn(metadata=VideoMetadata) -> indices`` choosing the frames to keep (all if None), as
            transformers' ``load_video`` takes it; e.g. ``lambda metadata: uniform_frame_indices(
            metadata.total_num_frames, 16)``. Only the kept frames are converted to RGB.
        name: what error messages call the video (default: the path; ``'<bytes>'`` for bytes).

    Returns:
        The frames (the same layout as transformers' ``read_video_pyav``) and the metadata, whose
        ``total_num_frames`` is the number of frames that decode and ``frames_indices`` the kept frames.
    """
    if name is not None and not isinstance(name, str):
        raise TypeError(f"`name` must be a string or None, got {type(name).__name__}")
    if not isinstance(path, _BYTES_TYPES):
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise ValueError(f"video file {_label(path, name)!r} does not exist or is not a regular file")
    label = _label(path, name)
    metadata = _probe(path, label)
    indices = _select(metadata, sample_indices_fn, label)
    frames, seen = _decode(path, indices, label)
    if seen <= int(indices.max()):  # the header promised more frames than the stream holds
        promised = metadata.total_num_frames
        if seen < max(1, int(np.ceil(promised * MIN_DECODABLE_FRACTION))):
            raise ValueError(f"truncated video {label!r}: only {seen} of {promised} frames decode")
        metadata = _metadata(seen, metadata.fps, metadata.height, metadata.width)
        indices = _select(metadata, sample_indices_fn, label)
        frames, _ = _decode(path, indices, label)
    try:
        video = np.stack([frames[int(i)] for i in indices])  # repeated indices reuse the decoded frame
    except ValueError as err:
        raise ValueError(f"frames of {label!r} change size mid-stream: {err}") from err
    metadata = dataclasses.replace(metadata, height=video.shape[1], width=video.shape[2])
    metadata.frames_indices = indices.tolist()
    return video, metadata


class VideoFrame(NamedTuple):
    """One decoded frame of :func:`iter_video_frames`: its index in the file's stream, its time in seconds and its
    uint8 RGB pixels ``(H, W, 3)``."""

    index: int
    time: float
    rgb: np.ndarray


def _check_rate(fps: Any) -> None:
    if fps is None:
        return
    if isinstance(fps, bool) or not isinstance(fps, (int, float, np.integer, np.floating)) or not fps > 0:
        raise ValueError(f"`fps` must be a positive number of frames per second or None, got {fps!r}")


def iter_video_frames(
    path: str | os.PathLike, fps: float | None = None, max_frames: int | None = None
) -> Iterator[VideoFrame]:
    """Decode a video file lazily, one frame at a time, optionally resampled to ``fps`` frames per second.

    Unlike :func:`read_video_pyav`, nothing is collected: a caller that keeps only the frames it needs (a chunk)
    decodes a file of any length in memory bounded by those frames. With ``fps``, the kept frames are the first
    decoded frames at or after the times ``0, 1/fps, 2/fps, …`` (a frame rate above the file's keeps every frame
    once); frame times come from the stream's timestamps, or from the index and the stream's rate when a frame has
    none. ``max_frames`` stops after that many kept frames. Errors are ``ValueError`` errors that name the file, as in
    :func:`read_video_pyav`.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"video file {path!r} does not exist or is not a regular file")
    _check_rate(fps)
    if max_frames is not None and (
        isinstance(max_frames, bool) or not isinstance(max_frames, (int, np.integer)) or max_frames < 1
    ):
        raise ValueError(f"`max_frames` must be a positive int or None, got {max_frames!r}")
    container, stream = _open_stream(path)
    with container:
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        rate = float(rate) if rate else None
        start = None
        kept = 0
        next_time = 0.0
        try:
            for index, frame in enumerate(container.decode(stream)):
                time = frame.time if frame.time is not None else (index / rate if rate else float(index))
                start = time if start is None else start
                time = float(time - start)
                if fps is not None:
                    # A small tolerance keeps frames whose timestamps are rounded to the stream's time base.
                    if time + 1e-6 < next_time:
                        continue
                    next_time = (int((time + 1e-6) * fps) + 1) / fps
                yield VideoFrame(index, time, frame.to_ndarray(format="rgb24"))
                kept += 1
                if max_frames is not None and kept >= max_frames:
                    return
        except Exception as err:  # av.error.* while decoding: name the file
            raise ValueError(f"could not decode video file {path!r} with PyAV: {err}") from err
    if kept == 0:
        raise ValueError(f"video file {path!r} has no decodable frame")
