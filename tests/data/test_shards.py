"""Sharded video data: Parquet / WebDataset round trips, deterministic order, split by node and worker, exact
resume, corrupt clips and pickled masks, argument errors, the conversion script and the loading benchmark."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from testers import load_file_module, save_tiny_trajvit2_folder
from torchdata.stateful_dataloader import StatefulDataLoader

from trajtok_hf.data import (
    INDEX_FILE,
    ShardClipDecoder,
    SyntheticVideoConfig,
    VideoTextCollator,
    load_video_shards,
    load_video_text_dataset,
    shard_dataloader,
    write_video_folder,
    write_video_shards,
)
from trajtok_hf.training.serialization import from_json, to_json

ROOT = Path(__file__).resolve().parents[2]
CFG = SyntheticVideoConfig(num_frames=4, height=32, width=32, max_objects=2)
NUM_CLIPS = 12
CLIPS_PER_SHARD = 3  # 4 shards: a multiple of 2 nodes
FORMATS = ("parquet", "webdataset")
BAD_CLIPS = {"clip_000004": "garbage", "clip_000007": "truncated"}
PICKLED_CLIP = "clip_000005"

# torchdata's StatefulDataLoader calls a deprecated torch function when it is built.
pytestmark = pytest.mark.filterwarnings("ignore:'set_vital' is deprecated:UserWarning")


def _keys(rows):
    """collate_fn of the loaders here: the keys of a batch (module level: DataLoader workers pickle it)."""
    return [row["key"] for row in rows]


def _rows(root):
    return [json.loads(line) for line in (root / "metadata.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """12 clips: one with two captions, one with .npy masks, one without masks, all with an extra column."""
    root = tmp_path_factory.mktemp("videos")
    write_video_folder(root, NUM_CLIPS, CFG, seed=0, fps=8)
    rows = _rows(root)
    rows[1]["captions"] = [rows[1].pop("caption"), "another caption"]
    with np.load(root / rows[2]["masks_file"]) as data:
        np.save(root / "clip_000002.npy", data["segmentation_labels"])
    rows[2]["masks_file"] = "clip_000002.npy"
    del rows[3]["masks_file"]
    rows[0]["source"] = {"camera": "synthetic", "tags": ["a", "b"]}  # a column present in one row only
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


@pytest.fixture(scope="module")
def shards(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    return {
        fmt: (
            out / fmt,
            write_video_shards(
                folder, out / fmt, format=fmt, clips_per_shard=CLIPS_PER_SHARD, rows_per_group=2, seed=0
            ),
        )
        for fmt in FORMATS
    }


@pytest.fixture(scope="module")
def bad_shards(folder, tmp_path_factory):
    """The folder with a garbage clip, a truncated clip and a pickled (object-array) masks file, as Parquet and
    WebDataset shards of 6 clips."""
    root = tmp_path_factory.mktemp("bad_videos")
    shutil.copytree(folder, root, dirs_exist_ok=True)
    (root / "clip_000004.mp4").write_bytes(b"\x00\x01 not a video at all" * 50)
    data = (root / "clip_000007.mp4").read_bytes()
    (root / "clip_000007.mp4").write_bytes(data[: len(data) // 2])
    np.save(root / "pickled.npy", np.array([{"boom": 1}, None], dtype=object), allow_pickle=True)
    rows = _rows(root)
    rows[5]["masks_file"] = "pickled.npy"
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path_factory.mktemp("bad_shards")
    for fmt in FORMATS:
        write_video_shards(root, out / fmt, format=fmt, clips_per_shard=6)
    return {fmt: out / fmt for fmt in FORMATS}


def _source(folder):
    """key → the folder's metadata row (the keys are the file names without suffix)."""
    return {Path(r["file_name"]).stem: r for r in _rows(folder)}


# --------------------------------------------------------------------------------------------------------------
# Round trip


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_clip_round_trips_once_with_its_bytes_captions_masks_and_metadata(folder, shards, fmt):
    path, index = shards[fmt]
    assert index["format"] == fmt and index["num_clips"] == NUM_CLIPS and index["num_shards"] == 4
    assert [s["num_clips"] for s in index["shards"]] == [CLIPS_PER_SHARD] * 4
    assert json.loads((path / INDEX_FILE).read_text()) == index
    for shard in index["shards"]:
        data = (path / shard["file"]).read_bytes()
        assert shard["num_bytes"] == len(data) and shard["sha256"] == hashlib.sha256(data).hexdigest()
    assert sorted(os.listdir(path)) == sorted([INDEX_FILE] + [s["file"] for s in index["shards"]])

    rows = list(load_video_shards(path))
    source = _source(folder)
    assert sorted(r["key"] for r in rows) == sorted(source)  # every clip exactly once
    for row in rows:
        meta = source[row["key"]]
        assert row["video"] == (folder / meta["file_name"]).read_bytes() and row["video_format"] == "mp4"
        assert row["captions"] == meta.get("captions", [meta.get("caption")])
        assert row["caption"] == row["captions"][0]
        if "masks_file" in meta:
            assert row["masks"] == (folder / meta["masks_file"]).read_bytes()
            assert row["masks_format"] == Path(meta["masks_file"]).suffix[1:]
        else:
            assert row["masks"] is None and row["masks_format"] is None
        extras = {k: v for k, v in meta.items() if k not in ("file_name", "caption", "captions", "masks_file")}
        assert json.loads(row["metadata"]) == extras
        assert row["shard"] in {s["file"] for s in index["shards"]}


@pytest.mark.parametrize("fmt", FORMATS)
def test_decoded_shards_equal_the_decoded_folder(folder, shards, fmt):
    folder_dataset = load_video_text_dataset(folder, num_frames=3)
    reference = {Path(folder_dataset[i]["file_name"]).stem: folder_dataset[i] for i in range(len(folder_dataset))}
    dataset = load_video_shards(shards[fmt][0])
    decoder = ShardClipDecoder(num_frames=3, mask_size=(4, 4))
    decoded = list(dataset.map(decoder, batched=True, batch_size=5, remove_columns=list(decoder.RAW_COLUMNS)))
    assert len(decoded) == NUM_CLIPS and decoder.num_failed == 0
    for row in decoded:
        assert "masks" not in row and row["decode_error"] is None
        ref = reference[row["key"]]
        np.testing.assert_array_equal(row["video"], ref["video"])
        np.testing.assert_array_equal(row["frame_indices"], ref["frame_indices"])
        if ref.get("segmentation_labels") is None:
            assert row.get("segmentation_labels") is None
        else:  # the same labels at the same frames, resized to mask_size
            assert row["segmentation_labels"].shape == (3, 4, 4)
            step = ref["segmentation_labels"].shape[-1] // 4
            np.testing.assert_array_equal(
                row["segmentation_labels"], ref["segmentation_labels"][:, step // 2 :: step, step // 2 :: step]
            )
    # One row at a time gives the same, without the raw bytes.
    one = next(iter(dataset))
    out = decoder(one)
    assert set(out) >= {"key", "video", "frame_indices", "decode_error"} and "masks" not in out
    np.testing.assert_array_equal(out["video"], reference[one["key"]]["video"])


# --------------------------------------------------------------------------------------------------------------
# Order


def _order(path, **kwargs):
    return [(r["shard"], r["key"]) for r in load_video_shards(path, **kwargs)]


def _shard_order(order):
    return list(dict.fromkeys(shard for shard, _ in order))


def _within(order):
    return {shard: [key for s, key in order if s == shard] for shard in _shard_order(order)}


@pytest.mark.parametrize("fmt", FORMATS)
def test_order_is_a_function_of_seed_and_epoch(shards, fmt):
    path = shards[fmt][0]
    base = _order(path, seed=0, epoch=0)
    assert _order(path, seed=0, epoch=0) == base  # deterministic
    for other in (dict(seed=0, epoch=1), dict(seed=1, epoch=0)):
        changed = _order(path, **other)
        assert sorted(changed) == sorted(base) and changed != base
        assert _shard_order(changed) != _shard_order(base)
        assert any(_within(changed)[shard] != keys for shard, keys in _within(base).items())
    # The shard files listed explicitly: the same clips.
    files = sorted(str(p) for p in path.iterdir() if p.name != INDEX_FILE)
    assert sorted(_order(files)) == sorted(base)


def test_parquet_rows_are_shuffled_within_one_row_group_at_a_time(shards):
    path = shards["parquet"][0]
    groups = {}
    for shard in path.glob("*.parquet"):
        parquet = pq.ParquetFile(shard)
        assert parquet.num_row_groups == 2  # 3 clips in row groups of 2
        for g in range(parquet.num_row_groups):
            for key in parquet.read_row_group(g, columns=["key"]).column("key").to_pylist():
                groups[key] = (shard.name, g)
    order = [groups[key] for _, key in _order(path, seed=3, epoch=2)]
    runs = [group for i, group in enumerate(order) if i == 0 or group != order[i - 1]]
    assert len(runs) == len(set(runs)) == 8  # each row group's rows come out together


# --------------------------------------------------------------------------------------------------------------
# Split by node and worker, resume


@pytest.mark.parametrize("num_workers", [0, 1, 2])
@pytest.mark.parametrize("fmt", FORMATS)
def test_two_nodes_see_every_clip_exactly_once(shards, fmt, num_workers):
    path = shards[fmt][0]
    seen = []
    for rank in range(2):
        dataset = load_video_shards(path, seed=1, epoch=3, rank=rank, world_size=2)
        loader = StatefulDataLoader(dataset, batch_size=2, collate_fn=_keys, num_workers=num_workers)
        seen.append([key for batch in loader for key in batch])
    assert len(seen[0]) == len(seen[1]) == NUM_CLIPS // 2
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == sorted(_source_keys(shards))


@pytest.mark.parametrize("fmt", FORMATS)
def test_split_by_example_gives_the_global_batches_of_one_node(shards, fmt):
    """Two nodes with batches of 2 see together, step by step, the batches of 4 that one node sees."""
    path = shards[fmt][0]

    def batches(rank, world_size, batch_size):
        loader = shard_dataloader(
            path,
            batch_size=batch_size,
            collate_fn=_keys,
            num_frames=2,
            seed=2,
            epoch=1,
            rank=rank,
            world_size=world_size,
            split_by="example",
        )
        return list(loader)

    single = batches(0, 1, 4)
    assert sorted(key for batch in single for key in batch) == sorted(_source_keys(shards))
    pairs = zip(batches(0, 2, 2), batches(1, 2, 2), strict=True)
    assert [sorted(a + b) for a, b in pairs] == [sorted(batch) for batch in single]


def _source_keys(shards):
    return [key for _, key in _order(shards["parquet"][0])]


def test_shards_not_a_multiple_of_world_size_warn_and_still_split_exactly(shards):
    path = shards["parquet"][0]
    seen = []
    for rank in range(3):
        with pytest.warns(UserWarning, match="4 shards do not split evenly over world_size=3"):
            dataset = load_video_shards(path, rank=rank, world_size=3)
        seen.extend(row["key"] for row in dataset)
    assert sorted(seen) == sorted(_source_keys(shards))


@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize("fmt", FORMATS)
def test_resume_yields_exactly_the_remaining_batches(shards, fmt, num_workers):
    path = shards[fmt][0]

    def make():
        return shard_dataloader(
            path, batch_size=2, collate_fn=_keys, num_workers=num_workers, num_frames=2, seed=5, epoch=1
        )

    full = list(make())
    assert sorted(k for batch in full for k in batch) == sorted(_source_keys(shards))
    loader = make()
    iterator = iter(loader)
    first = [next(iterator) for _ in range(3)]
    tensors = {}  # as ShardedCheckpointManager stores it: JSON (+ safetensors for tensors, none here)
    state = from_json(json.loads(json.dumps(to_json(loader.state_dict(), tensors, "data"))), tensors, set())
    del iterator
    resumed = make()
    resumed.load_state_dict(state)
    assert first + list(resumed) == full


# --------------------------------------------------------------------------------------------------------------
# Bad data


@pytest.mark.parametrize("fmt", FORMATS)
def test_corrupt_clips_are_skipped_counted_and_named(bad_shards, fmt):
    rows = list(load_video_shards(bad_shards[fmt]))
    decoder = ShardClipDecoder(num_frames=2)
    with pytest.warns(RuntimeWarning) as caught:
        out = decoder({k: [r[k] for r in rows] for k in rows[0]})
    failed = {key: error for key, error in zip(out["key"], out["decode_error"], strict=True) if error}
    assert set(failed) == set(BAD_CLIPS) | {PICKLED_CLIP} and decoder.num_failed == 3
    for key, video in zip(out["key"], out["video"], strict=True):
        assert (video is None) == (key in failed)
    messages = [str(w.message) for w in caught]
    for key in failed:
        shard = next(r["shard"] for r in rows if r["key"] == key)
        assert any(f"{shard}:{key}" in message for message in messages), key
    assert {name.split(":")[1] for name, _ in decoder.failures} == set(failed)


def test_masks_are_never_unpickled(bad_shards):
    rows = [r for r in load_video_shards(bad_shards["parquet"]) if r["key"] == PICKLED_CLIP]
    decoder = ShardClipDecoder(num_frames=2, warn=False)
    out = decoder(rows[0])
    assert out["video"] is None and "allow_pickle=False" in out["decode_error"]
    # Masks are not read at all when not wanted: the clip then decodes.
    assert ShardClipDecoder(num_frames=2, load_masks=False)(rows[0])["decode_error"] is None


@pytest.mark.parametrize("fmt", FORMATS)
def test_strict_decoding_raises_naming_shard_and_key(bad_shards, fmt):
    dataset = load_video_shards(bad_shards[fmt])
    decoder = ShardClipDecoder(num_frames=2, strict=True)
    bad = "|".join(sorted(BAD_CLIPS) + [PICKLED_CLIP])
    with pytest.raises(ValueError, match=rf"shard-0000\d-of-00002\.(parquet|tar):({bad})"):
        list(dataset.map(decoder, batched=True, batch_size=4, remove_columns=list(decoder.RAW_COLUMNS)))


def test_the_loader_and_collator_drop_failed_clips(bad_shards):
    collator = VideoTextCollator(warn_on_drop=False)
    loader = shard_dataloader(bad_shards["parquet"], batch_size=4, collate_fn=collator, num_frames=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the decoder's per-clip warnings
        batches = [batch for batch in loader if batch is not None]
    assert sum(batch["videos"].shape[0] for batch in batches) == NUM_CLIPS - 3
    assert collator.num_dropped == 3
    assert all(batch["videos"].shape[1:] == (2, 32, 32, 3) for batch in batches)


def test_an_unreadable_shard_is_named(tmp_path):
    (tmp_path / "shard-00000-of-00001.parquet").write_bytes(b"not parquet")
    with pytest.raises(ValueError, match="shard-00000-of-00001.parquet is not a readable Parquet file"):
        list(load_video_shards([tmp_path / "shard-00000-of-00001.parquet"]))


# --------------------------------------------------------------------------------------------------------------
# Arguments and output folders


WRITE_ERRORS = [
    (dict(format="zip"), ValueError, "`format`"),
    (dict(clips_per_shard=0), ValueError, "`clips_per_shard` must be >= 1"),
    (dict(clips_per_shard="4"), TypeError, "`clips_per_shard` must be an int"),
    (dict(rows_per_group=0), ValueError, "`rows_per_group`"),
    (dict(seed=-1), ValueError, "`seed`"),
    (dict(overwrite="yes"), TypeError, "`overwrite` must be a bool"),
]


@pytest.mark.parametrize("kwargs, error, match", WRITE_ERRORS)
def test_bad_write_arguments_are_named(folder, tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        write_video_shards(folder, tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_output_folders_are_replaced_only_when_they_are_shard_folders(folder, tmp_path):
    small = dict(clips_per_shard=6)
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(ValueError, match="has no shards.json"):
            write_video_shards(folder, other, overwrite=overwrite, **small)
    assert (other / "keep.txt").read_text() == "mine"
    with pytest.raises(ValueError, match="would replace the video folder"):
        write_video_shards(folder, folder, overwrite=True, **small)

    out = tmp_path / "shards"
    first = write_video_shards(folder, out, **small)
    with pytest.raises(ValueError, match="pass overwrite=True"):
        write_video_shards(folder, out, **small)
    second = write_video_shards(folder, out, format="webdataset", overwrite=True, clips_per_shard=4)
    assert (first["num_shards"], second["num_shards"]) == (2, 3)
    assert sorted(p.suffix for p in out.iterdir()) == [".json", ".tar", ".tar", ".tar"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith((".tmp-", ".trash-"))]
    (tmp_path / "empty").mkdir()
    assert write_video_shards(folder, tmp_path / "empty", **small)["num_clips"] == NUM_CLIPS


def test_a_folder_without_metadata_is_named(tmp_path):
    (tmp_path / "videos").mkdir()
    with pytest.raises(ValueError, match="`folder` .* has no metadata.jsonl or metadata.csv"):
        write_video_shards(tmp_path / "videos", tmp_path / "out")
    with pytest.raises(ValueError, match="`folder` .* does not exist"):
        write_video_shards(tmp_path / "none", tmp_path / "out")


def test_missing_files_stop_the_conversion(folder, tmp_path):
    root = tmp_path / "videos"
    shutil.copytree(folder, root)
    (root / "clip_000003.mp4").unlink()
    with pytest.raises(ValueError, match="line 4"):
        write_video_shards(root, tmp_path / "out")
    assert not (tmp_path / "out").exists()


LOAD_ERRORS = [
    (dict(seed=-1), ValueError, "`seed`"),
    (dict(epoch=-1), ValueError, "`epoch`"),
    (dict(epoch=1.5), TypeError, "`epoch` must be an int"),
    (dict(world_size=0), ValueError, "`world_size`"),
    (dict(rank=2, world_size=2), ValueError, "`rank` must be < `world_size`"),
    (dict(split_by="node"), ValueError, "`split_by` must be one of"),
]


@pytest.mark.parametrize("kwargs, error, match", LOAD_ERRORS)
def test_bad_load_arguments_are_named(shards, kwargs, error, match):
    with pytest.raises(error, match=match):
        load_video_shards(shards["parquet"][0], **kwargs)


def test_bad_shard_paths_are_named(tmp_path, shards):
    with pytest.raises(ValueError, match="has no shards.json"):
        load_video_shards(tmp_path)
    with pytest.raises(ValueError, match="do not exist"):
        load_video_shards([tmp_path / "shard-00000-of-00001.parquet"])
    (tmp_path / "clips.zip").write_bytes(b"")
    with pytest.raises(ValueError, match=r"must end in \.parquet or \.tar"):
        load_video_shards([tmp_path / "clips.zip"])
    with pytest.raises(ValueError, match="names no shard files"):
        load_video_shards([])
    with pytest.raises(TypeError, match="`path`"):
        load_video_shards(3)


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: ShardClipDecoder(num_frames=0), ValueError, "`num_frames`"),
        (lambda: ShardClipDecoder(strict="yes"), TypeError, "`strict` must be a bool"),
        (lambda: ShardClipDecoder(transform=3), TypeError, "`transform` must be callable"),
        (lambda: ShardClipDecoder()({"video": [b""]}), ValueError, r"\['key'\]"),
        (lambda: ShardClipDecoder()([b""]), TypeError, "`batch`"),
    ],
)
def test_bad_decoder_arguments_are_named(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(batch_size=0, collate_fn=_keys), ValueError, "`batch_size`"),
        (dict(batch_size=2, collate_fn=None), TypeError, "`collate_fn` must be callable"),
        (dict(batch_size=2, collate_fn=_keys, num_workers=-1), ValueError, "`num_workers`"),
        (dict(batch_size=2, collate_fn=_keys, mask_size=(0, 4)), ValueError, "`mask_size`"),
    ],
)
def test_bad_loader_arguments_are_named(shards, kwargs, error, match):
    with pytest.raises(error, match=match):
        shard_dataloader(shards["parquet"][0], **kwargs)


# --------------------------------------------------------------------------------------------------------------
# The conversion script and the benchmark


def _run(*args):
    return subprocess.run(
        [sys.executable, str(ROOT / "examples" / "write_shards.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def test_the_conversion_script(folder, tmp_path):
    help_run = _run("--help")
    assert help_run.returncode == 0 and "--video_folder" in help_run.stdout and "--clips_per_shard" in help_run.stdout
    out = tmp_path / "wds"
    args = ["--video_folder", str(folder), "--output_dir", str(out), "--format", "webdataset", "--clips_per_shard", "5"]
    run = _run(*args)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "wrote 12 clips into 3 webdataset shards" in run.stdout
    index = json.loads((out / INDEX_FILE).read_text())
    assert index["format"] == "webdataset" and [s["num_clips"] for s in index["shards"]] == [5, 5, 2]
    refused = _run(*args)
    assert refused.returncode == 2 and "--overwrite" in refused.stderr
    assert _run(*args, "--overwrite", "--seed", "1").returncode == 0
    bad = _run("--video_folder", str(folder), "--output_dir", str(out), "--clips_per_shard", "0")
    assert bad.returncode == 2 and "--clips_per_shard must be >= 1" in bad.stderr


def test_the_benchmark_runs_at_a_tiny_size(tmp_path, capsys):
    bench = load_file_module(str(ROOT / "benchmarks" / "data_loading.py"))
    out = tmp_path / "data_loading.json"
    argv = ["--num_clips", "4", "--num_frames", "2", "--size", "32", "--clips_per_shard", "2", "--batch_size", "2"]
    save_tiny_trajvit2_folder(tmp_path / "model", num_frames=2, size=32)
    argv += ["--train_model", str(tmp_path / "model"), "--train_steps", "1"]
    report = bench.main(argv + ["--workers", "0", "--repeats", "1", "--processor", "default", "--output", str(out)])
    assert json.loads(out.read_text()) == report
    assert (
        report["train"]["batch_size"] == 2 and report["train"]["step_s"] > 0 and report["train"]["workers_needed"] >= 1
    )
    assert report["machine"]["cpu_count"] >= 1 and {"cpu_model", "load_average_at_start"} <= set(report["machine"])
    assert set(report["write"]) == {"parquet", "webdataset"}
    assert {(r["source"], r["num_workers"]) for r in report["results"]} == {
        ("folder", 0),
        ("parquet", 0),
        ("webdataset", 0),
    }
    assert all(r["clips_per_s"] > 0 for r in report["results"])
    assert "| parquet |" in capsys.readouterr().out


@pytest.mark.parametrize("num_workers", [0, 2])
def test_the_loader_leaves_the_global_torch_rng_alone(shards, num_workers):
    """Worker seeds come from (seed, epoch): starting or resuming a loader must not shift the training's RNG."""
    import torch

    torch.manual_seed(123)
    before = torch.get_rng_state()
    loader = shard_dataloader(shards["parquet"][0], batch_size=4, collate_fn=_keys, num_workers=num_workers)
    assert sum(len(batch) for batch in loader) == NUM_CLIPS
    assert torch.equal(torch.get_rng_state(), before)
