"""How well a TrajTok segmenter finds the objects of held-out synthetic clips (FG-ARI, matched mIoU).

With no arguments: the segmenter shipped in ``checkpoints/trajtok-small-shapes`` segments the demo's 500 held-out
clips (seed 2,000,000, 1–3 objects, never used in training) and its hard trajectory ids are scored against the exact
trajectories on the 1/4 label grid: FG-ARI, ARI, Hungarian-matched mIoU / FG-mIoU, FG-ARI by objects per clip, the
objects that share a trajectory with another object ("merged") and, by texture, the objects with a cell outside
their trajectory ("missed").

    python examples/evaluate_segmenter.py
    python examples/evaluate_segmenter.py --model checkpoints/trajvit2-tiny-shapes     # the tokenizer of a TrajViT2
    python examples/evaluate_segmenter.py --model runs/seg/final --num_clips 200 --save_metrics seg.json

Only the assignment (paper Sec. 3, Eq. 1) runs: the ids do not depend on the refinement Perceiver.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = REPO_ROOT / "checkpoints" / "trajtok-small-shapes"
HELD_OUT_SEED = 2_000_000  # the retrieval demo's clips; training used seed 0, its evaluation seed 1,000,000


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="a TrajTok segmenter folder or a TrajViT2 folder")
    parser.add_argument("--num_clips", type=int, default=500)
    parser.add_argument("--num_frames", type=int, default=None, help="frames per clip (default: the processor's)")
    parser.add_argument("--max_objects", type=int, default=3, help="objects per clip: 1..max (the demo's 3)")
    parser.add_argument("--seed", type=int, default=HELD_OUT_SEED, help="synthetic data seed")
    parser.add_argument("--batch_size", type=int, default=50)
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, mps")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--save_metrics",
        default=None,
        help="also write the numbers as JSON (the --eval_results format of push_to_hub.py)",
    )
    args = parser.parse_args(argv)
    for name in ("num_clips", "batch_size", "max_objects"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.seed < 0:
        parser.error(f"--seed must be >= 0, got {args.seed}")
    if args.num_frames is not None and args.num_frames < 1:
        parser.error(f"--num_frames must be >= 1, got {args.num_frames}")
    if not os.path.isfile(os.path.join(args.model, "config.json")):
        parser.error(f"--model {args.model}: no config.json there (a save_pretrained folder)")
    try:
        torch.device(args.device)
    except RuntimeError as error:
        parser.error(f"--device {args.device}: {error}")
    return args


if __name__ == "__main__":
    parse_args()  # answers --help and usage errors before the heavy imports below

# Heavy imports, after the argument parsing: --help and usage errors need neither torch nor trajtok_hf.
import torch
from tqdm.auto import tqdm

import trajtok_hf  # noqa: F401  (registers the Auto classes)
from trajtok_hf.data import IGNORE_INDEX, SyntheticVideoConfig, generate_clip
from trajtok_hf.metrics import fg_ari_by_object_count, object_errors, segmentation_metrics
from trajtok_hf.training import load_segmenter


def object_report(trajectory_ids, clips) -> dict:
    """Merged objects overall, and objects with at least one missed cell per texture (plain / striped / checkered)."""
    merged = total = 0
    missed, seen = Counter(), Counter()
    for ids, clip in zip(trajectory_ids, clips, strict=True):
        errors = object_errors(ids, clip["segmentation_labels"], background_id=0, ignore_index=IGNORE_INDEX)
        merged += int(errors["merged"].sum())
        total += errors["ids"].size
        for obj_id, missed_pixels in zip(errors["ids"].tolist(), errors["missed_pixels"].tolist(), strict=True):
            texture = clip["objects"][obj_id - 1]["texture"]  # object k has id k (background 0)
            seen[texture] += 1
            missed[texture] += missed_pixels > 0
    return {
        "objects": total,
        "merged": merged,
        "missed_by_texture": {t: {"objects": seen[t], "with_missed_cell": missed[t]} for t in sorted(seen)},
    }


def main(argv=None) -> dict:
    args = parse_args(argv)
    start = time.perf_counter()
    try:
        segmenter, video_processor = load_segmenter(args.model)
    except ValueError as error:
        raise SystemExit(f"error: --model {error}") from None
    segmenter = segmenter.to(args.device).eval()
    size = video_processor.size
    frames = args.num_frames or video_processor.num_frames or 8
    config = SyntheticVideoConfig(
        num_frames=frames, height=size["height"], width=size["width"], max_objects=args.max_objects
    )
    clips = [generate_clip(config, args.seed, i) for i in range(args.num_clips)]

    trajectory_ids = []
    with torch.inference_mode():
        for first in tqdm(range(0, len(clips), args.batch_size), desc="segment", disable=args.no_progress):
            videos = [clip["video"] for clip in clips[first : first + args.batch_size]]
            pixel_values = video_processor(videos, return_tensors="pt")["pixel_values_videos"].to(args.device)
            output = segmenter(pixel_values_videos=pixel_values, output_trajectory_tokens=False)
            trajectory_ids.extend(output.trajectory_ids.cpu())

    labels = [clip["segmentation_labels"] for clip in clips]
    scores = segmentation_metrics(
        trajectory_ids, labels, background_id=0, ignore_index=IGNORE_INDEX, return_per_clip=True
    )
    by_objects = fg_ari_by_object_count(scores["per_clip"]["FG-ARI"], labels, ignore_index=IGNORE_INDEX)
    objects = object_report(trajectory_ids, clips)

    print(f"\nsegmenter: {args.model} ({type(segmenter).__name__}, K = {segmenter.config.num_trajectories})")
    print(
        f"data: {len(clips)} synthetic clips (seed {args.seed}, 1–{args.max_objects} objects, {frames} frames of "
        f"{size['height']}×{size['width']}), labels on the {labels[0].shape[1]}×{labels[0].shape[2]} grid"
    )
    print(
        f"FG-ARI {scores['FG-ARI']:.3f}  ARI {scores['ARI']:.3f}  mIoU {scores['mIoU']:.3f}  "
        f"FG-mIoU {scores['FG-mIoU']:.3f}"
    )
    print(
        "FG-ARI by objects per clip: "
        + " · ".join(f"{count}: {value['FG-ARI']:.3f} ({value['clips']} clips)" for count, value in by_objects.items())
    )
    print(f"objects merged with another object: {objects['merged']} of {objects['objects']}")
    print(
        "objects with a cell outside their trajectory: "
        + " · ".join(
            f"{texture} {v['with_missed_cell']} of {v['objects']}"
            for texture, v in objects["missed_by_texture"].items()
        )
    )
    print(f"total {time.perf_counter() - start:.1f} s")

    metrics = {key: scores[key] for key in ("FG-ARI", "ARI", "mIoU", "FG-mIoU")}
    if args.save_metrics:
        # The --eval_results format of push_to_hub.py (the segmenter's model card quotes these numbers).
        record = {
            "metrics": metrics,
            "dataset": {
                "type": "synthetic-shapes",
                "name": "trajtok_hf synthetic shapes",
                "split": f"held-out (seed {args.seed}, {len(clips)} clips)",
            },
            "fg_ari_by_objects_per_clip": by_objects,
            "objects": objects,
            "model": args.model,
            "num_clips": len(clips),
            "num_frames": frames,
            "device": args.device,
        }
        Path(args.save_metrics).parent.mkdir(parents=True, exist_ok=True)
        Path(args.save_metrics).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.save_metrics}")
    return {**metrics, "by_objects": by_objects, "objects": objects}


if __name__ == "__main__":
    main()
