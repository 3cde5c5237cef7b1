"""Zero-shot classification with labels a video-text model never read in training.

Held-out single-object synthetic clips (seed 2,000,000 by default, never used in training) are classified by the
cosine of the model's video and text embeddings over a set of candidate labels:

* **shape** — "a disc", "a box", "a wedge", "a rhombus", "a starburst", "a plus sign", "a hoop": the held-out shape
  words of ``trajtok_hf.data.SHAPE_WORDS``, which no training caption ("fixed" or "train" wording) contains;
* **motion** — the held-out phrasing of every motion the clips can show (the last of
  ``trajtok_hf.data.MOTION_WORDINGS``, e.g. "drifts to the left", "twirls clockwise"), which no training caption
  uses as a phrase (some of its words, like "left", do occur);
* **shape_training_words** — the same shape task with the training words ("a circle", "a square", …): not zero-shot,
  the reference that tells how much of the shape the video embedding carries at all, i.e. what the unseen words
  could reach;
* **shape_in_caption** — per clip, its own caption in the held-out wording with each of the held-out shape words in
  turn ("a small red disc drifts to the left", "a small red box drifts to the left", …): only the unseen shape word
  tells the labels apart, in the form captions have;
* **shape_in_caption_training_words** — the same with the training shape words ("a small red circle drifts to the
  left", "a small red square …"): again not zero-shot, the reference for ``shape_in_caption``.

The two references bound the zero-shot shape tasks: unseen words cannot tell shapes apart better than the words the
model trained on.

The script reports top-1 accuracy against chance, per class the share of its clips given its own label and the
label given to most of them (:func:`per_class_recall`), and, per task, which label words do occur in the training
captions (``trajtok_hf.training.synthetic_caption_words("train")``), so that "never read" is checked, not
assumed. A model whose text tokenizer only knows the training vocabulary reads the unseen words as ``[UNK]`` and sits
at chance; a pretrained text tower (``train_trajvit2.py --text_model minilm``) can carry what it knows about the
words.

    python benchmarks/zero_shot.py --model runs/trajvit2-minilm/final --output zero_shot.json
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = REPO_ROOT / "checkpoints" / "trajvit2-tiny-shapes"
HELD_OUT_SEED = 2_000_000
TASKS = ("shape", "motion", "shape_training_words", "shape_in_caption", "shape_in_caption_training_words")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="a TrajViT2 folder (model + processor)")
    parser.add_argument("--num_clips", type=int, default=300, help="held-out single-object clips")
    parser.add_argument("--seed", type=int, default=HELD_OUT_SEED, help="generator seed of the clips")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--output", default=None, help="write the results (JSON) here")
    args = parser.parse_args(argv)
    if args.num_clips < 1 or args.batch_size < 1:
        parser.error("--num_clips and --batch_size must be positive")
    if not os.path.isfile(os.path.join(args.model, "config.json")):
        parser.error(f"--model {args.model}: no config.json there")
    return args


if __name__ == "__main__":
    parse_args()  # answers --help and usage errors before the heavy imports below

import torch  # noqa: E402
from transformers import AutoModel, AutoProcessor  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from motion_probes import embed_texts, embed_videos, write_record  # noqa: E402

import trajtok_hf  # noqa: E402, F401  (registers the Auto classes)
from trajtok_hf.data import (  # noqa: E402
    CLAUSE_TEMPLATES,
    MOTION_WORDINGS,
    SHAPE_WORDS,
    SyntheticVideoConfig,
    caption_from_objects,
    generate_clip,
)
from trajtok_hf.training import synthetic_caption_words  # noqa: E402


def task_labels(config: SyntheticVideoConfig) -> dict[str, dict[str, str]]:
    """Per task, class → label text (held-out words and phrasings; the training shape words for the reference task
    ``shape_training_words``)."""
    return {
        "shape": {shape: f"a {SHAPE_WORDS[shape][1]}" for shape in config.shapes},
        "motion": {motion: MOTION_WORDINGS[motion][-1] for motion in config.available_motions()},
        "shape_training_words": {shape: f"a {SHAPE_WORDS[shape][0]}" for shape in config.shapes},
    }


TASK_ATTRIBUTE = {"shape": "shape", "motion": "motion", "shape_training_words": "shape"}
"""The clip object's attribute that each label task classifies."""


def seen_words(labels: dict[str, str]) -> list[str]:
    """Words of the labels that training captions contain (besides the article)."""
    vocabulary = set(synthetic_caption_words("train")) - {"a"}
    return sorted({word for text in labels.values() for word in text.lower().split() if word in vocabulary})


def classify(video_embeds: torch.Tensor, label_embeds: torch.Tensor) -> torch.Tensor:
    """Index of the best label (cosine) for each video."""
    return (video_embeds @ label_embeds.T).argmax(dim=1)


def per_class_recall(predicted: torch.Tensor, truth: torch.Tensor, classes: list[str]) -> dict[str, dict]:
    """Per true class (in ``classes`` order, those with clips): the share of its clips given its own label, the clip
    count, and the label given to most of its clips (a tie goes to the earlier class), which shows a label wording the
    text tower reads as another motion or shape."""
    rows = {}
    for index, name in enumerate(classes):
        mine = truth == index
        if not mine.any():
            continue
        counts = torch.bincount(predicted[mine], minlength=len(classes))
        rows[name] = {
            "recall": round(float(counts[index]) / int(mine.sum()), 4),
            "clips": int(mine.sum()),
            "most_often_labelled": classes[int(counts.argmax())],
        }
    return rows


def shape_in_caption(model, processor, clips, video_embeds, args, device, word: int = 1) -> dict:
    """Each clip against its held-out-wording caption with every shape word (the true one among them): the held-out
    shape words (``word=1``) or the training ones (``word=0``), :data:`~trajtok_hf.data.SHAPE_WORDS`."""
    shapes = list(SHAPE_WORDS)
    texts, truth = [], []
    for clip in clips:
        obj = clip["objects"][0]
        for shape in shapes:
            held_out_wording = len(MOTION_WORDINGS[obj["motion"]]) - 1
            label = {**obj, "shape": shape, "shape_word": SHAPE_WORDS[shape][word], "wording": held_out_wording}
            texts.append(caption_from_objects([label], None, len(CLAUSE_TEMPLATES) - 1))
        truth.append(shapes.index(obj["shape"]))
    text_embeds = embed_texts(model, processor, texts, args.batch_size, device).view(len(clips), len(shapes), -1)
    predicted = torch.einsum("vd,vkd->vk", video_embeds, text_embeds).argmax(dim=1)
    accuracy = float((predicted == torch.tensor(truth)).float().mean())
    return {"accuracy": round(accuracy, 4), "chance": round(1 / len(shapes), 4), "classes": len(shapes)}


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = torch.device(args.device)
    model = AutoModel.from_pretrained(args.model).to(device).eval()
    processor = AutoProcessor.from_pretrained(args.model)
    size = processor.video_processor.size
    config = SyntheticVideoConfig(
        num_frames=processor.video_processor.num_frames or 8,
        height=int(size["height"]),
        width=int(size["width"]),
        max_objects=1,
    )
    clips = [generate_clip(config, args.seed, i) for i in range(args.num_clips)]
    video_embeds = embed_videos(model, processor, [c["video"] for c in clips], args.batch_size, device)
    results = {}
    for task, word in (("shape_in_caption", 1), ("shape_in_caption_training_words", 0)):
        results[task] = shape_in_caption(model, processor, clips, video_embeds, args, device, word)
    for task, labels in task_labels(config).items():
        classes = list(labels)
        label_embeds = embed_texts(model, processor, [labels[c] for c in classes], args.batch_size, device)
        truth = torch.tensor([classes.index(c["objects"][0][TASK_ATTRIBUTE[task]]) for c in clips])
        predicted = classify(video_embeds, label_embeds)
        accuracy = float((predicted == truth).float().mean())
        results[task] = {
            "accuracy": round(accuracy, 4),
            "chance": round(1 / len(classes), 4),
            "classes": len(classes),
            "labels": labels,
            "label_words_seen_in_training": seen_words(labels),
            "per_class": per_class_recall(predicted, truth, classes),
        }
        print(
            f"{task:>20}: {100 * accuracy:5.1f} % top-1 over {len(classes)} labels "
            f"(chance {100 / len(classes):.1f} %); "
            f"label words seen in training: {results[task]['label_words_seen_in_training'] or 'none'}"
        )
    for task in ("shape_in_caption", "shape_in_caption_training_words"):
        row = results.pop(task)
        results[task] = row  # reported last
        print(
            f"{task}: {100 * row['accuracy']:5.1f} % top-1 over {row['classes']} captions per clip "
            f"(chance {100 * row['chance']:.1f} %)"
        )
    record = {"model": args.model, "seed": args.seed, "num_clips": args.num_clips, "tasks": results}
    write_record(record, args.output)
    return record


if __name__ == "__main__":
    main()
