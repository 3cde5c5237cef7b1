"""Local video folders: mp4 round trip, uniform sampling, missing files, corrupt files, masks."""

import csv
import json
import shutil
import warnings

import numpy as np
import pytest
import torch

from trajtok_hf.data import (
    SyntheticVideoConfig,
    VideoTextCollator,
    default_video_codec,
    generate_clip,
    get_decoder,
    load_masks,
    load_video_text_dataset,
    read_video,
    sample_frame_indices,
    write_mp4,
    write_video_folder,
)

CFG = SyntheticVideoConfig(num_frames=8, height=64, width=64, max_objects=2)
NUM_CLIPS = 3


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    write_video_folder(root, NUM_CLIPS, CFG, seed=0, fps=8)
    return root


@pytest.fixture
def folder_copy(folder, tmp_path):
    target = tmp_path / "videos"
    shutil.copytree(folder, target)
    return target


def _rows(root):
    return [json.loads(line) for line in (root / "metadata.jsonl").read_text().splitlines()]


def _write_rows(root, rows):
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_codec_is_available():
    assert default_video_codec() in ("libx264", "mpeg4")


def test_folder_layout(folder):
    rows = _rows(folder)
    assert len(rows) == NUM_CLIPS
    for i, row in enumerate(rows):
        assert row["file_name"] == f"clip_{i:06d}.mp4" and (folder / row["file_name"]).is_file()
        assert (folder / row["masks_file"]).is_file()
        assert row["caption"] == generate_clip(CFG, 0, i)["caption"]


def test_mp4_round_trip(folder):
    ds = load_video_text_dataset(folder, num_frames=CFG.num_frames)
    assert len(ds) == NUM_CLIPS
    for i in range(NUM_CLIPS):
        item, clip = ds[i], generate_clip(CFG, 0, i)
        assert item["decode_error"] is None
        assert item["video"].dtype == np.uint8 and item["video"].shape == clip["video"].shape
        # lossy yuv420p: small mean error, exact ground truth
        assert np.abs(item["video"].astype(np.int16) - clip["video"]).mean() < 6
        np.testing.assert_array_equal(item["frame_indices"], np.arange(CFG.num_frames))
        np.testing.assert_array_equal(item["segmentation_labels"], clip["segmentation_labels"])
        assert item["caption"] == clip["caption"] and item["captions"] == [clip["caption"]]
        assert item["objects"] == clip["objects"]  # extra metadata columns pass through


def test_uniform_sampling_keeps_masks_aligned(folder):
    ds = load_video_text_dataset(folder, num_frames=4)
    item, clip = ds[1], generate_clip(CFG, 0, 1)
    np.testing.assert_array_equal(item["frame_indices"], [1, 3, 5, 7])
    assert item["video"].shape == (4, 64, 64, 3)
    np.testing.assert_array_equal(item["segmentation_labels"], clip["segmentation_labels"][[1, 3, 5, 7]])
    # more frames than the video has: frames repeat, count is exact
    item = load_video_text_dataset(folder, num_frames=12)[0]
    assert item["video"].shape[0] == 12 and (np.diff(item["frame_indices"]) >= 0).all()


def test_sample_frame_indices():
    np.testing.assert_array_equal(sample_frame_indices(100, 4), [12, 37, 62, 87])
    np.testing.assert_array_equal(sample_frame_indices(3, 5), [0, 0, 1, 2, 2])
    with pytest.raises(ValueError, match="total_frames"):
        sample_frame_indices(0, 4)


def test_read_video_and_mask_resize(folder):
    frames, indices, total = read_video(folder / "clip_000000.mp4", None)
    assert frames.shape == (8, 64, 64, 3) and total == 8
    ds = load_video_text_dataset(folder, num_frames=8, mask_size=(8, 8))
    assert ds[0]["segmentation_labels"].shape == (8, 8, 8)


def test_transform_gets_the_decoded_clips(folder):
    def to_pixels(videos):
        return {
            "pixel_values_videos": torch.stack([torch.from_numpy(v).permute(0, 3, 1, 2).float() / 255 for v in videos])
        }

    ds = load_video_text_dataset(folder, num_frames=4, transform=to_pixels)
    batch = ds[:2]
    assert "video" not in batch
    assert [tuple(p.shape) for p in batch["pixel_values_videos"]] == [(4, 3, 64, 64)] * 2
    collated = VideoTextCollator()([ds[i] for i in range(NUM_CLIPS)])
    assert collated["pixel_values_videos"].shape == (NUM_CLIPS, 4, 3, 64, 64)


def test_missing_file_is_reported_with_its_line_number(folder_copy):
    rows = _rows(folder_copy)
    rows.insert(1, {"file_name": "does_not_exist.mp4", "caption": "ghost"})  # becomes line 2
    rows.append({"file_name": rows[0]["file_name"], "caption": "x", "masks_file": "nope.npz"})  # line 5
    _write_rows(folder_copy, rows)
    with pytest.raises(ValueError, match=r"line 2: .*does_not_exist\.mp4.*line 5: .*nope\.npz"):
        load_video_text_dataset(folder_copy)
    with pytest.warns(UserWarning, match=r"skipped 2 row\(s\).*line 2.*line 5"):
        ds = load_video_text_dataset(folder_copy, skip_missing=True)
    assert len(ds) == NUM_CLIPS and ds["line_number"] == [1, 3, 4]


def test_csv_metadata_with_caption_lists(folder_copy):
    (folder_copy / "metadata.jsonl").unlink()
    with (folder_copy / "metadata.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file_name", "captions", "video_id"])
        writer.writerow(["clip_000000.mp4", json.dumps(["first caption", "second caption"]), "v0"])
        writer.writerow(["clip_000001.mp4", "just one caption", "v1"])
        writer.writerow(["missing.mp4", "lost", "v2"])  # line 4 (header is line 1)
    with pytest.raises(ValueError, match="line 4"):
        load_video_text_dataset(folder_copy)
    with pytest.warns(UserWarning, match="line 4"):
        ds = load_video_text_dataset(folder_copy, num_frames=2, skip_missing=True)
    assert ds[0]["captions"] == ["first caption", "second caption"] and ds[0]["caption"] == "first caption"
    assert ds[1]["captions"] == ["just one caption"] and ds[1]["video_id"] == "v1"
    assert "segmentation_labels" not in ds[0]  # no masks column


@pytest.mark.parametrize(
    "row, match",
    [
        ({"caption": "no file"}, "line 1: missing or empty `file_name`"),
        ({"file_name": "clip_000000.mp4"}, "line 1: needs a `caption` or `captions`"),
        ({"file_name": "clip_000000.mp4", "captions": "not a list"}, "line 1: `captions` must be"),
    ],
)
def test_bad_metadata_rows(folder_copy, row, match):
    _write_rows(folder_copy, [row])
    with pytest.raises(ValueError, match=match):
        load_video_text_dataset(folder_copy)


def test_bad_paths(tmp_path):
    with pytest.raises(ValueError, match="path"):
        load_video_text_dataset(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="metadata"):
        load_video_text_dataset(tmp_path)  # no metadata file
    (tmp_path / "metadata.jsonl").write_text("{not json}\n")
    with pytest.raises(ValueError, match="line 1: invalid JSON"):
        load_video_text_dataset(tmp_path)
    with pytest.raises(ValueError, match="num_frames"):
        load_video_text_dataset(tmp_path, num_frames=0)


def test_corrupt_files_are_skipped_and_counted(folder_copy):
    rows = _rows(folder_copy)
    (folder_copy / "garbage.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
    good = (folder_copy / rows[0]["file_name"]).read_bytes()
    (folder_copy / "truncated.mp4").write_bytes(good[: len(good) // 2])
    rows += [{"file_name": "garbage.mp4", "caption": "noise"}, {"file_name": "truncated.mp4", "caption": "half"}]
    _write_rows(folder_copy, rows)

    # loading decodes nothing, so it neither fails nor warns
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = load_video_text_dataset(folder_copy, num_frames=4)
    decoder = get_decoder(ds)
    assert decoder is not None and decoder.num_failed == 0

    with pytest.warns(RuntimeWarning, match="garbage.mp4"):
        item = ds[NUM_CLIPS]
    assert item["video"] is None and item["decode_error"]
    assert decoder.num_failed == 1

    # a full epoch through a DataLoader: no crash, failed clips dropped and counted
    collator = VideoTextCollator()
    loader = torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=collator)
    seen = 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for batch in loader:
            if batch is None:
                continue
            seen += batch["videos"].shape[0]
            assert batch["videos"].dtype == torch.uint8
            assert batch["segmentation_labels"].shape[0] == batch["videos"].shape[0]
    assert seen == NUM_CLIPS
    assert collator.num_dropped == 2 and decoder.num_failed == 3
    assert {str(path).rsplit("/", 1)[-1] for path, _ in decoder.failures} == {"garbage.mp4", "truncated.mp4"}
    assert any("dropped" in str(w.message) for w in caught)


def test_load_masks_formats(tmp_path):
    labels = np.arange(2 * 4 * 4).reshape(2, 4, 4) % 3
    np.savez(tmp_path / "a.npz", segmentation_labels=labels.astype(np.int16))
    np.testing.assert_array_equal(load_masks(tmp_path / "a.npz"), labels)
    np.savez(tmp_path / "b.npz", segmentation=np.repeat(np.repeat(labels, 4, 1), 4, 2))
    np.testing.assert_array_equal(load_masks(tmp_path / "b.npz", mask_stride=4), labels)
    instance = np.repeat(np.repeat(labels + 1, 4, 1), 4, 2)  # instance ids 1..3, same in both frames
    graph = np.array([[1, 1], [2, 2], [3, 3]])
    np.savez(tmp_path / "c.npz", instance_masks=instance, trajectory_graph=graph)
    np.testing.assert_array_equal(load_masks(tmp_path / "c.npz"), labels)
    np.savez(tmp_path / "d.npz", something=labels)
    with pytest.raises(ValueError, match="segmentation_labels"):
        load_masks(tmp_path / "d.npz")


def test_write_mp4_validation(tmp_path):
    with pytest.raises(ValueError, match="video"):
        write_mp4(tmp_path / "x.mp4", np.zeros((2, 8, 8, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="even"):
        write_mp4(tmp_path / "x.mp4", np.zeros((2, 9, 8, 3), dtype=np.uint8))


def test_truncated_faststart_mp4(tmp_path):
    # Index first, data cut: the header promises 16 frames. A short tail is resampled over the decodable
    # frames; losing most of the file is a failure, not a clip of one repeated frame.
    clip = generate_clip(SyntheticVideoConfig(num_frames=16, height=64, width=64), 0, 0)
    write_mp4(tmp_path / "full.mp4", clip["video"], faststart=True)
    data = (tmp_path / "full.mp4").read_bytes()
    (tmp_path / "tail.mp4").write_bytes(data[: int(len(data) * 0.9)])
    (tmp_path / "most.mp4").write_bytes(data[: int(len(data) * 0.6)])
    frames, indices, total = read_video(tmp_path / "tail.mp4", 8)
    assert frames.shape == (8, 64, 64, 3) and total >= 8 and indices.max() < total
    with pytest.raises(ValueError, match="truncated video|could not decode|no video frames"):
        read_video(tmp_path / "most.mp4", 8)


@pytest.mark.parametrize(
    "cut, error",
    [(1.0, None), (0.9, None), (0.6, "truncated video|could not decode|no video frames|empty")],
    ids=["whole", "short tail", "most lost"],
)
def test_read_video_and_the_processor_share_one_decoder(tmp_path, cut, error):
    """The dataset and TrajTokVideoProcessor read files the same way: the same frames, the same indices, the same
    resampling of a short tail and the same refusal of a file that lost most of its frames."""
    from trajtok_hf import TrajTokVideoProcessor

    clip = generate_clip(SyntheticVideoConfig(num_frames=16, height=64, width=64), 0, 0)
    write_mp4(tmp_path / "full.mp4", clip["video"], faststart=True)
    data = (tmp_path / "full.mp4").read_bytes()
    path = tmp_path / "clip.mp4"
    path.write_bytes(data[: int(len(data) * cut)])
    processor = TrajTokVideoProcessor(num_frames=8)
    if error:
        with pytest.raises(ValueError, match=error):
            read_video(path, 8)
        with pytest.raises(ValueError, match=rf"`videos`: .*({error})"):
            processor(path)
        return
    frames, indices, total = read_video(path, 8)
    fetched, metadata = processor.fetch_videos(str(path), sample_indices_fn=processor.sample_frames)
    np.testing.assert_array_equal(fetched, frames)
    assert metadata.frames_indices == indices.tolist() and metadata.total_num_frames == total
    out = processor(path, return_tensors="pt", return_metadata=True)
    assert out["video_metadata"][0].frames_indices == indices.tolist()
