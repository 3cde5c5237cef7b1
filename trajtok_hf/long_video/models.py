"""Long videos through TrajViT2 and TrajVLM: one embedding, or one prompt, per video of any length.

Both models see a clip as trajectory tokens; for a long video they see the merged token set of
:mod:`trajtok_hf.long_video.merging` instead, built chunk by chunk in bounded memory:

* :func:`trajvit2_long_video_features` streams the TrajViT2's own TrajTok tokenizer over the video, links and merges
  the trajectory tokens, and encodes the merged set with their time spans (``get_video_features(trajectory_tokens=,
  trajectory_mask=, trajectory_spans=)``): one video embedding, whatever the length.
* :func:`trajvlm_long_video_embeds` streams TrajVLM's vision tower, segmenter and connector over the video (its
  ``get_video_features`` on each chunk), links the chunks' trajectories through the segmenter's hard mask on the
  tower's patch grid, and merges the LLM-space tokens. The result, ordered by the start of each trajectory's span
  (time order for the LLM), goes to ``generate(..., video_embeds=[tokens])`` with one ``<video>`` in the prompt.

Neither path exists in the official release, whose models see one clip of a fixed number of frames.
"""

from __future__ import annotations

import torch

from .linking import TrajectoryLinker
from .merging import MergedTrajectoryTokens
from .stream import (
    ChunkTokens,
    LongVideoTokens,
    collect_chunks,
    resolve_chunk_size,
    stream_chunks,
    stream_trajectory_tokens,
)

__all__ = ["trajvit2_long_video_features", "trajvlm_long_video_embeds"]


def _tokenizer_of(model):
    vision = getattr(model, "vision_model", None)
    tokenizer = getattr(vision, "tokenizer", None)
    if tokenizer is None or not hasattr(getattr(tokenizer, "config", None), "num_trajectories"):
        raise TypeError(
            f"`model` must be a TrajViT2Model or TrajViT2VisionModel with the TrajTok tokenizer, got "
            f"{type(model).__name__}" + (" with vision_tokenizer='vit3d'" if tokenizer is not None else "")
        )
    return tokenizer


def trajvit2_long_video_features(model, processor, video, **stream_kwargs) -> tuple[object, LongVideoTokens]:
    """The video embedding of a video of any length, from its merged trajectory tokens.

    Args:
        model ([`TrajViT2Model`] or [`TrajViT2VisionModel`]): with the TrajTok tokenizer.
        processor: its [`TrajViT2Processor`] (or the video processor alone).
        video: a file path or an iterable of uint8 ``(H, W, 3)`` frames.
        **stream_kwargs: ``fps``, ``max_frames``, ``chunk_size``, ``linker``, ``descriptor`` of
            :func:`~trajtok_hf.long_video.stream_trajectory_tokens`.

    Returns:
        The model's output on the merged tokens (for a [`TrajViT2Model`], `get_video_features`: `pooler_output` is
        the projected embedding `(1, projection_dim)`) and the [`LongVideoTokens`] (per-chunk summaries, the merged
        set).
    """
    tokenizer = _tokenizer_of(model)
    video_processor = getattr(processor, "video_processor", processor)
    chunks = stream_trajectory_tokens(tokenizer, video_processor, video, **stream_kwargs)
    tokens = collect_chunks(chunks, merge=True)
    inputs = {k: v.to(model.device) for k, v in tokens.merged.model_inputs().items()}
    with torch.inference_mode():
        if hasattr(model, "get_video_features"):
            output = model.get_video_features(**inputs, return_dict=True)
        else:
            output = model(**inputs, return_dict=True)
    return output, tokens


def trajvlm_long_video_embeds(
    model,
    processor,
    video,
    *,
    fps: float | None = None,
    max_frames: int | None = None,
    chunk_size: int | None = None,
    linker: TrajectoryLinker | None = None,
) -> tuple[MergedTrajectoryTokens, LongVideoTokens]:
    """The LLM tokens of a video of any length: TrajVLM's video tokens of each chunk, linked and merged.

    Args:
        model ([`TrajVLMForConditionalGeneration`] or [`TrajVLMModel`]): with the trajectory connector.
        processor: its [`TrajVLMProcessor`] (or the video processor alone).
        video: a file path or an iterable of uint8 ``(H, W, 3)`` frames.
        fps, max_frames: frame selection of a file (see :func:`~trajtok_hf.long_video.iter_frame_chunks`).
        chunk_size (`int`, *optional*): frames per chunk, at most (and by default) ``config.chunk_size``.
        linker ([`TrajectoryLinker`], *optional*): the descriptor it compares is the mean of a trajectory's LLM
            tokens.

    Returns:
        The merged tokens (`trajectory_tokens` `(M·n, D_lm)` in time order: pass `[merged.trajectory_tokens]` as
        `video_embeds`) and the [`LongVideoTokens`] summaries.
    """
    config = getattr(model, "config", None)
    if getattr(config, "connector_type", None) != "trajtok":
        raise TypeError(
            "`model` must be a TrajVLM with connector_type='trajtok' (patch pooling has no trajectories to link), got "
            f"{type(model).__name__}" + (f" with connector_type={config.connector_type!r}" if config else "")
        )
    chunk_size = resolve_chunk_size(chunk_size, config.chunk_size)
    num_slots = config.trajtok_config.num_trajectories
    n = config.tokens_per_trajectory
    device = model.device

    def tokenize(pixel_values: torch.Tensor) -> ChunkTokens:
        output = model.get_video_features(pixel_values.to(device), return_dict=True)
        mask = output.token_mask[0]
        tokens = output.pooler_output[0].new_zeros(mask.numel(), output.pooler_output[0].shape[-1])
        tokens[mask] = output.pooler_output[0]
        return ChunkTokens(
            tokens=tokens,
            token_mask=mask,
            trajectory_ids=output.trajectory_ids[0] % num_slots,
            descriptors=tokens.view(num_slots, n, -1).mean(dim=1),
        )

    chunks = stream_chunks(tokenize, processor, video, chunk_size, num_slots, fps, max_frames, linker)
    tokens = collect_chunks(chunks, merge=True)
    return tokens.merged, tokens
