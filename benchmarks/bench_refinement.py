"""Hard-mask refinement (paper Sec. 3): segment-softmax fast path vs the dense masked reference.

For each T, the default tokenizer's refinement Perceiver (D=512, K=128, 8 heads, depth 2) runs on T·56·56 pixel
features with hard ids from a real assignment (a random TrajTok's argmax), once with ``implementation="segment"``
and once with ``"dense"``. Reported: median forward time over ``--repeats`` runs after a warm-up, the peak resident
memory added by the run (each measurement runs in its own subprocess, so peaks do not mix), and the max abs
difference between the two outputs.

    python benchmarks/bench_refinement.py --frames 8 16 32 64 --output refinement.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--tokens_per_trajectory", type=int, default=1, choices=[1, 2, 4])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=str, default=None, help="write the results as JSON here")
    parser.add_argument("--single", nargs=2, metavar=("IMPL", "T"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    parse_args()  # answers --help and usage errors before the heavy imports below

# Heavy imports, after the argument parsing: --help and usage errors need neither torch nor trajtok_hf.
import torch

from trajtok_hf import TrajTokConfig
from trajtok_hf.models.perceiver_trajtok import HardMask, TrajTokPerceiver


def _setup(frames: int, n: int, seed: int = 0):
    torch.manual_seed(seed)
    config = TrajTokConfig(tokens_per_trajectory=n)
    perceiver = TrajTokPerceiver(
        config.hidden_size,
        config.num_attention_heads,
        config.refinement_perceiver_depth,
        config.perceiver_ff_mult,
        rope_theta=config.rope_theta,
        rope_fraction=config.rope_fraction,
        latent_norm_placement=config.latent_norm_placement,
        attention_config=config,
    ).eval()
    for p in perceiver.parameters():  # a non-trivial init (LayerNorms ones/zeros, linears std 0.02)
        if p.ndim > 1:
            torch.nn.init.trunc_normal_(p, std=0.02)
    pixels = frames * 56 * 56
    features = torch.randn(1, pixels, config.hidden_size)
    # Spatially coherent ids (blocks of 8×8 pixels per frame over ~40 trajectories), like a real segmentation.
    rows = torch.arange(56) // 8
    block = (rows[:, None] * 7 + rows[None, :]) % 40
    ids = block.flatten().repeat(frames)[None]
    queries = torch.randn(1, config.num_trajectories * n, config.hidden_size)
    return perceiver, queries, features, ids


def _run_single(implementation: str, frames: int, n: int, repeats: int) -> dict:
    perceiver, queries, features, ids = _setup(frames, n)
    hard = HardMask(trajectory_ids=ids, tokens_per_trajectory=n, implementation=implementation)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    with torch.inference_mode():
        out = perceiver(queries, features, hard)  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            out = perceiver(queries, features, hard)
            times.append(time.perf_counter() - start)
    peak_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_rss) / 1024
    torch.save(out, os.environ["BENCH_OUT"])
    return {"time_s": statistics.median(times), "peak_extra_mib": peak_mib}


def main(argv=None):
    args = parse_args(argv)
    if args.single:
        print(json.dumps(_run_single(args.single[0], int(args.single[1]), args.tokens_per_trajectory, args.repeats)))
        return

    import tempfile

    rows = []
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, n={args.tokens_per_trajectory}")
    print(
        f"{'T':>4} {'segment s':>10} {'dense s':>10} {'speed-up':>9} "
        f"{'seg MiB':>9} {'dense MiB':>10} {'max |diff|':>11}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for frames in args.frames:
            result = {"frames": frames, "pixels": frames * 3136}
            outs = {}
            for implementation in ("segment", "dense"):
                env = dict(os.environ, BENCH_OUT=os.path.join(tmp, f"{implementation}.pt"))
                cmd = [
                    sys.executable,
                    __file__,
                    "--single",
                    implementation,
                    str(frames),
                    "--tokens_per_trajectory",
                    str(args.tokens_per_trajectory),
                    "--repeats",
                    str(args.repeats),
                ]
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
                if proc.returncode != 0:
                    raise RuntimeError(proc.stderr[-2000:])
                result[implementation] = json.loads(proc.stdout.strip().splitlines()[-1])
                outs[implementation] = torch.load(env["BENCH_OUT"], weights_only=True)
            result["max_abs_diff"] = float((outs["segment"] - outs["dense"]).abs().max())
            result["speedup"] = result["dense"]["time_s"] / result["segment"]["time_s"]
            rows.append(result)
            print(
                f"{frames:>4} {result['segment']['time_s']:>10.3f} {result['dense']['time_s']:>10.3f} "
                f"{result['speedup']:>8.1f}× {result['segment']['peak_extra_mib']:>9.0f} "
                f"{result['dense']['peak_extra_mib']:>10.0f} {result['max_abs_diff']:>11.2e}",
                flush=True,
            )
    if args.output:
        with open(args.output, "w") as f:
            json.dump({"tokens_per_trajectory": args.tokens_per_trajectory, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
