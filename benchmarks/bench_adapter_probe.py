"""TrajAdapter vs attentive and linear probes on the same frozen backbone (paper Sec. 5), on a synthetic task.

Setup (everything tiny; training the segmenter takes most of the run — ``--work_dir`` keeps the trained frozen parts
for later runs):

1. **Data** — procedural clips (``trajtok_hf.data.generate_clip``), ``--num_frames`` × ``--frame_size``² (4 × 64²),
   labelled by ``--task``: ``num_objects`` (1..``--max_objects`` objects → one class per count, the default) or
   ``motion`` (the motion of a single object, 5 classes). Train / validation / test clips come from three different
   generator seeds (512 / 256 / 512).
2. **Frozen segmenter** — the tiny TrajTok (K=8, width 32, ConvNeXt 8-16-24-32) **trained** for
   ``--segmenter_steps`` (2000) steps of 8 clips with the segmentation loss (focal + Dice, paper Sec. 3) on fresh
   synthetic clips (another seed), so that its trajectories are meaningful; its ARI / FG-ARI / matched mIoU on the
   test clips are reported.
   ``--segmenter_steps 0`` keeps it random.
3. **Frozen backbone** — a tiny VideoMAE (width 64, 2 layers, patch ``frame_size/8`` → 8×8 patches, tubelets of 2
   frames), **randomly initialised** by default. ``--backbone_steps N`` first pre-trains it for N steps as a masked
   video autoencoder (``VideoMAEForPreTraining``, tube masking 75 %) on unlabelled synthetic clips.
4. **Probes** — `TrajAdapterForVideoClassification` with ``probe_type`` trajectory (n = 1, 2, 4), attentive, linear,
   all on the same frozen backbone (and segmenter), plus (unless ``--no_oracle``) the trajectory probe n = 1 fed the
   generator's **ground-truth** trajectories instead of the segmenter's (resized to the token grid like logits;
   mean-pool query init) as an upper bound. The frozen outputs are computed once (``get_frozen_features``) and every
   probe trains on them for the same budget: ``--probe_steps`` (120) AdamW steps of ``--batch_size`` (32) clips,
   weight decay 0.05, 5 % warm-up then cosine, gradient clip 1. The learning rate of each probe is picked from
   ``--lrs`` (1e-3, 3e-3, 1e-2) by validation accuracy with the first seed (that run is reused); ``--seeds``
   (0 1 2) runs at that rate give the held-out test accuracy (mean ± std over seeds). The trajectory probes run
   their refinement with ``hard_mask_implementation="dense"`` (equal to the default segment softmax to ≤ 1e-5, and
   faster at this tiny size).

    python benchmarks/bench_adapter_probe.py --work_dir /tmp/adapter_bench --output adapter_probe.json

Prints a markdown table and writes the JSON (arguments, segmenter quality, active trajectories per class,
per-probe accuracies, timings). Measured runs: ``benchmarks/results/adapter_probe.json`` (the defaults) and
``benchmarks/results/adapter_probe_segmenter600.json`` (``--segmenter_steps 600``: a weaker segmenter).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=("num_objects", "motion"), default="num_objects")
    parser.add_argument("--max_objects", type=int, default=4)
    parser.add_argument(
        "--object_sizes",
        nargs="+",
        choices=("small", "large"),
        default=["large"],
        help="object sizes of the task's clips (small objects cover < 1 token of the 8×8 grid)",
    )
    parser.add_argument("--num_frames", type=int, default=4)
    parser.add_argument("--frame_size", type=int, default=64)
    parser.add_argument("--train_clips", type=int, default=512)
    parser.add_argument("--val_clips", type=int, default=256)
    parser.add_argument("--test_clips", type=int, default=512)
    parser.add_argument("--segmenter_steps", type=int, default=2000)
    parser.add_argument("--segmenter_batch_size", type=int, default=8)
    parser.add_argument("--segmenter_lr", type=float, default=2e-3)
    parser.add_argument("--backbone_steps", type=int, default=0)
    parser.add_argument("--backbone_batch_size", type=int, default=16)
    parser.add_argument("--backbone_lr", type=float, default=1e-3)
    parser.add_argument("--backbone_width", type=int, default=64)
    parser.add_argument("--backbone_layers", type=int, default=2)
    parser.add_argument("--probe_steps", type=int, default=120)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--lrs", type=float, nargs="+", default=[1e-3, 3e-3, 1e-2])
    parser.add_argument(
        "--hard_mask_implementation",
        choices=("segment", "dense"),
        default="dense",
        help="refinement attention of the trajectory probes (equal to ≤ 1e-5; dense is faster "
        "at this tiny size, segment is the default of the model)",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--no_oracle",
        dest="oracle",
        action="store_false",
        help="skip the trajectory probe (n=1) on ground-truth trajectories (an upper bound)",
    )
    parser.add_argument("--output", default=None, help="write the results as JSON here")
    parser.add_argument(
        "--work_dir",
        default=None,
        help="save the trained segmenter/backbone here and reuse them in later runs with the same settings",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    parse_args()  # answers --help and usage errors before the heavy imports below

# Heavy imports, after the argument parsing: --help and usage errors need neither torch nor trajtok_hf.
import numpy as np
import safetensors.torch
import torch
import torch.nn.functional as F

# train_adapter.py (and the training_args.py it imports) live in the examples folder.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
from train_adapter import TINY_SEGMENTER, synthetic_task

from trajtok_hf import TrajAdapterConfig, TrajAdapterForVideoClassification, TrajTokConfig, TrajTokModel
from trajtok_hf.data import SyntheticVideoConfig, generate_clip
from trajtok_hf.metrics import segmentation_metrics
from trajtok_hf.models.loss_trajtok import trajectory_segmentation_loss
from trajtok_hf.models.modeling_trajadapter import TrajAdapterFrozenFeatures, token_grid_trajectory_ids

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 1, 3, 1, 1)
PROBES = [("trajectory", 1), ("trajectory", 2), ("trajectory", 4), ("attentive", None), ("linear", None)]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ------------------------------------------------------------------------------------------------------------- data
def render(config, seed: int, count: int, label_fn=None):
    """uint8 videos (N, T, 3, H, W), segmentation labels (N, T, h, w) and (optional) class labels (N,)."""
    clips = [generate_clip(config, seed, i) for i in range(count)]
    videos = torch.from_numpy(np.stack([c["video"] for c in clips])).permute(0, 1, 4, 2, 3).contiguous()
    segmentation = torch.from_numpy(np.stack([c["segmentation_labels"] for c in clips]))
    labels = torch.tensor([label_fn(c) for c in clips]) if label_fn else None
    return videos, segmentation, labels


def normalise(videos: torch.Tensor) -> torch.Tensor:
    return (videos.float() / 255.0 - MEAN) / STD


def batches(config, seed: int, batch_size: int):
    """Endless fresh clips (index i·batch .. ) of generator seed ``seed``: (normalised videos, seg labels)."""
    step = 0
    while True:
        clips = [generate_clip(config, seed, step * batch_size + i) for i in range(batch_size)]
        videos = torch.from_numpy(np.stack([c["video"] for c in clips])).permute(0, 1, 4, 2, 3)
        yield normalise(videos), torch.from_numpy(np.stack([c["segmentation_labels"] for c in clips]))
        step += 1


def cosine(optimizer, steps: int, warmup: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# ------------------------------------------------------------------------------------------------ frozen parts
def train_segmenter(args, gen_config) -> TrajTokModel:
    torch.manual_seed(0)
    model = TrajTokModel(TrajTokConfig(**TINY_SEGMENTER, chunk_size=args.num_frames))
    if args.segmenter_steps == 0:
        return model.eval()
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.segmenter_lr, weight_decay=0.02)
    scheduler = cosine(optimizer, args.segmenter_steps, max(1, args.segmenter_steps // 20))
    data = batches(gen_config, seed=101, batch_size=args.segmenter_batch_size)
    for step in range(1, args.segmenter_steps + 1):
        videos, labels = next(data)
        out = model(videos, tokens_per_trajectory=1)
        loss = trajectory_segmentation_loss(out.assignment_logits, labels, chunk_size=model.config.chunk_size)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        if step % 50 == 0 or step == args.segmenter_steps:
            log(f"segmenter step {step}/{args.segmenter_steps}: loss {loss.item():.4f}")
    return model.eval()


@torch.no_grad()
def segmenter_quality(model, videos, segmentation, batch_size=32) -> dict:
    predictions = []
    for i in range(0, len(videos), batch_size):
        predictions.extend(model(normalise(videos[i : i + batch_size]), tokens_per_trajectory=1).trajectory_ids)
    metrics = segmentation_metrics(predictions, list(segmentation), background_id=0, ignore_index=-100)
    return {k: round(float(metrics[k]), 4) for k in ("ARI", "FG-ARI", "mIoU", "FG-mIoU")}


def backbone_config(args):
    from transformers import VideoMAEConfig

    return VideoMAEConfig(
        image_size=args.frame_size,
        patch_size=args.frame_size // 8,
        num_frames=args.num_frames,
        tubelet_size=2,
        hidden_size=args.backbone_width,
        num_hidden_layers=args.backbone_layers,
        num_attention_heads=4,
        intermediate_size=2 * args.backbone_width,
        decoder_hidden_size=args.backbone_width,
        decoder_num_hidden_layers=1,
        decoder_num_attention_heads=4,
        decoder_intermediate_size=2 * args.backbone_width,
    )


def pretrain_backbone(args, gen_config) -> dict:
    """VideoMAE masked-autoencoder pre-training (tube masking) on unlabelled synthetic clips → encoder state dict."""
    from transformers import VideoMAEForPreTraining

    torch.manual_seed(0)
    model = VideoMAEForPreTraining(backbone_config(args))
    if args.backbone_steps == 0:
        return model.videomae.state_dict()
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.backbone_lr, weight_decay=0.05, betas=(0.9, 0.95))
    scheduler = cosine(optimizer, args.backbone_steps, max(1, args.backbone_steps // 20))
    data = batches(gen_config, seed=202, batch_size=args.backbone_batch_size)
    steps_t, per_frame = args.num_frames // 2, 64  # 8×8 patches per frame
    for step in range(1, args.backbone_steps + 1):
        videos, _ = next(data)
        batch = videos.shape[0]
        # Tube masking: the same 75 % of the patches is hidden in every time step.
        hidden = torch.rand(batch, per_frame).argsort(dim=1)[:, : int(0.75 * per_frame)]
        spatial = torch.zeros(batch, per_frame, dtype=torch.bool).scatter_(1, hidden, True)
        mask = spatial.repeat(1, steps_t)
        loss = model(pixel_values=videos, bool_masked_pos=mask).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        if step % 50 == 0 or step == args.backbone_steps:
            log(f"backbone (MAE) step {step}/{args.backbone_steps}: loss {loss.item():.4f}")
    return model.videomae.state_dict()


def build_probe(args, probe_type, n, backbone_state, segmenter, num_labels, seed):
    """A TrajAdapter with the shared frozen parts; probe_type "oracle" = the trajectory probe with mean-pool query
    init, fed ground-truth trajectories through frozen_features."""
    torch.manual_seed(seed)
    trajectory = probe_type in ("trajectory", "oracle")
    config = TrajAdapterConfig(
        backbone_config=backbone_config(args).to_dict(),
        trajtok_config=segmenter.config.to_dict() if trajectory else None,
        probe_type="trajectory" if trajectory else probe_type,
        query_init="mean_pool" if probe_type == "oracle" else "segmenter_queries",
        tokens_per_trajectory=n or 1,
        num_labels=num_labels,
        num_attention_heads=4,
        subtoken_fourier_frequencies=8,
    )
    model = TrajAdapterForVideoClassification(config)
    model.backbone.load_state_dict(backbone_state)
    if model.segmenter is not None:
        model.segmenter.load_state_dict(segmenter.state_dict())
    return model


@torch.no_grad()
def frozen_features(model, videos, batch_size=32) -> TrajAdapterFrozenFeatures:
    parts = [
        model.get_frozen_features(normalise(videos[i : i + batch_size])) for i in range(0, len(videos), batch_size)
    ]
    return TrajAdapterFrozenFeatures(**{k: torch.cat([getattr(p, k) for p in parts]) for k in parts[0].keys()})


def take(features: TrajAdapterFrozenFeatures, index) -> TrajAdapterFrozenFeatures:
    return TrajAdapterFrozenFeatures(**{k: v[index] for k, v in features.items()})


# ------------------------------------------------------------------------------------------------------ probe runs
def train_probe(args, model, train, train_labels, lr, seed):
    model.train()
    optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=lr, weight_decay=0.05)
    scheduler = cosine(optimizer, args.probe_steps, max(1, args.probe_steps // 20))
    generator = torch.Generator().manual_seed(seed)
    order, position = torch.randperm(len(train_labels), generator=generator), 0
    for _ in range(args.probe_steps):
        if position + args.batch_size > len(order):
            order, position = torch.randperm(len(train_labels), generator=generator), 0
        index = order[position : position + args.batch_size]
        position += args.batch_size
        loss = model(
            frozen_features=take(train, index),
            labels=train_labels[index],
            hard_mask_implementation=args.hard_mask_implementation,
        ).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.trainable_parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    return model.eval()


@torch.no_grad()
def accuracy(args, model, features, labels, batch_size=128) -> float:
    correct = 0
    for i in range(0, len(labels), batch_size):
        logits = model(
            frozen_features=take(features, slice(i, i + batch_size)),
            hard_mask_implementation=args.hard_mask_implementation,
        ).logits
        correct += int((logits.argmax(-1) == labels[i : i + batch_size]).sum())
    return correct / len(labels)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.time()
    timings = {}

    gen_config, label_fn, names = synthetic_task(
        args.task, args.num_frames, args.frame_size, args.max_objects, args.object_sizes
    )
    # The frozen parts learn on generic clips (all object sizes, 1..max_objects objects), never on the task's labels.
    pretrain_config = SyntheticVideoConfig(
        num_frames=args.num_frames, height=args.frame_size, width=args.frame_size, max_objects=args.max_objects
    )
    t = time.time()
    train_videos, train_segmentation, train_labels = render(gen_config, 1, args.train_clips, label_fn)
    val_videos, val_segmentation, val_labels = render(gen_config, 2, args.val_clips, label_fn)
    test_videos, test_segmentation, test_labels = render(gen_config, 3, args.test_clips, label_fn)
    timings["data_s"] = round(time.time() - t, 1)
    log(
        f"task {args.task}: classes {names}; train/val/test {len(train_labels)}/{len(val_labels)}/{len(test_labels)}; "
        f"test class counts {torch.bincount(test_labels, minlength=len(names)).tolist()}"
    )

    # Frozen parts: the segmenter learns segmentation (paper Sec. 3) and the backbone learns MAE, both on other clips.
    t = time.time()
    segmenter_dir = (
        os.path.join(args.work_dir, f"segmenter_{args.num_frames}x{args.frame_size}_{args.segmenter_steps}")
        if args.work_dir
        else None
    )
    if segmenter_dir and os.path.isdir(segmenter_dir):
        segmenter = TrajTokModel.from_pretrained(segmenter_dir).eval()
        log(f"segmenter loaded from {segmenter_dir}")
    else:
        segmenter = train_segmenter(args, pretrain_config)
        if segmenter_dir:
            segmenter.save_pretrained(segmenter_dir)
    timings["segmenter_train_s"] = round(time.time() - t, 1)
    quality = segmenter_quality(segmenter, test_videos, test_segmentation)  # on the task's test clips
    log(f"segmenter on the test clips: {quality}")
    t = time.time()
    backbone_file = (
        os.path.join(
            args.work_dir,
            f"backbone_{args.num_frames}x{args.frame_size}_w{args.backbone_width}"
            f"l{args.backbone_layers}_{args.backbone_steps}.safetensors",
        )
        if args.work_dir
        else None
    )
    if backbone_file and os.path.isfile(backbone_file):
        backbone_state = safetensors.torch.load_file(backbone_file)
        log(f"backbone loaded from {backbone_file}")
    else:
        backbone_state = pretrain_backbone(args, pretrain_config)
        if backbone_file:
            safetensors.torch.save_file(
                {k: v.detach().clone().contiguous() for k, v in backbone_state.items()}, backbone_file
            )
    timings["backbone_pretrain_s"] = round(time.time() - t, 1)

    t = time.time()
    extractor = build_probe(args, "trajectory", 1, backbone_state, segmenter, len(names), 0)
    cached = {
        split: frozen_features(extractor, videos)
        for split, videos in (("train", train_videos), ("val", val_videos), ("test", test_videos))
    }
    timings["frozen_features_s"] = round(time.time() - t, 1)
    ids = cached["test"].trajectory_ids.flatten(1)
    active = torch.stack(
        [torch.bincount(row, minlength=cached["test"].segmenter_queries.shape[1]) > 0 for row in ids]
    ).sum(1)
    active_by_class = {names[c]: round(float(active[test_labels == c].float().mean()), 2) for c in range(len(names))}
    log(f"active trajectories on the backbone grid per test clip, by class: {active_by_class}")

    if args.oracle:
        # Upper bound: the same probe on ground-truth trajectories (the generator's labels, resized to the token grid
        # like segmenter logits), queries initialised by mean pooling (there are no segmenter queries).
        slots = segmenter.config.num_trajectories
        for split, segmentation in (
            ("train", train_segmentation),
            ("val", val_segmentation),
            ("test", test_segmentation),
        ):
            features = cached[split]
            one_hot = F.one_hot(segmentation.clamp_min(0), slots).float()
            cached[f"oracle_{split}"] = TrajAdapterFrozenFeatures(
                patch_features=features.patch_features,
                trajectory_ids=token_grid_trajectory_ids(
                    one_hot, tuple(features.patch_features.shape[1:4]), 2, args.num_frames
                ),
                segmenter_queries=torch.zeros_like(features.segmenter_queries),
            )

    results = []
    for probe_type, n in PROBES + ([("oracle", 1)] if args.oracle else []):
        name = probe_type if n is None else f"{probe_type} n={n}"
        if probe_type == "oracle":
            name = f"trajectory n={n}, ground-truth trajectories (oracle)"
        prefix = "oracle_" if probe_type == "oracle" else ""
        t = time.time()
        # Learning rate: picked on the validation clips with the first seed (whose run is then reused).
        val_accuracy, first_seed_models = {}, {}
        for lr in args.lrs:
            model = build_probe(args, probe_type, n, backbone_state, segmenter, len(names), args.seeds[0])
            first_seed_models[lr] = train_probe(args, model, cached[prefix + "train"], train_labels, lr, args.seeds[0])
            if len(args.lrs) > 1:
                val_accuracy[lr] = accuracy(args, model, cached[prefix + "val"], val_labels)
        best_lr = max(args.lrs, key=lambda lr: (val_accuracy.get(lr, 0.0), -lr))
        test_accuracy = []
        for seed in args.seeds:
            model = (
                first_seed_models[best_lr]
                if seed == args.seeds[0]
                else train_probe(
                    args,
                    build_probe(args, probe_type, n, backbone_state, segmenter, len(names), seed),
                    cached[prefix + "train"],
                    train_labels,
                    best_lr,
                    seed,
                )
            )
            test_accuracy.append(accuracy(args, model, cached[prefix + "test"], test_labels))
        del first_seed_models
        trainable = sum(p.numel() for p in model.trainable_parameters())
        row = {
            "probe": name,
            "probe_type": probe_type,
            "tokens_per_trajectory": n,
            "trainable_parameters": trainable,
            "lr": best_lr,
            "val_accuracy_by_lr": {str(k): v for k, v in val_accuracy.items()},
            "test_accuracy": test_accuracy,
            "test_accuracy_mean": statistics.mean(test_accuracy),
            "test_accuracy_std": statistics.pstdev(test_accuracy),
            "seconds": round(time.time() - t, 1),
        }
        results.append(row)
        log(
            f"{name:16s} lr {best_lr:g}: "
            f"test accuracy {row['test_accuracy_mean']:.4f} ± {row['test_accuracy_std']:.4f} "
            f"({trainable:,} trainable parameters, {row['seconds']} s)"
        )

    chance = float(torch.bincount(test_labels).max()) / len(test_labels)
    print()
    print(
        f"Held-out accuracy, task {args.task} ({len(names)} classes; majority class {chance:.3f}), "
        f"{args.probe_steps} steps × {args.batch_size} clips, mean ± std over seeds {args.seeds}"
    )
    print("| probe | trainable params | lr | test accuracy |")
    print("|---|---|---|---|")
    for row in results:
        print(
            f"| {row['probe']} | {row['trainable_parameters']:,} | {row['lr']:g} | "
            f"{100 * row['test_accuracy_mean']:.1f} ± {100 * row['test_accuracy_std']:.1f} |"
        )
    timings["total_s"] = round(time.time() - started, 1)
    print(f"segmenter (test clips): {quality}; timings {timings}")
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        payload = {
            "args": vars(args),
            "classes": names,
            "majority_class_accuracy": chance,
            "segmenter_quality": quality,
            "active_trajectories_by_class": active_by_class,
            "results": results,
            "timings": timings,
            "torch": torch.__version__,
        }
        with open(args.output, "w") as f:
            json.dump(payload, f, indent=2)
    return results


if __name__ == "__main__":
    main()
