"""Linear probes: which facts about an object does a video-text model's video representation carry?

Zero-shot classification (``benchmarks/zero_shot.py``) can only name what the video embedding holds. This script
asks the embedding directly: a multinomial logistic regression, fitted on the representations of held-out synthetic
single-object clips, predicts the object's shape, colour, size and motion on other held-out clips. An attribute that
a linear probe cannot read from a representation is not in it in a usable form, whatever the text tower.

Representations (TrajTok models also get the two token rows):

* ``video_embedding`` — ``get_video_features(...).pooler_output``, the projected embedding that retrieval uses;
* ``cls`` — the vision transformer's [CLS] output before the projection;
* ``object_token_input`` / ``object_token_output`` — the object's trajectory token as it enters the encoder (the
  TrajTok tokenizer's output) and as it leaves it. The object's token is the one whose trajectory holds most of the
  object's ground-truth cells; clips where the object has no token of its own are skipped and counted.

Clips: the probe is fitted on ``--num_train_clips`` clips of seed 3,000,000 and scored on ``--num_test_clips`` clips
of seed 2,000,000 (the demo's held-out clips); no training script uses either seed. The weight decay is chosen on
the last fifth of the fitting clips, then the probe is refitted on all of them. Chance is the test set's majority
class.

    python benchmarks/attribute_probes.py --model checkpoints/trajvit2-minilm-shapes --output probes.json
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = REPO_ROOT / "checkpoints" / "trajvit2-tiny-shapes"
HELD_OUT_SEED = 2_000_000
PROBE_FIT_SEED = 3_000_000
ATTRIBUTES = ("shape", "colour", "size", "motion")
WEIGHT_DECAYS = (1e-3, 1e-2, 1e-1)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="a TrajViT2 folder (model + processor)")
    parser.add_argument("--num_train_clips", type=int, default=800, help="clips the probes are fitted on")
    parser.add_argument("--num_test_clips", type=int, default=300, help="clips the probes are scored on")
    parser.add_argument("--fit_seed", type=int, default=PROBE_FIT_SEED, help="generator seed of the fitting clips")
    parser.add_argument("--seed", type=int, default=HELD_OUT_SEED, help="generator seed of the scored clips")
    parser.add_argument("--probe_steps", type=int, default=500, help="full-batch Adam steps per probe fit")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--output", default=None, metavar="FILE", help="write the results as JSON (default: print)")
    args = parser.parse_args(argv)
    for name in ("num_train_clips", "num_test_clips", "probe_steps", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.num_train_clips < 5:
        parser.error("--num_train_clips must be >= 5 (a fifth of them chooses the weight decay)")
    if args.fit_seed == args.seed:
        parser.error("--fit_seed and --seed must differ: the probes are scored on clips they were not fitted on")
    if not os.path.isfile(os.path.join(args.model, "config.json")):
        parser.error(f"--model {args.model}: no config.json there (a save_pretrained folder)")
    return args


if __name__ == "__main__":
    parse_args()  # answers --help and usage errors before the heavy imports below

import torch  # noqa: E402
from transformers import AutoModel, AutoProcessor  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from motion_probes import write_record  # noqa: E402

import trajtok_hf  # noqa: E402, F401  (registers the Auto classes)
from trajtok_hf.data import SyntheticVideoConfig, generate_clip  # noqa: E402


def fit_linear_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    num_classes: int,
    weight_decay: float,
    steps: int = 500,
) -> torch.nn.Linear:
    """Multinomial logistic regression on standardised features (the caller standardises), full-batch Adam."""
    generator = torch.Generator().manual_seed(0)
    probe = torch.nn.Linear(train_x.shape[1], num_classes)
    with torch.no_grad():
        probe.weight.normal_(0.0, 0.01, generator=generator)
        probe.bias.zero_()
    optimizer = torch.optim.Adam(probe.parameters(), lr=1e-2, weight_decay=weight_decay)
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(probe(train_x), train_y).backward()
        optimizer.step()
    return probe


def probe_accuracy(
    train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor, steps: int = 500
) -> dict:
    """Test accuracy of a linear probe whose weight decay is chosen on the last fifth of the fitting rows."""
    if train_x.ndim != 2 or test_x.ndim != 2 or train_x.shape[1] != test_x.shape[1]:
        raise ValueError(
            f"features must be (rows, dim) with one dim, got {tuple(train_x.shape)}, {tuple(test_x.shape)}"
        )
    if train_y.shape != (train_x.shape[0],) or test_y.shape != (test_x.shape[0],):
        raise ValueError("one label per feature row is needed")
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    split = train_x.shape[0] - max(1, train_x.shape[0] // 5)

    def accuracy(probe, x, y):
        with torch.no_grad():
            return float((probe(x).argmax(1) == y).float().mean())

    validation_x, validation_y = train_x[split:], train_y[split:]
    validation = {
        wd: accuracy(
            fit_linear_probe(train_x[:split], train_y[:split], num_classes, wd, steps), validation_x, validation_y
        )
        for wd in WEIGHT_DECAYS
    }
    chosen = max(validation, key=validation.get)
    probe = fit_linear_probe(train_x, train_y, num_classes, chosen, steps)
    majority = float(torch.bincount(test_y, minlength=num_classes).max()) / len(test_y)
    return {"accuracy": round(accuracy(probe, test_x, test_y), 4), "chance": round(majority, 4), "weight_decay": chosen}


@torch.inference_mode()
def representations(model, processor, clips: list[dict], batch_size: int, device) -> tuple[dict, list[int]]:
    """Per representation, a (rows, dim) tensor; and the indices of the clips kept (the object has a token)."""
    trajtok = getattr(model.config, "vision_tokenizer", "trajtok") == "trajtok"
    rows = {"video_embedding": [], "cls": []}
    if trajtok:
        rows.update(object_token_input=[], object_token_output=[])
    kept = []
    for start in range(0, len(clips), batch_size):
        batch = clips[start : start + batch_size]
        pixels = processor(videos=[c["video"] for c in batch], return_tensors="pt")["pixel_values_videos"].to(device)
        out = model.get_video_features(pixel_values_videos=pixels, output_hidden_states=trajtok)
        embedding = out.pooler_output  # projected
        for b, clip in enumerate(batch):
            position = None
            if trajtok:
                cells = torch.from_numpy(clip["segmentation_labels"]).to(device) == clip["objects"][0]["id"]
                ids = out.trajectory_ids[b][cells]
                if ids.numel():
                    match = (out.token_indices[b] == ids.mode().values) & out.attention_mask[b, 1:]
                    position = int(match.nonzero()[0]) + 1 if match.any() else None
                if position is None:
                    continue
                rows["object_token_input"].append(out.hidden_states[0][b, position].float().cpu())
                rows["object_token_output"].append(out.last_hidden_state[b, position].float().cpu())
            rows["video_embedding"].append(embedding[b].float().cpu())
            rows["cls"].append(out.last_hidden_state[b, 0].float().cpu())
            kept.append(start + b)
    return {name: torch.stack(values) for name, values in rows.items() if values}, kept


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = torch.device(args.device)
    model = AutoModel.from_pretrained(args.model).to(device).eval()
    processor = AutoProcessor.from_pretrained(args.model)
    if not hasattr(model, "get_video_features"):
        raise SystemExit(f"error: --model {args.model} is a {type(model).__name__}, not a TrajViT2Model")
    size = processor.video_processor.size
    config = SyntheticVideoConfig(
        num_frames=processor.video_processor.num_frames or 8,
        height=int(size.get("height") or size["shortest_edge"]),
        width=int(size.get("width") or size["shortest_edge"]),
        max_objects=1,
    )
    fit_clips = [generate_clip(config, args.fit_seed, i) for i in range(args.num_train_clips)]
    test_clips = [generate_clip(config, args.seed, i) for i in range(args.num_test_clips)]
    fit, fit_kept = representations(model, processor, fit_clips, args.batch_size, device)
    test, test_kept = representations(model, processor, test_clips, args.batch_size, device)
    if len(fit_kept) < 5 or not test_kept:
        raise SystemExit("error: too few clips whose object has a token of its own to fit and score a probe")
    results = {}
    for attribute in ATTRIBUTES:
        classes = sorted({clip["objects"][0][attribute] for clip in fit_clips + test_clips})
        fit_y = torch.tensor([classes.index(fit_clips[i]["objects"][0][attribute]) for i in fit_kept])
        test_y = torch.tensor([classes.index(test_clips[i]["objects"][0][attribute]) for i in test_kept])
        results[attribute] = {"classes": len(classes)}
        for name in fit:
            results[attribute][name] = probe_accuracy(fit[name], fit_y, test[name], test_y, args.probe_steps)
    print(f"model: {args.model}; probes fitted on {len(fit_kept)} clips, scored on {len(test_kept)}")
    for attribute, row in results.items():
        scores = "  ".join(f"{name} {100 * row[name]['accuracy']:5.1f} %" for name in fit)
        chance = 100 * next(iter(row[name] for name in fit))["chance"]
        print(f"{attribute:>7} ({row['classes']} classes, chance {chance:.1f} %): {scores}")
    record = {
        "model": args.model,
        "fit_seed": args.fit_seed,
        "seed": args.seed,
        "num_fit_clips": len(fit_kept),
        "num_test_clips": len(test_kept),
        "skipped_clips": args.num_train_clips + args.num_test_clips - len(fit_kept) - len(test_kept),
        "attributes": results,
    }
    write_record(record, args.output)
    return record


if __name__ == "__main__":
    main()
