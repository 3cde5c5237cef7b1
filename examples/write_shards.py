"""Convert a local video folder (``metadata.jsonl`` / ``metadata.csv`` + video files, the layout
``trajtok_hf.data.load_video_text_dataset`` reads) into Parquet or WebDataset shards for streamed training.

Each clip's file is stored unchanged (its bytes, no re-encoding) with its captions, its masks file (``.npz`` /
``.npy``, if any) and its extra metadata columns; clips are assigned to shards in a seeded random permutation.
The shard folder gets a ``shards.json`` index (format, clips, per-shard sizes and sha256) and is written atomically;
an existing shard folder is replaced only with ``--overwrite``, and a non-empty folder that is not a shard folder
never is.

    python examples/write_shards.py --video_folder my_videos --output_dir my_shards
    python examples/write_shards.py --video_folder my_videos --output_dir my_shards_wds --format webdataset \\
        --clips_per_shard 256 --seed 1 --overwrite

Stream the shards back with ``trajtok_hf.data.shard_dataloader("my_shards", batch_size=..., collate_fn=...,
num_workers=..., rank=..., world_size=...)``. Shards are the unit handed to nodes and DataLoader workers: choose
``--clips_per_shard`` so that the number of shards is a multiple of (nodes × workers per node).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from training_args import VIDEO_FOLDER_METADATA

FORMATS = ("parquet", "webdataset")
"""``trajtok_hf.data.SHARD_FORMATS``."""
INDEX_FILE = "shards.json"
"""``trajtok_hf.data.INDEX_FILE``: the index a shard folder holds."""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video_folder", required=True, help="a folder with metadata.jsonl or metadata.csv")
    parser.add_argument("--output_dir", required=True, help="the shard folder to write (shards.json + shard files)")
    parser.add_argument("--format", choices=FORMATS, default="parquet", help="shard file format")
    parser.add_argument("--clips_per_shard", type=int, default=64, help="clips per shard (the last holds the rest)")
    parser.add_argument(
        "--rows_per_group", type=int, default=8, help="clips per Parquet row group (the unit read and shuffled)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the clip-to-shard permutation")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing shard folder at --output_dir")
    args = parser.parse_args(argv)
    for name in ("clips_per_shard", "rows_per_group"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.seed < 0:
        parser.error(f"--seed must be >= 0, got {args.seed}")
    if not os.path.isdir(args.video_folder):
        parser.error(f"--video_folder {args.video_folder}: not a folder")
    if not any(os.path.isfile(os.path.join(args.video_folder, name)) for name in VIDEO_FOLDER_METADATA):
        parser.error(f"--video_folder {args.video_folder}: no metadata.jsonl or metadata.csv there")
    output = Path(args.output_dir)
    if output.exists() and not output.is_dir():
        parser.error(f"--output_dir {output} exists and is not a folder")
    if output.is_dir() and any(output.iterdir()):
        if not (output / INDEX_FILE).is_file():
            parser.error(f"--output_dir {output} is not empty and is not a shard folder (no {INDEX_FILE})")
        if not args.overwrite:
            parser.error(f"--output_dir {output} already holds shards: pass --overwrite to replace them")
    return args


if __name__ == "__main__":
    parse_args()  # answers --help and usage errors before the heavy imports below

# Heavy imports, after the argument parsing: --help and usage errors need neither torch nor trajtok_hf.
from trajtok_hf.data import write_video_shards  # noqa: E402


def _mib(num_bytes: int) -> str:
    return f"{num_bytes / 2**20:.1f} MiB"


def main(argv=None) -> dict:
    args = parse_args(argv)
    started = time.perf_counter()
    try:
        index = write_video_shards(
            args.video_folder,
            args.output_dir,
            format=args.format,
            clips_per_shard=args.clips_per_shard,
            rows_per_group=args.rows_per_group,
            seed=args.seed,
            overwrite=args.overwrite,
        )
    except ValueError as err:  # bad metadata, missing files: the message names the rows
        sys.exit(f"error: {err}")
    seconds = time.perf_counter() - started
    source = index["source"]["num_bytes"]
    sizes = [shard["num_clips"] for shard in index["shards"]]
    print(
        f"wrote {index['num_clips']} clips into {index['num_shards']} {index['format']} shards "
        f"({min(sizes)}–{max(sizes)} clips each) in {args.output_dir} in {seconds:.1f} s"
    )
    print(
        f"shards: {_mib(index['num_bytes'])}; source videos and masks: {_mib(source)} "
        f"({index['num_bytes'] / max(source, 1):.2f}×)"
    )
    print(f"index: {os.path.join(args.output_dir, INDEX_FILE)} (seed {index['seed']})")
    return index


if __name__ == "__main__":
    main()
