"""Tokenize a video into trajectory tokens and print the token counts.

With no arguments, a procedural clip (moving shapes, exact ground truth) is generated, written to an .mp4 and read
back through ``TrajTokVideoProcessor`` — the same path a user's own video takes. The tokenizer is the paper's
default (ConvNeXt-Tiny, D=512, K=128) with random weights unless ``--model`` points at a saved/converted TrajTok
folder, so the printed counts show the mechanics (active trajectories, tokens per chunk, n ∈ {1,2,4}), not a
trained segmentation.

With ``--stream`` the whole file is tokenized chunk by chunk, in memory bounded by one chunk whatever the video's
length (``trajtok_hf.long_video``): trajectories are linked across chunks to global ids, and ``--output`` gets, per
chunk, its frame range, token count and global trajectory ids, plus the merged token set of the whole video (one
token set per linked trajectory, each with its time span) and the process's memory. ``--overlay`` writes the video
with every trajectory coloured by its global id. Without ``--model`` it uses the shipped segmenter
``checkpoints/trajtok-small-shapes``.

    python examples/tokenize_video.py
    python examples/tokenize_video.py --video my_clip.mp4 --num_frames 32 --model path/to/trajtok
    python examples/tokenize_video.py --stream --video my_clip.mp4 --fps 8 --output tokens.json --overlay ids.mp4
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
STREAM_DEFAULT_MODEL = REPO_ROOT / "checkpoints" / "trajtok-small-shapes"
LINK_METHODS = ("overlap", "appearance", "overlap_appearance")  # trajtok_hf.long_video.LINK_METHODS


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
    stream = parser.add_argument_group("streaming a whole video (--stream)")
    stream.add_argument("--stream", action="store_true", help="tokenize the whole --video chunk by chunk")
    stream.add_argument("--fps", type=float, default=None, help="frames per second read from the file (default: all)")
    stream.add_argument("--max_frames", type=int, default=None, help="stop after this many frames")
    stream.add_argument("--link_method", choices=LINK_METHODS, default="overlap_appearance")
    stream.add_argument("--output", type=str, default=None, help="write the per-chunk JSON here")
    stream.add_argument("--overlay", type=str, default=None, help="write the global-id overlay video (.mp4) here")
    stream.add_argument("--no_progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.num_frames <= 0:
        parser.error("--num_frames must be positive")
    if args.stream and args.video is None:
        parser.error("--stream needs --video FILE")
    if not args.stream:
        for name in ("fps", "max_frames", "output", "overlay"):
            if getattr(args, name) is not None:
                parser.error(f"--{name} applies to --stream")
    for name in ("fps", "max_frames"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            parser.error(f"--{name} must be > 0, got {value}")
    if args.overlay is not None and not args.overlay.endswith(".mp4"):
        parser.error(f"--overlay {args.overlay}: an .mp4 path")
    if args.stream and args.model is None:
        args.model = str(STREAM_DEFAULT_MODEL)
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
from trajtok_hf.long_video import TrajectoryLinker, tokenize_long_video
from trajtok_hf.models.video_io_trajtok import read_video_metadata
from trajtok_hf.visualization import TrajectoryVideoWriter


def load_video_processor(model: str | None, num_frames: int):
    """The model folder's own saved video processor (its frame size and normalisation), else the default one."""
    if model is None:
        return TrajTokVideoProcessor(num_frames=num_frames)
    return AutoVideoProcessor.from_pretrained(model, num_frames=num_frames)


def rss_mib() -> float:
    """This process's resident memory now, in MiB (from /proc; the peak where /proc is missing)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return peak_rss_mib()


def peak_rss_mib() -> float:
    """This process's peak resident memory so far, in MiB (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**20 if os.uname().sysname == "Darwin" else 2**10)


def stream_video(args) -> dict:
    """--stream: tokenize the whole file chunk by chunk, link and merge; returns (and writes) the JSON report."""
    from tqdm.auto import tqdm

    model = TrajTokModel.from_pretrained(args.model).eval()
    processor = AutoVideoProcessor.from_pretrained(args.model)
    rss_loaded = rss_mib()
    metadata = read_video_metadata(args.video)
    expected = metadata.total_num_frames
    if args.fps and metadata.fps:
        expected = int(expected * min(1.0, args.fps / metadata.fps))
    expected = min(expected, args.max_frames or expected)
    progress = tqdm(total=expected, unit="frame", disable=args.no_progress, desc=Path(args.video).name)
    overlay = None
    if args.overlay:
        overlay = TrajectoryVideoWriter(args.overlay, fps=max(1, round(args.fps or metadata.fps or 8)))

    def on_chunk(chunk):
        progress.update(chunk.frame_end - chunk.frame_start)
        if overlay is not None:
            overlay.write(chunk.frames, chunk.original_trajectory_ids(processor))

    start = time.perf_counter()
    try:
        result = tokenize_long_video(
            model,
            processor,
            args.video,
            fps=args.fps,
            max_frames=args.max_frames,
            chunk_size=args.chunk_size,
            linker=TrajectoryLinker(method=args.link_method),
            callback=on_chunk,
        )
    finally:
        progress.close()
        if overlay is not None:
            overlay.close()
    elapsed = time.perf_counter() - start
    merged = result.merged
    report = {
        "video": os.fspath(args.video),
        "model": os.fspath(args.model),
        "fps": args.fps,
        "chunk_size": args.chunk_size or model.config.chunk_size,
        "tokens_per_trajectory": merged.tokens_per_trajectory,
        "link_method": args.link_method,
        "num_frames": result.num_frames,
        "num_chunks": len(result.chunks),
        "num_global_ids": result.num_global_ids,
        "tokens": {"chunks": result.num_chunk_tokens, "merged": merged.num_tokens},
        "merged_trajectories": [
            {"global_id": int(i), "frames": span}
            for i, span in zip(
                merged.global_ids.tolist(),
                merged.trajectory_spans[:: merged.tokens_per_trajectory].tolist(),
                strict=True,
            )
        ],
        "memory_mib": {"rss_after_loading": round(rss_loaded, 1), "peak_rss": round(peak_rss_mib(), 1)},
        "seconds": round(elapsed, 2),
        "chunks": result.chunks,
    }
    print(
        f"{result.num_frames} frames in {len(result.chunks)} chunks: {result.num_chunk_tokens} tokens over the chunks, "
        f"{merged.num_tokens} merged ({result.num_global_ids} global trajectories); peak RSS "
        f"{report['memory_mib']['peak_rss']:.0f} MiB ({rss_loaded:.0f} after loading the model)"
    )
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {args.output}")
    if args.overlay:
        print(f"wrote {args.overlay}")
    return report


def main(argv=None):
    args = parse_args(argv)
    if args.stream:
        return stream_video(args)

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
