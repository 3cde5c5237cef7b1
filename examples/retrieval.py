"""Text→video and video→text retrieval with a trained TrajViT2 checkpoint, and a picture of its trajectories.

With no arguments: loads ``checkpoints/trajvit2-tiny-shapes`` (trained here, see its README) with ``AutoModel`` /
``AutoProcessor``, renders 500 held-out synthetic clips (seed 2,000,000: training used seed 0, its evaluation set
seed 1,000,000), embeds clips and captions, prints R@1/5/10 in both directions and the median rank (and, for a
TrajTok model on synthetic clips, the tokenizer's FG-ARI / matched mIoU against the exact trajectories), and writes a
trajectory overlay PNG + GIF of a few clips to ``outputs/retrieval/``.

    python examples/retrieval.py
    python examples/retrieval.py --model checkpoints/vit3d-tiny-shapes          # the space-time patch baseline
    python examples/retrieval.py --tokens_per_trajectory 4                       # 4 tokens per trajectory
    python examples/retrieval.py --model checkpoints/trajvit2-minilm-shapes --caption_wording held_out
    python examples/retrieval.py --model path/to/trajvit2 --data my_videos/ --num_frames 16 --device cuda

``--data DIR`` reads a local video folder with ``metadata.jsonl`` / ``metadata.csv`` (``file_name``, ``caption`` or
``captions``; see ``trajtok_hf.data.load_video_text_dataset``); every caption of a video counts as a query for it.
``--caption_wording held_out`` words the synthetic captions in the paraphrases that no training caption uses (motion
phrases, shape words and clause template held out; ``SyntheticVideoConfig.caption_wording``), for the models trained
on paraphrased captions.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = REPO_ROOT / "checkpoints" / "trajvit2-tiny-shapes"
HELD_OUT_SEED = 2_000_000  # never used by the training scripts (train: --seed 0, evaluation: seed + 1,000,000)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="a saved TrajViT2Model folder (with processor)")
    parser.add_argument("--data", default=None, help="a video folder with metadata (default: synthetic held-out clips)")
    parser.add_argument("--num_clips", type=int, default=500, help="synthetic clips (or the first N of --data)")
    parser.add_argument("--num_frames", type=int, default=None, help="frames per clip (default: the processor's)")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument(
        "--tokens_per_trajectory",
        type=int,
        choices=(1, 2, 4),
        default=None,
        help="TrajTok models: tokens per trajectory n (default: the model config's)",
    )
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1, mps")
    parser.add_argument(
        "--dtype",
        choices=("float32", "bfloat16", "float16"),
        default="float32",
        help="precision the model is loaded in (from_pretrained(dtype=...)); inputs are cast by the model",
    )
    parser.add_argument("--seed", type=int, default=HELD_OUT_SEED, help="synthetic data seed")
    parser.add_argument(
        "--caption_wording",
        choices=("fixed", "train", "held_out"),
        default=None,
        help="synthetic clips: the captions' wording (SyntheticVideoConfig.caption_wording; default fixed, the "
        "generator's first wording); held_out: the wordings that no training caption uses",
    )
    parser.add_argument(
        "--caption_facts",
        nargs="+",
        choices=("speed", "occlusion"),
        default=(),
        help="synthetic clips: captions also say how fast straight moves go and what is in front of what "
        "(SyntheticVideoConfig.caption_speed / caption_occlusion), for models trained on such captions",
    )
    parser.add_argument(
        "--shuffle_clauses",
        action="store_true",
        help="synthetic clips: the objects are named in a random order, not in painting order "
        "(SyntheticVideoConfig.shuffle_clauses)",
    )
    parser.add_argument("--output_dir", default="outputs/retrieval", help="where the PNG/GIF go")
    parser.add_argument("--num_visualize", type=int, default=4, help="clips in the trajectory picture (0 = none)")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--output",
        "--save_metrics",
        dest="output",
        default=None,
        metavar="FILE",
        help="also write the numbers as JSON (the --eval_results format of push_to_hub.py)",
    )
    args = parser.parse_args(argv)
    for name in ("num_clips", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.num_frames is not None and args.num_frames < 1:
        parser.error(f"--num_frames must be >= 1, got {args.num_frames}")
    for flag in ("caption_wording", "caption_facts", "shuffle_clauses"):
        if getattr(args, flag) and args.data is not None:
            parser.error(f"--{flag} words the synthetic captions: drop it with --data (the folder has its own)")
    if args.num_visualize < 0:
        parser.error(f"--num_visualize must be >= 0, got {args.num_visualize}")
    if not os.path.isfile(os.path.join(args.model, "config.json")):
        parser.error(f"--model {args.model}: no config.json there (a save_pretrained folder of a TrajViT2Model)")
    metadata = ("metadata.jsonl", "metadata.csv")
    if args.data is not None and not any(os.path.isfile(os.path.join(args.data, name)) for name in metadata):
        parser.error(f"--data {args.data}: expected a video folder with a metadata.jsonl or metadata.csv")
    import torch  # after parsing: --help stays free of heavy imports

    try:
        torch.device(args.device)
    except RuntimeError as error:
        parser.error(f"--device {args.device}: {error}")
    return args


if __name__ == "__main__":
    parse_args()  # answers --help and usage errors before the heavy imports below

# Heavy imports, after the argument parsing: --help and usage errors need neither torch nor trajtok_hf.
import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import AutoModel, AutoProcessor

import trajtok_hf  # noqa: F401  (registers the Auto classes)
from trajtok_hf.data import (
    IGNORE_INDEX,
    SyntheticVideoConfig,
    caption_fact_options,
    generate_clip,
    load_video_text_dataset,
)
from trajtok_hf.metrics import fg_ari_by_object_count, retrieval_metrics, segmentation_metrics
from trajtok_hf.visualization import denormalize_video, save_trajectory_pictures


def frame_geometry(video_processor, num_frames: int | None) -> tuple[int, int, int]:
    """Frames, height, width the processor produces (synthetic clips are rendered at that size)."""
    size = video_processor.size
    height = size.get("height") or size.get("shortest_edge")
    width = size.get("width") or size.get("shortest_edge")
    frames = num_frames or video_processor.num_frames or 8
    return int(frames), int(height), int(width)


def load_clips(args, video_processor):
    """``(videos, captions_per_video, segmentation_labels or None)``: uint8 ``(T, H, W, 3)`` arrays, a list of
    captions per video and (synthetic clips) the exact trajectory labels on the 1/4 grid."""
    frames, height, width = frame_geometry(video_processor, args.num_frames)
    if args.data is None:
        config = SyntheticVideoConfig(
            num_frames=frames,
            height=height,
            width=width,
            caption_wording=args.caption_wording or "fixed",
            **caption_fact_options(args.caption_facts, args.shuffle_clauses),
        )
        clips = (generate_clip(config, args.seed, i) for i in range(args.num_clips))
        videos, captions, labels = [], [], []
        for clip in tqdm(clips, total=args.num_clips, desc="render clips", disable=args.no_progress):
            videos.append(clip["video"])
            captions.append([clip["caption"]])
            labels.append(clip["segmentation_labels"])
        return videos, captions, labels
    dataset = load_video_text_dataset(args.data, frames, load_masks=False)
    videos, captions, failed = [], [], 0
    for i in tqdm(range(min(args.num_clips, len(dataset))), desc="decode videos", disable=args.no_progress):
        row = dataset[i]
        if row["decode_error"] is not None:
            failed += 1
            continue
        videos.append(np.asarray(row["video"]))
        captions.append(list(row["captions"] or [row["caption"]]))
    if failed:
        print(f"skipped {failed} video(s) that failed to decode")
    if not videos:
        raise SystemExit(f"error: no decodable video in {args.data}")
    return videos, captions, None


@torch.inference_mode()
def embed(
    model,
    processor,
    videos,
    captions,
    batch_size: int,
    device,
    progress: bool = True,
    tokens_per_trajectory: int | None = None,
):
    """L2-normalised video and text embeddings, tokens per clip, seconds per clip, the first batch's vision output
    (for the pictures) and the trajectory ids of every clip (TrajTok models; else None)."""
    video_embeds, text_embeds, tokens, trajectory_ids, first = [], [], [], [], None
    video_seconds = 0.0
    for start in tqdm(range(0, len(videos), batch_size), desc="embed", disable=not progress):
        batch_videos = videos[start : start + batch_size]
        batch_captions = [c for caps in captions[start : start + batch_size] for c in caps]
        inputs = processor(videos=batch_videos, text=batch_captions, padding=True, return_tensors="pt")
        pixel_values = inputs["pixel_values_videos"].to(device)
        tic = time.perf_counter()
        vision = model.get_video_features(pixel_values_videos=pixel_values, tokens_per_trajectory=tokens_per_trajectory)
        video_seconds += time.perf_counter() - tic
        text = model.get_text_features(
            input_ids=inputs["input_ids"].to(device), attention_mask=inputs["attention_mask"].to(device)
        )
        video_embeds.append(torch.nn.functional.normalize(vision.pooler_output.float(), dim=-1).cpu())
        text_embeds.append(torch.nn.functional.normalize(text.pooler_output.float(), dim=-1).cpu())
        # Encoder tokens per clip: the attended positions after the [CLS].
        tokens.append(vision.attention_mask[:, 1:].sum(-1).cpu())
        if vision.trajectory_ids is not None:
            trajectory_ids.extend(vision.trajectory_ids.cpu())
        if first is None:
            first = (pixel_values.cpu(), vision)
    return (
        torch.cat(video_embeds),
        torch.cat(text_embeds),
        torch.cat(tokens).float(),
        video_seconds / len(videos),
        first,
        trajectory_ids or None,
    )


def format_table(metrics: dict[str, float]) -> str:
    rows = [("text → video", "t2v"), ("video → text", "v2t")]
    lines = [f"{'direction':<14}{'R@1':>8}{'R@5':>8}{'R@10':>8}{'MedR':>8}"]
    for label, prefix in rows:
        lines.append(
            f"{label:<14}"
            + "".join(f"{metrics[f'{prefix}_R@{k}']:>8.1f}" for k in (1, 5, 10))
            + f"{metrics[f'{prefix}_MedR']:>8.1f}"
        )
    return "\n".join(lines)


def write_pictures(model, processor, first_batch, captions, num_visualize: int, output_dir: Path):
    """Trajectory overlay PNG + GIF of the first clips (TrajTok models only); returns the written paths."""
    pixel_values, vision = first_batch
    if vision.trajectory_ids is None:
        print("no trajectory picture: this model's vision tokenizer is ViT3D (space-time patches)")
        return []
    n = min(num_visualize, pixel_values.shape[0])
    vp = processor.video_processor
    frames = denormalize_video(pixel_values[:n], vp.image_mean, vp.image_std)
    ids = vision.trajectory_ids[:n].cpu()
    chunk_size = model.config.vision_config.trajtok_config.chunk_size
    titles = [caps[0] for caps in captions[:n]]
    return [Path(p) for p in save_trajectory_pictures(list(frames), list(ids), chunk_size, output_dir, captions=titles)]


def main(argv=None) -> dict[str, float]:
    args = parse_args(argv)
    start = time.perf_counter()
    device = torch.device(args.device)
    model = AutoModel.from_pretrained(args.model, dtype=getattr(torch, args.dtype)).to(device).eval()
    processor = AutoProcessor.from_pretrained(args.model)
    if not (hasattr(model, "get_video_features") and hasattr(model, "get_text_features")):
        raise SystemExit(f"error: --model {args.model} is a {type(model).__name__}, not a video-text model")
    if args.num_frames is not None:
        processor.video_processor.num_frames = args.num_frames
    if args.tokens_per_trajectory is not None and model.config.vision_config.vision_tokenizer != "trajtok":
        raise SystemExit("error: --tokens_per_trajectory needs a TrajTok model (this one uses ViT3D patches)")

    videos, captions, labels = load_clips(args, processor.video_processor)
    wording = "" if args.caption_wording in (None, "fixed") else f", {args.caption_wording} caption wording"
    if args.caption_facts:
        wording += f", captions with {' and '.join(args.caption_facts)}"
    if args.shuffle_clauses:
        wording += ", objects named in a random order"
    source = args.data or f"synthetic held-out clips (seed {args.seed}{wording})"
    video_emb, text_emb, tokens, seconds_per_clip, first, trajectory_ids = embed(
        model,
        processor,
        videos,
        captions,
        args.batch_size,
        device,
        progress=not args.no_progress,
        tokens_per_trajectory=args.tokens_per_trajectory,
    )
    text_to_video = [i for i, caps in enumerate(captions) for _ in caps]
    metrics = retrieval_metrics(text_emb @ video_emb.T, text_to_video, layout="text_video")
    segmentation = None
    if labels is not None and trajectory_ids is not None:  # the tokenizer against the exact synthetic trajectories
        segmentation = segmentation_metrics(
            trajectory_ids,
            [torch.from_numpy(label) for label in labels],
            background_id=0,
            ignore_index=IGNORE_INDEX,
            return_per_clip=True,
        )
        by_objects = fg_ari_by_object_count(segmentation["per_clip"]["FG-ARI"], labels, ignore_index=IGNORE_INDEX)
    pictures = (
        write_pictures(model, processor, first, captions, args.num_visualize, Path(args.output_dir))
        if args.num_visualize
        else []
    )

    tokenizer = model.config.vision_config.vision_tokenizer
    print(
        f"\nmodel: {args.model} ({type(model).__name__}, vision tokenizer {tokenizer}, "
        f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters)"
    )
    print(f"data: {len(videos)} videos, {len(text_to_video)} captions from {source}")
    print(format_table(metrics))
    if segmentation is not None:
        print(
            f"tokenizer segmentation on these clips: FG-ARI {segmentation['FG-ARI']:.3f}  "
            f"mIoU {segmentation['mIoU']:.3f}  FG-mIoU {segmentation['FG-mIoU']:.3f}  ARI {segmentation['ARI']:.3f}"
        )
        print(
            "FG-ARI by objects per clip: "
            + " · ".join(
                f"{count}: {value['FG-ARI']:.3f} ({value['clips']} clips)" for count, value in by_objects.items()
            )
        )
        metrics.update({key: segmentation[key] for key in ("FG-ARI", "mIoU", "FG-mIoU", "ARI")})
    print(
        f"encoder tokens per clip: {tokens.mean():.1f} (min {tokens.min():.0f}, max {tokens.max():.0f}); "
        f"video embedding {1000 * seconds_per_clip:.1f} ms per clip on {device}"
    )
    for path in pictures:
        print(f"wrote {path}")
    print(f"total {time.perf_counter() - start:.1f} s")
    metrics.update(tokens_per_clip=float(tokens.mean()), ms_per_clip=1000 * seconds_per_clip)
    if args.output:
        split = f"held-out (seed {args.seed}, {len(videos)} clips{wording})" if args.data is None else "test"
        name = "trajtok_hf synthetic shapes" if args.data is None else Path(args.data).name
        timing = ("tokens_per_clip", "ms_per_clip")
        record = {
            "metrics": {k: float(v) for k, v in metrics.items() if k not in timing},
            **{k: float(metrics[k]) for k in timing},
            "dataset": {
                "type": "synthetic-shapes" if args.data is None else "video-folder",
                "name": name,
                "split": split,
            },
            "model": args.model,
            "num_videos": len(videos),
            "num_captions": len(text_to_video),
            "device": str(device),
            "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
            "torch_threads": torch.get_num_threads(),
        }
        if segmentation is not None:
            record["fg_ari_by_objects_per_clip"] = by_objects
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.output}")
    return metrics


if __name__ == "__main__":
    main()
