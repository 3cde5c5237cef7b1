"""Streamed vs one-shot Perceiver pixel keys (CPU inference): interleaved A/B timing of the TrajTok tokenizer.

At inference on CPU the two Perceivers make and use their pixel keys in blocks of
``trajtok_hf.models.attention_trajtok.STREAM_BLOCK_PIXELS`` rows instead of as (B·N, D) tensors (see that module's
docstring). This script times both paths of the *same* model in one process: each round runs the one-shot path
(streaming switched off by raising the block size above every input) and then the streamed path, so slow drifts of
the machine (other load, frequency changes) hit both alike; a separate run per path, minutes apart, is not comparable
on a shared machine. Per path: the tokenizer's latency and its backbone / query Perceiver / refinement times (forward
hooks), medians over ``--rounds``; and the largest absolute difference of the outputs (trajectory tokens, assignment
logits), and the pixels whose hard id differs with the largest gap between their two best logits (ties within float
rounding, which any change of summation order may break either way; the tokens of the trajectories they join or
leave then differ too).

``--compare streamed_written_out streamed`` times instead how the streamed query Perceiver attends to each block:
with the written-out scores and softmax, or through PyTorch's CPU flash-attention kernel (the default where PyTorch
has it, ``attention_trajtok.attention_with_log_sum_exp``). ``--dtype bf16`` runs the model in bfloat16 (the input
stays float32, as the processor returns it).

    python benchmarks/bench_streaming.py                       # release tokenizer, T = 16 and 64, 5 rounds
    python benchmarks/bench_streaming.py --frames 8 --quick    # tiny tokenizer at 64², seconds
    python benchmarks/bench_streaming.py --compare streamed_written_out streamed --dtype bf16
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

STAGES = ("feature_extractor", "query_perceiver", "refinement_perceiver")
ONE_SHOT = 1 << 62  # a block size no input reaches: the one-shot paths
# path → (block rows, None for --block_rows; whether the streamed attention may use the CPU flash kernel)
PATHS = {"one_shot": (ONE_SHOT, True), "streamed": (None, True), "streamed_written_out": (None, False)}
DTYPES = {"fp32": "float32", "bf16": "bfloat16"}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, nargs="+", default=None, help="T values (default 16 64; --quick: 8)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timed rounds per T (after one warm-up)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--quick", action="store_true", help="tiny tokenizer at 64² (CI-sized), blocks of 256 rows")
    parser.add_argument(
        "--block_rows",
        type=int,
        default=None,
        help="rows per streamed block (default: the package's STREAM_BLOCK_PIXELS; --quick: 256)",
    )
    parser.add_argument(
        "--compare",
        nargs=2,
        choices=sorted(PATHS),
        default=["one_shot", "streamed"],
        metavar=("BASELINE", "CANDIDATE"),
        help=f"the two paths timed against each other (default: one_shot streamed; choices: {', '.join(PATHS)})",
    )
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32", help="model precision (default fp32)")
    parser.add_argument("--output", default=None, help="JSON path (default: print only)")
    args = parser.parse_args(argv)
    if args.compare[0] == args.compare[1]:
        parser.error("--compare needs two different paths")
    args.frames = args.frames or ([8] if args.quick else [16, 64])
    if args.rounds < 1 or any(t < 1 for t in args.frames):
        parser.error("--rounds and --frames must be >= 1")
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be >= 1")
    if args.block_rows is not None and args.block_rows < 1:
        parser.error("--block_rows must be >= 1")
    args.parser = parser  # main reports the model's own argument errors through it
    return args


if __name__ == "__main__":
    parse_args()  # answers --help and usage errors before the heavy imports below

# Heavy imports, after the argument parsing: --help and usage errors need neither torch nor trajtok_hf.
import torch

from trajtok_hf import TrajTokConfig, TrajTokModel
from trajtok_hf.models import attention_trajtok


def _stage_timer(model: TrajTokModel, sink: dict) -> None:
    started = {}
    for name in STAGES:
        module = getattr(model, name)
        module.register_forward_pre_hook(lambda _m, _i, name=name: started.__setitem__(name, time.perf_counter()))
        module.register_forward_hook(
            lambda _m, _i, _o, name=name: (
                sink["current"].setdefault(name, []).append(time.perf_counter() - started[name])
            )
        )


def run(
    frames: int,
    rounds: int,
    quick: bool,
    block_rows: int | None = None,
    seed: int = 0,
    compare: tuple[str, str] = ("one_shot", "streamed"),
    dtype: str = "fp32",
) -> dict:
    torch.manual_seed(seed)
    if quick:
        config = TrajTokConfig(
            backbone_config=dict(depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 24, 32]),
            hidden_size=32,
            num_trajectories=8,
            num_attention_heads=4,
            assignment_hidden_size=16,
            assignment_embed_dim=8,
        )
        size = 64
    else:
        config = TrajTokConfig()  # the release width: ConvNeXt-T, D = 512, K = 128, chunks of 16
        size = 224
    model = TrajTokModel(config).eval().to(getattr(torch, DTYPES[dtype]))
    video = torch.randn(1, frames, 3, size, size)
    sink = {"current": {}}
    _stage_timer(model, sink)
    default_block = attention_trajtok.STREAM_BLOCK_PIXELS
    block_rows = block_rows or default_block
    if video.shape[1] * (size // 4) ** 2 <= block_rows:
        raise ValueError(
            f"{frames} frames of {size}² fit in one block of {block_rows} rows: nothing would stream "
            "(use more frames or a smaller --block_rows)"
        )
    paths = {path: (PATHS[path][0] or block_rows, PATHS[path][1]) for path in compare}
    latency = {path: [] for path in paths}
    stages = {path: {} for path in paths}
    outputs = {}
    flash_kernel = attention_trajtok._CPU_FLASH_ATTENTION

    def use(path: str) -> None:
        attention_trajtok.STREAM_BLOCK_PIXELS, flash = paths[path]
        attention_trajtok._CPU_FLASH_ATTENTION = flash_kernel if flash else None

    try:
        with torch.inference_mode():
            for path in paths:  # warm-up, and the outputs to compare
                use(path)
                outputs[path] = model(video)
            for _ in range(rounds):
                for path in paths:
                    use(path)
                    sink["current"] = stages[path]
                    tic = time.perf_counter()
                    model(video)
                    latency[path].append(time.perf_counter() - tic)
    finally:
        attention_trajtok.STREAM_BLOCK_PIXELS = default_block
        attention_trajtok._CPU_FLASH_ATTENTION = flash_kernel
    a, b = (outputs[path] for path in compare)
    # Hard ids are an argmax: where a pixel's two best logits lie within float rounding of each other, the two
    # summation orders may pick different slots (and the tokens then pool different pixels). Count those pixels and
    # report the largest top-2 gap among them, to show that only such ties flip.
    differ = a.trajectory_ids != b.trajectory_ids
    top2 = a.assignment_logits.topk(2, dim=-1).values
    gaps = (top2[..., 0] - top2[..., 1])[differ]
    result = {
        "baseline": compare[0],
        "candidate": compare[1],
        "dtype": dtype,
        "cpu_flash_kernel": flash_kernel is not None,
        "frames": frames,
        "size": size,
        "pixels_per_chunk": (min(frames, config.chunk_size) * (size // 4) ** 2),
        "block_rows": block_rows,
        "rounds": rounds,
        "max_abs_diff_tokens": float((a.trajectory_tokens.float() - b.trajectory_tokens.float()).abs().max()),
        "max_abs_diff_logits": float((a.assignment_logits.float() - b.assignment_logits.float()).abs().max()),
        "same_ids": bool(torch.equal(a.trajectory_ids, b.trajectory_ids)),
        "pixels_with_other_id": int(differ.sum()),
        "pixels": int(differ.numel()),
        "max_top2_gap_where_ids_differ": float(gaps.max()) if gaps.numel() else None,
    }
    for path in paths:
        result[path] = {
            "latency_s": statistics.median(latency[path]),
            "latencies_s": latency[path],
            **{f"{name}_s": statistics.median(values) for name, values in stages[path].items()},
        }
    result["speedup"] = result[compare[0]]["latency_s"] / result[compare[1]]["latency_s"]
    return result


def format_table(results: list[dict]) -> str:
    first = results[0]
    lines = [
        f"| T | dtype | tokenizer s {first['baseline']} → {first['candidate']} | speed-up | backbone s "
        "| query Perceiver s | refinement s | max abs diff (tokens / logits) "
        "| pixels with another id (top-2 gap there) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        one, streamed = r[r["baseline"]], r[r["candidate"]]
        cells = [f"{one[f'{name}_s']:.2f} → {streamed[f'{name}_s']:.2f}" for name in STAGES]
        lines.append(
            f"| {r['frames']} | {r['dtype']} | {one['latency_s']:.2f} → {streamed['latency_s']:.2f} | "
            f"{r['speedup']:.2f}× | "
            + " | ".join(cells)
            + f" | {r['max_abs_diff_tokens']:.1e} / {r['max_abs_diff_logits']:.1e} | "
            + (
                f"{r['pixels_with_other_id']} of {r['pixels']} (≤ {r['max_top2_gap_where_ids_differ']:.1e})"
                if r["pixels_with_other_id"]
                else f"0 of {r['pixels']}"
            )
            + " |"
        )
    return "\n".join(lines)


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    block_rows = args.block_rows or (256 if args.quick else None)
    try:
        results = [
            run(t, args.rounds, args.quick, block_rows, compare=tuple(args.compare), dtype=args.dtype)
            for t in args.frames
        ]
    except ValueError as error:
        args.parser.error(str(error))
    print(format_table(results))
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        record = {
            "results": results,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "machine": platform.machine(),
            "processor": platform.processor(),
        }
        with open(args.output, "w") as f:
            json.dump(record, f, indent=2)
        print(f"wrote {args.output}")
    return results


if __name__ == "__main__":
    main()
