"""Long videos: streaming tokenization in bounded memory, trajectories linked across chunks, merged token sets.

* :func:`stream_trajectory_tokens` / :func:`tokenize_long_video` — chunk-by-chunk tokenization of a file or frame
  iterator, with global trajectory ids (``stream``);
* :class:`TrajectoryLinker` — the cross-chunk linking (``linking``);
* :class:`TrajectoryTokenMerger` — one token set per video, each token with its time span (``merging``);
* :func:`trajvit2_long_video_features` / :func:`trajvlm_long_video_embeds` — one embedding, or one prompt's video
  tokens, per video of any length (``models``).
"""

from .linking import LINK_METHODS, ChunkLinks, TrajectoryLinker, trajectory_presence
from .merging import MergedTrajectoryTokens, TrajectoryTokenMerger
from .models import trajvit2_long_video_features, trajvlm_long_video_embeds
from .stream import (
    DESCRIPTORS,
    ChunkTokens,
    FrameChunk,
    LongVideoTokens,
    TrajectoryChunk,
    collect_chunks,
    iter_frame_chunks,
    stream_chunks,
    stream_trajectory_tokens,
    tokenize_long_video,
    trajectory_descriptors,
)

__all__ = [
    "DESCRIPTORS",
    "LINK_METHODS",
    "ChunkLinks",
    "ChunkTokens",
    "FrameChunk",
    "LongVideoTokens",
    "MergedTrajectoryTokens",
    "TrajectoryChunk",
    "TrajectoryLinker",
    "TrajectoryTokenMerger",
    "collect_chunks",
    "iter_frame_chunks",
    "stream_chunks",
    "stream_trajectory_tokens",
    "tokenize_long_video",
    "trajectory_descriptors",
    "trajectory_presence",
    "trajvit2_long_video_features",
    "trajvlm_long_video_embeds",
]
