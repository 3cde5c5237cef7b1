"""TrajVLM vs the PatchVLM baseline on held-out synthetic video QA, with tiny models trained here on a CPU.

    python benchmarks/bench_trajvlm_qa.py --output_dir outputs/bench_trajvlm_qa            # the full run
    python benchmarks/bench_trajvlm_qa.py --output_dir /tmp/b --caption_steps 20 --lora_steps 10 --num_eval 32  # smoke

Both connectors go through the same two stages (paper Sec. 5) by running the example scripts, so the numbers are
what a user of those scripts gets:

1. examples/train_trajvlm_caption.py — TrajTok connector: stage-0 segmenter pre-training (paper Sec. 3, then
   frozen) and caption pre-training of tower + connector + projector + LLM from scratch.
2. The mean number of LLM tokens per 16-frame clip of the TrajTok model on held-out clips fixes the budget of the
   baseline: the patch-pool setting (p×p spatial, t frames) whose token count is closest to it (ties: finer space).
3. examples/train_trajvlm_caption.py — patch_pool connector, same steps.
4. examples/finetune_trajvlm_lora.py on each (LoRA on the LLM attention + projector, `--eval_before --merge`):
   exact-match accuracy on the same held-out questions before and after LoRA, per question type.
5. Latency: greedy answer time per question of the merged models, batch 1 and batched (16).

Writes ``results.json`` and ``results.md`` in ``--output_dir``. Every subprocess runs with one torch thread: on a
shared machine with few cores, two threads per process oversubscribe the cores and run far slower than one.

Tiny from-scratch models on procedural videos: the numbers compare the two connectors in one code path, they do not
reproduce the paper's gains.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


EVAL_SEED = 1_000_000  # examples/finetune_trajvlm_lora.py holds out generator seed `seed + 1_000_000`


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output_dir", required=True)
    p.add_argument("--segmenter_steps", type=int, default=300)
    p.add_argument("--caption_steps", type=int, default=1000)
    p.add_argument("--lora_steps", type=int, default=500)
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--num_eval", type=int, default=300)
    p.add_argument("--num_latency", type=int, default=20, help="questions timed one at a time")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


if __name__ == "__main__":
    parse_args()  # answers --help and usage errors before the heavy imports below

# Heavy imports, after the argument parsing: --help and usage errors need neither torch nor trajtok_hf.
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

import trajtok_hf  # noqa: F401  (registers the TrajVLM Auto classes)
from trajtok_hf.data.video_qa import (
    QUESTION_TYPES,
    evaluate_video_qa,
    generate_qa,
    shapes_video_config,
)


def run(script, *arguments, log):
    command = [sys.executable, str(REPO / "examples" / script), *map(str, arguments), "--num_threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    started = time.time()
    with open(log, "w") as f:
        subprocess.run(command, check=True, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    return time.time() - started


def held_out(processor, num, seed):
    size = processor.video_processor.size["height"]
    synth = shapes_video_config(num_frames=processor.video_processor.num_frames, size=size)
    return [generate_qa(synth, seed + EVAL_SEED, i) for i in range(num)]


def tokens_per_clip(model_dir, processor, examples):
    model = AutoModelForImageTextToText.from_pretrained(model_dir).eval()
    counts = []
    with torch.no_grad():
        for start in range(0, len(examples), 16):
            videos = [ex["video"] for ex in examples[start : start + 16]]
            pixels = processor.video_processor(videos, return_tensors="pt")["pixel_values_videos"]
            counts += model.get_video_features(pixels).num_video_tokens.tolist()
    return sum(counts) / len(counts), counts


def matched_patch_pool(budget, grid, frames):
    """(p, t) among p | grid, t | frames whose tokens per clip ((grid/p)² · frames/t) are closest to `budget`."""
    options = []
    for p in [d for d in range(1, grid + 1) if grid % d == 0]:
        for t in [d for d in range(1, frames + 1) if frames % d == 0]:
            tokens = (grid // p) ** 2 * (frames // t)
            options.append((abs(tokens - budget), p, t, tokens))  # ties: smaller p (finer space) first
    _, p, t, tokens = min(options)
    return p, t, tokens


def latency(model_dir, processor, examples, batch_size):
    model = AutoModelForImageTextToText.from_pretrained(model_dir).eval()
    result = evaluate_video_qa(model, processor, examples, batch_size=batch_size)
    return result["seconds_per_answer"]


def majority_baseline(examples):
    by_type = {}
    for t in QUESTION_TYPES:
        answers = [ex["answer"] for ex in examples if ex["type"] == t]
        if answers:
            by_type[t] = Counter(answers).most_common(1)[0][1] / len(answers)
    overall = sum(by_type[ex["type"]] for ex in examples) / len(examples)
    return overall, by_type


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    common = ["--batch_size", args.batch_size, "--seed", args.seed]
    timings = {}
    began = time.time()

    # 1. TrajTok connector: segmenter + captions
    traj_caption = out / "trajtok-caption"
    timings["trajtok_caption_s"] = run(
        "train_trajvlm_caption.py",
        "--output_dir",
        traj_caption,
        "--connector",
        "trajtok",
        "--segmenter_steps",
        args.segmenter_steps,
        "--steps",
        args.caption_steps,
        *common,
        log=out / "trajtok-caption.log",
    )
    traj_model = traj_caption / "final"  # the script's atomic end-of-training save
    processor = AutoProcessor.from_pretrained(traj_model)
    examples = held_out(processor, args.num_eval, args.seed)
    traj_tokens, traj_counts = tokens_per_clip(traj_model, processor, examples)
    grid = json.loads((traj_model / "config.json").read_text())["vision_config"]["image_size"] // 8
    frames = processor.video_processor.num_frames
    p, t, pool_tokens = matched_patch_pool(traj_tokens, grid, frames)
    print(f"TrajTok: {traj_tokens:.2f} LLM tokens per {frames}-frame clip → patch pool p={p}, t={t}: {pool_tokens}")

    # 2. PatchVLM at the matched budget
    patch_caption = out / "patch-caption"
    timings["patch_caption_s"] = run(
        "train_trajvlm_caption.py",
        "--output_dir",
        patch_caption,
        "--connector",
        "patch_pool",
        "--patch_pool_size",
        p,
        "--patch_pool_temporal_size",
        t,
        "--steps",
        args.caption_steps,
        *common,
        log=out / "patch-caption.log",
    )

    # 3. LoRA QA fine-tuning of both, evaluated before and after on the same held-out questions
    results = {}
    for name, caption_dir in (("trajtok", traj_caption), ("patch_pool", patch_caption)):
        lora_dir = out / f"{name}-lora"
        timings[f"{name}_lora_s"] = run(
            "finetune_trajvlm_lora.py",
            "--model",
            caption_dir / "final",
            "--output_dir",
            lora_dir,
            "--steps",
            args.lora_steps,
            "--num_eval",
            args.num_eval,
            "--eval_before",
            "--merge",
            *common,
            log=out / f"{name}-lora.log",
        )
        evaluation = json.loads((lora_dir / "eval.json").read_text())
        latency_examples = examples[: args.num_latency]
        results[name] = {
            "accuracy_before": evaluation["before"]["accuracy"],
            "accuracy_after": evaluation["after"]["accuracy"],
            "accuracy_by_type_before": evaluation["before"].get("accuracy_by_type"),
            "accuracy_by_type_after": evaluation["after"].get("accuracy_by_type"),
            "tokens_per_clip": evaluation["after"]["video_tokens_per_video"],
            "seconds_per_answer_batch1": latency(lora_dir / "merged", processor, latency_examples, 1),
            "seconds_per_answer_batch16": evaluation["after"]["seconds_per_answer"],
            "examples": evaluation["examples"][:5],
        }
    results["trajtok"]["tokens_per_clip_distribution"] = dict(sorted(Counter(traj_counts).items()))
    results["patch_pool"]["patch_pool_size"], results["patch_pool"]["patch_pool_temporal_size"] = p, t
    majority, majority_by_type = majority_baseline(examples)
    summary = {
        "results": results,
        "majority_answer_baseline": majority,
        "majority_answer_baseline_by_type": majority_by_type,
        "eval_type_counts": dict(Counter(ex["type"] for ex in examples)),
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "total_minutes": round((time.time() - began) / 60, 1),
        "args": vars(args),
        "torch_threads": 1,
    }
    (out / "results.json").write_text(json.dumps(summary, indent=2))

    lines = [
        f"| connector | LLM tokens / {frames}-frame clip | accuracy before LoRA | accuracy after LoRA | "
        "s / answer (batch 1) | s / answer (batch 16) |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['tokens_per_clip']:.2f} | {r['accuracy_before']:.3f} | "
            f"{r['accuracy_after']:.3f} | {r['seconds_per_answer_batch1']:.3f} | "
            f"{r['seconds_per_answer_batch16']:.4f} |"
        )
    lines.append(f"| majority answer per type | – | {majority:.3f} | {majority:.3f} | – | – |")
    lines += ["", "| question type | n | majority | trajtok after | patch_pool after |", "|---|---|---|---|---|"]
    for qt in QUESTION_TYPES:
        if qt in majority_by_type:
            lines.append(
                f"| {qt} | {summary['eval_type_counts'][qt]} | {majority_by_type[qt]:.3f} | "
                f"{results['trajtok']['accuracy_by_type_after'][qt]:.3f} | "
                f"{results['patch_pool']['accuracy_by_type_after'][qt]:.3f} |"
            )
    table = "\n".join(lines)
    (out / "results.md").write_text(table + "\n")
    print(table)
    print(f"total {summary['total_minutes']} min; results in {out / 'results.json'}")


if __name__ == "__main__":
    main()
