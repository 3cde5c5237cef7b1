"""Streaming tokenization: trajectory tokens of a video of any length, chunk by chunk, in bounded memory.

TrajTok tokenizes a clip chunk by chunk anyway (paper Sec. 3: chunks of ``chunk_size`` frames are segmented
independently), so a long video needs no new model: :func:`stream_trajectory_tokens` reads frames lazily (a file
is decoded one frame at a time, optionally resampled to ``fps``), runs the model's own video processor and the
model on one chunk at a time, links the chunk's trajectories to those before it
(:class:`~trajtok_hf.long_video.linking.TrajectoryLinker`) and yields a :class:`TrajectoryChunk`. Memory is that of
one chunk (its decoded frames, its pixel values, the model's activations) plus the linker's live tracks, not the
video's length. :func:`tokenize_long_video` consumes the stream and, with ``merge=True``, also returns one token set
for the whole video (:class:`~trajtok_hf.long_video.merging.TrajectoryTokenMerger`).

How it differs from running the model on the whole clip: the processor is applied per chunk with no frame
sampling (every frame, or every frame of the ``fps`` resampling, is tokenized), and trajectory ids are global over
the video instead of ``chunk · K + k``.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..models.video_io_trajtok import VideoFrame, iter_video_frames
from .linking import ChunkLinks, TrajectoryLinker
from .merging import MergedTrajectoryTokens, TrajectoryTokenMerger

__all__ = [
    "DESCRIPTORS",
    "ChunkTokens",
    "FrameChunk",
    "LongVideoTokens",
    "TrajectoryChunk",
    "collect_chunks",
    "iter_frame_chunks",
    "stream_chunks",
    "stream_trajectory_tokens",
    "tokenize_long_video",
    "trajectory_descriptors",
]

DESCRIPTORS = ("embedding", "tokens", "queries", "features")
"""Appearance descriptors the linker may compare: the mean over a trajectory's pixels of the segmenter's pixel
embedding (the space of Eq. 1 in which pixels are grouped into trajectories), the mean of its tokens, its segmenter
query, or the mean of the multi-scale features under its pixels."""


@dataclass
class FrameChunk:
    """Consecutive frames of a video: ``frames`` uint8 ``(t, H, W, 3)``, the first one's index ``start`` in the
    (resampled) video and each frame's time in seconds (None when the frames came without times)."""

    start: int
    frames: np.ndarray
    times: list[float] | None


def _frames_of(video, fps: float | None, max_frames: int | None) -> Iterator[np.ndarray | VideoFrame]:
    if isinstance(video, (str, os.PathLike)):
        return iter_video_frames(video, fps=fps, max_frames=max_frames)
    if fps is not None:
        raise ValueError("`fps` resamples a video file; frames given as an iterable are taken as they are")
    if isinstance(video, (np.ndarray, torch.Tensor)) and video.ndim == 3:
        raise ValueError(f"`video` must be an iterable of (H, W, 3) frames, got a single frame {tuple(video.shape)}")
    if not isinstance(video, Iterable):
        raise TypeError(
            f"`video` must be a file path or an iterable of uint8 (H, W, 3) frames, got {type(video).__name__}"
        )
    frames = iter(video)
    if max_frames is None:
        return frames
    return itertools.islice(frames, max_frames)


def _frame_array(frame, index: int) -> np.ndarray:
    rgb = frame.rgb if isinstance(frame, VideoFrame) else frame
    if isinstance(rgb, torch.Tensor):
        rgb = rgb.detach().cpu().numpy()
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[-1] != 3 or rgb.dtype != np.uint8:
        raise ValueError(
            f"frame {index} of `video` must be a uint8 (H, W, 3) RGB array, got "
            f"{getattr(rgb, 'dtype', type(rgb).__name__)} {tuple(getattr(rgb, 'shape', ()))}"
        )
    return rgb


def iter_frame_chunks(
    video, chunk_size: int, fps: float | None = None, max_frames: int | None = None
) -> Iterator[FrameChunk]:
    """Group the frames of ``video`` (a file path, decoded lazily, or an iterable of uint8 ``(H, W, 3)`` frames or
    :class:`VideoFrame` items) into chunks of ``chunk_size`` frames; the last chunk may be shorter. Only one chunk of
    frames is held at a time."""
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"`chunk_size` must be a positive int, got {chunk_size!r}")
    start, frames, times = 0, [], []
    for index, frame in enumerate(_frames_of(video, fps, max_frames)):
        rgb = _frame_array(frame, index)
        if frames and rgb.shape != frames[0].shape:
            raise ValueError(f"frame {index} of `video` is {rgb.shape}, the frames before it {frames[0].shape}")
        frames.append(rgb)
        times.append(frame.time if isinstance(frame, VideoFrame) else None)
        if len(frames) == chunk_size:
            yield FrameChunk(start, np.stack(frames), None if None in times else times)
            start, frames, times = start + chunk_size, [], []
    if frames:
        yield FrameChunk(start, np.stack(frames), None if None in times else times)
    elif start == 0:
        raise ValueError("`video` has no frames")


@dataclass
class TrajectoryChunk:
    """The tokens of one chunk of a streamed video (S = K trajectory slots, n = tokens per trajectory, D = token
    width, t = the chunk's frames, (h, w) = the mask grid).

    Args:
        index (`int`): the chunk's position in the video.
        frame_start, frame_end (`int`): its frames ``[frame_start, frame_end)`` in the (resampled) video.
        times (`list[float]` or None): each frame's time in seconds (for file inputs).
        trajectory_tokens (`torch.FloatTensor` of shape `(S·n, D)`): the model's tokens, slot-major.
        trajectory_mask (`torch.BoolTensor` of shape `(S·n,)`): True for tokens of non-empty trajectories.
        trajectory_ids (`torch.LongTensor` of shape `(t, h, w)`): the hard mask with global ids.
        global_ids (`torch.LongTensor` of shape `(S,)`): each slot's global id (-1: empty slot).
        first_frame, last_frame, pixel_counts (`torch.LongTensor` of shape `(S,)`): see [`ChunkLinks`].
        new_ids (`list[int]`): global ids that appear for the first time in this chunk.
        tokens_per_trajectory (`int`): n.
        frames (`numpy.ndarray` of shape `(t, H, W, 3)`): the chunk's uint8 frames as read (original size).
        video_geometry: the processor's geometry of the chunk (``return_geometry=True``), for
            :meth:`original_trajectory_ids`.
    """

    index: int
    frame_start: int
    frame_end: int
    times: list[float] | None
    trajectory_tokens: torch.Tensor
    trajectory_mask: torch.Tensor
    trajectory_ids: torch.Tensor
    global_ids: torch.Tensor
    first_frame: torch.Tensor
    last_frame: torch.Tensor
    pixel_counts: torch.Tensor
    new_ids: list[int]
    tokens_per_trajectory: int
    frames: np.ndarray | None = None
    video_geometry: object = None

    def original_trajectory_ids(self, processor) -> torch.Tensor:
        """The global ids at the original frame size ``(t, H, W)`` (-1 where the processor cropped the frame away),
        through ``processor.post_process_trajectory_ids``."""
        if self.video_geometry is None:
            raise ValueError("this chunk has no video_geometry (its processor did not return one)")
        return processor.post_process_trajectory_ids(self.trajectory_ids[None], [self.video_geometry])[0]

    @property
    def num_trajectories(self) -> int:
        """Active (non-empty) trajectories of the chunk."""
        return int((self.global_ids >= 0).sum())

    @property
    def num_tokens(self) -> int:
        return int(self.trajectory_mask.sum())

    def slot_tokens(self) -> torch.Tensor:
        """``(S, n, D)``: the tokens grouped per slot."""
        return self.trajectory_tokens.view(self.global_ids.numel(), self.tokens_per_trajectory, -1)

    def summary(self) -> dict:
        """JSON-ready: frame range, times, token and trajectory counts, the global ids present and the new ones."""
        present = sorted(set(self.global_ids[self.global_ids >= 0].tolist()))
        return {
            "chunk": self.index,
            "frames": [self.frame_start, self.frame_end],
            "seconds": None if self.times is None else [round(self.times[0], 4), round(self.times[-1], 4)],
            "num_tokens": self.num_tokens,
            "num_trajectories": self.num_trajectories,
            "global_ids": present,
            "new_ids": self.new_ids,
        }


def trajectory_descriptors(model, output, kind: str = "embedding") -> torch.Tensor:
    """``(K, E)`` appearance descriptors of the trajectory slots of one chunk (batch of one) from a [`TrajTokModel`]
    output: one of :data:`DESCRIPTORS` (``"embedding"`` and ``"features"`` need ``output_pixel_features=True``)."""
    if kind not in DESCRIPTORS:
        raise ValueError(f"`kind` must be one of {DESCRIPTORS}, got {kind!r}")
    num_slots = model.config.num_trajectories
    if kind == "tokens":
        n = output.trajectory_tokens.shape[1] // num_slots
        return output.trajectory_tokens[0].view(num_slots, n, -1).mean(dim=1)
    if kind == "queries":
        return output.trajectory_queries[0]
    if output.pixel_features is None:
        raise ValueError(f"descriptor {kind!r} needs the model's output_pixel_features=True")
    features = output.pixel_features[0].flatten(0, 2)  # (t·h·w, hidden)
    if kind == "embedding":
        features = F.normalize(model.pixel_head(features), dim=-1)  # Eq. 1's pixel embedding
    features = features.float()
    ids = (output.trajectory_ids[0] % num_slots).reshape(-1)
    sums = features.new_zeros(num_slots, features.shape[1]).index_add_(0, ids, features)
    return sums / torch.bincount(ids, minlength=num_slots).clamp(min=1)[:, None]


def _check_model_args(model, chunk_size, descriptor):
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "num_trajectories") or not hasattr(config, "chunk_size"):
        raise TypeError(f"`model` must be a TrajTokModel, got {type(model).__name__}")
    if descriptor not in DESCRIPTORS:
        raise ValueError(f"`descriptor` must be one of {DESCRIPTORS}, got {descriptor!r}")
    return resolve_chunk_size(chunk_size, config.chunk_size)


def resolve_chunk_size(chunk_size: int | None, limit: int) -> int:
    """``chunk_size`` (default: ``limit``), checked: a model segments at most its ``config.chunk_size`` frames
    together."""
    chunk_size = limit if chunk_size is None else chunk_size
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or not 1 <= chunk_size <= limit:
        raise ValueError(
            f"`chunk_size` must be an int in [1, {limit}] (the model segments at most config.chunk_size={limit} "
            f"frames together), got {chunk_size!r}"
        )
    return chunk_size


def stream_trajectory_tokens(
    model,
    processor,
    video,
    *,
    fps: float | None = None,
    max_frames: int | None = None,
    chunk_size: int | None = None,
    tokens_per_trajectory: int | None = None,
    linker: TrajectoryLinker | None = None,
    descriptor: str = "embedding",
) -> Iterator[TrajectoryChunk]:
    """Tokenize ``video`` chunk by chunk and link its trajectories across chunks (see the module docstring).

    Args:
        model ([`TrajTokModel`]): the tokenizer (run in inference mode, on its own device and dtype).
        processor ([`TrajTokVideoProcessor`]): the model's video processor (its frame size and normalisation);
            applied to each chunk without frame sampling.
        video: a video file path (decoded lazily) or an iterable of uint8 ``(H, W, 3)`` frames.
        fps (`float`, *optional*): resample a file to this many frames per second (default: every frame).
        max_frames (`int`, *optional*): stop after this many frames.
        chunk_size (`int`, *optional*): frames per chunk, at most ``model.config.chunk_size`` (its default).
        tokens_per_trajectory (`int`, *optional*): n (default: the model's).
        linker ([`TrajectoryLinker`], *optional*): default ``TrajectoryLinker()``; it is reset first.
        descriptor (`str`, defaults to `"embedding"`): the appearance descriptor the linker compares (one of
            :data:`DESCRIPTORS`).

    Yields:
        [`TrajectoryChunk`] per chunk, in order.
    """
    chunk_size = _check_model_args(model, chunk_size, descriptor)
    num_slots = model.config.num_trajectories

    def tokenize(pixel_values: torch.Tensor) -> ChunkTokens:
        output = model(
            pixel_values.to(model.device),
            tokens_per_trajectory=tokens_per_trajectory,
            output_pixel_features=descriptor in ("features", "embedding"),
            return_dict=True,
        )
        return ChunkTokens(
            tokens=output.trajectory_tokens[0],
            token_mask=output.trajectory_mask[0],
            trajectory_ids=output.trajectory_ids[0] % num_slots,
            descriptors=trajectory_descriptors(model, output, descriptor),
        )

    yield from stream_chunks(tokenize, processor, video, chunk_size, num_slots, fps, max_frames, linker)


@dataclass
class ChunkTokens:
    """What a model gives for one chunk, for :func:`stream_chunks` (S slots, n tokens each).

    Args:
        tokens (`torch.FloatTensor` of shape `(S·n, D)`), token_mask (`torch.BoolTensor` of shape `(S·n,)`): the
            tokens of every slot, slot-major, and which exist.
        trajectory_ids (`torch.LongTensor` of shape `(t, h, w)`): the hard mask, chunk-local ids in ``[0, S)``.
        descriptors (`torch.FloatTensor` of shape `(S, E)`): an appearance descriptor per slot, for the linker.
    """

    tokens: torch.Tensor
    token_mask: torch.Tensor
    trajectory_ids: torch.Tensor
    descriptors: torch.Tensor


def stream_chunks(
    tokenize: Callable[[torch.Tensor], ChunkTokens],
    processor,
    video,
    chunk_size: int,
    num_slots: int,
    fps: float | None = None,
    max_frames: int | None = None,
    linker: TrajectoryLinker | None = None,
) -> Iterator[TrajectoryChunk]:
    """The streaming loop behind :func:`stream_trajectory_tokens`, for any model that tokenizes a chunk into
    trajectory slots: frames → ``processor`` (no frame sampling) → ``tokenize(pixel_values_videos)`` (run in
    inference mode) → the linker → a [`TrajectoryChunk`]. ``processor`` may be a composite processor with a
    ``video_processor``."""
    linker = TrajectoryLinker() if linker is None else linker
    if not isinstance(linker, TrajectoryLinker):
        raise TypeError(f"`linker` must be a TrajectoryLinker, got {type(linker).__name__}")
    linker.reset()
    video_processor = getattr(processor, "video_processor", processor)
    for index, chunk in enumerate(iter_frame_chunks(video, chunk_size, fps=fps, max_frames=max_frames)):
        inputs = video_processor(chunk.frames, do_sample_frames=False, return_geometry=True, return_tensors="pt")
        with torch.inference_mode():
            out = tokenize(inputs["pixel_values_videos"])
        links: ChunkLinks = linker.link(out.trajectory_ids, chunk.start, out.descriptors, num_slots=num_slots)
        yield TrajectoryChunk(
            index=index,
            frame_start=chunk.start,
            frame_end=chunk.start + chunk.frames.shape[0],
            times=chunk.times,
            trajectory_tokens=out.tokens.cpu(),
            trajectory_mask=out.token_mask.cpu(),
            trajectory_ids=links.trajectory_ids,
            global_ids=links.global_ids,
            first_frame=links.first_frame,
            last_frame=links.last_frame,
            pixel_counts=links.pixel_counts,
            new_ids=links.new_ids,
            tokens_per_trajectory=out.tokens.shape[0] // num_slots,
            frames=chunk.frames,
            video_geometry=inputs["video_geometry"][0],
        )


@dataclass
class LongVideoTokens:
    """What :func:`tokenize_long_video` returns.

    Args:
        chunks (`list[dict]`): :meth:`TrajectoryChunk.summary` of every chunk.
        merged ([`MergedTrajectoryTokens`] or None): one token set for the whole video (``merge=True``).
        num_frames (`int`): frames tokenized.
        num_chunk_tokens (`int`): tokens over all chunks, unmerged.
    """

    chunks: list[dict] = field(default_factory=list)
    merged: MergedTrajectoryTokens | None = None
    num_frames: int = 0
    num_chunk_tokens: int = 0

    @property
    def num_global_ids(self) -> int:
        return len({i for chunk in self.chunks for i in chunk["new_ids"]})


def tokenize_long_video(
    model,
    processor,
    video,
    *,
    merge: bool = True,
    callback: Callable[[TrajectoryChunk], None] | None = None,
    **stream_kwargs,
) -> LongVideoTokens:
    """Run :func:`stream_trajectory_tokens` to the end of ``video``: per-chunk summaries, and with ``merge`` the
    merged token set of the whole video. ``callback(chunk)`` sees every :class:`TrajectoryChunk` as it is made
    (e.g. to write overlays or advance a progress bar) — the chunks themselves are not kept."""
    return collect_chunks(stream_trajectory_tokens(model, processor, video, **stream_kwargs), merge, callback)


def collect_chunks(
    chunks: Iterable[TrajectoryChunk], merge: bool = True, callback: Callable[[TrajectoryChunk], None] | None = None
) -> LongVideoTokens:
    """Consume a stream of [`TrajectoryChunk`] into a [`LongVideoTokens`] (see :func:`tokenize_long_video`)."""
    merger = TrajectoryTokenMerger() if merge else None
    result = LongVideoTokens()
    for chunk in chunks:
        if merger is not None:
            merger.update(
                chunk.slot_tokens(), chunk.global_ids, chunk.pixel_counts, chunk.first_frame, chunk.last_frame
            )
        result.chunks.append(chunk.summary())
        result.num_frames = chunk.frame_end
        result.num_chunk_tokens += chunk.num_tokens
        if callback is not None:
            callback(chunk)
    if merger is not None:
        result.merged = merger.result()
    return result
