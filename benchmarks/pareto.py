"""Quality–compute frontier: TrajViT2 at several K against ViT3D with three token-reduction peers.

Every point is one model (and, for ViT3D, one token-reduction setting applied at inference) measured on the same
held-out synthetic clips (``trajtok_hf.data.synthetic``, seed 2,000,000 by default: the retrieval demo's 500 clips,
never used in training):

* **quality** — text→video and video→text R@1/5/10 (one caption per clip), and the three motion probes of
  ``benchmarks/motion_probes.py`` (direction, time reversal, object swap; chance 50 %) on the first
  ``--probe_clips`` of those clips;
* **compute** — GFLOPs per clip of the video tower (tokenizer + encoder, the text tower excluded), counted by
  ``torch.utils.flop_counter`` (``bench_encoders.flop_counter``: 2 FLOPs per multiply-add, CPU SDPA included) over
  ``--flop_clips`` clips run one at a time, so no clip pays for another's padding; and the encoder tokens per clip
  (for ToMe the mean number entering each layer, [CLS] excluded).

The points:

* ``--trajvit2 NAME=FOLDER``: trained TrajViT2 models, e.g. K ∈ {8, 16, 32} trajectory slots;
* ``--vit3d FOLDER``: one trained ViT3D, at its full 2×16×16 tubelet token set and with each peer at three budgets
  (``trajtok_hf.baselines``):

  - **ToMe** (bipartite token merging inside the encoder), ``--tome_tokens``: target mean tokens entering each
    encoder layer, [CLS] included (``tome_r_for_token_count``);
  - **RLT** (run-length tokenization: drop tubelet patches that repeat the previous tubelet's), ``--rlt_tokens``:
    target mean kept tokens per clip; each threshold is calibrated on ``--calibration_clips`` clips of the
    *training* seed (0), never on the evaluation clips;
  - **pooling** (space-time average pooling of the token grid), ``--pool_kernels``: (kt, kh, kw) windows.

A point is **on the frontier** when no other point has at most its GFLOPs and a higher t2v R@1 (or the same R@1 at
fewer GFLOPs). For each TrajViT2 point the table gives the best ViT3D-family R@1 at no more GFLOPs (``frontier R@1
at its budget``), the comparison the frontier is about.

    python benchmarks/pareto.py --trajvit2 K32=checkpoints/trajvit2-tiny-shapes \\
        --vit3d checkpoints/vit3d-tiny-shapes --output benchmarks/results/pareto.json

The plot (``--plot``, default next to the JSON) needs matplotlib (the ``bench`` extra); without it the script says
so and skips the plot.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
HELD_OUT_SEED = 2_000_000
TRAINING_SEED = 0


def _kernel(text: str) -> tuple[int, int, int]:
    parts = text.split(",")
    if len(parts) != 3 or not all(p.strip().isdigit() and int(p) >= 1 for p in parts):
        raise argparse.ArgumentTypeError(f"a pooling kernel is kt,kh,kw with positive ints, got {text!r}")
    return tuple(int(p) for p in parts)


def _named_folder(text: str) -> tuple[str, str]:
    name, sep, folder = text.partition("=")
    if not sep or not name or not folder:
        raise argparse.ArgumentTypeError(f"expected NAME=FOLDER, got {text!r}")
    return name, folder


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--trajvit2",
        nargs="+",
        type=_named_folder,
        default=[("K32", str(REPO_ROOT / "checkpoints" / "trajvit2-tiny-shapes"))],
        metavar="NAME=FOLDER",
        help="TrajViT2 model folders, each with a short name (default: K32=checkpoints/trajvit2-tiny-shapes)",
    )
    parser.add_argument(
        "--vit3d", default=str(REPO_ROOT / "checkpoints" / "vit3d-tiny-shapes"), help="the trained ViT3D folder"
    )
    parser.add_argument(
        "--tome_tokens", nargs="*", type=float, default=[56.0, 44.0, 32.0], help="ToMe budgets (see above)"
    )
    parser.add_argument("--rlt_tokens", nargs="*", type=float, default=[40.0, 28.0, 20.0], help="RLT budgets")
    parser.add_argument(
        "--pool_kernels", nargs="*", type=_kernel, default=[(1, 2, 2), (2, 2, 2), (4, 2, 2)], help="kt,kh,kw windows"
    )
    parser.add_argument("--num_clips", type=int, default=500, help="held-out clips for retrieval")
    parser.add_argument("--probe_clips", type=int, default=200, help="the first N of them for the probes (0: none)")
    parser.add_argument("--flop_clips", type=int, default=32, help="clips whose FLOPs are counted, one at a time")
    parser.add_argument("--calibration_clips", type=int, default=64, help="training-seed clips for RLT thresholds")
    parser.add_argument("--seed", type=int, default=HELD_OUT_SEED, help="generator seed of the held-out clips")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--output", default=None, metavar="FILE", help="write the results as JSON (default: print)")
    parser.add_argument("--plot", default=None, help="PNG path (default: the JSON path with .png)")
    args = parser.parse_args(argv)
    for name in ("num_clips", "flop_clips", "calibration_clips", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if not 0 <= args.probe_clips <= args.num_clips:
        parser.error(f"--probe_clips must lie in [0, --num_clips], got {args.probe_clips}")
    if args.flop_clips > args.num_clips:
        parser.error(f"--flop_clips must be <= --num_clips ({args.num_clips}), got {args.flop_clips}")
    names = [name for name, _ in args.trajvit2]
    if len(set(names)) != len(names):
        parser.error(f"--trajvit2 names must differ, got {names}")
    for folder in [folder for _, folder in args.trajvit2] + [args.vit3d]:
        if not os.path.isfile(os.path.join(folder, "config.json")):
            parser.error(f"{folder}: no config.json there (a save_pretrained folder)")
    if any(not t > 0 for t in args.tome_tokens + args.rlt_tokens):
        parser.error("--tome_tokens and --rlt_tokens must be > 0")
    if args.output and args.plot is None:
        args.plot = os.path.splitext(args.output)[0] + ".png"
    return args


if __name__ == "__main__":
    parse_args()  # answers --help and usage errors before the heavy imports below

# Heavy imports, after the argument parsing: --help and usage errors need neither torch nor trajtok_hf.
import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import AutoModel, AutoProcessor  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_encoders import flop_counter  # noqa: E402
from motion_probes import embed_texts, embed_videos, run_probes  # noqa: E402

import trajtok_hf  # noqa: E402, F401  (registers the Auto classes)
from trajtok_hf.baselines import (  # noqa: E402
    apply_run_length_tokenization,
    apply_token_merging,
    apply_token_pooling,
    remove_token_merging,
    remove_token_reduction,
    tome_r_for_token_count,
    tome_tokens_per_layer,
    tubelet_changes,
)
from trajtok_hf.data import SyntheticVideoConfig, generate_clip  # noqa: E402
from trajtok_hf.metrics import retrieval_metrics  # noqa: E402


def clip_config(processor) -> SyntheticVideoConfig:
    video_processor = processor.video_processor
    size = video_processor.size
    return SyntheticVideoConfig(
        num_frames=video_processor.num_frames or 8,
        height=int(size.get("height") or size["shortest_edge"]),
        width=int(size.get("width") or size["shortest_edge"]),
    )


@torch.no_grad()
def video_cost(model, processor, videos: list[np.ndarray]) -> tuple[float, float]:
    """Mean GFLOPs and encoder tokens per clip of the video tower, each clip run alone (batch 1). The model's
    parameters must not require gradients (FlopCounterMode's module tracker trips over them under no_grad)."""
    flops, tokens = [], []
    for video in videos:
        pixels = processor(videos=[video], return_tensors="pt")["pixel_values_videos"]
        counter = flop_counter()
        with counter:
            output = model.get_video_features(pixel_values_videos=pixels)
        flops.append(counter.get_total_flops() / 1e9)
        tokens.append(float(output.attention_mask[:, 1:].sum()))
    return float(np.mean(flops)), float(np.mean(tokens))


def calibrate_rlt(processor, vision_config, clips: list[np.ndarray], targets: list[float]) -> list[float]:
    """Per target mean kept tokens, the threshold that keeps that many on these clips (the first tubelet's patches
    are always kept; the rest keep the patches whose change exceeds the threshold, a quantile of the changes)."""
    pixels = processor(videos=clips, return_tensors="pt")["pixel_values_videos"]
    changes = tubelet_changes(pixels, vision_config.tubelet_size, vision_config.patch_size)
    first, later = changes.shape[-1], changes[0].numel()
    flat = np.sort(changes.flatten().numpy())
    thresholds = []
    for target in targets:
        keep_fraction = min(max((target - first) / later, 0.0), 1.0)
        index = int(round((1.0 - keep_fraction) * len(flat))) - 1
        thresholds.append(float(flat[index]) if index >= 0 else 0.0)
    return thresholds


def evaluate(model, processor, clips: list[dict], args) -> dict:
    videos = [clip["video"] for clip in clips]
    captions = [clip["caption"] for clip in clips]
    tic = time.perf_counter()
    video_embeds = embed_videos(model, processor, videos, args.batch_size, torch.device("cpu"))
    text_embeds = embed_texts(model, processor, captions, args.batch_size, torch.device("cpu"))
    metrics = retrieval_metrics(text_embeds @ video_embeds.T)
    seconds = time.perf_counter() - tic
    gflops, tokens = video_cost(model, processor, videos[: args.flop_clips])
    row = {
        "gflops_per_clip": gflops,
        "tokens_per_clip": tokens,
        **{k: metrics[k] for k in ("t2v_R@1", "t2v_R@5", "t2v_R@10", "v2t_R@1", "v2t_R@5", "v2t_R@10")},
        "embed_seconds": seconds,
    }
    if args.probe_clips:
        probes = run_probes(model, processor, clips[: args.probe_clips], args.batch_size, torch.device("cpu"))
        row["probes"] = {name: result["pass_rate"] for name, result in probes.items()}
        row["probe_pairs"] = {name: result["pairs"] for name, result in probes.items()}
    return row


def mark_frontier(points: list[dict], key: str = "t2v_R@1") -> None:
    """``on_frontier`` for every point; for TrajViT2 points, the best ViT3D-family R@1 at no more GFLOPs."""
    for point in points:
        dominated = any(
            other is not point
            and other["gflops_per_clip"] <= point["gflops_per_clip"]
            and other[key] >= point[key]
            and (other["gflops_per_clip"] < point["gflops_per_clip"] or other[key] > point[key])
            for other in points
        )
        point["on_frontier"] = not dominated
    peers = [p for p in points if p["family"] != "trajvit2"]
    for point in points:
        if point["family"] == "trajvit2":
            cheaper = [p[key] for p in peers if p["gflops_per_clip"] <= point["gflops_per_clip"]]
            point["peer_best_at_budget"] = max(cheaper) if cheaper else None


def format_table(points: list[dict]) -> str:
    lines = [
        "| model | budget | tokens/clip | GFLOPs/clip | t2v R@1 | R@5 | R@10 | v2t R@1 | direction | reversal | swap "
        "| frontier |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in sorted(points, key=lambda p: p["gflops_per_clip"]):
        probes = p.get("probes", {})
        probe_cells = " | ".join(
            f"{100 * probes[k]:.1f}" if k in probes else "–" for k in ("direction", "time_reversal", "object_swap")
        )
        lines.append(
            f"| {p['name']} | {p['budget']} | {p['tokens_per_clip']:.1f} | {p['gflops_per_clip']:.3f} | "
            f"{p['t2v_R@1']:.1f} | {p['t2v_R@5']:.1f} | {p['t2v_R@10']:.1f} | {p['v2t_R@1']:.1f} | {probe_cells} | "
            f"{'yes' if p['on_frontier'] else 'no'} |"
        )
    return "\n".join(lines)


def plot(points: list[dict], path: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[bench]'): no plot")
        return False
    markers = {"trajvit2": "*", "vit3d": "s", "tome": "o", "rlt": "^", "pool": "v"}
    labels = {
        "trajvit2": "TrajViT2",
        "vit3d": "ViT3D",
        "tome": "ViT3D + ToMe",
        "rlt": "ViT3D + RLT",
        "pool": "ViT3D + pooling",
    }
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for family, marker in markers.items():
        rows = [p for p in points if p["family"] == family]
        if rows:
            ax.scatter(
                [p["gflops_per_clip"] for p in rows],
                [p["t2v_R@1"] for p in rows],
                marker=marker,
                s=120 if family == "trajvit2" else 50,
                label=labels[family],
            )
            for p in rows:  # TrajViT2 points by name, the others by their tokens per clip
                ax.annotate(
                    p["name"] if family == "trajvit2" else f"{p['tokens_per_clip']:.0f}",
                    (p["gflops_per_clip"], p["t2v_R@1"]),
                    fontsize=7,
                    xytext=(3, 3),
                    textcoords="offset points",
                )
    frontier = sorted((p for p in points if p["on_frontier"]), key=lambda p: p["gflops_per_clip"])
    ax.step(
        [p["gflops_per_clip"] for p in frontier],
        [p["t2v_R@1"] for p in frontier],
        where="post",
        color="grey",
        linewidth=1,
        label="frontier",
    )
    ax.set_xscale("log")
    ax.set_xlabel("GFLOPs per clip (video tower)")
    ax.set_ylabel("text→video R@1 (%)")
    ax.set_title("Held-out synthetic clips: quality against compute (labels: tokens per clip)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.manual_seed(0)
    vit3d = AutoModel.from_pretrained(args.vit3d).eval().requires_grad_(False)
    vit3d_processor = AutoProcessor.from_pretrained(args.vit3d)
    config = clip_config(vit3d_processor)
    clips = [generate_clip(config, args.seed, i) for i in range(args.num_clips)]
    points = []

    def add(family: str, name: str, budget: str, model, processor, **extra) -> None:
        row = {"family": family, "name": name, "budget": budget, **extra, **evaluate(model, processor, clips, args)}
        if "mean_layer_tokens" in extra:  # ToMe: the sequence shrinks layer by layer
            row["tokens_per_clip"] = extra["mean_layer_tokens"]
        points.append(row)
        print(
            f"{name:>10} {budget:>22}: {row['tokens_per_clip']:5.1f} tokens, {row['gflops_per_clip']:.3f} GFLOPs, "
            f"t2v R@1 {row['t2v_R@1']:.1f}",
            flush=True,
        )

    for name, folder in args.trajvit2:
        model = AutoModel.from_pretrained(folder).eval().requires_grad_(False)
        if clip_config(processor := AutoProcessor.from_pretrained(folder)) != config:
            raise SystemExit(f"error: {folder} processes clips of another size than {args.vit3d}")
        k = model.config.vision_config.trajtok_config.num_trajectories
        add("trajvit2", name, f"K={k}", model, processor, folder=folder)

    vision = vit3d.config.vision_config
    add("vit3d", "ViT3D", "all tubelets", vit3d, vit3d_processor, folder=args.vit3d)
    # [CLS] + the tubelet grid of the clips (the last tubelet completed by repeating the last frame).
    num_tokens = 1 + math.ceil(config.num_frames / vision.tubelet_size) * (config.height // vision.patch_size) * (
        config.width // vision.patch_size
    )
    for target in args.tome_tokens:
        schedule = tome_r_for_token_count(num_tokens, vision.num_hidden_layers, target)
        apply_token_merging(vit3d, schedule)
        mean_tokens = float(np.mean(tome_tokens_per_layer(num_tokens, schedule))) - 1
        add(
            "tome",
            "ToMe",
            f"r={list(schedule)}",
            vit3d,
            vit3d_processor,
            merge_schedule=list(schedule),
            mean_layer_tokens=mean_tokens,
        )
    remove_token_merging(vit3d)

    calibration = [generate_clip(config, TRAINING_SEED, i)["video"] for i in range(args.calibration_clips)]
    thresholds = calibrate_rlt(vit3d_processor, vision, calibration, args.rlt_tokens)
    for target, threshold in zip(args.rlt_tokens, thresholds, strict=True):
        apply_run_length_tokenization(vit3d, threshold)
        add("rlt", "RLT", f"τ={threshold:.3f}", vit3d, vit3d_processor, threshold=threshold, target_tokens=target)
    for kernel in args.pool_kernels:
        apply_token_pooling(vit3d, kernel)
        add("pool", "pooling", "×".join(map(str, kernel)), vit3d, vit3d_processor, kernel=list(kernel))
    remove_token_reduction(vit3d)

    mark_frontier(points)
    table = format_table(points)
    print(table)
    for p in points:
        if p["family"] == "trajvit2":
            best = p["peer_best_at_budget"]
            if best is None:
                verdict = "no ViT3D point at or below its GFLOPs"
            else:
                side = "on or above" if p["t2v_R@1"] >= best else "below"
                verdict = f"best ViT3D-family R@1 at ≤ its GFLOPs {best:.1f} ({side} the frontier)"
            print(f"{p['name']}: t2v R@1 {p['t2v_R@1']:.1f} at {p['gflops_per_clip']:.3f} GFLOPs; {verdict}")
    record = {
        "machine": {"processor": platform.processor() or platform.machine(), "torch": torch.__version__},
        "clips": {
            "seed": args.seed,
            "num_clips": args.num_clips,
            "probe_clips": args.probe_clips,
            "flop_clips": args.flop_clips,
            "frames": config.num_frames,
            "size": [config.height, config.width],
        },
        "points": points,
        "table": table,
    }
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.output}")
        if args.plot and plot(points, args.plot):
            print(f"wrote {args.plot}")
    return record


if __name__ == "__main__":
    main()
