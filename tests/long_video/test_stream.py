"""Streaming tokenization with a tiny random TrajTok: chunks, exactness against the model on each chunk, global ids,
a static video merged to one chunk's tokens, file inputs, and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.testers import tiny_trajtok_model
from trajtok_hf import TrajTokVideoProcessor
from trajtok_hf.data.synthetic import write_mp4
from trajtok_hf.long_video import (
    DESCRIPTORS,
    TrajectoryLinker,
    iter_frame_chunks,
    stream_trajectory_tokens,
    tokenize_long_video,
)


@pytest.fixture(scope="module")
def model():
    return tiny_trajtok_model()  # chunk_size 4, K = 8


@pytest.fixture(scope="module")
def processor():
    return TrajTokVideoProcessor(size={"height": 32, "width": 32})


def frames(count=10, seed=0, size=(24, 40)):
    rng = np.random.default_rng(seed)
    return list(rng.integers(0, 255, (count, *size, 3), dtype=np.uint8))


def test_chunks_are_the_model_on_each_chunk_with_global_ids(model, processor):
    video = frames()
    chunks = list(stream_trajectory_tokens(model, processor, video))
    assert [(c.frame_start, c.frame_end) for c in chunks] == [(0, 4), (4, 8), (8, 10)]
    for chunk in chunks:
        pixels = processor(
            np.stack(video[chunk.frame_start : chunk.frame_end]), return_tensors="pt", do_sample_frames=False
        )
        with torch.inference_mode():
            alone = model(pixels["pixel_values_videos"])
        torch.testing.assert_close(chunk.trajectory_tokens, alone.trajectory_tokens[0])
        assert torch.equal(chunk.trajectory_mask, alone.trajectory_mask[0])
        local = alone.trajectory_ids[0] % model.config.num_trajectories
        assert torch.equal(chunk.trajectory_ids, chunk.global_ids[local])
        assert chunk.num_trajectories == int(alone.num_trajectories[0])
        assert chunk.frames.shape == (chunk.frame_end - chunk.frame_start, 24, 40, 3)
        assert chunk.original_trajectory_ids(processor).shape == (chunk.frame_end - chunk.frame_start, 24, 40)
    assert chunks[0].new_ids == sorted(set(chunks[0].global_ids[chunks[0].global_ids >= 0].tolist()))


@pytest.mark.parametrize("descriptor", DESCRIPTORS)
def test_a_static_video_merges_to_one_chunks_tokens(model, processor, descriptor):
    still = frames(1)[0]
    result = tokenize_long_video(model, processor, [still] * 12, descriptor=descriptor)
    per_chunk = [c["num_tokens"] for c in result.chunks]
    assert len(per_chunk) == 3 and len(set(per_chunk)) == 1
    assert result.merged.num_tokens == per_chunk[0]
    assert result.num_global_ids == result.chunks[0]["num_trajectories"]
    assert all(c["new_ids"] == [] for c in result.chunks[1:])
    assert result.merged.trajectory_spans[:, 1].max() == 12


def test_merged_tokens_are_the_mean_of_the_linked_chunks(model, processor):
    seen = []
    result = tokenize_long_video(model, processor, frames(8), callback=seen.append, tokens_per_trajectory=2)
    assert [c.index for c in seen] == [0, 1]
    assert result.num_chunk_tokens == sum(c.num_tokens for c in seen)
    merged = result.merged
    first = int(merged.global_ids[0])
    weights, sums = 0, 0
    for chunk in seen:
        slots = chunk.global_ids == first
        counts = chunk.pixel_counts[slots].double()
        sums = sums + (chunk.slot_tokens()[slots].double() * counts[:, None, None]).sum(0)
        weights = weights + counts.sum()
    torch.testing.assert_close(merged.trajectory_tokens[:2], (sums / weights).float())


def test_a_file_is_read_lazily_and_resampled(model, processor, tmp_path):
    video = np.stack(frames(12, size=(32, 32)))
    path = tmp_path / "clip.mp4"
    write_mp4(path, video, fps=8)
    from_file = list(stream_trajectory_tokens(model, processor, path))
    assert [c.frame_end for c in from_file] == [4, 8, 12]
    np.testing.assert_allclose(from_file[1].times, np.arange(4, 8) / 8, atol=1e-3)
    halved = list(stream_trajectory_tokens(model, processor, str(path), fps=4, max_frames=5))
    assert [(c.frame_start, c.frame_end) for c in halved] == [(0, 4), (4, 5)]


def test_a_shorter_chunk_size_and_a_linker_of_ones_own(model, processor):
    linker = TrajectoryLinker(method="overlap", allow_splits=False)
    chunks = list(stream_trajectory_tokens(model, processor, frames(6), chunk_size=2, linker=linker))
    assert len(chunks) == 3 and linker.num_tracks > 0


def test_frame_chunks_hold_one_chunk():
    chunks = list(iter_frame_chunks(iter(frames(5)), 2))
    assert [c.start for c in chunks] == [0, 2, 4] and chunks[-1].frames.shape[0] == 1 and chunks[0].times is None


@pytest.mark.parametrize(
    "video, kwargs, error, match",
    [
        (frames(4), dict(chunk_size=5), ValueError, "chunk_size"),
        (frames(4), dict(descriptor="colour"), ValueError, "descriptor"),
        (frames(4), dict(fps=2), ValueError, "fps"),
        ([], {}, ValueError, "no frames"),
        ([np.zeros((8, 8, 3), np.float32)], {}, ValueError, "frame 0"),
        (frames(1) + frames(1, size=(8, 8)), {}, ValueError, "frame 1"),
        (np.zeros((8, 8, 3), np.uint8), {}, ValueError, "single frame"),
        (5, {}, TypeError, "video"),
        (frames(4), dict(linker="overlap"), TypeError, "linker"),
    ],
)
def test_bad_inputs_are_named(model, processor, video, kwargs, error, match):
    with pytest.raises(error, match=match):
        list(stream_trajectory_tokens(model, processor, video, **kwargs))


def test_the_model_must_be_a_trajtok_model(processor):
    with pytest.raises(TypeError, match="TrajTokModel"):
        list(stream_trajectory_tokens(torch.nn.Linear(2, 2), processor, frames(4)))
