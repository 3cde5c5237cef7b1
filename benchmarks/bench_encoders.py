"""Video-embedding cost of TrajViT2 vs ViT3D vs ToMe-ViT3D (token-count matched), and TrajTok's cost by stage.

Models (each a ``TrajViT2VisionModel``, the vision tower: tokenizer + [CLS] + encoder + final LayerNorm; no text
tower, no projection), random weights, eval mode, fp32, ``torch.inference_mode``:

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

Measured per (scale, model, T, batch), in a fresh process per measurement (``--isolation``; default ``fork``: a
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
  _for_cpu``) has no formula in torch, so one is registered (torch's own ``sdpa_flop_count``);
- TrajTok by stage (``trajvit2`` only): backbone (``feature_extractor``), query Perceiver (``query_perceiver``),
  assignment (from ``query_head``'s start to the start of the soft pooling: both heads, the logits einsum, argmax and
  the active-slot scatter), soft pooling (``_initial_queries``, Eq. 2; kept apart so that neither the assignment nor
  the refinement hides it), refinement (``refinement_perceiver`` + ``output_projection``), and ``other`` (the
  tokenizer total minus the stages: input checks, chunk bookkeeping). Intervals are delimited by **forward
  pre-/post-hooks** on those modules (and a wrapper around ``_initial_queries``), with a CUDA synchronisation at each
  boundary; the same boundaries read the running FLOP total of the counting run, so time and FLOPs are attributed
  to identical intervals. Stage times are medians over separate runs of the tokenizer alone (at least one, up to
  ``--repeats`` as the budget allows; their synchronisations would distort the end-to-end latency, which therefore
  does not use them). Achieved GFLOP/s = stage FLOPs / stage time, and its fraction of the machine's fp32 matmul
  peak, probed first in the same way (best GFLOP/s of square ``torch.mm`` at ``--probe_sizes``; same threads).

Time budget: ``--max_seconds_per_measurement`` bounds the forward runs of one measurement (model building excluded).
A measurement whose first (FLOP-counting) run already exceeds it is recorded as ``"status": "skipped"`` (its FLOPs and
tokens are still reported); one that runs out part-way keeps the runs it has (``"partial"``). Later configurations of
the same model and scale with at least as many frames and videos are then not started (``"skipped"``, with the
reason), and a child with no result after 2 × budget + ``--setup_timeout`` s is killed (``"skipped"``). Running out
of memory (MemoryError, CUDA OOM, or the child killed by a signal — on Linux the OOM killer) is recorded the same way.
Nothing is dropped silently: every skipped configuration is in ``measurements`` and listed in ``skipped``; real
errors are in ``errors`` and make the script exit with status 1 after writing the JSON.

    python benchmarks/bench_encoders.py                                   # full grid, CPU (long)
    python benchmarks/bench_encoders.py --device cuda                     # on a GPU
    python benchmarks/bench_encoders.py --quick --output /tmp/quick.json  # quick: tiny scale, T ∈ {1, 8}, batch 1
    python benchmarks/bench_encoders.py --scales release --frames 8 16 --batch_sizes 1 --models trajvit2 vit3d

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
    parser.add_argument("--probe_sizes", type=int, nargs="+", help="matrix sizes of the matmul peak probe")
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
    for scale in args.scales:
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


def build_vision_model(scale: str, model: str):
    """A randomly initialised TrajViT2VisionModel of ``scale`` ("trajvit2": TrajTok tokens, else ViT3D), eval mode."""
    from trajtok_hf import TrajViT2VisionConfig, TrajViT2VisionModel

    spec = SCALES[scale]
    kwargs = dict(spec["vision"], image_size=spec["image_size"])
    if model == "trajvit2":
        kwargs.update(vision_tokenizer="trajtok", trajtok_config=dict(spec["tokenizer"]))
    else:
        kwargs.update(vision_tokenizer="vit3d")
    return TrajViT2VisionModel(TrajViT2VisionConfig(**kwargs)).eval()


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def measure(spec: dict) -> dict:
    """One (scale, model, T, batch) measurement; returns a JSON-able record (see the module docstring)."""
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda but torch.cuda.is_available() is False")
        torch.backends.cuda.matmul.allow_tf32 = spec["allow_tf32"]
        torch.backends.cudnn.allow_tf32 = spec["allow_tf32"]
    scale, name, frames, batch = spec["scale"], spec["model"], spec["frames"], spec["batch_size"]
    budget = spec["max_seconds"]
    size = SCALES[scale]["image_size"]
    record: dict = {"status": "ok", "reason": None}

    torch.manual_seed(spec.get("seed", 0))
    memory = MemoryTracker(device)
    # No parameter needs a gradient here; FlopCounterMode's module tracker also trips over parameters that require
    # grad under inference_mode.
    model = build_vision_model(scale, name).to(device).requires_grad_(False)
    vision = model.vision_model
    video = torch.randn(batch, frames, 3, size, size, device=device)
    record["params"] = _count(model)
    record["params_tokenizer"] = _count(vision.tokenizer)
    record["params_encoder"] = record["params"] - record["params_tokenizer"]
    override = None
    if name == "trajvit2":
        override = ActiveTrajectoryOverride(vision.tokenizer, spec["active_trajectories"], size // 4)
        override.ids(min(frames, vision.tokenizer.config.chunk_size), device)  # build before any timing
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
        expected = tome_tokens_per_layer(num_tokens, schedule)
        apply_token_merging(model, schedule)
        record["tome"] = {
            "r_schedule": schedule,
            "input_tokens": num_tokens,
            "target_mean_tokens": target,
            "target_source": spec["tome_target_source"],
            "expected_mean_tokens": sum(expected) / layers,
            "target_reached": abs(sum(expected) / layers - target) < 1.0,
        }
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

        elapsed = first_run
        times: list[float] = []
        if first_run > budget:
            record["status"] = "skipped"
            record["reason"] = (
                f"skipped: one forward pass (the FLOP-counting warm-up) took {first_run:.3g} s, over "
                f"--max_seconds_per_measurement={budget:g} s; FLOPs and tokens are from that pass"
            )
        else:
            # 2) plain warm-up runs, 3) timed runs, each only while the budget allows one more.
            last = first_run
            for index in range(spec["warmup"] + spec["repeats"]):
                if elapsed + last > budget:
                    break
                start = time.perf_counter()
                forward()
                _sync(device)
                last = time.perf_counter() - start
                elapsed += last
                if index >= spec["warmup"]:  # the first `warmup` runs are not timed
                    times.append(last)
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


def matmul_peak(spec: dict) -> dict:
    """Best fp32 GFLOP/s of square torch.mm over a few sizes (2n³ FLOPs per product; best of 3 after a warm-up)."""
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = spec["allow_tf32"]
    rates = {}
    for n in spec["sizes"]:
        a = torch.randn(n, n, device=device)
        b = torch.randn(n, n, device=device)
        torch.mm(a, b)
        _sync(device)
        best = math.inf
        for _ in range(3):
            start = time.perf_counter()
            torch.mm(a, b)
            _sync(device)
            best = min(best, time.perf_counter() - start)
        rates[str(n)] = 2 * n**3 / best / 1e9
    return {"sizes": list(spec["sizes"]), "gflops_per_s": rates, "best_gflops_per_s": max(rates.values())}


_TASKS = {"measure": measure, "matmul_peak": matmul_peak}


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
    (peak_extra_mib), per (scale, batch, T); None where a value is missing (skipped)."""
    index = {(m["scale"], m["model"], m["batch_size"], m["frames"]): m for m in measurements}
    rows = []
    keys = sorted({(m["scale"], m["batch_size"], m["frames"]) for m in measurements})
    for scale, batch, frames in keys:
        ours = index.get((scale, "trajvit2", batch, frames))
        if ours is None:
            continue
        row = {"scale": scale, "batch_size": batch, "frames": frames}
        for other in ("vit3d", "tome"):
            theirs = index.get((scale, other, batch, frames))
            if theirs is None:
                continue
            row[f"trajvit2_over_{other}"] = {
                "time": _ratio(ours.get("latency_s"), theirs.get("latency_s")),
                "tokens": _ratio(ours.get("tokens_per_clip"), theirs.get("tokens_per_clip")),
                "memory": _ratio(ours.get("peak_extra_mib"), theirs.get("peak_extra_mib")),
            }
        rows.append(row)
    return rows


def add_stage_efficiency(measurements: list[dict], peak_gflops_per_s: float | None) -> None:
    for m in measurements:
        for stage in (m.get("tokenizer_stages") or {}).values():
            rate = stage["gflops"] / stage["time_s"] if stage["time_s"] > 0 else None
            stage["gflops_per_s"] = rate
            stage["fraction_of_peak"] = _ratio(rate, peak_gflops_per_s)


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
                f"skipped: not started, T={failed_frames} batch={failed_batch} of the same model and scale already "
                f"hit a limit ({why}) and this one has at least as many frames and videos"
            )
    return None


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
    print(f"fp32 matmul peak: {peak['best_gflops_per_s']:.1f} GFLOP/s (sizes {probe_sizes})", flush=True)

    measurements, failures = [], {}
    for scale in args.scales:
        for batch in args.batch_sizes:
            for frames in args.frames:
                trajvit2_tokens = None
                for name in args.models:
                    record = {"scale": scale, "model": name, "frames": frames, "batch_size": batch}
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
                    reason = _covered_by_failure(failures.get((scale, name), []), frames, batch)
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
                        failures.setdefault((scale, name), []).append((frames, batch, why[:120]))
                    if name == "trajvit2" and record.get("tokens_per_clip") is not None:
                        trajvit2_tokens = record["tokens_per_clip"]
                    measurements.append(record)
                    _print_measurement(record)

    add_stage_efficiency(measurements, peak["best_gflops_per_s"])
    memory_methods = sorted({m["memory_method"] for m in measurements if m.get("memory_method")})
    return {
        "benchmark": "bench_encoders",
        "settings": {
            "device": device_kind,
            "dtype": "float32",
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
        "skipped": [
            {k: m[k] for k in ("scale", "model", "frames", "batch_size", "status", "reason")}
            for m in measurements
            if m["status"] in ("skipped", "partial")
        ],
        "errors": [
            {k: m[k] for k in ("scale", "model", "frames", "batch_size", "reason")}
            for m in measurements
            if m["status"] == "error"
        ],
    }


def _fmt(value, spec: str, width: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}{spec}}"


def _print_measurement(m: dict) -> None:
    mark = "" if m["status"] == "ok" else f"  [{m['reason']}]"
    print(
        f"{m['scale']:<8} {MODEL_LABELS[m['model']]:<11} B={m['batch_size']:<2} T={m['frames']:<3} "
        f"latency {_fmt(m.get('latency_s'), '.4f', 9)} s  tokens {_fmt(m.get('tokens_per_clip'), '.1f', 7)}  "
        f"GFLOPs {_fmt(m.get('gflops'), '.2f', 9)}  mem {_fmt(m.get('peak_extra_mib'), '.0f', 6)} MiB{mark}",
        flush=True,
    )


def print_report(result: dict) -> None:
    print()
    print(
        "Ratios TrajViT2 / ViT3D and TrajViT2 / ToMe-ViT3D (time = latency, tokens = encoder tokens per clip, "
        "memory = peak above the pre-build baseline)"
    )
    header = (
        f"{'scale':<8} {'B':>2} {'T':>3} | {'time/V':>7} {'tok/V':>7} {'mem/V':>7} | "
        f"{'time/ToMe':>9} {'tok/ToMe':>8} {'mem/ToMe':>8}"
    )
    print(header)
    print("-" * len(header))
    for row in result["ratios"]:
        v = row.get("trajvit2_over_vit3d", {})
        t = row.get("trajvit2_over_tome", {})
        print(
            f"{row['scale']:<8} {row['batch_size']:>2} {row['frames']:>3} | {_fmt(v.get('time'), '.3f', 7)} "
            f"{_fmt(v.get('tokens'), '.3f', 7)} {_fmt(v.get('memory'), '.3f', 7)} | {_fmt(t.get('time'), '.3f', 9)} "
            f"{_fmt(t.get('tokens'), '.3f', 8)} {_fmt(t.get('memory'), '.3f', 8)}"
        )
    peak = result["matmul_peak"]["best_gflops_per_s"]
    print()
    print(f"TrajTok by stage (time ms / GFLOPs / GFLOP/s / % of the {peak:.0f} GFLOP/s fp32 matmul peak)")
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
        print(f"{m['scale']:<8} B={m['batch_size']:<2} T={m['frames']:<3} " + "  ".join(parts))
    for m in result["measurements"]:
        tome = m.get("tome")
        if tome and not tome["target_reached"]:
            where = f"note: ToMe at {m['scale']} T={m['frames']} B={m['batch_size']}: target mean"
            if tome["target_mean_tokens"] >= tome["input_tokens"]:
                print(f"{where} {tome['target_mean_tokens']:.0f} tokens ≥ ViT3D's {tome['input_tokens']}: no merging")
            else:
                print(
                    f"{where} {tome['target_mean_tokens']:.0f} tokens unreachable from {tome['input_tokens']} "
                    f"(halving every layer gives {tome['expected_mean_tokens']:.1f})"
                )
    if result["skipped"]:
        print(f"{len(result['skipped'])} measurement(s) skipped or partial: see 'skipped' in the JSON")


def plot(result: dict, path: str) -> bool:
    """Latency and tokens vs T (log scales), one line per model/scale/batch. False when matplotlib is missing."""
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
        series.setdefault((m["model"], m["scale"], m["batch_size"]), []).append(m)
    # Colour = model, line style = scale, marker = batch size: lines of one model stay recognisable.
    colours = {"trajvit2": "tab:orange", "vit3d": "tab:blue", "tome": "tab:green"}
    scales = sorted({scale for _, scale, _ in series})
    batches = sorted({batch for _, _, batch in series})
    all_frames = sorted({m["frames"] for m in result["measurements"]})
    for (model, scale, batch), rows in sorted(series.items()):
        rows = sorted(rows, key=lambda m: m["frames"])
        style = dict(
            color=colours[model],
            linestyle=("-", "--", ":", "-.")[scales.index(scale) % 4],
            marker=("o", "s", "^", "D")[batches.index(batch) % 4],
            label=f"{MODEL_LABELS[model]} {scale} B={batch}",
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
        f"TrajViT2 vs ViT3D vs ToMe-ViT3D ({settings['device']}, fp32, threads={settings['threads']}, "
        f"{result['active_trajectories']['requested_per_chunk']} active trajectories per chunk)"
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
