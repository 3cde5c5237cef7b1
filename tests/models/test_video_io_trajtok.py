"""The lazy frame iterator and the header probe of video_io_trajtok, against the all-frames decoder."""

from __future__ import annotations

import numpy as np
import pytest

from trajtok_hf.data.synthetic import write_mp4
from trajtok_hf.models.video_io_trajtok import (
    iter_video_frames,
    read_video_metadata,
    read_video_pyav,
    uniform_frame_indices,
)


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


def _sample(num_frames):
    return lambda metadata: uniform_frame_indices(metadata.total_num_frames, num_frames)


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview], ids=["bytes", "bytearray", "memoryview"])
@pytest.mark.parametrize("num_frames", [None, 7])
def test_the_file_bytes_decode_like_the_file(clip_path, wrap, num_frames):
    fn = None if num_frames is None else _sample(num_frames)
    video, metadata = read_video_pyav(clip_path, fn)
    from_bytes, bytes_metadata = read_video_pyav(wrap(clip_path.read_bytes()), fn, name="shard-0:clip")
    assert np.array_equal(from_bytes, video)
    for field in ("total_num_frames", "fps", "height", "width", "frames_indices"):
        assert getattr(bytes_metadata, field) == getattr(metadata, field), field


@pytest.mark.parametrize(
    "data, name, match",
    [
        (b"not a video", "shard-00003-of-00008.parquet:clip_42", r"could not open video file 'shard-00003-of-00008"),
        (b"not a video", None, "'<bytes>'"),
        (b"", "empty:clip", "'empty:clip'"),
    ],
)
def test_undecodable_bytes_are_named(data, name, match):
    with pytest.raises(ValueError, match=match):
        read_video_pyav(data, name=name)


def test_truncated_bytes_are_named(clip_path):
    data = clip_path.read_bytes()
    for size in (len(data) // 2, len(data) * 9 // 10):
        with pytest.raises(ValueError, match="'shard:truncated'"):
            read_video_pyav(data[:size], _sample(4), name="shard:truncated")


def test_a_name_replaces_the_path_in_errors(tmp_path):
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    with pytest.raises(ValueError, match="could not open video file 'clip 7 of the manifest'") as error:
        read_video_pyav(tmp_path / "bad.mp4", name="clip 7 of the manifest")
    assert "bad.mp4" not in str(error.value).split(":")[0]
    with pytest.raises(TypeError, match="`name`"):
        read_video_pyav(b"not a video", name=3)
