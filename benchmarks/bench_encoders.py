"""Video-embedding cost of TrajViT2 vs ViT3D vs ToMe-ViT3D (token-count matched), and TrajTok's cost by stage.

Models (each a ``TrajViT2VisionModel``, the vision tower: tokenizer + [CLS] + encoder + final LayerNorm; no text
tower, no projection), random weights, eval mode, fp32 and/or bf16 (``--dtype``), ``torch.inference_mode``:

- ``trajvit2``: TrajTok tokens (ConvNeXt-T backbone, D=512, K=128, 1 token per trajectory) → encoder over the active
  tokens (compacted, ``compact_tokens=True``).
- ``vit3d``: 2×16×16 tubelet tokens → the same encoder.
- ``tome``: ViT3D with ToMe token merging in every layer (``trajtok_hf/baselines/token_merging.py``), its per-layer
  merge schedule from ``tome_r_for_token_count`` so that the mean number of tokens entering each layer equals the
  TrajViT2 encoder's sequence length at the same T (1 + active tokens; measured in this run when ``trajvit2`` is
  measured too, else 1 + ⌈T/chunk⌉·N). When even halving the tokens in every layer cannot get that low (ViT3D at T ≥ 8
  against ~25 tokens per chunk), the most aggressive schedule is used and ``tome.target_reached`` is false.

Scales: ``release`` (encoder width 512, 24 layers, 16 heads, MLP 2048; default TrajTok), ``vit-l`` (width 1024, 24
layers, 16 heads, MLP 4096; the same TrajTok with ``output_size=1024``, so its output projection emits 1024-wide
tokens and the encoder needs no input projection), ``tiny`` (a few-layer toy at 64², for ``--quick``/CI only).

Precision (``--dtype fp32``, ``bf16`` or both: ``--dtype fp32 bf16``). A model is built in the measured dtype the
way ``from_pretrained(..., dtype=torch.bfloat16)`` builds it: ``AutoModel.from_config(config, dtype=...)`` sets
torch's default dtype while the modules are created, and the nested TrajTok and ConvNeXt sub-models follow it
(``from_sub_config``), so every parameter is in that dtype (the run checks it: ``param_dtypes``). The input video is
float32, as the video processor returns it; the models' public ``forward`` checks it (``check_video_pixels``) and
casts it to the model's dtype. No autocast, no manual casts: the model runs as a user runs it. Every measurement
carries its ``dtype``; the TrajViT2 / ViT3D / ToMe ratios are taken within a dtype, and ``bf16_over_fp32`` compares
each (scale, model, T, batch) across dtypes when both are measured.

Active trajectories (``--active_trajectories N``, default 24). With random weights almost all K=128 slots win some
pixel, far more than a trained TrajTok (about 10–30 in real scenes), and the encoder's cost scales with that
number. So the tokenizer's hard assignment is fixed to a realistic one: two forward hooks make the pixel embeddings of
the assignment (``pixel_head`` output) equal to the query embedding (``query_head`` output) of the pixel's
trajectory in a synthetic segmentation — N Voronoi regions around N distinct seed pixels of the 1/4 grid, panning by
one cell per frame (a toroidal shift, so every frame of every chunk holds all N regions). Each pixel's cosine with its
own query is then 1, the maximum, so the argmax picks slots 0..N−1 and exactly N trajectories per chunk are active;
the run checks it (``active_trajectories_per_chunk``). Every stage still runs in full: the heads, the logits einsum,
the argmax, the soft pooling and the segment-softmax refinement have costs independent of which ids win (the
segment softmax is O(pixels·D) whatever the partition); the only additions are a gather of the pixel embeddings
(pixels × 64 floats per chunk). What changes is only the number of tokens the encoder sees.

Measured per (scale, dtype, model, T, batch), in a fresh process per measurement (``--isolation``; default ``fork``: a
forked child of this lean parent, which never runs a tensor op, so the child starts without the parent's threads or
any CUDA state and without re-importing torch; ``subprocess``: a new interpreter; ``none``: in-process, for tests):

- latency: median of ``--repeats`` runs after one FLOP-counting run and ``--warmup`` plain runs (CUDA: synchronised);
- peak memory: CPU — the child's peak RSS (VmHWM from /proc, reset at the child's start through
  /proc/self/clear_refs, else ``ru_maxrss``), reported absolute (``peak_memory_mib``), above the child's RSS before
  the model was built (``peak_extra_mib``: weights + activations + workspace; the ratios use this one) and above the
  RSS after building (``activation_peak_mib``); CUDA — ``torch.cuda.max_memory_allocated`` the same three ways;
- tokens per clip: encoder input length ([CLS] included); ToMe: the mean over layers of the tokens entering each
  layer (``tokens_per_layer`` has them all);
- GFLOPs: ``torch.utils.flop_counter.FlopCounterMode`` over one forward (2 FLOPs per multiply-add; matmuls,
  convolutions and attention only, elementwise ops are not counted). CPU SDPA (``_scaled_dot_product_flash_attention
  _for_cpu``) has no formula in torch, so one is registered (torch's own ``sdpa_flop_count``). The count can differ
  between dtypes where the model takes another path: sparse CSR × dense products exist for fp32/fp64 only, so in
  fp32 the refinement sums each trajectory's pixel inputs before the value projection (a sparse product), while in
  bf16 it projects every pixel's value first (a dense matmul over all pixels);
- TrajTok by stage (``trajvit2`` only): backbone (``feature_extractor``), query Perceiver (``query_perceiver``),
  assignment (from ``query_head``'s start to the start of the soft pooling: both heads, the logits einsum, argmax and
  the active-slot scatter), soft pooling (``_initial_queries``, Eq. 2; kept apart so that neither the assignment nor
  the refinement hides it), refinement (``refinement_perceiver`` + ``output_projection``), and ``other`` (the
  tokenizer total minus the stages: input checks, chunk bookkeeping). Intervals are delimited by **forward
  pre-/post-hooks** on those modules (and a wrapper around ``_initial_queries``), with a CUDA synchronisation at each
  boundary; the same boundaries read the running FLOP total of the counting run, so time and FLOPs are attributed
  to identical intervals. Stage times are medians over separate runs of the tokenizer alone (at least one, up to
  ``--repeats`` as the budget allows; their synchronisations would distort the end-to-end latency, which therefore
  does not use them). Achieved GFLOP/s = stage FLOPs / stage time, and its fraction (``fraction_of_peak``) of the
  machine's matmul peak in the dtype the stage ran in.

Matmul peak (``matmul_peak``), probed first in a process of its own (same threads): the best GFLOP/s of a square
``torch.mm`` (2n³ FLOPs; best of 3 after a warm-up) over ``--probe_sizes``, in fp32 and in bf16 whatever ``--dtype``
is, so both peaks stand side by side (on CPUs with bf16 matrix units, Intel AMX or AMD avx512_bf16, the bf16 peak is
many times the fp32 one).

Output check (``--check_outputs``): bf16 against fp32 for the same weights, at the tiny scale and every measured
scale, for TrajViT2 and ViT3D (those in ``--models``): one model is built in fp32 (seeded), a copy is cast to bf16
(``.to(torch.bfloat16)``, what ``from_pretrained(..., dtype=torch.bfloat16)`` does to fp32 weights), and both embed
the same float32 video (batch 1, ``--check_frames`` frames, standard-normal pixels). Reported per (scale, model,
assignment): ``trajectory_id_agreement`` (TrajViT2: the fraction of (frame, pixel) positions of the 1/4 grid whose
hard trajectory id, ``trajectory_ids``, is the same in both), the active trajectory counts, and, for the final
embedding (``pooler_output``: the [CLS] after the final LayerNorm, e = fp32, e' = bf16 as float32, width D):
``max_abs_diff_rel`` = max_i |e_i − e'_i| / rms(e) and ``mean_abs_diff_rel`` = mean_i |e_i − e'_i| / rms(e), with
rms(e) = ‖e‖₂ / √D (differences relative to the embedding's norm, per element), ``relative_l2`` = ‖e − e'‖₂ / ‖e‖₂
and ``cosine``. TrajViT2 is checked twice: with the benchmark's controlled assignment (``assignment="controlled"``,
the N-region override that the timings use) and with the random-weight model's own argmax (``"free"``; pessimistic:
random queries leave many near ties that bf16 rounding can flip, which a trained model's margins do not).

Compilation (``--compile``): after each eager measurement, in a fresh process, the same model (same seed and
weights, same controlled assignment, same input) is wrapped by ``torch.compile`` (inductor, default mode) as a whole
(``TrajViT2VisionModel.forward``). If that raises, the tokenizer (``tokenizer.forward``) and the encoder
(``TrajViT2VisionTransformer._encode``) are compiled separately (``compile.compiled``: which; ``whole_error``: why
the whole did not). Inductor writes to a fresh, empty cache directory, so ``compile.first_call_s`` (the first call:
tracing, compilation and one forward) is a cold compile. Then come stabilisation calls until one call compiles no
frame (at most ``torch._dynamo.config.recompile_limit`` + 2; ``stabilise_calls``, ``stabilise_s``, ``stable``,
``recompiled_frames``): a frame whose guards fail at every call is recompiled at each call until that limit and then
runs eagerly, which is what a long-running user ends up with. ``compile.compile_s`` = ``first_call_s`` +
``stabilise_s`` − (1 + ``stabilise_calls``) × the compiled steady-state latency. ``compile.latency_s`` is the median
of ``--repeats`` compiled calls after ``--warmup`` more, under the same ``--max_seconds_per_measurement`` budget (the
first and the stabilisation calls are not charged to it; ``frames_compiled_during_runs`` > 0 means the timed calls
still compiled); ``compile.speedup`` = eager ``latency_s`` / compiled ``latency_s`` (> 1: compiled is faster).
Graph breaks and graphs come from ``torch._dynamo``'s counters of that process after the first call
(``graph_breaks``, ``graph_break_reasons``, ``graphs``; ``graphs_after_runs``); ``max_abs_diff_vs_eager``: the
compiled ``pooler_output`` of the first call against one eager forward of the same model. A compilation that fails
or outlives ``--compile_timeout`` (+ 2 × budget + ``--setup_timeout``) is recorded as ``compile.status = "error"``
with its error string, listed in ``compile_errors``, and does not fail the run.

Time budget: ``--max_seconds_per_measurement`` bounds the forward runs of one measurement (model building excluded).
A measurement whose first (FLOP-counting) run already exceeds it is recorded as ``"status": "skipped"`` (its FLOPs and
tokens are still reported); one that runs out part-way keeps the runs it has (``"partial"``). Later configurations of
the same model, scale and dtype with at least as many frames and videos are then not started (``"skipped"``, with the
reason), and a child with no result after 2 × budget + ``--setup_timeout`` s is killed (``"skipped"``). Running out
of memory (MemoryError, CUDA OOM, or the child killed by a signal — on Linux the OOM killer) is recorded the same way.
Nothing is dropped silently: every skipped configuration is in ``measurements`` and listed in ``skipped``; real
errors are in ``errors`` and make the script exit with status 1 after writing the JSON.

    python benchmarks/bench_encoders.py                                   # full grid, CPU (long)
    python benchmarks/bench_encoders.py --device cuda                     # on a GPU
    python benchmarks/bench_encoders.py --quick --output /tmp/quick.json  # quick: tiny scale, T ∈ {1, 8}, batch 1
    python benchmarks/bench_encoders.py --scales release --frames 8 16 --batch_sizes 1 --models trajvit2 vit3d
    python benchmarks/bench_encoders.py --quick --dtype fp32 bf16 --check_outputs --compile --output /tmp/q.json

The plot (``--plot``, default next to the JSON) needs matplotlib, which is not a dependency: without it the script
says so and skips the plot.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
import traceback

MODELS = ("trajvit2", "vit3d", "tome")
MODEL_LABELS = {"trajvit2": "TrajViT2", "vit3d": "ViT3D", "tome": "ToMe-ViT3D"}
STAGES = ("backbone", "query_perceiver", "assignment", "soft_pool", "refinement")
DTYPES = ("fp32", "bf16")
TORCH_DTYPE_NAMES = {"fp32": "float32", "bf16": "bfloat16"}

_TINY_BACKBONE = {"model_type": "convnext", "depths": [1, 1, 1, 1], "hidden_sizes": [8, 16, 24, 32]}
SCALES = {
    "tiny": {
        "image_size": 64,
        "vision": dict(hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=256),
        "tokenizer": dict(
            backbone_config=_TINY_BACKBONE,
            hidden_size=32,
            num_trajectories=32,
            num_attention_heads=4,
            assignment_hidden_size=16,
            assignment_embed_dim=8,
            subtoken_fourier_frequencies=4,
        ),
    },
    "release": {
        "image_size": 224,
        "vision": dict(hidden_size=512, num_hidden_layers=24, num_attention_heads=16, intermediate_size=2048),
        "tokenizer": {},
    },
    "vit-l": {
        "image_size": 224,
        "vision": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096),
        # The tokenizer stays D=512 inside; its output projection emits encoder-width tokens.
        "tokenizer": dict(output_size=1024),
    },
}
QUICK = dict(
    frames=[1, 8],
    batch_sizes=[1],
    scales=["tiny"],
    repeats=2,
    warmup=1,
    probe_sizes=[128, 256],
    max_seconds_per_measurement=30.0,
)
FULL = dict(
    frames=[1, 8, 16, 32, 64],
    batch_sizes=[1, 8],
    scales=["release", "vit-l"],
    repeats=5,
    warmup=1,
    probe_sizes=None,
    max_seconds_per_measurement=600.0,
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", help="T values (default 1 8 16 32 64; --quick: 1 8)")
    parser.add_argument("--batch_sizes", type=int, nargs="+", help="videos per forward (default 1 8; --quick: 1)")
    parser.add_argument("--scales", nargs="+", choices=sorted(SCALES), help="default release vit-l; --quick: tiny")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument(
        "--dtype",
        nargs="+",
        choices=DTYPES,
        default=["fp32"],
        help="weight precision of both models, built as from_pretrained(..., dtype=...) builds them; the input stays "
        "float32 as the processor returns it (default fp32; 'fp32 bf16' measures both, ratios within a dtype)",
    )
    parser.add_argument("--repeats", type=int, help="timed runs per measurement (default 5; --quick: 2)")
    parser.add_argument("--warmup", type=int, help="plain warm-up runs after the FLOP-counting run (default 1)")
    parser.add_argument("--active_trajectories", type=int, default=24, help="active trajectories per chunk (N)")
    parser.add_argument(
        "--max_seconds_per_measurement",
        type=float,
        help="budget for the forward runs of one measurement (default 600; --quick: 30)",
    )
    parser.add_argument(
        "--setup_timeout",
        type=float,
        default=300.0,
        help="extra seconds (model building) before a silent measuring process is killed",
    )
    parser.add_argument(
        "--isolation",
        choices=("fork", "subprocess", "none"),
        default="fork" if hasattr(os, "fork") else "subprocess",
        help="process per measurement (fork/subprocess) or in-process (none; CPU peaks then "
        "under-report: memory freed by earlier measurements is reused without raising RSS)",
    )
    parser.add_argument(
        "--probe_sizes", type=int, nargs="+", help="matrix sizes of the fp32 and bf16 matmul peak probe"
    )
    parser.add_argument(
        "--check_outputs",
        action="store_true",
        help="also compare bf16 with fp32 for the same random weights (tiny + measured scales, TrajViT2 and ViT3D): "
        "trajectory-id agreement and embedding differences",
    )
    parser.add_argument(
        "--check_frames", type=int, default=16, help="frames of the --check_outputs video (batch 1; default 16)"
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also time torch.compile (inductor) of each measured model against eager: cold compile time, "
        "steady-state latency, speed-up, graph breaks; a failed compile is recorded, not fatal",
    )
    parser.add_argument(
        "--compile_timeout",
        type=float,
        default=1800.0,
        help="extra seconds (besides 2 x budget + --setup_timeout) before a compiling process is killed (default 1800)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--allow_tf32", action="store_true", help="CUDA: allow TF32 (default: true fp32)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny scale, T ∈ {1, 8}, batch 1, 2 repeats")
    parser.add_argument(
        "--output",
        default=None,
        help="JSON path (default: a new benchmarks/results/encoders_<time>.json; the committed "
        "results are only overwritten when named here)",
    )
    parser.add_argument("--plot", default=None, help="PNG path (default: the JSON path with .png)")
    parser.add_argument("--_task", nargs=2, metavar=("TASK", "SPEC"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    for key, value in defaults.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    for name in ("repeats", "active_trajectories"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0, got {args.warmup}")
    if any(v < 1 for v in args.frames) or any(v < 1 for v in args.batch_sizes):
        parser.error("--frames and --batch_sizes must be >= 1")
    if not args.max_seconds_per_measurement > 0:
        parser.error(f"--max_seconds_per_measurement must be > 0, got {args.max_seconds_per_measurement}")
    if args.setup_timeout < 0:
        parser.error(f"--setup_timeout must be >= 0, got {args.setup_timeout}")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    if len(set(args.dtype)) != len(args.dtype):
        parser.error(f"--dtype lists a dtype twice: {' '.join(args.dtype)}")
    if args.check_frames < 1:
        parser.error(f"--check_frames must be >= 1, got {args.check_frames}")
    if not args.compile_timeout > 0:
        parser.error(f"--compile_timeout must be > 0, got {args.compile_timeout}")
    if args.check_outputs and not {"trajvit2", "vit3d"} & set(args.models):
        parser.error("--check_outputs compares TrajViT2 and ViT3D: --models must include trajvit2 or vit3d")
    check_scales = ["tiny", *[scale for scale in args.scales if scale != "tiny"]] if args.check_outputs else []
    for scale in dict.fromkeys([*args.scales, *check_scales]):
        grid = SCALES[scale]["image_size"] // 4
        from trajtok_hf import TrajTokConfig

        slots = TrajTokConfig(**SCALES[scale]["tokenizer"]).num_trajectories
        if "trajvit2" in args.models and args.active_trajectories > min(slots, grid * grid):
            parser.error(f"--active_trajectories must be <= {min(slots, grid * grid)} at scale {scale!r}")
    if args.output is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        args.output = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", f"encoders_{stamp}.json")
        if os.path.exists(args.output):
            parser.error(f"{args.output} exists: pass --output to choose the file")
    if args.plot is None:
        args.plot = os.path.splitext(args.output)[0] + ".png"
    return args


if __name__ == "__main__":
    parse_args()  # answers --help and usage errors before the heavy imports below

# Heavy imports, after the argument parsing: --help and usage errors need neither torch nor trajtok_hf.
import torch


# =====================================================================================================================
# Helpers that run inside the measuring process
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _vm_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            match = re.search(rf"^{field}:\s+(\d+)\s+kB", f.read(), re.MULTILINE)
        return int(match.group(1)) if match else None
    except OSError:
        return None


class MemoryTracker:
    """Peak memory of this process from now on: CPU peak RSS (VmHWM, reset via clear_refs) or CUDA allocator peak."""

    def __init__(self, device: torch.device):
        self.device = device
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            self.method = "torch.cuda.max_memory_allocated"
        else:
            try:
                # "5" resets the peak-RSS watermark of this process to its current RSS (Linux ≥ 4.0): a forked child
                # would otherwise inherit its parent's peak.
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")
                self.method = "peak RSS (VmHWM, reset at the start of the measuring process)"
            except OSError:
                self.method = "peak RSS (ru_maxrss; includes the process's peak before the measurement)"
        self.base = self._current()
        self.built = self.base

    def _current(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.memory_allocated(self.device) / 2**20
        rss = _vm_kib("VmRSS")
        return rss / 1024 if rss is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def _peak(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        hwm = _vm_kib("VmHWM") if "VmHWM" in self.method else None
        return hwm / 1024 if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def mark_built(self) -> None:
        self.built = self._current()

    def result(self) -> dict:
        peak = self._peak()
        return {
            "peak_memory_mib": peak,
            "peak_extra_mib": peak - self.base,
            "activation_peak_mib": peak - self.built,
            "memory_method": self.method,
        }


def flop_counter():
    """FlopCounterMode that also counts CPU SDPA (torch registers formulas for the CUDA SDPA kernels only) and counts a
    sparse × dense ``mm`` by its stored elements."""
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    custom = {}
    cpu_sdpa = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if cpu_sdpa is not None:

        def cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
            return sdpa_flop_count(query_shape, key_shape, value_shape)

        custom[cpu_sdpa] = cpu_sdpa_flops

    def mm_flops(a, b, *args, out_val=None, **kwargs) -> int:
        # A sparse left factor (the refinement's per-trajectory value sums, a CSR matrix) costs 2 FLOPs per stored
        # element and output column; torch's formula would count it as the dense (rows × cols) product.
        if a.layout != torch.strided:
            return 2 * int(a._nnz()) * b.shape[1]
        return 2 * a.shape[0] * a.shape[1] * b.shape[1]

    mm_flops._get_raw = True
    custom[torch.ops.aten.mm] = mm_flops
    return FlopCounterMode(display=False, custom_mapping=custom)


class ActiveTrajectoryOverride:
    """Fix a TrajTokModel's hard assignment to exactly ``num_active`` trajectories per chunk (see module docstring).

    Forward hooks: ``query_head``'s output (chunks, K, e) is kept; ``pixel_head``'s output (chunks, pixels, e) is
    replaced by the kept embedding of each pixel's region id, so ``argmax_k cos`` = that id (cosine 1 is the maximum).
    """

    def __init__(self, tokenizer, num_active: int, grid: int, seed: int = 0):
        num_slots = tokenizer.config.num_trajectories
        if not 1 <= num_active <= min(num_slots, grid * grid):
            raise ValueError(
                f"active_trajectories must lie in [1, min(K={num_slots}, grid cells={grid * grid})], got {num_active}"
            )
        self.num_active, self.grid = num_active, grid
        generator = torch.Generator().manual_seed(seed)
        seeds = torch.randperm(grid * grid, generator=generator)[:num_active]
        rows, cols = torch.arange(grid)[:, None], torch.arange(grid)[None, :]
        seed_rows, seed_cols = seeds // grid, seeds % grid
        # Toroidal distance, so the panned (rolled) layout stays a Voronoi partition; a seed's own cell is at
        # distance 0 from it and from no other seed (seeds are distinct cells), so all N regions are non-empty.
        dr = (rows[..., None] - seed_rows).abs()
        dc = (cols[..., None] - seed_cols).abs()
        dr, dc = torch.minimum(dr, grid - dr), torch.minimum(dc, grid - dc)
        self.base = (dr * dr + dc * dc).argmin(dim=-1)  # (grid, grid) region ids
        assert torch.bincount(self.base.flatten(), minlength=num_active).min() > 0
        self._ids: dict[tuple[int, str], torch.Tensor] = {}
        self._query = None
        self._handles = [
            tokenizer.query_head.register_forward_hook(self._keep_query),
            tokenizer.pixel_head.register_forward_hook(self._replace_pixels),
        ]

    def ids(self, frames: int, device) -> torch.Tensor:
        """Region ids (frames·grid·grid,) in the tokenizer's (t, row, col) order; the layout pans one cell a frame."""
        key = (frames, str(device))
        if key not in self._ids:
            t = torch.arange(frames)[:, None, None]
            rows = (torch.arange(self.grid)[None, :, None] - t) % self.grid
            cols = (torch.arange(self.grid)[None, None, :] - t) % self.grid
            self._ids[key] = self.base[rows, cols].flatten().to(device)
        return self._ids[key]

    def _keep_query(self, module, args, output):
        self._query = output

    def _replace_pixels(self, module, args, output):
        chunks, pixels, width = output.shape
        if pixels % (self.grid * self.grid):
            raise RuntimeError(f"pixel count {pixels} is not a multiple of the {self.grid}² grid")
        ids = self.ids(pixels // (self.grid * self.grid), output.device)
        return self._query.gather(1, ids.view(1, -1, 1).expand(chunks, -1, width))

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


class StageRecorder:
    """Wall time (and, under a FlopCounterMode, FLOPs) of TrajTok's stages, delimited by forward hooks."""

    def __init__(self, tokenizer, device: torch.device, counter=None):
        self.device, self.counter = device, counter
        self._open: dict[str, tuple[float, int]] = {}
        self.reset()
        self._tokenizer = tokenizer
        hooks = []

        def start(stage):
            return lambda module, args: self._start(stage)

        def stop(stage):
            return lambda module, args, output: self._stop(stage)

        for module, stage in (
            (tokenizer, "tokenizer"),
            (tokenizer.feature_extractor, "backbone"),
            (tokenizer.query_perceiver, "query_perceiver"),
        ):
            hooks += [module.register_forward_pre_hook(start(stage)), module.register_forward_hook(stop(stage))]
        hooks.append(tokenizer.query_head.register_forward_pre_hook(start("assignment")))
        hooks.append(tokenizer.refinement_perceiver.register_forward_pre_hook(start("refinement")))
        hooks.append(tokenizer.output_projection.register_forward_hook(stop("refinement")))
        self._hooks = hooks
        original = tokenizer._initial_queries

        def initial_queries(*args, **kwargs):
            # The soft pooling (Eq. 2) starts right after the assignment's argmax: close one, open the other.
            self._stop("assignment")
            self._start("soft_pool")
            out = original(*args, **kwargs)
            self._stop("soft_pool")
            return out

        tokenizer._initial_queries = initial_queries  # instance attribute: shadows the method until remove()

    def reset(self) -> None:
        self.times = dict.fromkeys((*STAGES, "tokenizer"), 0.0)
        self.flops = dict.fromkeys((*STAGES, "tokenizer"), 0)

    def _now(self) -> tuple[float, int]:
        _sync(self.device)
        return time.perf_counter(), (self.counter.get_total_flops() if self.counter is not None else 0)

    def _start(self, stage: str) -> None:
        self._open[stage] = self._now()

    def _stop(self, stage: str) -> None:
        t0, f0 = self._open.pop(stage)
        t1, f1 = self._now()
        self.times[stage] += t1 - t0  # += : a video with a shorter last chunk runs the stages twice
        self.flops[stage] += f1 - f0

    def remove(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._tokenizer.__dict__.pop("_initial_queries", None)


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            name = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), None)
    except OSError:
        name = None
    return name or platform.processor() or platform.machine()


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype of a ``--dtype`` name ("fp32" or "bf16")."""
    return getattr(torch, TORCH_DTYPE_NAMES[name])


def build_vision_model(scale: str, model: str, dtype: str = "fp32"):
    """A randomly initialised TrajViT2VisionModel of ``scale`` ("trajvit2": TrajTok tokens, else ViT3D), eval mode,
    built in ``dtype`` ("fp32" or "bf16") the way ``from_pretrained(..., dtype=...)`` builds it: through
    ``AutoModel.from_config``, which creates the modules under that default dtype (nested sub-models follow it)."""
    from transformers import AutoModel

    from trajtok_hf import TrajViT2VisionConfig

    spec = SCALES[scale]
    kwargs = dict(spec["vision"], image_size=spec["image_size"])
    if model == "trajvit2":
        kwargs.update(vision_tokenizer="trajtok", trajtok_config=dict(spec["tokenizer"]))
    else:
        kwargs.update(vision_tokenizer="vit3d")
    return AutoModel.from_config(TrajViT2VisionConfig(**kwargs), dtype=torch_dtype(dtype)).eval()


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def _param_dtypes(module) -> list[str]:
    return sorted({str(p.dtype).removeprefix("torch.") for p in module.parameters()})


def _prepare_process(spec: dict) -> torch.device:
    """Threads, device and TF32 flags of a measuring process."""
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda but torch.cuda.is_available() is False")
        torch.backends.cuda.matmul.allow_tf32 = spec["allow_tf32"]
        torch.backends.cudnn.allow_tf32 = spec["allow_tf32"]
    return device


def _build_measured(spec: dict, device: torch.device):
    """The model of one measurement as timed: built in ``spec["dtype"]``, the controlled assignment (TrajViT2) or the
    merge schedule (ToMe) applied, and its float32 input video. Returns (model, override or None, video, record)."""
    scale, name, frames, batch = spec["scale"], spec["model"], spec["frames"], spec["batch_size"]
    size = SCALES[scale]["image_size"]
    record: dict = {"status": "ok", "reason": None, "dtype": spec["dtype"]}
    torch.manual_seed(spec.get("seed", 0))
    # No parameter needs a gradient here; FlopCounterMode's module tracker also trips over parameters that require
    # grad under inference_mode.
    model = build_vision_model(scale, name, spec["dtype"]).to(device).requires_grad_(False)
    expected = TORCH_DTYPE_NAMES[spec["dtype"]]
    record["param_dtypes"] = _param_dtypes(model)
    if record["param_dtypes"] != [expected]:
        raise RuntimeError(
            f"--dtype {spec['dtype']}: expected every parameter in {expected}, got {record['param_dtypes']}"
        )
    vision = model.vision_model
    # float32, as the video processor returns it: the model's forward casts it to its own dtype.
    video = torch.randn(batch, frames, 3, size, size, device=device)
    record["params"] = _count(model)
    record["params_tokenizer"] = _count(vision.tokenizer)
    record["params_encoder"] = record["params"] - record["params_tokenizer"]
    override = None
    if name == "trajvit2":
        override = ActiveTrajectoryOverride(vision.tokenizer, spec["active_trajectories"], size // 4)
        chunk = vision.tokenizer.config.chunk_size
        for first in range(0, frames, chunk):  # every chunk length, built before any timing (or tracing)
            override.ids(min(chunk, frames - first), device)
    if name == "tome":
        from trajtok_hf.baselines.token_merging import (
            apply_token_merging,
            tome_r_for_token_count,
            tome_tokens_per_layer,
        )

        tubelet, patch = vision.config.tubelet_size, vision.config.patch_size
        num_tokens = 1 + math.ceil(frames / tubelet) * (size // patch) ** 2
        layers = vision.config.num_hidden_layers
        target = float(spec["tome_target_mean_tokens"])
        schedule = tome_r_for_token_count(num_tokens, layers, target)
        expected_tokens = tome_tokens_per_layer(num_tokens, schedule)
        apply_token_merging(model, schedule)
        record["tome"] = {
            "r_schedule": schedule,
            "input_tokens": num_tokens,
            "target_mean_tokens": target,
            "target_source": spec["tome_target_source"],
            "expected_mean_tokens": sum(expected_tokens) / layers,
            "target_reached": abs(sum(expected_tokens) / layers - target) < 1.0,
        }
    return model, override, video, record


def _timed_runs(
    forward, device: torch.device, spec: dict, elapsed: float, estimate: float
) -> tuple[list, float, float]:
    """``--warmup`` untimed then ``--repeats`` timed calls of ``forward``, each started only while ``elapsed`` + the
    last call's time (first: ``estimate``) fits in the budget. Returns (timed samples, elapsed, last call's time)."""
    times: list[float] = []
    last = estimate
    for index in range(spec["warmup"] + spec["repeats"]):
        if elapsed + last > spec["max_seconds"]:
            break
        start = time.perf_counter()
        forward()
        _sync(device)
        last = time.perf_counter() - start
        elapsed += last
        if index >= spec["warmup"]:  # the first `warmup` runs are not timed
            times.append(last)
    return times, elapsed, last


def measure(spec: dict) -> dict:
    """One (scale, dtype, model, T, batch) measurement; returns a JSON-able record (see the module docstring)."""
    device = _prepare_process(spec)
    name, frames = spec["model"], spec["frames"]
    budget = spec["max_seconds"]
    memory = MemoryTracker(device)
    model, override, video, record = _build_measured(spec, device)
    vision = model.vision_model
    _sync(device)
    memory.mark_built()

    def forward():
        return model(video)

    stage_flops: dict[str, int] = {}
    with torch.inference_mode():
        # 1) FLOP-counting run: FLOPs, token counts, the first warm-up and the first time estimate.
        counter = flop_counter()
        recorder = StageRecorder(vision.tokenizer, device, counter) if name == "trajvit2" else None
        start = time.perf_counter()
        with counter:
            out = forward()
        _sync(device)
        first_run = time.perf_counter() - start
        if recorder is not None:
            stage_flops = dict(recorder.flops)
            recorder.remove()
        record["gflops"] = counter.get_total_flops() / 1e9
        record["first_run_s"] = first_run
        record["output_dtype"] = str(out.last_hidden_state.dtype).removeprefix("torch.")
        if name == "trajvit2":
            per_video = out.num_trajectories.tolist()
            chunks = math.ceil(frames / vision.tokenizer.config.chunk_size)
            record["chunks"] = chunks
            record["active_trajectories_per_video"] = per_video
            if any(v != chunks * spec["active_trajectories"] for v in per_video):
                raise RuntimeError(
                    f"expected {spec['active_trajectories']} active trajectories in each of {chunks} chunk(s), got "
                    f"{per_video} per video"
                )
            record["active_trajectories_per_chunk"] = spec["active_trajectories"]
            record["tokens_per_clip"] = int(out.attention_mask.shape[1])
            record["gflops_tokenizer"] = stage_flops["tokenizer"] / 1e9
            record["gflops_encoder"] = record["gflops"] - record["gflops_tokenizer"]
        elif name == "tome":
            record["tokens_per_layer"] = list(out.tokens_per_layer)
            record["tokens_per_clip"] = sum(out.tokens_per_layer) / len(out.tokens_per_layer)
            record["tokens_output"] = int(out.last_hidden_state.shape[1])
        else:
            record["tokens_per_clip"] = int(out.last_hidden_state.shape[1])
        del out

        elapsed, last = first_run, first_run
        times: list[float] = []
        if first_run > budget:
            record["status"] = "skipped"
            record["reason"] = (
                f"skipped: one forward pass (the FLOP-counting warm-up) took {first_run:.3g} s, over "
                f"--max_seconds_per_measurement={budget:g} s; FLOPs and tokens are from that pass"
            )
        else:
            # 2) plain warm-up runs, 3) timed runs, each only while the budget allows one more.
            times, elapsed, last = _timed_runs(forward, device, spec, elapsed, first_run)
            if not times:
                record["status"] = "skipped"
                record["reason"] = (
                    f"skipped: the warm-up used the --max_seconds_per_measurement={budget:g} s budget "
                    f"({elapsed:.1f} s) before any timed run"
                )
            elif len(times) < spec["repeats"]:
                record["status"] = "partial"
                record["reason"] = (
                    f"partial: {len(times)} of {spec['repeats']} timed runs fit in "
                    f"--max_seconds_per_measurement={budget:g} s"
                )
        record["latency_s"] = statistics.median(times) if times else None
        record["latency_min_s"] = min(times) if times else None
        record["latency_samples_s"] = times
        record["repeats_done"] = len(times)

        # 4) TrajTok by stage: separate runs of the tokenizer alone with synchronising hooks.
        if name == "trajvit2" and record["status"] != "skipped":
            recorder = StageRecorder(vision.tokenizer, device)
            samples = []
            tokenizer_estimate = stage_flops["tokenizer"] / max(record["gflops"] * 1e9, 1) * last
            for index in range(spec["repeats"]):
                if index > 0 and elapsed + tokenizer_estimate > budget:
                    break
                recorder.reset()
                start = time.perf_counter()
                vision.tokenizer(video)
                _sync(device)
                tokenizer_estimate = time.perf_counter() - start
                elapsed += tokenizer_estimate
                samples.append(dict(recorder.times))
            recorder.remove()
            stages = {}
            for stage in (*STAGES, "tokenizer"):
                stages[stage] = {
                    "time_s": statistics.median(s[stage] for s in samples),
                    "gflops": stage_flops[stage] / 1e9,
                }
            other_time = statistics.median(s["tokenizer"] - sum(s[k] for k in STAGES) for s in samples)
            other_flops = stage_flops["tokenizer"] - sum(stage_flops[k] for k in STAGES)
            stages["other"] = {"time_s": other_time, "gflops": other_flops / 1e9}
            record["tokenizer_stages"] = stages
            record["tokenizer_stage_repeats"] = len(samples)
    if override is not None:
        override.remove()
    _sync(device)
    record.update(memory.result())
    record["elapsed_runs_s"] = elapsed
    return record


def _brief(text, limit: int = 200) -> str:
    """``text`` (an error or a message) on one line: its non-empty lines joined by " | ", cut at ``limit``."""
    return " | ".join(line.strip() for line in str(text).splitlines() if line.strip())[:limit]


def compile_measure(spec: dict) -> dict:
    """``torch.compile`` of one measurement's model (see the module docstring): cold compile time, steady-state
    latency under the budget, graphs and graph breaks, and the compiled output against eager."""
    import shutil
    import tempfile

    from torch._dynamo.utils import counters

    device = _prepare_process(spec)
    model, override, video, _ = _build_measured(spec, device)
    vision = model.vision_model
    cache = tempfile.mkdtemp(prefix="bench_encoders_inductor_")
    previous_cache = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache  # a cold compile: nothing cached from earlier runs
    torch._dynamo.reset()
    counters.clear()
    result: dict = {"status": "ok", "error": None, "backend": "inductor"}
    try:
        with torch.inference_mode():
            start = time.perf_counter()
            reference = model(video).pooler_output.float()
            _sync(device)
            result["eager_reference_s"] = time.perf_counter() - start
            result["compiled"] = "vision tower (TrajViT2VisionModel.forward)"
            start = time.perf_counter()
            try:
                call = torch.compile(model)
                out = call(video)  # compilation happens here, at the first call
            except Exception as error:
                result["whole_error"] = f"{type(error).__name__}: {_brief(error, 2000)}"
                torch._dynamo.reset()
                counters.clear()
                vision.tokenizer.compile()
                vision._encode = torch.compile(vision._encode)  # instance attribute: shadows the method
                call = model
                result["compiled"] = "tokenizer (tokenizer.forward) and encoder (TrajViT2VisionTransformer._encode)"
                start = time.perf_counter()
                try:
                    out = call(video)
                except Exception as second:
                    raise RuntimeError(
                        f"whole vision tower: {result['whole_error']}; tokenizer and encoder separately: "
                        f"{type(second).__name__}: {_brief(second, 2000)}"
                    ) from second
            _sync(device)
            first_call = time.perf_counter() - start
            result["max_abs_diff_vs_eager"] = (out.pooler_output.float() - reference).abs().max().item()
            del out
            result["first_call_s"] = first_call
            frames_after_first = counters["frames"]["total"]
            result["graphs"] = int(counters["stats"]["unique_graphs"])
            breaks = counters["graph_break"]
            result["graph_breaks"] = int(sum(breaks.values()))
            reasons: dict[str, int] = {}
            for reason, count in breaks.items():
                key = _brief(reason.split("Explanation:")[0])
                reasons[key] = reasons.get(key, 0) + int(count)
            result["graph_break_reasons"] = dict(sorted(reasons.items(), key=lambda item: -item[1])[:10])
            # Stabilisation: a frame whose guards fail on every call (e.g. a guard on an object created anew each
            # call) is recompiled at each call until torch._dynamo.config.recompile_limit, then runs eagerly. Calls
            # go on until one compiles no frame, so that the timed calls see what a long-running user sees.
            limit = int(torch._dynamo.config.recompile_limit) + 2
            stabilise_s, stabilise_calls, stable = 0.0, 0, False
            while stabilise_calls < limit and not stable:
                before = counters["frames"]["total"]
                start = time.perf_counter()
                call(video)
                _sync(device)
                stabilise_s += time.perf_counter() - start
                stabilise_calls += 1
                stable = counters["frames"]["total"] == before
            result.update(stabilise_calls=stabilise_calls, stabilise_s=stabilise_s, stable=stable)
            result["recompiled_frames"] = int(counters["frames"]["total"] - frames_after_first)
            estimate = spec.get("eager_latency_s") or 0.0
            frames_before_runs = counters["frames"]["total"]
            times, elapsed, _ = _timed_runs(lambda: call(video), device, spec, 0.0, estimate)
            result["frames_compiled_during_runs"] = int(counters["frames"]["total"] - frames_before_runs)
            result["graphs_after_runs"] = int(counters["stats"]["unique_graphs"])
    finally:
        if override is not None:
            override.remove()
        torch._dynamo.reset()
        if previous_cache is None:
            os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
        else:
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = previous_cache
        shutil.rmtree(cache, ignore_errors=True)
    result["latency_s"] = statistics.median(times) if times else None
    result["latency_min_s"] = min(times) if times else None
    result["latency_samples_s"] = times
    result["repeats_done"] = len(times)
    result["elapsed_runs_s"] = elapsed
    # Compilation = the first call and the stabilisation calls, less the steady-state forwards they include.
    result["compile_s"] = first_call + stabilise_s - (1 + stabilise_calls) * result["latency_s"] if times else None
    if not times:
        result["status"] = "skipped"
        result["error"] = (
            f"skipped: no timed compiled call fit in --max_seconds_per_measurement={spec['max_seconds']:g} s"
        )
    return result


def check_outputs(spec: dict) -> dict:
    """bf16 against fp32 for the same weights and input (see the module docstring); one row per assignment."""
    import copy

    device = _prepare_process(spec)
    scale, name, frames = spec["scale"], spec["model"], spec["frames"]
    size = SCALES[scale]["image_size"]
    torch.manual_seed(spec.get("seed", 0))
    reference = build_vision_model(scale, name, "fp32").to(device).requires_grad_(False)
    low = copy.deepcopy(reference).to(torch.bfloat16)
    generator = torch.Generator().manual_seed(spec.get("seed", 0) + 1)
    video = torch.randn(1, frames, 3, size, size, generator=generator).to(device)
    rows = []
    for assignment in ("controlled", "free") if name == "trajvit2" else (None,):
        overrides = []
        if assignment == "controlled":
            overrides = [
                ActiveTrajectoryOverride(m.vision_model.tokenizer, spec["active_trajectories"], size // 4)
                for m in (reference, low)
            ]
        with torch.inference_mode():
            out_fp32, out_bf16 = reference(video), low(video)
        for override in overrides:
            override.remove()
        e, e_low = out_fp32.pooler_output.float(), out_bf16.pooler_output.float()
        diff = (e - e_low).abs()
        rms = e.norm(dim=-1, keepdim=True) / math.sqrt(e.shape[-1])
        row = {
            "scale": scale,
            "model": name,
            "frames": frames,
            "batch_size": 1,
            "assignment": assignment,
            "output_dtypes": [str(o.pooler_output.dtype).removeprefix("torch.") for o in (out_fp32, out_bf16)],
            "max_abs_diff": diff.max().item(),
            "max_abs_diff_rel": (diff / rms).max().item(),
            "mean_abs_diff_rel": (diff / rms).mean().item(),
            "relative_l2": ((e - e_low).norm(dim=-1) / e.norm(dim=-1)).max().item(),
            "cosine": torch.nn.functional.cosine_similarity(e, e_low, dim=-1).min().item(),
        }
        if name == "trajvit2":
            row["trajectory_id_agreement"] = (out_fp32.trajectory_ids == out_bf16.trajectory_ids).float().mean().item()
            row["active_trajectories_fp32"] = out_fp32.num_trajectories.tolist()
            row["active_trajectories_bf16"] = out_bf16.num_trajectories.tolist()
        rows.append(row)
    return {"rows": rows}


def matmul_peak(spec: dict) -> dict:
    """Best GFLOP/s of square torch.mm over a few sizes, in every dtype of ``DTYPES`` (2n³ FLOPs per product; best of
    3 after a warm-up)."""
    device = _prepare_process(spec)
    result: dict = {"sizes": list(spec["sizes"])}
    for dtype in DTYPES:
        rates = {}
        for n in spec["sizes"]:
            a = torch.randn(n, n, device=device, dtype=torch_dtype(dtype))
            b = torch.randn(n, n, device=device, dtype=torch_dtype(dtype))
            torch.mm(a, b)
            _sync(device)
            best = math.inf
            for _ in range(3):
                start = time.perf_counter()
                torch.mm(a, b)
                _sync(device)
                best = min(best, time.perf_counter() - start)
            rates[str(n)] = 2 * n**3 / best / 1e9
        result[dtype] = {"gflops_per_s": rates, "best_gflops_per_s": max(rates.values())}
    return result


_TASKS = {"measure": measure, "matmul_peak": matmul_peak, "compile": compile_measure, "check_outputs": check_outputs}


# =====================================================================================================================
# Running measurements in their own process
def _child(task: str, spec: dict, connection) -> None:
    try:
        result = {"ok": True, "value": _TASKS[task](spec)}
    except BaseException as error:  # report everything, including MemoryError, to the parent
        result = {"ok": False, "error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}
    connection.send(result)
    connection.close()


def run_task(task: str, spec: dict, isolation: str, timeout: float) -> dict:
    """Run ``_TASKS[task](spec)`` per ``isolation``; returns {"ok", "value"} or {"ok": False, "error", ...}."""
    if isolation == "none":
        try:
            return {"ok": True, "value": _TASKS[task](spec)}
        except Exception as error:
            return {"ok": False, "error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}
    if isolation == "fork":
        import multiprocessing

        context = multiprocessing.get_context("fork")
        receiver, sender = context.Pipe(duplex=False)
        process = context.Process(target=_child, args=(task, spec, sender), daemon=True)
        process.start()
        sender.close()
        try:
            if receiver.poll(timeout):
                return receiver.recv()
            return {"ok": False, "killed": True, "error": f"no result after {timeout:.0f} s: killed"}
        except EOFError:
            process.join()
            code = process.exitcode
            return {
                "ok": False,
                "signal": -code if code is not None and code < 0 else None,
                "error": f"the measuring process died (exit code {code})",
            }
        finally:
            if process.is_alive():
                process.kill()
            process.join()
    command = [sys.executable, os.path.abspath(__file__), "--_task", task, json.dumps(spec)]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"ok": False, "killed": True, "error": f"no result after {timeout:.0f} s: killed"}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {
            "ok": False,
            "signal": -proc.returncode if proc.returncode < 0 else None,
            "error": f"exit code {proc.returncode}: {proc.stderr[-2000:]}",
        }
    return json.loads(lines[-1])


# =====================================================================================================================
# The grid, the ratios, the report
def _ratio(numerator, denominator):
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def compute_ratios(measurements: list[dict]) -> list[dict]:
    """TrajViT2 / ViT3D and TrajViT2 / ToMe for time (latency_s), tokens (tokens_per_clip) and memory
    (peak_extra_mib), per (scale, dtype, batch, T): models are compared within a dtype only (a measurement without
    ``dtype`` is fp32). None where a value is missing (skipped)."""
    index = {(m["scale"], m.get("dtype", "fp32"), m["model"], m["batch_size"], m["frames"]): m for m in measurements}
    rows = []
    keys = {(m["scale"], m.get("dtype", "fp32"), m["batch_size"], m["frames"]) for m in measurements}
    for scale, dtype, batch, frames in sorted(keys, key=lambda k: (k[0], DTYPES.index(k[1]), k[2], k[3])):
        ours = index.get((scale, dtype, "trajvit2", batch, frames))
        if ours is None:
            continue
        row = {"scale": scale, "dtype": dtype, "batch_size": batch, "frames": frames}
        for other in ("vit3d", "tome"):
            theirs = index.get((scale, dtype, other, batch, frames))
            if theirs is None:
                continue
            row[f"trajvit2_over_{other}"] = {
                "time": _ratio(ours.get("latency_s"), theirs.get("latency_s")),
                "tokens": _ratio(ours.get("tokens_per_clip"), theirs.get("tokens_per_clip")),
                "memory": _ratio(ours.get("peak_extra_mib"), theirs.get("peak_extra_mib")),
            }
        rows.append(row)
    return rows


def compute_dtype_ratios(measurements: list[dict]) -> list[dict]:
    """bf16 / fp32 of each (scale, model, batch, T) measured in both: time (latency_s), memory (peak_extra_mib) and,
    with ``--compile``, compiled time (``compile.latency_s``); None where a value is missing."""
    index = {(m["scale"], m.get("dtype", "fp32"), m["model"], m["batch_size"], m["frames"]): m for m in measurements}
    rows = []
    for scale, dtype, model, batch, frames in index:
        if dtype != "bf16" or (scale, "fp32", model, batch, frames) not in index:
            continue
        low, full = index[(scale, "bf16", model, batch, frames)], index[(scale, "fp32", model, batch, frames)]
        row = {
            "scale": scale,
            "model": model,
            "batch_size": batch,
            "frames": frames,
            "time": _ratio(low.get("latency_s"), full.get("latency_s")),
            "memory": _ratio(low.get("peak_extra_mib"), full.get("peak_extra_mib")),
        }
        if "compile" in low or "compile" in full:
            row["compiled_time"] = _ratio(
                (low.get("compile") or {}).get("latency_s"), (full.get("compile") or {}).get("latency_s")
            )
        rows.append(row)
    return rows


def add_stage_efficiency(measurements: list[dict], peaks_gflops_per_s: dict[str, float | None]) -> None:
    """Achieved GFLOP/s of each TrajTok stage and its fraction of the matmul peak of the measurement's dtype."""
    for m in measurements:
        peak = peaks_gflops_per_s.get(m.get("dtype", "fp32"))
        for stage in (m.get("tokenizer_stages") or {}).values():
            rate = stage["gflops"] / stage["time_s"] if stage["time_s"] > 0 else None
            stage["gflops_per_s"] = rate
            stage["fraction_of_peak"] = _ratio(rate, peak)


def _out_of_memory(result: dict) -> bool:
    """A measurement that ran out of memory (MemoryError, CUDA OOM, or a child killed by a signal, which on Linux is
    almost always the OOM killer) is a resource limit like the time budget, not a bug."""
    error = result.get("error", "")
    return (
        result.get("signal") is not None
        or error.startswith(("MemoryError", "OutOfMemoryError"))
        or "out of memory" in error.lower()
    )


def _covered_by_failure(failures: list[tuple[int, int, str]], frames: int, batch: int) -> str | None:
    for failed_frames, failed_batch, why in failures:
        if failed_frames <= frames and failed_batch <= batch:
            return (
                f"skipped: not started, T={failed_frames} batch={failed_batch} of the same model, scale and dtype "
                f"already hit a limit ({why}) and this one has at least as many frames and videos"
            )
    return None


def _compile(record: dict, spec: dict, args, timeout: float) -> dict:
    """The ``compile`` entry of an eager measurement: the compiled run's result, or why there is none."""
    if record["status"] not in ("ok", "partial"):
        return {"status": "skipped", "error": f"skipped: the eager measurement has no latency ({record['status']})"}
    result = run_task("compile", {**spec, "eager_latency_s": record["latency_s"]}, args.isolation, timeout)
    if not result["ok"]:
        killed = " (2 × budget + --setup_timeout + --compile_timeout)" if result.get("killed") else ""
        return {"status": "error", "error": f"{result['error']}{killed}", "traceback": result.get("traceback")}
    value = result["value"]
    value["speedup"] = _ratio(record["latency_s"], value["latency_s"])
    value["latency_ratio_compiled_over_eager"] = _ratio(value["latency_s"], record["latency_s"])
    return value


def run_output_checks(args, base_spec: dict, timeout: float) -> list[dict]:
    """``--check_outputs``: bf16 vs fp32 rows for the tiny scale and every measured scale (see the module docstring)."""
    rows = []
    for scale in dict.fromkeys(["tiny", *args.scales]):
        for name in ("trajvit2", "vit3d"):
            if name not in args.models:
                continue
            spec = {
                **base_spec,
                "scale": scale,
                "model": name,
                "frames": args.check_frames,
                "active_trajectories": args.active_trajectories,
                "seed": args.seed,
            }
            result = run_task("check_outputs", spec, args.isolation, timeout)
            if result["ok"]:
                new = result["value"]["rows"]
            else:
                new = [
                    {
                        "scale": scale,
                        "model": name,
                        "frames": args.check_frames,
                        "batch_size": 1,
                        "status": "error",
                        "error": result["error"],
                    }
                ]
            for row in new:
                row.setdefault("status", "ok")
                _print_check(row)
            rows += new
    return rows


def run_grid(args) -> dict:
    device_kind = args.device
    base_spec = {"device": device_kind, "threads": args.threads, "allow_tf32": args.allow_tf32}
    hard_timeout = 2 * args.max_seconds_per_measurement + args.setup_timeout
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    probe_sizes = args.probe_sizes or ([2048, 4096, 8192] if device_kind == "cuda" else [512, 1024, 2048])
    probe = run_task("matmul_peak", {**base_spec, "sizes": probe_sizes}, args.isolation, max(hard_timeout, 300.0))
    if not probe["ok"]:
        raise RuntimeError(f"matmul peak probe failed: {probe['error']}")
    peak = probe["value"]
    peaks = {dtype: peak[dtype]["best_gflops_per_s"] for dtype in DTYPES}
    print(
        "matmul peak: "
        + ", ".join(f"{dtype} {peaks[dtype]:.1f} GFLOP/s" for dtype in DTYPES)
        + f" (sizes {probe_sizes})",
        flush=True,
    )
    output_checks = run_output_checks(args, base_spec, hard_timeout) if args.check_outputs else None

    measurements, failures = [], {}
    for scale in args.scales:
        for dtype in args.dtype:
            for batch in args.batch_sizes:
                for frames in args.frames:
                    trajvit2_tokens = None
                    for name in args.models:
                        record = {"scale": scale, "dtype": dtype, "model": name, "frames": frames, "batch_size": batch}
                        spec = {
                            **base_spec,
                            **record,
                            "repeats": args.repeats,
                            "warmup": args.warmup,
                            "max_seconds": args.max_seconds_per_measurement,
                            "active_trajectories": args.active_trajectories,
                            "seed": args.seed,
                        }
                        if name == "tome":
                            if trajvit2_tokens is not None:
                                spec["tome_target_mean_tokens"] = float(trajvit2_tokens)
                                spec["tome_target_source"] = "measured TrajViT2 encoder length (1 + active tokens)"
                            else:
                                from trajtok_hf import TrajTokConfig

                                chunk = TrajTokConfig(**SCALES[scale]["tokenizer"]).chunk_size
                                spec["tome_target_mean_tokens"] = float(
                                    1 + math.ceil(frames / chunk) * args.active_trajectories
                                )
                                spec["tome_target_source"] = "1 + ceil(T / chunk_size) * active_trajectories"
                        reason = _covered_by_failure(failures.get((scale, dtype, name), []), frames, batch)
                        if reason is not None:
                            record.update(status="skipped", reason=reason)
                        else:
                            result = run_task("measure", spec, args.isolation, hard_timeout)
                            if result["ok"]:
                                record.update(result["value"])
                            elif result.get("killed"):
                                record.update(
                                    status="skipped",
                                    reason=f"skipped: {result['error']} (2 × budget + --setup_timeout)",
                                )
                            elif _out_of_memory(result):
                                record.update(status="skipped", reason=f"skipped: out of memory ({result['error']})")
                            else:
                                record.update(status="error", reason=result["error"], traceback=result.get("traceback"))
                        if record["status"] in ("skipped", "partial") and "not started" not in record["reason"]:
                            why = record["reason"].removeprefix("skipped: ").removeprefix("partial: ")
                            failures.setdefault((scale, dtype, name), []).append((frames, batch, why[:120]))
                        if name == "trajvit2" and record.get("tokens_per_clip") is not None:
                            trajvit2_tokens = record["tokens_per_clip"]
                        _print_measurement(record)
                        if args.compile:
                            record["compile"] = _compile(record, spec, args, hard_timeout + args.compile_timeout)
                            _print_compile(record)
                        measurements.append(record)

    add_stage_efficiency(measurements, peaks)
    memory_methods = sorted({m["memory_method"] for m in measurements if m.get("memory_method")})
    result = {
        "benchmark": "bench_encoders",
        "settings": {
            "device": device_kind,
            "dtypes": args.dtype,
            "input_dtype": "float32 (cast to the model's dtype by its forward)",
            "allow_tf32": args.allow_tf32,
            "frames": args.frames,
            "batch_sizes": args.batch_sizes,
            "scales": args.scales,
            "models": args.models,
            "repeats": args.repeats,
            "warmup": args.warmup,
            "max_seconds_per_measurement": args.max_seconds_per_measurement,
            "setup_timeout": args.setup_timeout,
            "isolation": args.isolation,
            "threads": args.threads or torch.get_num_threads(),
            "quick": args.quick,
            "seed": args.seed,
            "compile": args.compile,
            "compile_timeout": args.compile_timeout,
            "check_outputs": args.check_outputs,
            "check_frames": args.check_frames,
            "torch": torch.__version__,
            "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg() if hasattr(os, "getloadavg") else None,
            "timing": (
                "median of --repeats runs of TrajViT2VisionModel.forward under torch.inference_mode, after one "
                "FLOP-counting run and --warmup plain runs; CUDA synchronised after each run"
            ),
            "memory": memory_methods,
            "flops": "torch.utils.flop_counter.FlopCounterMode, 2 FLOPs per multiply-add, matmul/conv/attention only",
            "stage_attribution": (
                "forward pre/post hooks on feature_extractor, query_perceiver, query_head (assignment start), "
                "refinement_perceiver and output_projection, plus a wrapper of TrajTokModel._initial_queries "
                "(soft pool); same intervals for time (separate tokenizer-only runs) and FLOPs (the counting run)"
            ),
        },
        "scales": {
            name: {
                "image_size": SCALES[name]["image_size"],
                "encoder": SCALES[name]["vision"],
                "tokenizer_overrides": SCALES[name]["tokenizer"],
            }
            for name in args.scales
        },
        "active_trajectories": {
            "requested_per_chunk": args.active_trajectories,
            "method": (
                "forward hooks set the assignment's pixel embeddings to the query embedding of the pixel's region in "
                "a panning Voronoi partition with N regions, so exactly N trajectories per chunk win the argmax"
            ),
        },
        "matmul_peak": peak,
        "measurements": measurements,
        "ratios": compute_ratios(measurements),
        "bf16_over_fp32": compute_dtype_ratios(measurements),
        "skipped": [
            {k: m[k] for k in ("scale", "dtype", "model", "frames", "batch_size", "status", "reason")}
            for m in measurements
            if m["status"] in ("skipped", "partial")
        ],
        "errors": [
            {k: m[k] for k in ("scale", "dtype", "model", "frames", "batch_size", "reason")}
            for m in measurements
            if m["status"] == "error"
        ],
    }
    if args.check_outputs:
        result["output_check"] = output_checks
    if args.compile:
        result["compile_errors"] = [
            {k: m[k] for k in ("scale", "dtype", "model", "frames", "batch_size")} | {"error": m["compile"]["error"]}
            for m in measurements
            if m["compile"]["status"] == "error"
        ]
    return result


def _fmt(value, spec: str, width: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}{spec}}"


def _where(m: dict) -> str:
    return (
        f"{m['scale']:<8} {m.get('dtype', 'fp32'):<4} {MODEL_LABELS[m['model']]:<11} B={m['batch_size']:<2} "
        f"T={m['frames']:<3}"
    )


def _print_measurement(m: dict) -> None:
    mark = "" if m["status"] == "ok" else f"  [{m['reason']}]"
    print(
        f"{_where(m)} latency {_fmt(m.get('latency_s'), '.4f', 9)} s  "
        f"tokens {_fmt(m.get('tokens_per_clip'), '.1f', 7)}  GFLOPs {_fmt(m.get('gflops'), '.2f', 9)}  "
        f"mem {_fmt(m.get('peak_extra_mib'), '.0f', 6)} MiB{mark}",
        flush=True,
    )


def _print_compile(m: dict) -> None:
    c = m["compile"]
    if c["status"] == "error" or c.get("latency_s") is None:
        print(f"{_where(m)} compiled: {_brief(c['error'], 160)}", flush=True)
        return
    print(
        f"{_where(m)} compiled {_fmt(c['latency_s'], '.4f', 9)} s  speed-up {_fmt(c.get('speedup'), '.2f', 5)}×  "
        f"compile {c['compile_s']:.1f} s  graphs {c['graphs']} breaks {c['graph_breaks']}  "
        f"recompiled frames {c['recompiled_frames']}{'' if c['stable'] else ' (still recompiling)'}"
        + ("" if c["compiled"].startswith("vision tower") else "  (tokenizer + encoder separately)"),
        flush=True,
    )


def _print_check(row: dict) -> None:
    where = f"check bf16 vs fp32: {row['scale']:<8} {MODEL_LABELS[row['model']]:<9} T={row['frames']:<3}"
    if row["status"] != "ok":
        print(f"{where} error: {_brief(row['error'], 160)}", flush=True)
        return
    agreement = row.get("trajectory_id_agreement")
    print(
        f"{where} {row['assignment'] or '':<10} ids agree {_fmt(agreement, '.4f', 6)}  max|Δ|/rms "
        f"{row['max_abs_diff_rel']:.3g}  mean|Δ|/rms {row['mean_abs_diff_rel']:.3g}  cos {row['cosine']:.5f}",
        flush=True,
    )


def print_report(result: dict) -> None:
    print()
    print(
        "Ratios TrajViT2 / ViT3D and TrajViT2 / ToMe-ViT3D within a dtype (time = latency, tokens = encoder tokens "
        "per clip, memory = peak above the pre-build baseline)"
    )
    header = (
        f"{'scale':<8} {'dtype':<5} {'B':>2} {'T':>3} | {'time/V':>7} {'tok/V':>7} {'mem/V':>7} | "
        f"{'time/ToMe':>9} {'tok/ToMe':>8} {'mem/ToMe':>8}"
    )
    print(header)
    print("-" * len(header))
    for row in result["ratios"]:
        v = row.get("trajvit2_over_vit3d", {})
        t = row.get("trajvit2_over_tome", {})
        print(
            f"{row['scale']:<8} {row['dtype']:<5} {row['batch_size']:>2} {row['frames']:>3} | "
            f"{_fmt(v.get('time'), '.3f', 7)} {_fmt(v.get('tokens'), '.3f', 7)} {_fmt(v.get('memory'), '.3f', 7)} | "
            f"{_fmt(t.get('time'), '.3f', 9)} {_fmt(t.get('tokens'), '.3f', 8)} {_fmt(t.get('memory'), '.3f', 8)}"
        )
    if result["bf16_over_fp32"]:
        print()
        print("bf16 / fp32 per model (time = latency, memory = peak above the pre-build baseline)")
        for row in result["bf16_over_fp32"]:
            compiled = f"  compiled time {_fmt(row['compiled_time'], '.3f', 6)}" if "compiled_time" in row else ""
            print(
                f"{row['scale']:<8} {MODEL_LABELS[row['model']]:<11} B={row['batch_size']:<2} T={row['frames']:<3} "
                f"time {_fmt(row['time'], '.3f', 6)}  memory {_fmt(row['memory'], '.3f', 6)}{compiled}"
            )
    peak = result["matmul_peak"]
    peaks = {dtype: peak[dtype]["best_gflops_per_s"] for dtype in DTYPES}
    print()
    print(
        "Matmul peak (best square torch.mm, GFLOP/s): "
        + "  ".join(f"{dtype} {peaks[dtype]:.0f}" for dtype in DTYPES)
        + f"  (bf16/fp32 {peaks['bf16'] / peaks['fp32']:.1f}×)"
    )
    print("TrajTok by stage (time ms / GFLOPs / GFLOP/s / % of the matmul peak of the row's dtype)")
    for m in result["measurements"]:
        stages = m.get("tokenizer_stages")
        if not stages:
            continue
        parts = []
        for stage in (*STAGES, "other", "tokenizer"):
            s = stages[stage]
            rate = s.get("gflops_per_s")
            frac = s.get("fraction_of_peak")
            parts.append(
                f"{stage} {s['time_s'] * 1e3:.3g}/{s['gflops']:.3g}/"
                f"{'-' if rate is None else f'{rate:.0f}'}/{'-' if frac is None else f'{100 * frac:.0f}%'}"
            )
        print(f"{m['scale']:<8} {m['dtype']:<4} B={m['batch_size']:<2} T={m['frames']:<3} " + "  ".join(parts))
    if any("compile" in m for m in result["measurements"]):
        print()
        print(
            "torch.compile (inductor) vs eager: latency s, speed-up = eager / compiled, cold compile s, "
            "graphs/breaks/frames recompiled after the first call"
        )
        for m in result["measurements"]:
            c = m["compile"]
            if c.get("latency_s") is None:
                print(f"{_where(m)} {_brief(c.get('error') or c['status'], 100)}")
                continue
            print(
                f"{_where(m)} eager {_fmt(m['latency_s'], '.4f', 9)}  compiled {_fmt(c['latency_s'], '.4f', 9)}  "
                f"speed-up {_fmt(c['speedup'], '.2f', 5)}×  compile {c['compile_s']:.1f}  "
                f"{c['graphs']}/{c['graph_breaks']}/{c['recompiled_frames']}"
            )
    for row in result.get("output_check") or []:
        if row is result["output_check"][0]:
            print()
            print(
                "bf16 vs fp32, same weights and input: trajectory-id agreement, |Δ| of pooler_output / its rms, cosine"
            )
        _print_check(row)
    for m in result["measurements"]:
        tome = m.get("tome")
        if tome and not tome["target_reached"]:
            where = f"note: ToMe at {m['scale']} {m['dtype']} T={m['frames']} B={m['batch_size']}: target mean"
            if tome["target_mean_tokens"] >= tome["input_tokens"]:
                print(f"{where} {tome['target_mean_tokens']:.0f} tokens ≥ ViT3D's {tome['input_tokens']}: no merging")
            else:
                print(
                    f"{where} {tome['target_mean_tokens']:.0f} tokens unreachable from {tome['input_tokens']} "
                    f"(halving every layer gives {tome['expected_mean_tokens']:.1f})"
                )
    if result["skipped"]:
        print(f"{len(result['skipped'])} measurement(s) skipped or partial: see 'skipped' in the JSON")
    if result.get("compile_errors"):
        print(f"{len(result['compile_errors'])} compilation(s) failed: see 'compile_errors' in the JSON")


def plot(result: dict, path: str) -> bool:
    """Latency and tokens vs T (log scales), one line per model/scale/batch/dtype. False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"matplotlib is not installed: skipping the plot ({path}); `pip install matplotlib` to get it")
        return False
    figure, (ax_time, ax_tokens) = plt.subplots(1, 2, figsize=(13, 5))
    series: dict[tuple, list] = {}
    for m in result["measurements"]:
        series.setdefault((m["model"], m["scale"], m["batch_size"], m.get("dtype", "fp32")), []).append(m)
    # Colour = model, line style = scale, marker = batch size, hollow markers = bf16: lines of one model stay
    # recognisable.
    colours = {"trajvit2": "tab:orange", "vit3d": "tab:blue", "tome": "tab:green"}
    scales = sorted({key[1] for key in series})
    batches = sorted({key[2] for key in series})
    all_frames = sorted({m["frames"] for m in result["measurements"]})
    for (model, scale, batch, dtype), rows in sorted(series.items()):
        rows = sorted(rows, key=lambda m: m["frames"])
        style = dict(
            color=colours[model],
            linestyle=("-", "--", ":", "-.")[scales.index(scale) % 4],
            marker=("o", "s", "^", "D")[batches.index(batch) % 4],
            markerfacecolor="none" if dtype == "bf16" else colours[model],
            alpha=0.7 if dtype == "bf16" else 1.0,
            label=f"{MODEL_LABELS[model]} {scale} B={batch} {dtype}",
        )
        frames = [m["frames"] for m in rows]
        # Skipped points are NaN: the line breaks there instead of pretending a value.
        latency = [m.get("latency_s") if m.get("latency_s") is not None else float("nan") for m in rows]
        tokens = [m.get("tokens_per_clip") if m.get("tokens_per_clip") is not None else float("nan") for m in rows]
        ax_time.plot(frames, latency, **style)
        ax_tokens.plot(frames, tokens, **style)
    for ax, ylabel in ((ax_time, "video-embedding latency (s)"), (ax_tokens, "encoder tokens per clip")):
        ax.set_xscale("log", base=2)
        # A log axis needs at least one positive value (everything may have been skipped).
        if any(y > 0 for line in ax.get_lines() for y in line.get_ydata() if y == y):
            ax.set_yscale("log")
        ax.set_xticks(all_frames, [str(t) for t in all_frames])
        ax.set_xlabel("frames T")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    ax_time.legend(fontsize=7)
    settings = result["settings"]
    figure.suptitle(
        f"TrajViT2 vs ViT3D vs ToMe-ViT3D ({settings['device']}, {'+'.join(settings['dtypes'])}, "
        f"threads={settings['threads']}, {result['active_trajectories']['requested_per_chunk']} active trajectories "
        "per chunk)"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True


def main(argv=None) -> dict | None:
    args = parse_args(argv)
    if args._task:
        task, spec = args._task
        try:
            print(json.dumps({"ok": True, "value": _TASKS[task](json.loads(spec))}))
        except Exception as error:
            print(
                json.dumps(
                    {"ok": False, "error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}
                )
            )
        return None
    start = time.perf_counter()
    result = run_grid(args)
    result["settings"]["wall_s"] = time.perf_counter() - start
    print_report(result)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.output} ({result['settings']['wall_s']:.1f} s)")
    if plot(result, args.plot):
        print(f"wrote {args.plot}")
    if result["errors"]:
        for error in result["errors"]:
            print(f"ERROR {error}", file=sys.stderr)
        raise SystemExit(1)
    return result


if __name__ == "__main__":
    main()
