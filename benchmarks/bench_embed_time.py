"""Parameter counts and video-embedding time of TrajViT2 vs the ViT3D baseline at the same encoder width/depth.

Both models are ``TrajViT2Model`` with the default config (encoder width 512, 24 layers, 16 heads, MLP 2048;
projection 256; BERT-base text tower); only ``vision_tokenizer`` differs: ``"trajtok"`` (default TrajTok: ConvNeXt-T
backbone, D=512, K=128, 1 token per trajectory) or ``"vit3d"`` (2×16×16 tubelets, learned positions). A third row is
TrajTok with the release's encoder that attends over all 128 token slots (``attend_to_inactive_tokens=True``).

Measured on one 16-frame 224² clip (batch 1, eval, fp32, ``torch.inference_mode``): ``get_video_features`` (the
whole vision tower + projection), the vision tokenizer alone, and the encoder alone (``encode_tokens`` on the
tokenizer's own output). Weights are random, and a random TrajTok activates far more trajectories (~120 of 128) than a
trained one (about 10–30 in real scenes), so the encoder is also timed on a token set with ``--typical-active`` active
trajectories. Each time is the median of ``--repeats`` runs after ``--warmup`` runs; the models are measured
round-robin (one run of each per round), so a change of load on a shared CPU hits all of them alike. The load average
before and after is recorded.

    python benchmarks/bench_embed_time.py --output embed_time.json
    python benchmarks/bench_embed_time.py --threads 1 --output embed_time.json   # on a CPU shared with other jobs

On a loaded CPU, two intra-op threads wait on each other and the times vary from round to round; one thread gives
stable numbers, which is what ``benchmarks/results/embed_time.json`` holds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", help="write the results as JSON to this path")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--typical-active", type=int, default=24, help="active trajectories of a trained TrajTok")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    parse_args()  # answers --help and usage errors before the heavy imports below

# Heavy imports, after the argument parsing: --help and usage errors need neither torch nor trajtok_hf.
import torch

from trajtok_hf import TrajViT2Config, TrajViT2Model


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    video = torch.randn(1, args.frames, 3, args.size, args.size)
    variants = [
        ("TrajViT2 (TrajTok, paper: active tokens only)", {"vision_tokenizer": "trajtok"}),
        (
            "TrajViT2 (TrajTok, release: all 128 slots)",
            {"vision_tokenizer": "trajtok", "vision_config": {"attend_to_inactive_tokens": True}},
        ),
        ("ViT3D (2x16x16 tubelets, same encoder)", {"vision_tokenizer": "vit3d"}),
    ]
    rows, jobs = [], []
    for name, kwargs in variants:
        model = TrajViT2Model(TrajViT2Config(**kwargs)).eval()
        vision = model.vision_model
        row = {
            "model": name,
            "params_total": count(model),
            "params_vision_tower": count(vision),
            "params_vision_tokenizer": count(vision.tokenizer),
            "params_vision_encoder": count(vision) - count(vision.tokenizer),
            "params_text_tower": count(model.text_model),
            "params_projections_and_scale": count(model.visual_projection) + count(model.text_projection) + 1,
        }
        with torch.inference_mode():
            tok = vision.tokenizer(video)
        if model.config.vision_tokenizer == "trajtok":
            tokens, mask = tok.trajectory_tokens, tok.trajectory_mask
            row["active_trajectories"] = int(tok.num_trajectories[0])
        else:
            tokens, mask = tok.tokens, tok.token_mask
        row["encoder_sequence_length"] = 1 + (
            tokens.shape[1] if vision.config.attend_to_inactive_tokens else int(mask.sum())
        )
        rows.append(row)
        jobs.append((row, "embed_time", lambda m=model: m.get_video_features(video)))
        jobs.append((row, "tokenizer_time", lambda v=vision: v.tokenizer(video)))
        jobs.append((row, "encoder_time", lambda v=vision, t=tokens, k=mask: v.encode_tokens(t, k)))
        if model.config.vision_tokenizer == "trajtok" and not vision.config.attend_to_inactive_tokens:
            typical = torch.zeros_like(mask)
            typical[:, : args.typical_active] = True
            row["typical_active"] = args.typical_active
            jobs.append((row, "encoder_time_typical", lambda v=vision, t=tokens, k=typical: v.encode_tokens(t, k)))

    load_before = os.getloadavg()
    times = {(id(row), key): [] for row, key, _ in jobs}
    with torch.inference_mode():
        for _ in range(args.warmup):
            for _, _, fn in jobs:
                fn()
        for _ in range(args.repeats):
            for row, key, fn in jobs:
                start = time.perf_counter()
                fn()
                times[(id(row), key)].append(time.perf_counter() - start)
    for row, key, _ in jobs:
        samples = times[(id(row), key)]
        row[f"{key}_s"] = statistics.median(samples)
        row[f"{key}_min_s"] = min(samples)  # the least disturbed run, for a CPU shared with other jobs
        row[f"{key}_samples_s"] = samples

    result = {
        "clip": {"batch": 1, "frames": args.frames, "size": args.size, "dtype": "float32"},
        "warmup": args.warmup,
        "repeats": args.repeats,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "rows": rows,
    }

    header = (
        f"{'model':<46} {'params':>8} {'vision':>8} {'tok.':>7} {'enc.':>7} {'seq':>5} "
        f"{'embed s':>8} {'tok. s':>7} {'enc. s':>7}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        line = (
            f"{row['model']:<46} {row['params_total'] / 1e6:>7.1f}M {row['params_vision_tower'] / 1e6:>7.1f}M "
            f"{row['params_vision_tokenizer'] / 1e6:>6.1f}M {row['params_vision_encoder'] / 1e6:>6.1f}M "
            f"{row['encoder_sequence_length']:>5} {row['embed_time_s']:>8.2f} {row['tokenizer_time_s']:>7.2f} "
            f"{row['encoder_time_s']:>7.2f}"
        )
        if "encoder_time_typical_s" in row:
            line += f"  (encoder with {row['typical_active']} active: {row['encoder_time_typical_s']:.3f} s)"
        print(line)
    print(
        f"threads {result['threads']}, load average before {load_before[0]:.2f}, "
        f"after {result['load_average_after'][0]:.2f}"
    )
    if args.output:
        with open(args.output, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
