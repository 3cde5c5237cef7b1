"""Tokenize a video into trajectory tokens and print the token counts.

With no arguments, a procedural clip (moving shapes, exact ground truth) is generated, written to an .mp4 and read
back through ``TrajTokVideoProcessor`` — the same path a user's own video takes. The tokenizer is the paper's
default (ConvNeXt-Tiny, D=512, K=128) with random weights unless ``--model`` points at a saved/converted TrajTok
folder, so the printed counts show the mechanics (active trajectories, tokens per chunk, n ∈ {1,2,4}), not a
trained segmentation.

    python examples/tokenize_video.py
    python examples/tokenize_video.py --video my_clip.mp4 --num_frames 32 --model path/to/trajtok
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=str, default=None, help="a video file (default: a generated clip)")
    parser.add_argument(
        "--model",
        type=str,
        default=None,
        help="a TrajTok folder with its video processor (default: random init, default processor)",
    )
    parser.add_argument("--num_frames", type=int, default=16)
    parser.add_argument("--chunk_size", type=int, default=None, help="override the model's chunk size")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.num_frames <= 0:
        parser.error("--num_frames must be positive")
    if args.video is not None and not os.path.isfile(args.video):
        parser.error(f"--video {args.video}: no such file")
    if args.model is not None and not os.path.isfile(os.path.join(args.model, "config.json")):
        parser.error(f"--model {args.model}: expected a folder written by save_pretrained (with config.json)")
    return args


if __name__ == "__main__":
    parse_args()  # answers --help and usage errors before the heavy imports below

# Heavy imports, after the argument parsing: --help and usage errors need neither torch nor trajtok_hf.
import torch
from transformers import AutoVideoProcessor

from trajtok_hf import TrajTokConfig, TrajTokModel, TrajTokVideoProcessor
from trajtok_hf.data.synthetic import SyntheticVideoConfig, generate_clip, write_mp4


def load_video_processor(model: str | None, num_frames: int):
    """The model folder's own saved video processor (its frame size and normalisation), else the default one."""
    if model is None:
        return TrajTokVideoProcessor(num_frames=num_frames)
    return AutoVideoProcessor.from_pretrained(model, num_frames=num_frames)


def main(argv=None):
    args = parse_args(argv)

    torch.manual_seed(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        video = args.video
        if video is None:
            clip = generate_clip(SyntheticVideoConfig(num_frames=args.num_frames), seed=args.seed)
            video = str(Path(tmp) / "clip.mp4")
            write_mp4(video, clip["video"])
            print(f"generated clip: {clip['caption']!r} ({len(clip['objects'])} objects + background)")
        processor = load_video_processor(args.model, args.num_frames)
        pixel_values = processor(video, return_tensors="pt")["pixel_values_videos"]

    if args.model:
        model = TrajTokModel.from_pretrained(args.model)
    else:
        model = TrajTokModel(TrajTokConfig())
    if args.chunk_size:
        model.config.chunk_size = args.chunk_size
    model.eval()
    config = model.config
    print(
        f"video: {tuple(pixel_values.shape)} (batch, frames, 3, H, W); chunk size {config.chunk_size}; "
        f"K = {config.num_trajectories} trajectory slots per chunk"
    )

    frames, height, width = pixel_values.shape[1], pixel_values.shape[3], pixel_values.shape[4]
    patch_tokens = -(-frames // 2) * (height // 16) * (width // 16)
    print(f"{'tokens/traj':>11} {'active traj':>11} {'tokens':>7} {'vs 2x16x16 patches':>19} {'time s':>7}")
    with torch.inference_mode():
        for n in config.tokens_per_trajectory_choices:
            start = time.perf_counter()
            out = model(pixel_values, tokens_per_trajectory=n)
            elapsed = time.perf_counter() - start
            tokens = int(out.trajectory_mask.sum())
            print(f"{n:>11} {int(out.num_trajectories[0]):>11} {tokens:>7} {patch_tokens:>19} {elapsed:>7.2f}")
    per_chunk = out.trajectory_mask[0].view(-1, config.num_trajectories * n).sum(1) // n
    print(f"active trajectories per chunk: {per_chunk.tolist()}")
    print(
        f"segmentation grid: {tuple(out.trajectory_ids.shape[1:])} (frames, h, w) with ids in [0, "
        f"{per_chunk.numel() * config.num_trajectories})"
    )


if __name__ == "__main__":
    main()
