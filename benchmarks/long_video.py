"""Long videos: identity over chunks, tokens per minute, and the memory of streaming tokenization.

Three measurements of ``trajtok_hf.long_video`` with a TrajTok segmenter (default: the shipped
``checkpoints/trajtok-small-shapes`` at its own 64×64 input and chunks of 16 frames):

* **identity** — generated long videos with exact, persistent object ids (``trajtok_hf.data.long_videos``: static,
  panning and busy scenes, objects entering, leaving and occluded across chunk boundaries), streamed chunk by chunk;
  the global id map is scored against the ground truth with MOT identity metrics (IDF1, ID switches, MOTA;
  ``trajtok_hf.metrics.tracking``) and FG-ARI over the whole video. Every linking option runs on the same segmenter
  outputs: ``none`` (the model's own ids, ``chunk·K + k``: no linking); ``TrajectoryLinker`` with
  ``overlap_no_motion`` (mask overlap with the track's last mask), ``overlap`` (motion-compensated),
  ``overlap_splits`` (also split links), ``appearance`` (descriptors only), ``overlap_appearance`` (the default:
  overlap, then re-identification of lost tracks; pixel-embedding descriptor) and ``overlap_appearance_<descriptor>``
  with the other descriptors; and ``oracle`` (each chunk trajectory given the ground-truth id most of its pixels
  have: the best any linker can do with this segmentation). The same on long
  real-pixel composites (``trajtok_hf.data.photo_composites`` with held-out photos).
* **tokens** — tokens per minute of video for each scene kind: TrajTok per chunk (unmerged), merged over the
  video (one token set per linked trajectory), and ViT3D's space-time patches (2×16×16) at the same input size.
* **memory** — the peak RSS of a whole ``examples/tokenize_video.py --stream`` process (decoding included) on a
  short and a long generated video file, and its growth above the RSS after loading the model.

    python benchmarks/long_video.py --output benchmarks/results/long_video.json --picture docs/long_video_ids.png
    python benchmarks/long_video.py --parts identity --num_videos 2 --num_frames 64    # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = REPO_ROOT / "checkpoints" / "trajtok-small-shapes"
PARTS = ("identity", "tokens", "memory")
SCENARIOS = ("static", "panning", "busy")  # trajtok_hf.data.long_videos.LONG_VIDEO_SCENARIOS
HELD_OUT_SEED = 3_000_000


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="a TrajTok folder (model + video processor)")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--scenarios", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--num_videos", type=int, default=6, help="generated videos per scene kind")
    parser.add_argument("--num_frames", type=int, default=256, help="frames per generated video")
    parser.add_argument("--num_composites", type=int, default=6, help="long real-pixel composites (0: none)")
    parser.add_argument("--fps", type=float, default=8.0, help="frame rate the videos stand for (tokens per minute)")
    parser.add_argument("--memory_frames", type=int, nargs=2, default=[64, 2048], metavar=("SHORT", "LONG"))
    parser.add_argument("--seed", type=int, default=HELD_OUT_SEED)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--output", default=None, help="write the results (JSON) here")
    parser.add_argument(
        "--picture", default=None, help="draw one busy video's ids, unlinked and linked, into this PNG (identity part)"
    )
    args = parser.parse_args(argv)
    for name in ("num_videos", "num_frames", "fps"):
        if not getattr(args, name) > 0:
            parser.error(f"--{name} must be > 0")
    if args.num_composites < 0:
        parser.error("--num_composites must be >= 0")
    if not 0 < args.memory_frames[0] < args.memory_frames[1]:
        parser.error("--memory_frames SHORT LONG: 0 < SHORT < LONG")
    if not os.path.isfile(os.path.join(args.model, "config.json")):
        parser.error(f"--model {args.model}: no config.json there")
    return args


if __name__ == "__main__":
    parse_args()  # answers --help and usage errors before the heavy imports below

import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import AutoVideoProcessor  # noqa: E402

from trajtok_hf import TrajTokModel  # noqa: E402
from trajtok_hf.data.long_videos import LongVideoConfig, generate_long_video, write_long_video  # noqa: E402
from trajtok_hf.data.photo_composites import PhotoCompositeConfig, generate_composite  # noqa: E402
from trajtok_hf.long_video import (  # noqa: E402
    DESCRIPTORS,
    TrajectoryLinker,
    TrajectoryTokenMerger,
    trajectory_descriptors,
)
from trajtok_hf.metrics.tracking import tracking_metrics  # noqa: E402

LINKERS = {
    "overlap_no_motion": dict(method="overlap", motion_compensation=False),
    "overlap": dict(method="overlap"),
    "overlap_splits": dict(method="overlap", allow_splits=True),
    "appearance": dict(method="appearance"),
    "overlap_appearance": dict(method="overlap_appearance"),
}
VIT3D_TUBELET = (2, 16, 16)


def segment_video(model, processor, frames: np.ndarray, chunk_size: int) -> list[dict]:
    """The segmenter's outputs of every chunk: local ids, tokens, and each descriptor kind."""
    num_slots = model.config.num_trajectories
    chunks = []
    for start in range(0, frames.shape[0], chunk_size):
        clip = frames[start : start + chunk_size]
        pixels = processor(clip, do_sample_frames=False, return_tensors="pt")["pixel_values_videos"]
        with torch.inference_mode():
            out = model(pixels, output_pixel_features=True)
            descriptors = {kind: trajectory_descriptors(model, out, kind) for kind in DESCRIPTORS}
        n = out.trajectory_tokens.shape[1] // num_slots
        tokens = out.trajectory_tokens[0].view(num_slots, n, -1)
        chunks.append(
            {"start": start, "ids": out.trajectory_ids[0] % num_slots, "tokens": tokens, "descriptors": descriptors}
        )
    return chunks


def link(chunks: list[dict], linker: TrajectoryLinker | None, descriptor: str, num_slots: int):
    """Global id map (T, h, w) and the merged token count of one video under one linking option."""
    merger = TrajectoryTokenMerger()
    maps = []
    for index, chunk in enumerate(chunks):
        if linker is None:  # no linking: the model's own ids
            links_ids = chunk["ids"] + index * num_slots
            maps.append(links_ids)
            continue
        links = linker.link(chunk["ids"], chunk["start"], chunk["descriptors"][descriptor], num_slots=num_slots)
        merger.update(chunk["tokens"], links.global_ids, links.pixel_counts, links.first_frame, links.last_frame)
        maps.append(links.trajectory_ids)
    merged = None if linker is None else merger.result().num_tokens
    return torch.cat(maps).numpy(), merged


def oracle_map(chunks: list[dict], labels: np.ndarray, num_slots: int) -> np.ndarray:
    """Each chunk trajectory takes the ground-truth id that most of its pixels have (ids never split or merged by
    a linker: the best linking of this segmentation)."""
    maps = []
    for chunk in chunks:
        ids = chunk["ids"].numpy()
        gt = labels[chunk["start"] : chunk["start"] + ids.shape[0]]
        valid = gt >= 0
        codes = ids[valid] * (gt.max() + 1) + gt[valid]
        table = np.bincount(codes, minlength=num_slots * (gt.max() + 1)).reshape(num_slots, -1)
        maps.append(table.argmax(axis=1)[ids])
    return np.concatenate(maps)


def identity_part(args, model, processor) -> dict:
    chunk_size, num_slots = model.config.chunk_size, model.config.num_trajectories
    size = processor.size["height"], processor.size["width"]
    options = ["none", *LINKERS, *(f"overlap_appearance_{d}" for d in DESCRIPTORS if d != "embedding"), "oracle"]
    sources = {s: [] for s in args.scenarios}
    for scenario in args.scenarios:
        config = LongVideoConfig(num_frames=args.num_frames, height=size[0], width=size[1], scenario=scenario)
        sources[scenario] = [generate_long_video(config, seed=args.seed + i) for i in range(args.num_videos)]
    if args.num_composites:
        config = PhotoCompositeConfig(
            num_frames=args.num_frames, height=size[0], width=size[1], split="held_out", speed=(0.0, 0.01)
        )
        sources["real_pixel_composites"] = [
            generate_composite(config, seed=args.seed, index=i) for i in range(args.num_composites)
        ]
    results = {}
    for name, videos in sources.items():
        per_option = {option: [] for option in options}
        merged_tokens = {option: [] for option in LINKERS}
        start = time.perf_counter()
        for index, video in enumerate(videos):
            chunks = segment_video(model, processor, video["video"], chunk_size)
            if args.picture and name == "busy" and index == 0:
                draw_picture(args.picture, video, chunks, num_slots, chunk_size)
            labels = video["segmentation_labels"]
            for option in options:
                merged = None
                if option == "none":
                    pred, _ = link(chunks, None, "embedding", num_slots)
                elif option == "oracle":
                    pred = oracle_map(chunks, labels, num_slots)
                else:
                    settings = LINKERS.get(option) or dict(method="overlap_appearance")
                    descriptor = option.rsplit("_", 1)[1] if option not in LINKERS else "embedding"
                    pred, merged = link(chunks, TrajectoryLinker(**settings), descriptor, num_slots)
                per_option[option].append((pred, labels))
                if option in LINKERS:
                    merged_tokens[option].append(merged)
        results[name] = {
            "videos": len(videos),
            "frames": int(videos[0]["video"].shape[0]),
            "gt_objects": float(np.mean([len(np.unique(v["segmentation_labels"])) - 1 for v in videos])),
            "seconds": round(time.perf_counter() - start, 1),
            "options": {
                option: {
                    **{
                        k: round(v, 4) if isinstance(v, float) else v
                        for k, v in tracking_metrics([p for p, _ in pairs], [g for _, g in pairs]).items()
                    },
                    **({"merged_tokens": float(np.mean(merged_tokens[option]))} if option in LINKERS else {}),
                }
                for option, pairs in per_option.items()
            },
        }
        print_identity(name, results[name])
    results["generated_overall"] = overall_identity({s: results[s] for s in args.scenarios})
    print(
        "\ngenerated videos, all scene kinds together: IDF1 "
        + ", ".join(f"{option} {m['IDF1']:.3f}" for option, m in results["generated_overall"].items())
    )
    return results


def overall_identity(per_scenario: dict) -> dict:
    """IDF1 and MOTA of several scene kinds together, from their summed counts (as MOT benchmarks combine
    sequences)."""
    overall = {}
    for option in next(iter(per_scenario.values()))["options"]:
        counts = {
            key: sum(result["options"][option][key] for result in per_scenario.values())
            for key in ("IDTP", "IDFP", "IDFN", "IDSW", "FP", "FN", "gt_detections")
        }
        overall[option] = {
            "IDF1": round(2 * counts["IDTP"] / max(1, 2 * counts["IDTP"] + counts["IDFP"] + counts["IDFN"]), 4),
            "MOTA": round(1 - (counts["FP"] + counts["FN"] + counts["IDSW"]) / max(1, counts["gt_detections"]), 4),
            **counts,
        }
    return overall


def draw_picture(path: str, video: dict, chunks: list[dict], num_slots: int, chunk_size: int, columns: int = 8) -> None:
    """Frames across a whole video with the model's own per-chunk ids (a new colour every chunk) and with the
    linker's global ids (a colour per object for the whole video)."""
    from trajtok_hf.visualization import render_trajectory_grid

    frames = video["video"]
    picks = np.linspace(0, frames.shape[0] - 1, columns).round().astype(int)
    unlinked, _ = link(chunks, None, "embedding", num_slots)
    linked, _ = link(chunks, TrajectoryLinker(), "embedding", num_slots)
    grid = render_trajectory_grid(
        [frames[picks], frames[picks]],
        [unlinked[picks], linked[picks]],
        chunk_size=chunk_size,
        captions=[
            "each chunk's own trajectory ids (chunk·K + k): a new colour in every chunk",
            "the same frames with global ids linked across chunks: one colour per object for the whole video",
        ],
        max_frames=columns,
        scale=2,
        frame_indices=picks.tolist(),
    )
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)
    print(f"wrote {path}")


def print_identity(name: str, result: dict) -> None:
    print(f"\n{name}: {result['videos']} videos of {result['frames']} frames, {result['gt_objects']:.1f} objects each")
    print(f"{'linking':<34}{'IDF1':>7}{'IDSW':>7}{'MOTA':>7}{'FG-ARI':>8}{'ids':>7}")
    for option, m in result["options"].items():
        print(f"{option:<34}{m['IDF1']:>7.3f}{m['IDSW']:>7}{m['MOTA']:>7.3f}{m['FG-ARI']:>8.3f}{m['pred_tracks']:>7}")


def tokens_part(args, model, processor) -> dict:
    """Tokens per minute of each scene kind (at ``--fps``): per chunk, merged, and ViT3D's patches."""
    chunk_size = model.config.chunk_size
    height, width = processor.size["height"], processor.size["width"]
    patches_per_frame = (height // VIT3D_TUBELET[1]) * (width // VIT3D_TUBELET[2]) / VIT3D_TUBELET[0]
    minutes = args.num_frames / args.fps / 60.0
    results = {}
    for scenario in args.scenarios:
        config = LongVideoConfig(num_frames=args.num_frames, height=height, width=width, scenario=scenario)
        chunk_tokens, merged_tokens, one_chunk = [], [], []
        for i in range(args.num_videos):
            video = generate_long_video(config, seed=args.seed + i)
            chunks = segment_video(model, processor, video["video"], chunk_size)
            _, merged = link(chunks, TrajectoryLinker(), "embedding", model.config.num_trajectories)
            counts = [int(torch.unique(c["ids"]).numel()) * c["tokens"].shape[1] for c in chunks]
            chunk_tokens.append(sum(counts))
            merged_tokens.append(merged)
            one_chunk.append(float(np.mean(counts)))
        results[scenario] = {
            "tokens_per_minute": {
                "trajtok_per_chunk": round(float(np.mean(chunk_tokens)) / minutes, 1),
                "trajtok_merged": round(float(np.mean(merged_tokens)) / minutes, 1),
                "vit3d": round(patches_per_frame * args.fps * 60.0, 1),
            },
            "merged_over_one_chunk": round(float(np.mean(np.array(merged_tokens) / np.array(one_chunk))), 3),
        }
        t = results[scenario]["tokens_per_minute"]
        print(
            f"{scenario:<9} tokens/min: per chunk {t['trajtok_per_chunk']:>8.0f}, merged {t['trajtok_merged']:>6.0f}, "
            f"ViT3D {t['vit3d']:>7.0f}; merged = {results[scenario]['merged_over_one_chunk']:.2f}× one chunk"
        )
    return {"fps": args.fps, "frames_per_video": args.num_frames, "scenarios": results}


def memory_part(args) -> dict:
    """Peak RSS of a whole streaming process (decoding included) on a short and a long file."""
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for frames in args.memory_frames:
            processor = AutoVideoProcessor.from_pretrained(args.model)
            size = processor.size["height"], processor.size["width"]
            config = LongVideoConfig(num_frames=frames, height=size[0], width=size[1], scenario="busy")
            video = Path(tmp) / f"busy_{frames}.mp4"
            write_long_video(video, config, seed=args.seed, fps=int(args.fps))
            report = Path(tmp) / f"report_{frames}.json"
            command = [sys.executable, str(REPO_ROOT / "examples" / "tokenize_video.py"), "--stream", "--no_progress"]
            command += ["--model", args.model, "--video", str(video), "--output", str(report)]
            subprocess.run(command, check=True, capture_output=True, text=True)
            data = json.loads(report.read_text())
            results[str(frames)] = {**data["memory_mib"], "seconds": data["seconds"], "tokens": data["tokens"]}
    short, long = (results[str(f)] for f in args.memory_frames)
    growth_short = short["peak_rss"] - short["rss_after_loading"]
    growth_long = long["peak_rss"] - long["rss_after_loading"]
    summary = {
        "peak_ratio_long_over_short": round(long["peak_rss"] / short["peak_rss"], 3),
        "growth_above_loading_mib": {"short": round(growth_short, 1), "long": round(growth_long, 1)},
    }
    print(
        f"peak RSS {short['peak_rss']:.0f} MiB at {args.memory_frames[0]} frames, {long['peak_rss']:.0f} MiB at "
        f"{args.memory_frames[1]}: ratio {summary['peak_ratio_long_over_short']:.3f}; above the RSS after loading: "
        f"{growth_short:.0f} → {growth_long:.0f} MiB"
    )
    return {"runs": results, **summary}


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = TrajTokModel.from_pretrained(args.model).eval()
    processor = AutoVideoProcessor.from_pretrained(args.model)
    results = {
        "model": os.path.relpath(args.model, REPO_ROOT) if Path(args.model).is_relative_to(REPO_ROOT) else args.model,
        "chunk_size": model.config.chunk_size,
        "input_size": [processor.size["height"], processor.size["width"]],
        "seed": args.seed,
        "torch_threads": torch.get_num_threads(),
    }
    if "identity" in args.parts:
        results["identity"] = identity_part(args, model, processor)
    if "tokens" in args.parts:
        results["tokens"] = tokens_part(args, model, processor)
    if "memory" in args.parts:
        results["memory"] = memory_part(args)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote {args.output}")
    return results


if __name__ == "__main__":
    main()
