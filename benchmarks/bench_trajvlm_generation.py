"""TrajVLM's two placeholder forms: cost (latency, LLM length, KV cache, peak memory) and generation-path correctness.

A TrajTok connector gives each clip a variable number of LLM tokens (paper Sec. 5), known only after segmentation.

* compact form: ONE ``<video>`` per video; ``forward`` replaces it by the video's active tokens (the LLM runs over the
  active tokens only, but logits and cache are longer than ``input_ids``);
* slot form (what ``TrajVLMProcessor(..., video_slot_layout=config.video_slot_layout)`` writes): one ``<video>`` per
  connector slot (clips × K × n); empty slots are masked (the LLM runs over every slot).

Per config, batch size and form: active tokens / slots per video, the LLM's sequence length, the KV cache's bytes
(measured on the returned cache), the median latency of a prefill (one forward with the video) and of ``generate``
(``--new_tokens`` greedy tokens), and the peak memory above the resident set before the call (CPU: Linux ``VmHWM``
reset through ``/proc/self/clear_refs`` after ``malloc_trim``, page granularity; CUDA: ``max_memory_allocated``).
Then, at batch 1, every generation path against greedy decoding of the same model and prompt: continuing ``generate``
from the returned cache, prompt-lookup decoding, assisted decoding (assistant = the same model), ``num_beams=1``, beam
search (runs), ``inputs_embeds`` and ``use_cache=False``: "ok", "differs" or "error: <exception>".

Configs (built from the config only, random weights: generation correctness does not need trained weights): "tiny"
(32² frames, patch 8 → 4×4 patches, K = 16, LLM width 32, 2 layers) and "small" (64² frames → 8×8 patches, K = 32, LLM
width 128, 4 layers); 8 frames = 2 clips.

    python benchmarks/bench_trajvlm_generation.py                                  # tiny + small, batch 1 and 8
    python benchmarks/bench_trajvlm_generation.py --configs tiny --batches 1 --repeats 1 --new_tokens 4 --output x.json

Writes a JSON to a new file (``benchmarks/results/trajvlm_generation_<time>.json``) unless ``--output`` is given, and
prints a table.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import platform
import re
import statistics
import time
from pathlib import Path

VIDEO_TOKEN_ID = 5
FORMS = ("compact", "slot")
CONFIGS = {
    "tiny": dict(image_size=32, num_trajectories=16, text_width=32, text_layers=2, head_dim=8),
    "small": dict(image_size=64, num_trajectories=32, text_width=128, text_layers=4, head_dim=32),
}
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", nargs="+", choices=sorted(CONFIGS), default=["tiny", "small"])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    p.add_argument("--frames", type=int, default=8, help="frames per video (clips of 4)")
    p.add_argument("--new_tokens", type=int, default=16, help="greedy tokens per generate call")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (median)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--note", default="", help="recorded with the results (e.g. 'shared machine')")
    p.add_argument("--output", default=None, help="JSON path (default: a new file in benchmarks/results/)")
    args = p.parse_args(argv)
    for name in ("frames", "new_tokens", "repeats", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1")
    if min(args.batches) < 1:
        p.error("--batches must be >= 1")
    if args.new_tokens < 2:
        p.error("--new_tokens must be >= 2 (continuing from a cache splits them in two calls)")
    return args


if __name__ == "__main__":
    parse_args()  # answers --help and usage errors before the heavy imports below

# Heavy imports, after the argument parsing: --help and usage errors need neither torch nor trajtok_hf.
import torch
from transformers.utils import logging as transformers_logging

from trajtok_hf import TrajTokConfig, TrajVLMConfig, TrajVLMForConditionalGeneration


def build_model(name: str, seed: int = 0) -> TrajVLMForConditionalGeneration:
    """A random-weight TrajVLM of the named size (SigLIP tower, TrajTok segmenter, Qwen3 LLM; chunks of 4 frames)."""
    shape = CONFIGS[name]
    torch.manual_seed(seed)
    segmenter = TrajTokConfig(
        backbone_config=dict(model_type="convnext", depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 24, 32]),
        hidden_size=32,
        num_trajectories=shape["num_trajectories"],
        num_attention_heads=4,
        assignment_hidden_size=16,
        assignment_embed_dim=8,
        subtoken_fourier_frequencies=4,
        chunk_size=4,
    )
    config = TrajVLMConfig(
        vision_config=dict(
            model_type="siglip_vision_model",
            image_size=shape["image_size"],
            patch_size=8,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            vision_use_head=False,
        ),
        trajtok_config=segmenter,
        text_config=dict(
            model_type="qwen3",
            vocab_size=100,
            hidden_size=shape["text_width"],
            num_hidden_layers=shape["text_layers"],
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=shape["head_dim"],
            intermediate_size=2 * shape["text_width"],
            max_position_embeddings=512,
            pad_token_id=0,
            bos_token_id=2,
            eos_token_id=4,
        ),
        video_token_id=VIDEO_TOKEN_ID,
        chunk_size=4,
        segmenter_image_size=shape["image_size"],
        connector_num_attention_heads=4,
        subtoken_fourier_frequencies=4,
    )
    return TrajVLMForConditionalGeneration(config).eval()


def videos_for(model, batch: int, frames: int, seed: int) -> torch.Tensor:
    size = model.config.vision_config.image_size
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, frames, 3, size, size, generator=generator) * 2 - 1  # tower-normalised range


def prompt_for(num_placeholders: int, batch: int) -> dict:
    ids = torch.tensor([[11, 12] + [VIDEO_TOKEN_ID] * num_placeholders + [13, 14, 15, 16]] * batch)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def cache_bytes(cache) -> int:
    """Bytes of the keys and values held by a transformers cache."""
    total = 0
    for layer in getattr(cache, "layers", []):
        for name in ("keys", "values"):
            tensor = getattr(layer, name, None)
            if isinstance(tensor, torch.Tensor):
                total += tensor.numel() * tensor.element_size()
    return total


class PeakMemory:
    """Peak memory above the resident set at the start, in bytes (None where it cannot be measured)."""

    def __init__(self, device: torch.device):
        self.device = device

    @staticmethod
    def _status(key: str) -> int:
        with open("/proc/self/status") as f:
            return int(re.search(rf"{key}:\s+(\d+) kB", f.read()).group(1)) * 1024

    def __enter__(self):
        self.peak = None
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start = torch.cuda.memory_allocated(self.device)
            return self
        gc.collect()
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)  # return freed heap pages, so that reuse does not hide a peak
        except (OSError, AttributeError):
            pass
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset VmHWM to the current resident set (Linux >= 4.0)
            self.start = self._status("VmRSS")
        except OSError:
            self.start = None
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) - self.start
        elif self.start is not None:
            self.peak = self._status("VmHWM") - self.start


def median_seconds(fn, repeats: int, device: torch.device) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - began)
    return statistics.median(times), times


@torch.no_grad()
def measure_cost(model, config_name: str, form: str, batch: int, args, device: torch.device) -> dict:
    videos = videos_for(model, batch, args.frames, args.seed).to(device)
    features = model.get_video_features(videos)
    slots = features.token_mask.shape[1]
    inputs = {k: v.to(device) for k, v in prompt_for(1 if form == "compact" else slots, batch).items()}
    inputs["pixel_values_videos"] = videos
    generate_kwargs = dict(
        max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False, pad_token_id=0
    )

    def prefill():
        return model(**inputs, use_cache=True)

    def generate():
        return model.generate(**inputs, **generate_kwargs)

    out = prefill()  # warm-up, and the shapes
    generate()
    with PeakMemory(device) as prefill_memory:
        prefill()
    with PeakMemory(device) as generate_memory:
        generate()
    prefill_s, prefill_all = median_seconds(prefill, args.repeats, device)
    generate_s, generate_all = median_seconds(generate, args.repeats, device)
    counts = features.num_video_tokens.tolist()
    return {
        "config": config_name,
        "form": form,
        "batch": batch,
        "frames": args.frames,
        "slots": slots,
        "active_min": min(counts),
        "active_max": max(counts),
        "llm_length": out.logits.shape[1],
        "kv_bytes": cache_bytes(out.cache),
        "prefill_ms": 1e3 * prefill_s,
        "generate_ms": 1e3 * generate_s,
        "prefill_all_ms": [1e3 * t for t in prefill_all],
        "generate_all_ms": [1e3 * t for t in generate_all],
        "prefill_peak_bytes": prefill_memory.peak,
        "generate_peak_bytes": generate_memory.peak,
        "new_tokens": args.new_tokens,
    }


def _continue_from_cache(model, inputs, kwargs):
    half = dict(kwargs, max_new_tokens=kwargs["max_new_tokens"] // 2, min_new_tokens=kwargs["max_new_tokens"] // 2)
    first = model.generate(**inputs, **half, return_dict_in_generate=True)
    rest = kwargs["max_new_tokens"] - half["max_new_tokens"]
    return model.generate(
        **{**inputs, "input_ids": first.sequences, "attention_mask": torch.ones_like(first.sequences)},
        **dict(kwargs, max_new_tokens=rest, min_new_tokens=rest),
        cache=first.cache,
    )


def _inputs_embeds(model, inputs, kwargs):
    embeds = model.get_input_embeddings()(inputs["input_ids"])
    rest = {k: v for k, v in inputs.items() if k != "input_ids"}
    return torch.cat([inputs["input_ids"], model.generate(inputs_embeds=embeds, **rest, **kwargs)], dim=1)


def _beam_search_runs(model, inputs, kwargs):
    beams = model.generate(**inputs, **kwargs, num_beams=2)
    return None if beams.shape[0] != inputs["input_ids"].shape[0] else "runs"


PATHS = {
    "continue_from_returned_cache": _continue_from_cache,
    "prompt_lookup": lambda m, i, k: m.generate(**i, **k, prompt_lookup_num_tokens=2),
    "assisted_same_model": lambda m, i, k: m.generate(**i, **k, assistant_model=m),
    "num_beams_1": lambda m, i, k: m.generate(**i, **k, num_beams=1),
    "beam_search_runs": _beam_search_runs,
    "inputs_embeds": _inputs_embeds,
    "use_cache_false": lambda m, i, k: m.generate(**i, **k, use_cache=False),
}


@torch.no_grad()
def check_paths(model, form: str, args, device: torch.device) -> dict:
    """Each generation path against greedy decoding, batch 1: "ok", "differs" or "error: <exception>"."""
    videos = videos_for(model, 1, args.frames, args.seed).to(device)
    slots = model.get_video_features(videos).token_mask.shape[1]
    inputs = {k: v.to(device) for k, v in prompt_for(1 if form == "compact" else slots, 1).items()}
    inputs["pixel_values_videos"] = videos
    kwargs = dict(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False, pad_token_id=0)
    greedy = model.generate(**inputs, **kwargs)
    results = {}
    for name, path in PATHS.items():
        try:
            got = path(model, inputs, kwargs)
        except Exception as error:  # a path that fails is a result of this benchmark
            results[name] = f"error: {type(error).__name__}: {str(error).splitlines()[0][:120]}"
            continue
        same = got == "runs" or (isinstance(got, torch.Tensor) and torch.equal(got, greedy))
        results[name] = "ok" if same else "differs"
    return results


def _kb(value) -> str:
    return "n/a" if value is None else f"{value / 1024:,.0f}"


def print_tables(record: dict) -> None:
    print(
        "| config, batch | form | active / slots | LLM length | KV bytes | prefill ms | generate ms "
        "| peak kB prefill / generate |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in record["cost"]:
        low, high = r["active_min"], r["active_max"]
        active = f"{low}" if low == high else f"{low}–{high}"
        print(
            f"| {r['config']}, {r['batch']} | {r['form']} | {active} / {r['slots']} | {r['llm_length']} "
            f"| {r['kv_bytes']:,} | {r['prefill_ms']:.0f} | {r['generate_ms']:.0f} "
            f"| {_kb(r['prefill_peak_bytes'])} / {_kb(r['generate_peak_bytes'])} |"
        )
    for config_name, by_form in record["paths"].items():
        print(f"\ngeneration paths against greedy, {config_name}, batch 1:")
        print("| path | " + " | ".join(FORMS) + " |")
        print("|---|" + "---|" * len(FORMS))
        for path in PATHS:
            print(f"| {path} | " + " | ".join(by_form[form][path] for form in FORMS) + " |")


def main(argv=None) -> dict:
    args = parse_args(argv)
    transformers_logging.set_verbosity_error()  # generate's notes on the paths' own arguments
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    output = Path(args.output) if args.output else RESULTS_DIR / f"trajvlm_generation_{stamp}.json"
    if not args.output and output.exists():
        raise FileExistsError(f"{output} exists: pass --output to choose the file")
    record = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "threads": args.threads,
            "device": str(device),
            "note": args.note,
        },
        "args": vars(args),
        "cost": [],
        "paths": {},
    }
    for config_name in args.configs:
        model = build_model(config_name).to(device)
        record["paths"][config_name] = {form: check_paths(model, form, args, device) for form in FORMS}
        for batch in args.batches:
            for form in FORMS:
                record["cost"].append(measure_cost(model, config_name, form, batch, args, device))
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(record, indent=2) + "\n")
    print_tables(record)
    print(f"\nwrote {output}")
    return record


if __name__ == "__main__":
    main()
