"""Token packing of the TrajViT2 encoder: padded batch vs one packed sequence under a block-diagonal mask.

``vision_config.token_packing`` (an addition to the paper; the official TrajViT2 pads every clip of a batch to the
batch's largest token count): ``"off"`` runs a batch of clips as a padded ``(B, 1 + L_max, D)`` sequence under the
padding mask; ``"on"`` concatenates every clip's [CLS] and active tokens into one sequence of N = Σ_b (1 + L_b) tokens
under a block-diagonal mask; ``"auto"`` packs only when the per-layer FLOP model ``encoder_layer_flops`` says it is
cheaper. This script times ``TrajViT2VisionTransformer.encode_tokens`` in the three modes on the same precomputed
tokens (the tokenizer does not run), for batches whose clips hold different numbers of active tokens.

Scales (``--scales``), each the vision transformer of a TrajViT2, randomly initialised, eval mode, built in the
measured dtype through ``AutoModel.from_config(config, dtype=...)`` (as ``from_pretrained(..., dtype=...)``):

- ``tiny``: the vision config of ``checkpoints/trajvit2-tiny-shapes`` (width 128, 4 layers, 4 heads, MLP 512; 32
  trajectory slots per 16-frame chunk). Active tokens per clip: ``--tiny_counts`` (trajectories per clip; default
  1 2 3 3 4 6 2 1, a few objects per clip as in that checkpoint's synthetic-shapes data) × n for each n of
  ``--tiny_tokens_per_trajectory`` (default 1 and 4), in 32·n slots.
- ``vit-l``: a ViT-L-like encoder (width 1024, 24 layers, 16 heads, MLP 4096) behind the default TrajTok with
  ``output_size=1024``, a 16-frame clip = one chunk of K=128 slots. Active tokens per clip: ``--vitl_counts`` (default
  20 45 120 30 60 25 90 40: a mixed batch spread over 20–120 active tokens per clip, from clips of a few large
  segments to clips of many small ones).

A count list is one batch (its length is the batch size, 8 by default). The active slots of each clip are drawn at
random positions (seeded) among its slots; tokens are standard normal in the measured dtype (``--dtype``: fp32, bf16
or both).

Measured per (scale, n, dtype, mode), under ``torch.inference_mode``, with torch's default threads unless
``--threads`` is given (on a CPU that other jobs share, the default threads wait for each other at every op, which
can hide the difference between the modes; ``--threads 1`` isolates it), the model's default attention (SDPA):

- ``latency_s``: the median of ``--repeats`` timed calls, after one FLOP-counting call and ``--warmup`` plain calls
  (both untimed, they warm up kernels and allocations); the modes take turns call by call so that a change in the
  machine's load (other jobs share the CPU) reaches all three alike. CUDA: synchronised around each call.
- ``gflops``: ``torch.utils.flop_counter.FlopCounterMode`` over one call (2 FLOPs per multiply-add; matmuls and
  attention only), with ``bench_encoders.flop_counter``'s formula for CPU SDPA;
- ``packed``: whether the call ran packed (``"auto"`` decides per batch); ``tokens``: the tokens the encoder layers
  processed (B·(1 + L_max) padded, N packed);
- ``speedup``: ``off`` latency / the mode's latency (> 1: faster than padded); ``flop_ratio``: ``off`` GFLOPs / the
  mode's; ``max_abs_diff_vs_off``: the largest |difference| of ``pooler_output`` against ``off`` (float summation
  order only).

Per batch also: ``padded_tokens``, ``packed_tokens`` and the cost model's GFLOPs (``encoder_layer_flops`` × layers) of
both layouts. The machine (CPU model, cores, load average at the start) is recorded with the numbers.

    python benchmarks/packing.py                                   # both scales, fp32 and bf16
    python benchmarks/packing.py --scales tiny --output /tmp/packing.json
    python benchmarks/packing.py --scales vit-l --dtype bf16 --vitl_counts 30 30 30 120 --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
TINY_CHECKPOINT = REPO_ROOT / "checkpoints" / "trajvit2-tiny-shapes"
SCALES = ("tiny", "vit-l")
DTYPES = ("fp32", "bf16")
MODES = ("off", "on", "auto")
TINY_SLOTS_PER_CHUNK = 32  # the tiny preset's num_trajectories, one 16-frame chunk
VITL_SLOTS = 128  # the default TrajTok's K, one 16-frame chunk
VITL = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", nargs="+", choices=SCALES, default=list(SCALES))
    parser.add_argument("--dtype", nargs="+", choices=DTYPES, default=list(DTYPES))
    parser.add_argument(
        "--tiny_counts",
        type=int,
        nargs="+",
        default=[1, 2, 3, 3, 4, 6, 2, 1],
        help="tiny scale: active trajectories per clip (one clip each; the batch)",
    )
    parser.add_argument(
        "--tiny_tokens_per_trajectory",
        type=int,
        nargs="+",
        default=[1, 4],
        help="tiny scale: tokens per trajectory n; each clip holds count·n active tokens of 32·n slots",
    )
    parser.add_argument(
        "--vitl_counts",
        type=int,
        nargs="+",
        default=[20, 45, 120, 30, 60, 25, 90, 40],
        help=f"vit-l scale: active tokens per clip, of {VITL_SLOTS} slots (one clip each; the batch)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per mode (the median is reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls per mode after the FLOP-counting one")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=None, help="JSON path (default: the JSON goes to stdout)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0, got {args.warmup}")
    if any(n < 1 for n in args.tiny_tokens_per_trajectory):
        parser.error(f"--tiny_tokens_per_trajectory must be >= 1, got {args.tiny_tokens_per_trajectory}")
    for name, slots in (("tiny_counts", TINY_SLOTS_PER_CHUNK), ("vitl_counts", VITL_SLOTS)):
        counts = getattr(args, name)
        if any(not 0 <= c <= slots for c in counts):
            parser.error(f"--{name} must lie in [0, {slots}], got {counts}")
    args.dtype = list(dict.fromkeys(args.dtype))
    args.scales = list(dict.fromkeys(args.scales))
    return args


if __name__ == "__main__":
    parse_args()  # answers --help and usage errors before the heavy imports below

# Heavy imports, after the argument parsing: --help and usage errors need neither torch nor trajtok_hf.
import torch  # noqa: E402
from transformers import AutoModel  # noqa: E402

import trajtok_hf  # noqa: E402,F401  (registers the Auto classes)
from trajtok_hf import TrajViT2Config, TrajViT2VisionConfig  # noqa: E402
from trajtok_hf.models.modeling_trajvit2 import encoder_layer_flops  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_encoders import cpu_model, flop_counter, torch_dtype  # noqa: E402


def machine(device: torch.device) -> dict:
    return {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "threads": torch.get_num_threads(),
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def vision_config(scale: str) -> TrajViT2VisionConfig:
    if scale == "tiny":
        return TrajViT2Config.from_pretrained(TINY_CHECKPOINT).vision_config
    return TrajViT2VisionConfig(**VITL, trajtok_config=dict(output_size=1024))


def batches(args) -> list[dict]:
    """The measured batches: (scale, n, active tokens per clip, slots per clip)."""
    out = []
    for scale in args.scales:
        if scale == "tiny":
            for n in args.tiny_tokens_per_trajectory:
                counts = [c * n for c in args.tiny_counts]
                slots = TINY_SLOTS_PER_CHUNK * n
                out.append({"scale": scale, "tokens_per_trajectory": n, "counts": counts, "slots": slots})
        else:
            counts = list(args.vitl_counts)
            out.append({"scale": scale, "tokens_per_trajectory": 1, "counts": counts, "slots": VITL_SLOTS})
    return out


def make_inputs(counts: list[int], slots: int, width: int, dtype: torch.dtype, device, seed: int):
    """Standard-normal tokens (B, slots, width) and a mask with `counts[b]` active slots at random positions."""
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randn(len(counts), slots, width, generator=generator)
    order = torch.rand(len(counts), slots, generator=generator).argsort(dim=1)
    mask = order < torch.tensor(counts)[:, None]
    return tokens.to(device=device, dtype=dtype), mask.to(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(vision, tokens, mask, args, device) -> dict:
    """One batch in the three modes: FLOPs and packing decision (one counting call each), then warm-up and timed calls
    with the modes taking turns."""
    packed_calls = []
    original = vision._encode_packed

    def counting(*a, **k):
        packed_calls.append(1)
        return original(*a, **k)

    vision._encode_packed = counting  # instance attribute: records whether a call ran packed
    results, pooled = {}, {}
    try:
        with torch.inference_mode():
            for mode in MODES:
                packed_calls.clear()
                with flop_counter() as counter:
                    out = vision.encode_tokens(tokens, mask, token_packing=mode)
                _sync(device)
                pooled[mode] = out.pooler_output.float()
                packed = bool(packed_calls)
                results[mode] = {"gflops": counter.get_total_flops() / 1e9, "packed": packed, "latencies_s": []}
            for _ in range(args.warmup):
                for mode in MODES:
                    vision.encode_tokens(tokens, mask, token_packing=mode)
            _sync(device)
            for _ in range(args.repeats):
                for mode in MODES:
                    _sync(device)
                    start = time.perf_counter()
                    vision.encode_tokens(tokens, mask, token_packing=mode)
                    _sync(device)
                    results[mode]["latencies_s"].append(time.perf_counter() - start)
    finally:
        del vision._encode_packed
    for mode, result in results.items():
        result["latency_s"] = statistics.median(result["latencies_s"])
        result["speedup"] = results["off"]["latency_s"] / result["latency_s"]
        result["flop_ratio"] = results["off"]["gflops"] / result["gflops"]
        result["max_abs_diff_vs_off"] = (pooled[mode] - pooled["off"]).abs().max().item()
    return results


def measure_batch(vision, config, batch: dict, dtype_name: str, args, device) -> dict:
    """One row of the report: the batch's three modes and its token counts and cost-model GFLOPs."""
    counts = batch["counts"]
    tokens, mask = make_inputs(counts, batch["slots"], config.token_width, torch_dtype(dtype_name), device, args.seed)
    size, longest = len(counts), 1 + max(counts)
    padded_tokens, packed_tokens = size * longest, sum(1 + c for c in counts)
    modes = measure(vision, tokens, mask, args, device)
    for result in modes.values():
        result["tokens"] = packed_tokens if result["packed"] else padded_tokens
    width, layers, intermediate = config.hidden_size, config.num_hidden_layers, config.intermediate_size
    return {
        **batch,
        "dtype": dtype_name,
        "batch_size": size,
        "hidden_size": width,
        "num_hidden_layers": layers,
        "intermediate_size": intermediate,
        "attn_implementation": config._attn_implementation,
        "padded_tokens": padded_tokens,
        "packed_tokens": packed_tokens,
        "cost_model_gflops": {
            "padded": layers * encoder_layer_flops(size, longest, width, intermediate) / 1e9,
            "packed": layers * encoder_layer_flops(1, packed_tokens, width, intermediate) / 1e9,
        },
        "modes": modes,
    }


def run(args) -> dict:
    device = torch.device(args.device)
    previous_threads = torch.get_num_threads()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        report = {
            "benchmark": "packing",
            "machine": machine(device),
            "settings": vars(args).copy(),
            "measurements": [],
        }
        started = time.perf_counter()
        for dtype_name in args.dtype:
            for scale in args.scales:
                config = vision_config(scale)
                model = AutoModel.from_config(config, dtype=torch_dtype(dtype_name)).eval().to(device)
                for batch in (b for b in batches(args) if b["scale"] == scale):
                    report["measurements"].append(
                        measure_batch(model.vision_model, model.config, batch, dtype_name, args, device)
                    )
                    print(f"measured {scale} n={batch['tokens_per_trajectory']} {dtype_name}", file=sys.stderr)
                del model
        report["wall_s"] = time.perf_counter() - started
    finally:
        torch.set_num_threads(previous_threads)
    return report


def markdown_table(report: dict) -> str:
    header = ["scale", "n", "dtype", "padded / packed tokens"]
    for mode in MODES:
        header += [f"{mode} s", f"{mode} GFLOPs"]
    header += ["auto packs", "speedup on", "speedup auto"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in report["measurements"]:
        modes = row["modes"]
        cells = [row["scale"], str(row["tokens_per_trajectory"]), row["dtype"]]
        cells.append(f"{row['padded_tokens']} / {row['packed_tokens']}")
        for mode in MODES:
            cells += [f"{modes[mode]['latency_s']:.4g}", f"{modes[mode]['gflops']:.4g}"]
        cells += [str(modes["auto"]["packed"]), f"{modes['on']['speedup']:.2f}", f"{modes['auto']['speedup']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    args = parse_args(argv)
    report = run(args)
    print(markdown_table(report))
    if args.output:
        output = Path(args.output)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {output} ({report['wall_s']:.1f} s)")
    else:
        print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
