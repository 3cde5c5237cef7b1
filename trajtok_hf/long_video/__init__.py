"""Long videos: streaming tokenization in bounded memory, trajectories linked across chunks, merged token sets.

* :func:`stream_trajectory_tokens` / :func:`tokenize_long_video` — chunk-by-chunk tokenization of a file or frame
  iterator, with global trajectory ids (``stream``);
* :class:`TrajectoryLinker` — the cross-chunk linking (``linking``);
* :class:`TrajectoryTokenMerger` — one token set per video, each token with its time span (``merging``).
"""

from .linking import LINK_METHODS, ChunkLinks, TrajectoryLinker, trajectory_presence
from .merging import MergedTrajectoryTokens, TrajectoryTokenMerger
from .stream import (
    DESCRIPTORS,
    FrameChunk,
    LongVideoTokens,
    TrajectoryChunk,
    iter_frame_chunks,
    stream_trajectory_tokens,
    tokenize_long_video,
)

__all__ = [
    "DESCRIPTORS",
    "LINK_METHODS",
    "ChunkLinks",
    "FrameChunk",
    "LongVideoTokens",
    "MergedTrajectoryTokens",
    "TrajectoryChunk",
    "TrajectoryLinker",
    "TrajectoryTokenMerger",
    "iter_frame_chunks",
    "stream_trajectory_tokens",
    "tokenize_long_video",
    "trajectory_presence",
]
