"""Draw a model's trajectories: every pixel coloured by its trajectory id, boundaries, and the active-token count of
every chunk, as a PNG grid and an animated GIF (``trajtok_hf.visualization``).

With no arguments: the TrajTok tokenizer inside ``checkpoints/trajvit2-tiny-shapes`` segments 4 held-out synthetic
clips. ``--model`` takes a TrajTok segmenter folder or a TrajViT2 folder (its tokenizer is used); ``--video`` takes
your own files (decoded by the model's video processor).

    python examples/visualize.py
    python examples/visualize.py --model runs/seg/final --video my_clip.mp4 --num_frames 16 --output_dir pics
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = REPO_ROOT / "checkpoints" / "trajvit2-tiny-shapes"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="a TrajTok or TrajViT2 folder")
    parser.add_argument("--video", nargs="*", default=None, help="video files (default: generated clips)")
    parser.add_argument("--num_clips", type=int, default=4, help="generated clips when no --video")
    parser.add_argument("--num_frames", type=int, default=None, help="frames per clip (default: the processor's)")
    parser.add_argument("--seed", type=int, default=2_000_000, help="seed of the generated clips")
    parser.add_argument("--max_frames", type=int, default=8, help="frames shown per clip in the PNG")
    parser.add_argument("--output_dir", default="outputs/visualize")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.num_clips < 1 or args.max_frames < 1 or (args.num_frames is not None and args.num_frames < 1):
        parser.error("--num_clips, --num_frames and --max_frames must be >= 1")
    if not os.path.isfile(os.path.join(args.model, "config.json")):
        parser.error(f"--model {args.model}: no config.json there (a save_pretrained folder)")
    for path in args.video or []:
        if not os.path.isfile(path):
            parser.error(f"--video {path}: no such file")
    return args


if __name__ == "__main__":
    parse_args()  # answers --help and usage errors before the heavy imports below

# Heavy imports, after the argument parsing: --help and usage errors need neither torch nor trajtok_hf.
import numpy as np
import torch

import trajtok_hf  # noqa: F401  (registers the Auto classes)
from trajtok_hf.data import SyntheticVideoConfig, generate_clip
from trajtok_hf.training import load_segmenter
from trajtok_hf.visualization import (
    active_trajectories_per_chunk,
    denormalize_video,
    save_trajectory_pictures,
)


def main(argv=None) -> list[Path]:
    args = parse_args(argv)
    try:
        tokenizer, video_processor = load_segmenter(args.model)
    except ValueError as error:
        raise SystemExit(f"error: --model {error}") from None
    tokenizer = tokenizer.to(args.device).eval()
    if args.num_frames is not None:
        video_processor.num_frames = args.num_frames
    if args.video:
        videos, captions = args.video, [Path(v).name for v in args.video]
    else:
        size = video_processor.size
        config = SyntheticVideoConfig(
            num_frames=args.num_frames or video_processor.num_frames or 8, height=size["height"], width=size["width"]
        )
        clips = [generate_clip(config, args.seed, i) for i in range(args.num_clips)]
        videos, captions = [clip["video"] for clip in clips], [clip["caption"] for clip in clips]

    pixel_values = video_processor(videos, return_tensors="pt")["pixel_values_videos"]
    with torch.inference_mode():
        ids = tokenizer(pixel_values_videos=pixel_values.to(args.device)).trajectory_ids.cpu()
    frames = denormalize_video(pixel_values, video_processor.image_mean, video_processor.image_std)
    chunk_size = tokenizer.config.chunk_size

    png, gif = (
        Path(p)
        for p in save_trajectory_pictures(
            list(frames), list(ids), chunk_size, args.output_dir, captions=captions, max_frames=args.max_frames
        )
    )
    for caption, clip_ids in zip(captions, ids, strict=True):
        counts = active_trajectories_per_chunk(clip_ids, chunk_size)
        print(f"{caption}: active trajectories per chunk {counts} (mean {np.mean(counts):.1f})")
    print(f"wrote {png}\nwrote {gif}")
    return [png, gif]


if __name__ == "__main__":
    main()
