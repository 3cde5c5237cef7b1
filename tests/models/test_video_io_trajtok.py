"""The lazy frame iterator and the header probe of video_io_trajtok, against the all-frames decoder."""

from __future__ import annotations

import numpy as np
import pytest

from trajtok_hf.data.synthetic import write_mp4
from trajtok_hf.models.video_io_trajtok import iter_video_frames, read_video_metadata, read_video_pyav


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory):
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    write_mp4(path, rng.integers(0, 255, (20, 32, 48, 3), dtype=np.uint8), fps=10)
    return path


def test_every_frame_matches_the_all_frames_decoder(clip_path):
    frames = list(iter_video_frames(clip_path))
    video, metadata = read_video_pyav(clip_path)
    assert [f.index for f in frames] == list(range(20)) == list(range(metadata.total_num_frames))
    assert np.array_equal(np.stack([f.rgb for f in frames]), video)
    np.testing.assert_allclose([f.time for f in frames], np.arange(20) / 10, atol=1e-3)


@pytest.mark.parametrize(
    "fps, max_frames, indices",
    [(5, None, list(range(0, 20, 2))), (2.5, None, [0, 4, 8, 12, 16]), (40, None, list(range(20))), (5, 3, [0, 2, 4])],
)
def test_resampling_keeps_the_first_frame_at_or_after_each_tick(clip_path, fps, max_frames, indices):
    assert [f.index for f in iter_video_frames(clip_path, fps=fps, max_frames=max_frames)] == indices


def test_the_header_probe_needs_no_decoding(clip_path):
    metadata = read_video_metadata(clip_path)
    assert (metadata.total_num_frames, metadata.fps, metadata.height, metadata.width) == (20, 10.0, 32, 48)


@pytest.mark.parametrize(
    "kwargs, match", [(dict(fps=0), "fps"), (dict(fps="8"), "fps"), (dict(max_frames=0), "max_frames")]
)
def test_bad_arguments_are_named(clip_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        next(iter_video_frames(clip_path, **kwargs))


def test_missing_and_unreadable_files_are_named(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        next(iter_video_frames(tmp_path / "none.mp4"))
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    with pytest.raises(ValueError, match="bad.mp4"):
        next(iter_video_frames(tmp_path / "bad.mp4"))
    with pytest.raises(ValueError, match="does not exist"):
        read_video_metadata(tmp_path / "none.mp4")
