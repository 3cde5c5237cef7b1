"""Train a TrajAdapter probe (or an attentive / linear probe baseline) on a frozen video backbone (paper Sec. 5).

The backbone and the TrajTok segmenter stay frozen; only the probe trains. Runs with plain python or accelerate:

    python examples/train_adapter.py --output_dir runs/adapter --probe trajectory --tokens_per_trajectory 2
    python examples/train_adapter.py --output_dir runs/linear --probe linear                 # baseline, same budget
    accelerate launch --num_processes 2 examples/train_adapter.py --output_dir runs/adapter \
        --backbone path/to/videomae --segmenter runs/seg/final --data my_videos --num_frames 16 --frame_size 224

Model: ``--backbone`` is ``tiny`` (a randomly initialised tiny VideoMAE, for smoke tests) or a local folder of any
supported transformers video model (VideoMAE, V-JEPA 2, TimeSformer, ViViT, VideoPrism); ``--segmenter`` is ``tiny``
(random tiny TrajTok) or a folder written by ``examples/train_segmenter.py``. Both go through
``TrajAdapterForVideoClassification.from_backbone_pretrained``.

Data: ``--data synthetic`` (default) renders procedural clips (``trajtok_hf.data.generate_clip``) labelled by
``--task num_objects`` (1..``--max_objects`` objects → classes 0..max−1) or ``--task motion`` (the motion of a single
object among ``MOTION_CLASSES``). A fixed set of ``--num_train_clips`` clips is trained on for ``--max_steps`` steps;
the held-out clips come from another generator seed. ``--data DIR`` reads a folder of labelled videos:
``DIR/metadata.jsonl`` (or ``.csv``) rows with ``file_name`` and ``label`` (any string or int); the last
``--eval_clips`` rows are held out unless ``--eval_data DIR`` is given.

Output: ``output_dir/metrics.jsonl`` and ``output_dir/final`` (``save_pretrained`` model + video processor), which
loads with ``AutoModelForVideoClassification.from_pretrained``.
"""

import argparse
import csv
import json
import math
import os
import time
from pathlib import Path

from training_args import add_output_dir_args, check_output_dir

MOTION_CLASSES = ("static", "move_left", "move_right", "move_up", "move_down")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_output_dir_args(parser, "metrics.jsonl and final/ go here")
    parser.add_argument("--probe", choices=("trajectory", "attentive", "linear"), default="trajectory")
    parser.add_argument("--tokens_per_trajectory", type=int, default=1)
    parser.add_argument("--num_heads", type=int, default=4, help="heads of the refinement Perceiver and the probe")
    parser.add_argument("--backbone", default="tiny", help="'tiny' or a folder of a transformers video model")
    parser.add_argument("--segmenter", default="tiny", help="'tiny' or a folder of a TrajTokModel")
    parser.add_argument("--data", default="synthetic", help="'synthetic' or a folder of labelled videos")
    parser.add_argument("--eval_data", default=None)
    parser.add_argument("--task", choices=("num_objects", "motion"), default="num_objects", help="synthetic labels")
    parser.add_argument("--max_objects", type=int, default=4)
    parser.add_argument(
        "--object_sizes",
        nargs="+",
        choices=("small", "large"),
        default=["small", "large"],
        help="synthetic object sizes",
    )
    parser.add_argument("--num_frames", type=int, default=8)
    parser.add_argument("--frame_size", type=int, default=64)
    parser.add_argument("--num_train_clips", type=int, default=512)
    parser.add_argument("--eval_clips", type=int, default=256)
    parser.add_argument("--max_steps", type=int, default=300)
    parser.add_argument("--batch_size", type=int, default=16, help="per device")
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--weight_decay", type=float, default=0.05)
    parser.add_argument("--warmup_steps", type=int, default=None, help="default: 5 %% of max_steps")
    parser.add_argument("--max_grad_norm", type=float, default=1.0)
    parser.add_argument("--eval_steps", type=int, default=0, help="evaluate every N steps (0: only at the end)")
    parser.add_argument("--logging_steps", type=int, default=10)
    parser.add_argument("--num_workers", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.tokens_per_trajectory < 1 or args.max_steps < 1 or args.batch_size < 1 or args.eval_clips < 1:
        parser.error("--tokens_per_trajectory, --max_steps, --batch_size and --eval_clips must be >= 1")
    if args.data == "synthetic" and (args.frame_size < 32 or args.frame_size % 8):
        parser.error(f"--frame_size must be a multiple of 8 and >= 32, got {args.frame_size}")
    for flag in ("data", "eval_data"):
        value = getattr(args, flag)
        if value not in (None, "synthetic") and not os.path.isdir(value):
            parser.error(f"--{flag} {value}: not a folder")
    check_output_dir(parser, args)
    return args


if __name__ == "__main__":
    parse_args()  # answers --help and usage errors before the heavy imports below

# Heavy imports, after the argument parsing: --help and usage errors need neither torch nor trajtok_hf.
import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader, Dataset
from transformers import AutoConfig, AutoModel, get_scheduler

from trajtok_hf import (
    TrajAdapterConfig,
    TrajAdapterForVideoClassification,
    TrajTokConfig,
    TrajTokModel,
    TrajTokVideoProcessor,
)
from trajtok_hf.data import SyntheticVideoConfig, generate_clip, read_video
from trajtok_hf.training import TRAJTOK_PRESETS, save_final

# The tiny TrajTok of the smoke tests and CPU benchmarks (the real use is a pretrained segmenter).
TINY_SEGMENTER = dict(TRAJTOK_PRESETS["tiny"])


def tiny_backbone_config(num_frames: int, frame_size: int, width: int = 64, layers: int = 2):
    """A small VideoMAE: patches of frame_size/8, tubelets of 2 frames."""
    return AutoConfig.for_model(
        "videomae",
        image_size=frame_size,
        patch_size=frame_size // 8,
        num_frames=num_frames,
        tubelet_size=2,
        hidden_size=width,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=2 * width,
    )


# ------------------------------------------------------------------------------------------------------------- data
def normalize(video: np.ndarray, processor) -> torch.Tensor:
    """uint8 (T, H, W, 3) at the processor's size → float (T, 3, H, W) normalised as the processor does."""
    if tuple(video.shape[1:3]) != (processor.size["height"], processor.size["width"]):
        return processor(videos=[video], return_tensors="pt", do_sample_frames=False)["pixel_values_videos"][0]
    mean = torch.tensor(processor.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(processor.image_std).view(1, 3, 1, 1)
    return (torch.from_numpy(video).permute(0, 3, 1, 2).float() / 255.0 - mean) / std


def synthetic_task(task: str, num_frames: int, frame_size: int, max_objects: int, sizes=("small", "large")):
    """(generator config, label function, class names) of a synthetic classification task."""
    common = dict(num_frames=num_frames, height=frame_size, width=frame_size, min_objects=1, sizes=tuple(sizes))
    if task == "num_objects":
        config = SyntheticVideoConfig(**common, max_objects=max_objects)
        return (
            config,
            lambda clip: len(clip["objects"]) - 1,
            [f"{k} object{'s' * (k > 1)}" for k in range(1, max_objects + 1)],
        )
    config = SyntheticVideoConfig(**common, max_objects=1, motions=MOTION_CLASSES)
    return config, lambda clip: MOTION_CLASSES.index(clip["objects"][0]["motion"]), list(MOTION_CLASSES)


class SyntheticClassificationClips(Dataset):
    """Clips ``generate_clip(config, seed, i)``, i < num_clips, with ``label_fn(clip)`` as label (rendered once)."""

    def __init__(self, config, label_fn, seed: int, num_clips: int, processor):
        self.items = []
        for index in range(num_clips):
            clip = generate_clip(config, seed, index)
            self.items.append(
                {"pixel_values_videos": normalize(clip["video"], processor), "labels": torch.tensor(label_fn(clip))}
            )

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]


def read_labelled_folder(path: str) -> list[dict]:
    """Rows ``{"file_name", "label"}`` of ``path/metadata.jsonl`` or ``metadata.csv``, with absolute paths."""
    root = Path(path)
    if (root / "metadata.jsonl").is_file():
        rows = [json.loads(line) for line in (root / "metadata.jsonl").read_text().splitlines() if line.strip()]
    elif (root / "metadata.csv").is_file():
        with (root / "metadata.csv").open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    else:
        raise SystemExit(f"error: {path} has no metadata.jsonl or metadata.csv")
    for number, row in enumerate(rows, start=1):
        if "file_name" not in row or "label" not in row:
            raise SystemExit(f"error: {path} metadata row {number} needs 'file_name' and 'label', got {sorted(row)}")
        file = Path(row["file_name"])
        row["path"] = str(file if file.is_absolute() else root / file)
        if not os.path.isfile(row["path"]):
            raise SystemExit(f"error: {path} metadata row {number}: {row['path']} does not exist")
        row["label"] = str(row["label"])
    return rows


class VideoFolderClips(Dataset):
    """Decodes ``num_frames`` uniformly sampled frames per video with PyAV, resized/normalised by the processor."""

    def __init__(self, rows, label2id, num_frames, processor):
        self.rows, self.label2id, self.num_frames, self.processor = rows, label2id, num_frames, processor

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, index):
        row = self.rows[index]
        video, _, _ = read_video(row["path"], self.num_frames)
        return {
            "pixel_values_videos": normalize(video, self.processor),
            "labels": torch.tensor(self.label2id[row["label"]]),
        }


def build_data(args, processor):
    """(train dataset, eval dataset, class names)."""
    if args.data == "synthetic":
        config, label_fn, names = synthetic_task(
            args.task, args.num_frames, args.frame_size, args.max_objects, args.object_sizes
        )
        train = SyntheticClassificationClips(config, label_fn, args.seed, args.num_train_clips, processor)
        held_out = SyntheticClassificationClips(config, label_fn, args.seed + 1_000_000, args.eval_clips, processor)
        return train, held_out, names
    rows = read_labelled_folder(args.data)
    if args.eval_data is not None:
        eval_rows = read_labelled_folder(args.eval_data)
    else:
        if len(rows) <= args.eval_clips:
            raise SystemExit(
                f"error: {args.data} has {len(rows)} videos; need more than --eval_clips ({args.eval_clips})"
            )
        rows, eval_rows = rows[: -args.eval_clips], rows[-args.eval_clips :]
    names = sorted({row["label"] for row in rows + eval_rows})
    label2id = {name: i for i, name in enumerate(names)}
    return (
        VideoFolderClips(rows, label2id, args.num_frames, processor),
        VideoFolderClips(eval_rows, label2id, args.num_frames, processor),
        names,
    )


# ------------------------------------------------------------------------------------------------------------ model
def build_model(args, names):
    probe = dict(
        probe_type=args.probe,
        tokens_per_trajectory=args.tokens_per_trajectory,
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
        num_attention_heads=args.num_heads,
    )
    use_segmenter = args.probe == "trajectory"
    if args.backbone == "tiny" and (args.segmenter == "tiny" or not use_segmenter):
        # Smoke-test model: everything randomly initialised.
        tokenizer = TrajTokConfig(**TINY_SEGMENTER, chunk_size=args.num_frames) if use_segmenter else None
        config = TrajAdapterConfig(
            backbone_config=tiny_backbone_config(args.num_frames, args.frame_size),
            trajtok_config=tokenizer,
            subtoken_fourier_frequencies=4,
            **probe,
        )
        return TrajAdapterForVideoClassification(config)
    # At least one pretrained part: both load through from_backbone_pretrained (a "tiny" one is saved first).
    backbone, segmenter = args.backbone, args.segmenter if use_segmenter else None
    if backbone == "tiny":
        backbone = os.path.join(args.output_dir, "tiny_backbone")
        AutoModel.from_config(tiny_backbone_config(args.num_frames, args.frame_size)).save_pretrained(backbone)
    if segmenter == "tiny":
        segmenter = os.path.join(args.output_dir, "tiny_segmenter")
        TrajTokModel(TrajTokConfig(**TINY_SEGMENTER, chunk_size=args.num_frames)).save_pretrained(segmenter)
    return TrajAdapterForVideoClassification.from_backbone_pretrained(backbone, segmenter, **probe)


# ------------------------------------------------------------------------------------------------------------- main
@torch.no_grad()
def evaluate(model, loader, accelerator) -> dict:
    model.eval()
    correct = total = 0
    loss_sum = 0.0
    for batch in loader:
        out = model(**batch)
        predictions, labels = accelerator.gather_for_metrics((out.logits.argmax(-1), batch["labels"]))
        correct += int((predictions == labels).sum())
        total += labels.numel()
        loss_sum += float(accelerator.gather_for_metrics(out.loss.detach().repeat(len(batch["labels"]))).sum())
    model.train()
    return {"accuracy": correct / max(total, 1), "loss": loss_sum / max(total, 1)}


def main(argv=None):
    args = parse_args(argv)
    accelerator = Accelerator()
    set_seed(args.seed)
    os.makedirs(args.output_dir, exist_ok=True)

    processor = TrajTokVideoProcessor(
        size={"height": args.frame_size, "width": args.frame_size}, num_frames=args.num_frames
    )
    train_set, eval_set, names = build_data(args, processor)
    with accelerator.main_process_first():
        model = build_model(args, names)
    train_loader = DataLoader(
        train_set,
        batch_size=args.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=args.num_workers,
        generator=torch.Generator().manual_seed(args.seed),
    )
    eval_loader = DataLoader(eval_set, batch_size=args.batch_size, num_workers=args.num_workers)

    # Only the adapter trains: the frozen backbone/segmenter are not even handed to the optimizer.
    optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
    warmup = args.warmup_steps if args.warmup_steps is not None else math.ceil(0.05 * args.max_steps)
    scheduler = get_scheduler("cosine", optimizer, num_warmup_steps=warmup, num_training_steps=args.max_steps)
    model, optimizer, train_loader, eval_loader = accelerator.prepare(model, optimizer, train_loader, eval_loader)
    trainable = sum(p.numel() for p in accelerator.unwrap_model(model).trainable_parameters())
    accelerator.print(
        f"probe={args.probe} n={args.tokens_per_trajectory}: {trainable:,} trainable parameters, "
        f"{len(train_set)} train / {len(eval_set)} held-out clips, classes {names}"
    )

    metrics_file = os.path.join(args.output_dir, "metrics.jsonl")

    def log(record):
        if accelerator.is_main_process:
            with open(metrics_file, "a") as handle:
                handle.write(json.dumps(record) + "\n")

    model.train()  # the frozen parts stay in eval mode (TrajAdapterForVideoClassification.train)
    step, started, window = 0, time.time(), []
    while step < args.max_steps:
        for batch in train_loader:
            loss = model(**batch).loss
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            step += 1
            window.append(loss.detach())
            if step % args.logging_steps == 0 or step == args.max_steps:
                mean_loss = accelerator.reduce(torch.stack(window).mean(), "mean").item()
                window = []
                log(
                    {
                        "step": step,
                        "loss": mean_loss,
                        "lr": scheduler.get_last_lr()[0],
                        "seconds": round(time.time() - started, 1),
                    }
                )
                accelerator.print(f"step {step}: loss {mean_loss:.4f}")
            if args.eval_steps and step % args.eval_steps == 0 and step < args.max_steps:
                metrics = evaluate(model, eval_loader, accelerator)
                log({"step": step, **{f"eval/{k}": v for k, v in metrics.items()}})
            if step >= args.max_steps:
                break

    metrics = evaluate(model, eval_loader, accelerator)
    log({"step": step, **{f"eval/{k}": v for k, v in metrics.items()}})
    accelerator.print(f"held-out accuracy {metrics['accuracy']:.4f} ({len(eval_set)} clips)")
    save_final(accelerator, model, processor, args.output_dir)  # atomic: a kill leaves no half-written final/
    accelerator.end_training()
    return metrics


if __name__ == "__main__":
    main()
