"""Motion probes: does a video-text model know which way things move, and in which order things happen?

Three two-way choices on held-out synthetic clips (``trajtok_hf.data.synthetic``, seed 2,000,000 by default — the
retrieval demo's clips, never used in training), each scored by the cosine of the model's video and text
embeddings (the logit scale does not change a comparison):

* **direction** — the true caption against the same caption with every directed motion mirrored (left ↔ right,
  rises ↔ falls, clockwise ↔ counterclockwise, enters from the left ↔ from the right, …:
  ``trajtok_hf.data.DIRECTION_FLIPS``); clips with at least one directed motion;
* **time reversal** — the clip against the clip played backwards, for its true caption (``TIME_REVERSALS``:
  entering ↔ leaving, appearing ↔ disappearing, moving left ↔ right); clips where reversing changes some motion;
* **object swap** — the true caption against the caption with the motions of the first two objects exchanged (the
  right words, the wrong pairing); clips whose first two objects move differently. Also reported by group
  (:func:`swap_group`): two or three objects whose first two motions are of different kinds ("rotates" / "leaves
  at the left"), and first two motions of the same kind in different directions ("leaves at the left" / "leaves at
  the top", :func:`trajtok_hf.data.motion_kind`), the hardest case. ``--swap_by_segmentation`` (TrajTok models)
  also splits the pairs by how the model's own tokenizer segments the two swapped objects
  (:func:`swapped_objects_segmentation`): in one trajectory (the model cannot bind the motions apart), in two
  trajectories that each hold at least 95 % of their object's cells, or in two less cleanly.

``--swapped_clip_probe`` adds the object swap from the video side: **object swap (clip)** — the clip against the
same clip rendered again with the paths of its first two objects exchanged
(:func:`trajtok_hf.data.generate_swapped_clip`: the same background and objects, each moving as the other did), for
the true caption; clips that have such a copy. Where the caption-side probe asks whether the caption's embedding
binds each motion to its object, this one asks the video's; it also reports the two clips matched to their two
captions at once (the true pairing's summed cosines against the crossed pairing's). The object-swap probe is also
split by how far the swap moves the caption in the model's own text tower (``1 - cos`` of the true and swapped
captions, :func:`text_change_group`): a caption the text tower hardly changes leaves the video little to tell; and
by motion (the pairs in which either swapped object makes it, :func:`pass_rates_by_motion`), which shows a motion
whose wording the text tower misreads. The video-side probe is split likewise by how far the swap moves the clip in
the model's own video tower (:func:`video_change_group`): a clip whose embedding hardly moves when two objects
exchange paths has not bound each path to its object.

``--caption_facts speed occlusion`` words the clips' captions with those facts too
(``SyntheticVideoConfig.caption_speed`` / ``caption_occlusion``, for models trained on such captions) and adds a
probe for each: **speed** — the true caption against the same with every speed word flipped (slowly ↔ quickly);
**occlusion** — the true caption against the same with every "A in front of B" turned into "B in front of A".

A probe is passed when the true pairing scores higher (a tie counts one half); chance is 50 %. The altered captions
are built by the generator's own captioner (``trajtok_hf.data.caption_from_objects``), so they differ from the truth
only in the probed fact.

``--data photos`` asks the first two questions of real pixels: composites of the photographs that no segmenter or
TrajViT2 here trained on (``trajtok_hf.data.HELD_OUT_PHOTOS``), one photo sprite moving in a straight line over a
still photo background at a fixed scale (:func:`photo_probe_clips`). Its motion is read from the exact trajectory
ids (the sprite's centroid from the first frame to the last: left, right, up or down when one axis dominates), and
its caption names only its size and that motion ("a large object moves left"): a photo sprite has no colour or shape
word of the synthetic vocabulary. Direction: that caption against the same with the direction flipped; time
reversal: the clip against itself played backwards.

    python benchmarks/motion_probes.py                                        # checkpoints/trajvit2-tiny-shapes
    python benchmarks/motion_probes.py --model checkpoints/vit3d-tiny-shapes --output probes_vit3d.json
    python benchmarks/motion_probes.py --model checkpoints/trajvit2-minilm-lite0 --data photos
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = REPO_ROOT / "checkpoints" / "trajvit2-tiny-shapes"
HELD_OUT_SEED = 2_000_000
PROBES = ("direction", "time_reversal", "object_swap")
FACT_PROBES = {"speed": "speed", "occlusion": "occlusion"}  # --caption_facts entry → the probe it adds
HELD_OUT_PARTS = ("motion", "shape", "template")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="a TrajViT2 folder (model + processor)")
    parser.add_argument("--num_clips", type=int, default=200, help="held-out clips drawn (each probe uses a subset)")
    parser.add_argument("--max_objects", type=int, default=None, help="objects per clip: 1..max (default 3)")
    parser.add_argument("--seed", type=int, default=HELD_OUT_SEED, help="generator seed of the clips")
    parser.add_argument(
        "--caption_wording",
        choices=("fixed", "train", "held_out"),
        default=None,
        help="the captions' wording (SyntheticVideoConfig.caption_wording): the fixed one the shipped models trained "
        "on (default), paraphrases, or the held-out paraphrases",
    )
    parser.add_argument(
        "--caption_facts",
        nargs="+",
        choices=tuple(FACT_PROBES),
        default=(),
        help="synthetic clips: captions also say how fast straight moves go and what is in front of what "
        "(SyntheticVideoConfig.caption_speed / caption_occlusion), and a probe for each is added",
    )
    parser.add_argument(
        "--shuffle_clauses",
        action="store_true",
        help="synthetic clips: the captions name the objects in a random order instead of painting order "
        "(SyntheticVideoConfig.shuffle_clauses), for models trained so",
    )
    parser.add_argument(
        "--held_out_parts",
        nargs="+",
        choices=HELD_OUT_PARTS,
        default=None,
        help="with --caption_wording held_out: keep only these parts of the held-out wording (motion phrases with "
        "their speed and occlusion words, shape words, clause template) and draw the others from the training "
        "wordings, to see which part costs what (default: all three)",
    )
    parser.add_argument(
        "--data",
        choices=("synthetic", "photos"),
        default="synthetic",
        help="synthetic shapes (three probes), or composites of held-out photographs (direction and time reversal)",
    )
    parser.add_argument(
        "--swap_by_segmentation",
        action="store_true",
        help="synthetic clips, TrajTok models: also split the object-swap pairs by whether the model's tokenizer "
        "puts the two swapped objects in one trajectory or in two, and how cleanly",
    )
    parser.add_argument(
        "--swapped_clip_probe",
        action="store_true",
        help="synthetic clips: add the object swap from the video side (the clip against its copy with the first "
        "two objects' paths exchanged, for the true caption)",
    )
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--output", default=None, metavar="FILE", help="write the results as JSON (default: print)")
    args = parser.parse_args(argv)
    for flag in ("swap_by_segmentation", "swapped_clip_probe"):
        if getattr(args, flag) and args.data == "photos":
            parser.error(f"--{flag} needs two objects per clip: the photo clips have one sprite")
    if args.data == "photos":
        if (
            args.max_objects is not None
            or args.caption_wording is not None
            or args.caption_facts
            or args.shuffle_clauses
        ):
            parser.error(
                "--data photos draws one sprite per clip with a caption of its own: drop --max_objects, "
                "--caption_wording, --caption_facts and --shuffle_clauses"
            )
    else:
        args.max_objects = 3 if args.max_objects is None else args.max_objects
        args.caption_wording = args.caption_wording or "fixed"
    if args.held_out_parts is not None and args.swapped_clip_probe:
        parser.error("--swapped_clip_probe scores the copies in their own full wording: drop --held_out_parts")
    if args.held_out_parts is not None and args.caption_wording != "held_out":
        parser.error("--held_out_parts chooses parts of the held-out wording: it needs --caption_wording held_out")
    for name in ("num_clips", "max_objects", "batch_size"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if not os.path.isfile(os.path.join(args.model, "config.json")):
        parser.error(f"--model {args.model}: no config.json there (a save_pretrained folder)")
    return args


if __name__ == "__main__":
    parse_args()  # answers --help and usage errors before the heavy imports below

# Heavy imports, after the argument parsing: --help and usage errors need neither torch nor trajtok_hf.
import numpy as np
import torch
from transformers import AutoModel, AutoProcessor

import trajtok_hf  # noqa: F401  (registers the Auto classes)
from trajtok_hf.data import (
    CLAUSE_TEMPLATES,
    DIRECTION_FLIPS,
    HELD_OUT_PHOTOS,
    MOTION_WORDINGS,
    MOTIONS,
    SHAPE_WORDS,
    TIME_REVERSALS,
    PhotoCompositeConfig,
    SyntheticVideoConfig,
    caption_fact_options,
    caption_from_objects,
    flipped_speeds,
    generate_clip,
    generate_composite,
    generate_swapped_clip,
    motion_kind,
    reversed_occlusions,
    swap_motions_caption,
)


def reword_parts(clip: dict, held_out_parts, rng: np.random.Generator) -> dict:
    """A held-out-wording clip whose caption keeps only ``held_out_parts`` (of :data:`HELD_OUT_PARTS`) held out: the
    other parts are drawn from the training wordings by ``rng`` (a motion phrase per object, the training shape
    word, a training clause template), and the caption is rebuilt. The clip's video and facts are unchanged."""
    objects = []
    for obj in clip["objects"]:
        obj = dict(obj)
        if "motion" not in held_out_parts:
            obj["wording"] = int(rng.integers(len(MOTION_WORDINGS[obj["motion"]]) - 1))
        if "shape" not in held_out_parts:
            obj["shape_word"] = SHAPE_WORDS[obj["shape"]][0]
        objects.append(obj)
    template = clip["caption_template"]
    if "template" not in held_out_parts:
        template = int(rng.integers(len(CLAUSE_TEMPLATES) - 1))
    return {
        **clip,
        "objects": objects,
        "caption_template": template,
        "caption": caption_from_objects(objects, None, template),
    }


SWAP_GROUPS = ("2 objects, different kinds", "3+ objects, different kinds", "same kind, other directions")


def swap_group(clip: dict) -> str:
    """The :data:`SWAP_GROUPS` entry of an object-swap pair: the kinds of the first two objects' motions
    (:func:`~trajtok_hf.data.motion_kind`) and, when they differ, the clip's object count."""
    first, second = clip["objects"][0]["motion"], clip["objects"][1]["motion"]
    if motion_kind(first) == motion_kind(second):
        return SWAP_GROUPS[2]
    return SWAP_GROUPS[0] if len(clip["objects"]) == 2 else SWAP_GROUPS[1]


TEXT_CHANGE_GROUPS = ("captions nearly alike (1 - cos < 0.05)", "1 - cos 0.05 to 0.25", "1 - cos from 0.25")
VIDEO_CHANGE_GROUPS = ("clips nearly alike (1 - cos < 0.05)", "clips 1 - cos 0.05 to 0.25", "clips 1 - cos from 0.25")
CHANGE_EDGES = (0.05, 0.25)


def text_change_group(change: float) -> str:
    """The :data:`TEXT_CHANGE_GROUPS` entry of an object-swap pair whose true and swapped captions embed at
    ``1 - cosine`` = ``change`` in the model's own text tower: how much the swap moves the caption's embedding."""
    return TEXT_CHANGE_GROUPS[_change_index(change)]


def video_change_group(change: float) -> str:
    """The :data:`VIDEO_CHANGE_GROUPS` entry of a clip whose object-swapped copy embeds at ``1 - cosine`` =
    ``change`` from it in the model's own video tower: how much exchanging two objects' paths moves the video."""
    return VIDEO_CHANGE_GROUPS[_change_index(change)]


def _change_index(change: float) -> int:
    if math.isnan(change):
        raise ValueError("`change` must be a number, got NaN")
    return sum(change >= edge for edge in CHANGE_EDGES)


def swapped_motions(clip: dict) -> tuple[str, str]:
    """The motions of the two objects an object swap exchanges (the clip's first two)."""
    return clip["objects"][0]["motion"], clip["objects"][1]["motion"]


def pass_rates_by_motion(true: torch.Tensor, other: torch.Tensor, motions: list[tuple[str, str]]) -> dict[str, dict]:
    """:func:`pass_rate` and pair count per motion of :data:`~trajtok_hf.data.MOTIONS`, over the pairs in which
    either swapped object makes it (``motions``: each pair's two motions); motions in no pair are left out."""
    rows = {}
    for motion in MOTIONS:
        members = torch.tensor([motion in pair for pair in motions], dtype=torch.bool)
        if members.any():
            rows[motion] = {"pass_rate": pass_rate(true[members], other[members]), "pairs": int(members.sum())}
    return rows


SEGMENTATION_GROUPS = (
    "in one trajectory",
    "apart, each at least 95 % in its trajectory",
    "apart, less cleanly",
    "an object off the mask grid",
)
CLEAN_SHARE = 0.95


def swapped_objects_segmentation(trajectory_ids, labels, objects=(1, 2)) -> str:
    """The :data:`SEGMENTATION_GROUPS` entry of an object-swap pair: how the hard trajectory ids ``(T, h, w)`` cut
    the two swapped objects of the exact ids ``labels`` (same shape; object ``k`` of ``clip["objects"]`` has id
    ``k + 1``). Each object's trajectory is the one holding most of its cells; *apart* when the two differ, *each at
    least 95 %* when each trajectory holds that share of its object's cells."""
    trajectory_ids, labels = np.asarray(trajectory_ids), np.asarray(labels)
    if trajectory_ids.shape != labels.shape:
        raise ValueError(f"trajectory_ids {trajectory_ids.shape} and labels {labels.shape} must have one shape")
    majority, shares = [], []
    for obj in objects:
        cells = trajectory_ids[labels == obj]
        if cells.size == 0:
            return SEGMENTATION_GROUPS[3]
        values, counts = np.unique(cells, return_counts=True)
        majority.append(values[counts.argmax()])
        shares.append(counts.max() / cells.size)
    if majority[0] == majority[1]:
        return SEGMENTATION_GROUPS[0]
    return SEGMENTATION_GROUPS[1] if min(shares) >= CLEAN_SHARE else SEGMENTATION_GROUPS[2]


def grouped_pass_rates(true: torch.Tensor, other: torch.Tensor, groups: list[str], names) -> dict[str, dict]:
    """:func:`pass_rate` and pair count of each group in ``names`` (``groups``: each pair's group)."""
    rows = {}
    for name in names:
        members = torch.tensor([group == name for group in groups], dtype=torch.bool)
        rates = pass_rate(true[members], other[members]) if members.any() else float("nan")
        rows[name] = {"pass_rate": rates, "pairs": int(members.sum())}
    return rows


# A photo sprite's straight-line motion, as the synthetic generator names it, by the sign of its dominant shift.
PHOTO_MOTIONS = {("x", 1): "move_right", ("x", -1): "move_left", ("y", 1): "move_down", ("y", -1): "move_up"}


def sprite_motion(segmentation: np.ndarray, sprite_id: int = 1, min_shift: float = 0.08) -> str | None:
    """The motion (a :data:`PHOTO_MOTIONS` value) of sprite ``sprite_id`` in exact ids ``segmentation`` ``(T, H, W)``:
    the shift of its centroid from the first frame to the last, as a fraction of the frame side, when it is at
    least ``min_shift`` along one axis and at least twice the shift along the other; ``None`` otherwise (a sprite
    missing from the first or last frame, a short or diagonal path)."""
    if not isinstance(segmentation, np.ndarray) or segmentation.ndim != 3 or 0 in segmentation.shape:
        got = getattr(segmentation, "shape", type(segmentation).__name__)
        raise ValueError(f"`segmentation` must be a non-empty (T, H, W) array of trajectory ids, got {got}")
    first, last = segmentation[0] == sprite_id, segmentation[-1] == sprite_id
    if not first.any() or not last.any():
        return None
    (y0, x0), (y1, x1) = (np.argwhere(mask).mean(axis=0) for mask in (first, last))
    height, width = segmentation.shape[1:]
    shift = {"x": (x1 - x0) / width, "y": (y1 - y0) / height}
    axis, other = ("x", "y") if abs(shift["x"]) >= abs(shift["y"]) else ("y", "x")
    if abs(shift[axis]) < min_shift or abs(shift[axis]) < 2 * abs(shift[other]):
        return None
    return PHOTO_MOTIONS[(axis, 1 if shift[axis] > 0 else -1)]


def photo_caption(size: str, motion: str) -> str:
    return f"a {size} object {MOTIONS[motion]}"


def photo_probe_clips(num_frames: int, height: int, width: int, seed: int, num_clips: int) -> list[dict]:
    """``num_clips`` composites of held-out photographs, each one sprite with a straight motion that
    :func:`sprite_motion` names, over a still photo background, with ``caption`` (:func:`photo_caption`),
    ``flipped_caption`` (the direction mirrored) and ``objects`` (the sprite, with its ``motion``). Clip indices are
    tried in order; those without a nameable motion are skipped (at most 50 tries per clip kept)."""
    config = PhotoCompositeConfig(
        num_frames=num_frames,
        height=height,
        width=width,
        min_objects=1,
        max_objects=1,
        split="held_out",
        speed=(0.015, 0.04),
        max_turn=0.0,
        max_scale_change=1.0,
        camera_pan_probability=0.0,
        min_visible_fraction=0.5,
    )
    clips = []
    for index in range(50 * num_clips):
        if len(clips) == num_clips:
            break
        clip = generate_composite(config, seed, index)
        motion = sprite_motion(clip["segmentation"])
        if motion is None:
            continue
        size = clip["objects"][0]["size"]
        clips.append(
            {
                "video": clip["video"],
                "objects": [{**clip["objects"][0], "motion": motion}],
                "caption": photo_caption(size, motion),
                "flipped_caption": photo_caption(size, DIRECTION_FLIPS[motion]),
                "index": index,
            }
        )
    if len(clips) < num_clips:
        raise RuntimeError(f"only {len(clips)} of {num_clips} photo clips had a nameable motion")
    return clips


def probe_pairs(clips: list[dict], probes=PROBES) -> dict[str, list[tuple[int, str, str | None]]]:
    """Per probe, ``(clip index, true caption, altered caption)``; the altered caption is None for the time-reversal
    and object-swap (clip) probes, which alter the clip instead (the latter for clips with a ``swapped_video``). A
    clip with a ``flipped_caption`` (the photo clips) brings its own
    direction-flipped caption."""
    pairs = {name: [] for name in probes}
    for index, clip in enumerate(clips):
        objects, caption, template = clip["objects"], clip["caption"], clip.get("caption_template", 0)
        if "flipped_caption" in clip:
            pairs["direction"].append((index, caption, clip["flipped_caption"]))
        elif any(obj["motion"] in DIRECTION_FLIPS for obj in objects):
            flipped = [{**obj, "motion": DIRECTION_FLIPS.get(obj["motion"], obj["motion"])} for obj in objects]
            pairs["direction"].append((index, caption, caption_from_objects(flipped, None, template)))
        if any(TIME_REVERSALS[obj["motion"]] != obj["motion"] for obj in objects):
            pairs["time_reversal"].append((index, caption, None))
        swapped = swap_motions_caption(clip)
        if swapped is not None:
            pairs["object_swap"].append((index, caption, swapped))
        if "object_swap_clip" in pairs and clip.get("swapped_video") is not None:
            pairs["object_swap_clip"].append((index, caption, None))
        if "speed" in pairs and any(obj.get("speed") for obj in objects):
            pairs["speed"].append((index, caption, caption_from_objects(flipped_speeds(objects), None, template)))
        if "occlusion" in pairs and any(obj.get("in_front_of") for obj in objects):
            altered = caption_from_objects(reversed_occlusions(objects), None, template)
            pairs["occlusion"].append((index, caption, altered))
    return pairs


@torch.inference_mode()
def embed_videos(
    model, processor, videos: list[np.ndarray], batch_size: int, device, return_trajectory_ids: bool = False
):
    """The L2-normalised video embeddings ``(N, D)``; with ``return_trajectory_ids`` also the TrajTok tokenizer's hard
    trajectory ids ``(T, h, w)`` of each video, from the same forward pass."""
    out, trajectory_ids = [], []
    for start in range(0, len(videos), batch_size):
        inputs = processor(videos=videos[start : start + batch_size], return_tensors="pt")
        features = model.get_video_features(pixel_values_videos=inputs["pixel_values_videos"].to(device))
        out.append(torch.nn.functional.normalize(features.pooler_output.float(), dim=-1).cpu())
        if return_trajectory_ids:
            trajectory_ids.extend(features.trajectory_ids.cpu().numpy())
    return (torch.cat(out), trajectory_ids) if return_trajectory_ids else torch.cat(out)


@torch.inference_mode()
def embed_texts(model, processor, texts: list[str], batch_size: int, device) -> torch.Tensor:
    out = []
    for start in range(0, len(texts), batch_size):
        inputs = processor(text=texts[start : start + batch_size], padding=True, return_tensors="pt")
        features = model.get_text_features(
            input_ids=inputs["input_ids"].to(device), attention_mask=inputs["attention_mask"].to(device)
        )
        out.append(torch.nn.functional.normalize(features.pooler_output.float(), dim=-1).cpu())
    return torch.cat(out)


def write_record(record: dict, output: str | None) -> None:
    """Write a benchmark's JSON record to ``output`` (creating its folder) and say so; nothing when ``output`` is
    None. Shared by the probe benchmarks."""
    if output:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {output}")


def pass_rate(true_scores: torch.Tensor, other_scores: torch.Tensor) -> float:
    """Share of pairs where the true pairing scores higher; a tie counts one half."""
    wins = (true_scores > other_scores).float() + 0.5 * (true_scores == other_scores).float()
    return float(wins.mean()) if wins.numel() else float("nan")


def run_probes(
    model, processor, clips: list[dict], batch_size: int, device, probes=PROBES, swap_by_segmentation: bool = False
) -> dict[str, dict]:
    pairs = probe_pairs(clips, probes)
    videos = [clip["video"] for clip in clips]
    if swap_by_segmentation:
        video_embeds, trajectory_ids = embed_videos(model, processor, videos, batch_size, device, True)
    else:
        video_embeds = embed_videos(model, processor, videos, batch_size, device)
    reversed_ids = [index for index, _, _ in pairs["time_reversal"]]
    reversed_embeds = embed_videos(
        model, processor, [np.ascontiguousarray(videos[i][::-1]) for i in reversed_ids], batch_size, device
    )
    swapped_ids = [index for index, _, _ in pairs.get("object_swap_clip", ())]
    swapped_embeds = (
        embed_videos(model, processor, [clips[i]["swapped_video"] for i in swapped_ids], batch_size, device)
        if swapped_ids
        else None
    )
    texts = {text for rows in pairs.values() for _, true, alt in rows for text in (true, alt) if text}
    texts = sorted(texts | {clips[i]["swapped_caption"] for i in swapped_ids})
    text_index = {text: i for i, text in enumerate(texts)}
    text_embeds = embed_texts(model, processor, texts, batch_size, device) if texts else None

    def cosine(video_embed, text):
        return (video_embed * text_embeds[text_index[text]]).sum(-1)

    results = {}
    for name, rows in pairs.items():
        if not rows:
            results[name] = {"pass_rate": float("nan"), "pairs": 0}
            continue
        true = torch.stack([cosine(video_embeds[i], caption) for i, caption, _ in rows])
        if name == "time_reversal":
            other = torch.stack([cosine(reversed_embeds[k], caption) for k, (_, caption, _) in enumerate(rows)])
        elif name == "object_swap_clip":
            other = torch.stack([cosine(swapped_embeds[k], caption) for k, (_, caption, _) in enumerate(rows)])
        else:
            other = torch.stack([cosine(video_embeds[i], altered) for i, _, altered in rows])
        results[name] = {"pass_rate": pass_rate(true, other), "pairs": len(rows)}
        if name == "object_swap_clip":
            # both clips with both captions: the true pairing's two scores against the crossed pairing's
            own = torch.stack(
                [cosine(swapped_embeds[k], clips[i]["swapped_caption"]) for k, (i, _, _) in enumerate(rows)]
            )
            crossed = torch.stack([cosine(video_embeds[i], clips[i]["swapped_caption"]) for i, _, _ in rows])
            results[name]["matching_pass_rate"] = pass_rate(true + own, other + crossed)
            change = 1 - (video_embeds[[i for i, _, _ in rows]] * swapped_embeds).sum(-1)
            results[name]["video_change_median"] = float(change.median())
            changes = [video_change_group(float(c)) for c in change]
            results[name]["by_video_change"] = grouped_pass_rates(true, other, changes, VIDEO_CHANGE_GROUPS)
        if name == "object_swap":
            groups = [swap_group(clips[i]) for i, _, _ in rows]
            results[name]["groups"] = grouped_pass_rates(true, other, groups, SWAP_GROUPS)
            change = torch.stack(
                [1 - (text_embeds[text_index[a]] * text_embeds[text_index[b]]).sum() for _, a, b in rows]
            )
            results[name]["text_change_median"] = float(change.median())
            changes = [text_change_group(float(c)) for c in change]
            results[name]["by_text_change"] = grouped_pass_rates(true, other, changes, TEXT_CHANGE_GROUPS)
            results[name]["by_motion"] = pass_rates_by_motion(
                true, other, [swapped_motions(clips[i]) for i, _, _ in rows]
            )
            if swap_by_segmentation:
                cuts = [
                    swapped_objects_segmentation(trajectory_ids[i], clips[i]["segmentation_labels"]) for i, _, _ in rows
                ]
                results[name]["by_segmentation"] = grouped_pass_rates(true, other, cuts, SEGMENTATION_GROUPS)
    return results


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = torch.device(args.device)
    model = AutoModel.from_pretrained(args.model).to(device).eval()
    processor = AutoProcessor.from_pretrained(args.model)
    if not (hasattr(model, "get_video_features") and hasattr(model, "get_text_features")):
        raise SystemExit(f"error: --model {args.model} is a {type(model).__name__}, not a video-text model")
    video_processor = processor.video_processor
    size = video_processor.size
    frames = video_processor.num_frames or 8
    height, width = int(size.get("height") or size["shortest_edge"]), int(size.get("width") or size["shortest_edge"])
    if args.data == "photos":
        clips = photo_probe_clips(frames, height, width, args.seed, args.num_clips)
        described = f"composites of the held-out photographs {list(HELD_OUT_PHOTOS)}, one sprite on a still camera"
    else:
        config = SyntheticVideoConfig(
            num_frames=frames,
            height=height,
            width=width,
            max_objects=args.max_objects,
            caption_wording=args.caption_wording,
            **caption_fact_options(args.caption_facts, args.shuffle_clauses),
        )
        clips = [generate_clip(config, args.seed, i) for i in range(args.num_clips)]
        if args.swapped_clip_probe:
            for i, clip in enumerate(clips):
                swapped = generate_swapped_clip(config, args.seed, i)
                clip["swapped_video"] = None if swapped is None else swapped["video"]
                clip["swapped_caption"] = None if swapped is None else swapped["caption"]
        described = f"synthetic clips, 1–{args.max_objects} objects, {args.caption_wording} captions"
        if args.caption_facts:
            described += f" with {' and '.join(args.caption_facts)}"
        if args.shuffle_clauses:
            described += ", objects named in a random order"
        if args.held_out_parts is not None:
            clips = [
                reword_parts(clip, args.held_out_parts, np.random.default_rng([args.seed, i, 7]))
                for i, clip in enumerate(clips)
            ]
            described += f" (held out: {', '.join(args.held_out_parts)}; the rest in training wordings)"
    if args.swap_by_segmentation and getattr(model.config, "vision_tokenizer", None) != "trajtok":
        raise SystemExit(f"error: --swap_by_segmentation needs a TrajViT2 with TrajTok tokens; {args.model} has none")
    probes = PROBES + ("object_swap_clip",) * args.swapped_clip_probe
    probes += tuple(FACT_PROBES[fact] for fact in args.caption_facts)
    results = run_probes(model, processor, clips, args.batch_size, device, probes, args.swap_by_segmentation)
    tokenizer = getattr(model.config, "vision_config", model.config)
    print(f"model: {args.model} ({getattr(tokenizer, 'vision_tokenizer', type(model).__name__)})")
    print(f"clips: {args.num_clips} held-out {described} (seed {args.seed})")
    for name, row in results.items():
        print(f"{name:>14}: {100 * row['pass_rate']:5.1f} % of {row['pairs']} pairs (chance 50 %)")
        if "matching_pass_rate" in row:
            print(f"{'':>16}both clips with both captions: {100 * row['matching_pass_rate']:5.1f} %")
        if "text_change_median" in row:
            print(f"{'':>16}median 1 - cos of the true and swapped captions: {row['text_change_median']:.4f}")
        if "video_change_median" in row:
            print(f"{'':>16}median 1 - cos of the clip and its swapped copy: {row['video_change_median']:.4f}")
        split = {
            **row.get("groups", {}),
            **row.get("by_text_change", {}),
            **row.get("by_video_change", {}),
            **row.get("by_segmentation", {}),
        }
        for group, part in split.items():
            print(f"{'':>16}{group}: {100 * part['pass_rate']:5.1f} % of {part['pairs']} pairs")
        if "by_motion" in row:
            parts = [f"{m} {100 * part['pass_rate']:.0f} % ({part['pairs']})" for m, part in row["by_motion"].items()]
            print(f"{'':>16}pairs with each motion: " + ", ".join(parts))
    record = {
        "model": args.model,
        "data": args.data,
        "seed": args.seed,
        "num_clips": args.num_clips,
        "max_objects": 1 if args.data == "photos" else args.max_objects,
        "caption_wording": "size and motion only" if args.data == "photos" else args.caption_wording,
        **({"held_out_parts": args.held_out_parts} if args.held_out_parts is not None else {}),
        **({"caption_facts": list(args.caption_facts)} if args.caption_facts else {}),
        **({"shuffle_clauses": True} if args.shuffle_clauses else {}),
        "probes": results,
    }
    write_record(record, args.output)
    return record


if __name__ == "__main__":
    main()
