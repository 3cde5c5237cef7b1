"""Stage 1 of TrajVLM training (paper Sec. 5): caption pre-training of a tiny TrajVLM on procedural
videos, from scratch and offline. Stage 2 (QA fine-tuning with LoRA) is examples/finetune_trajvlm_lora.py.

    python examples/train_trajvlm_caption.py --output_dir outputs/trajvlm-caption --connector trajtok
    python examples/train_trajvlm_caption.py --output_dir outputs/patchvlm-caption --connector patch_pool \
        --patch_pool_size 4 --patch_pool_temporal_size 8
    accelerate launch examples/train_trajvlm_caption.py --output_dir ...   # several processes / a GPU

What it does:
0. (TrajTok connector only) segmenter pre-training (paper Sec. 3): the tiny TrajTok segmenter is trained for
   ``--segmenter_steps`` with the matched focal + Dice loss on the generator's exact trajectory labels, or loaded
   from ``--segmenter DIR`` (a saved TrajTokModel, e.g. from examples/train_segmenter.py). It is then frozen.
1. Caption pre-training: prompt "<video> Describe the video." → "<count> objects : <caption>" (the generator's
   motion-aware caption, prefixed with the object count so that number words are grounded too). Vision tower,
   connector, projector and LLM all train (there is no pretrained tower or LLM offline); the segmenter stays frozen.

The model is a SigLIP tower (64², patch 8 → 8×8 patches, width 64, 2 layers), a TrajTok segmenter (ConvNeXt 8-32,
width 32, K=8 trajectories per clip, run at 64²) and a Qwen3 LLM (width 64, 2 layers) with the word-level tokenizer of
trajtok_hf.data.video_qa. Output: ``output_dir/final`` with the model and its processor (AutoProcessor; it writes one
``<video>`` per connector slot, so every ``generate`` path works), written atomically (a kill during the save leaves no
half-written ``final``), plus ``output_dir/metrics.jsonl`` and ``output_dir/train_args.json``.
"""

import argparse
import json
import math
import os
import time

from training_args import add_output_dir_args, check_output_dir

VIDEO_TOKEN = "<video>"  # the placeholder of trajtok_hf.data.video_qa's tokenizer


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_output_dir_args(p, "final/, metrics.jsonl and train_args.json go here")
    p.add_argument("--connector", choices=["trajtok", "patch_pool"], default="trajtok")
    p.add_argument("--patch_pool_size", type=int, default=4, help="patch_pool: p of the p×p spatial pooling")
    p.add_argument("--patch_pool_temporal_size", type=int, default=8, help="patch_pool: frames pooled together")
    p.add_argument("--num_trajectories", type=int, default=8, help="trajtok: K, trajectory slots per clip")
    p.add_argument("--segmenter", default=None, help="trajtok: a saved TrajTokModel to use (frozen) instead of stage 0")
    p.add_argument("--segmenter_steps", type=int, default=150, help="trajtok: stage-0 segmenter steps (0 = untrained)")
    p.add_argument("--segmenter_lr", type=float, default=3e-3)
    p.add_argument("--segmenter_size", type=int, default=32, help="trajtok: the segmenter's input size")
    p.add_argument("--num_frames", type=int, default=16)
    p.add_argument("--frame_size", type=int, default=64)
    p.add_argument("--max_objects", type=int, default=3)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup_steps", type=int, default=30)
    p.add_argument("--weight_decay", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--num_threads",
        type=int,
        default=None,
        help="torch CPU threads (on a shared CPU, 1 thread per process avoids oversubscription)",
    )
    p.add_argument("--log_every", type=int, default=25)
    args = p.parse_args(argv)
    if args.frame_size % 8 or args.frame_size < 32:
        p.error("--frame_size must be a multiple of 8 and >= 32")
    if args.segmenter_size < 32 or args.frame_size % (args.segmenter_size // 4) or args.segmenter_size % 4:
        p.error("--segmenter_size must be >= 32 and its 1/4 grid must divide --frame_size")
    check_output_dir(p, args)
    return args


if __name__ == "__main__":
    parse_args()  # answers --help and usage errors before the heavy imports below

# Heavy imports, after the argument parsing: --help and usage errors need neither torch nor trajtok_hf.
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from trajtok_hf import (
    TrajTokConfig,
    TrajTokModel,
    TrajTokVideoProcessor,
    TrajVLMConfig,
    TrajVLMForConditionalGeneration,
    TrajVLMProcessor,
)
from trajtok_hf.data.pseudo_labels import downsample_labels
from trajtok_hf.data.synthetic import generate_clip
from trajtok_hf.data.video_qa import (
    CAPTION_PROMPT,
    VideoQACollator,
    build_qa_tokenizer,
    caption_example,
    shapes_video_config,
)
from trajtok_hf.models.loss_trajtok import trajectory_segmentation_loss
from trajtok_hf.training import TRAJTOK_PRESETS, save_final

# The tiny TrajTok of the smoke tests and CPU benchmarks (the real use is a pretrained segmenter).
TINY_SEGMENTER = dict(TRAJTOK_PRESETS["tiny"], tokens_per_trajectory_choices=[1])


def build_model_and_processor(args):
    """A tiny TrajVLM (or PatchVLM) and its processor (slot form: one <video> per connector slot); the tower sees the
    frames at --frame_size."""
    tokenizer = build_qa_tokenizer()
    segmenter = None
    if args.connector == "trajtok":
        segmenter = TrajTokConfig(
            **{**TINY_SEGMENTER, "num_trajectories": args.num_trajectories, "chunk_size": args.num_frames}
        )
    config = TrajVLMConfig(
        vision_config=dict(
            model_type="siglip_vision_model",
            image_size=args.frame_size,
            patch_size=8,
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=128,
            vision_use_head=False,
        ),
        trajtok_config=segmenter,
        text_config=dict(
            model_type="qwen3",
            vocab_size=128,
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            intermediate_size=192,
            max_position_embeddings=512,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            tie_word_embeddings=True,
        ),
        connector_type=args.connector,
        video_token_id=tokenizer.convert_tokens_to_ids(VIDEO_TOKEN),
        chunk_size=args.num_frames,
        segmenter_image_size=args.segmenter_size,
        connector_num_attention_heads=4,
        patch_pool_size=args.patch_pool_size,
        patch_pool_temporal_size=args.patch_pool_temporal_size,
    )
    video_processor = TrajTokVideoProcessor(
        size={"height": args.frame_size, "width": args.frame_size},
        num_frames=args.num_frames,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],  # the tower's normalisation (SigLIP)
    )
    processor = TrajVLMProcessor(
        video_processor=video_processor,
        tokenizer=tokenizer,
        video_token=VIDEO_TOKEN,
        video_slot_layout=config.video_slot_layout,
    )
    model = TrajVLMForConditionalGeneration(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model, processor


def warmup_cosine(step, warmup, total):
    return min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(step / total, 1)))


def clip_batch(synth, seed, first_index, batch_size):
    return [generate_clip(synth, seed, first_index + i) for i in range(batch_size)]


def pretrain_segmenter(args, model, processor, synth, accelerator):
    """Stage 0 (segmentation supervision, paper Sec. 3): matched focal + Dice on the exact trajectory labels, through
    the same input path as the VLM (tower-normalised frames → the segmenter's size and normalisation)."""
    segmenter = model.model.segmenter
    segmenter.requires_grad_(True)
    segmenter.train()
    optimizer = torch.optim.AdamW(segmenter.parameters(), lr=args.segmenter_lr, weight_decay=0.0)
    started = time.time()
    for step in range(args.segmenter_steps):
        index = (step * accelerator.num_processes + accelerator.process_index) * args.batch_size
        clips = clip_batch(synth, args.seed + 500, index, args.batch_size)
        pixels = processor.video_processor([c["video"] for c in clips], return_tensors="pt")["pixel_values_videos"]
        # Exact per-pixel trajectory ids → the segmenter's 1/4 grid (majority per cell).
        stride = 4 * args.frame_size // args.segmenter_size
        labels = torch.stack([torch.as_tensor(downsample_labels(c["segmentation"], stride)) for c in clips])
        labels = labels.to(accelerator.device)
        frames = model.model._segmenter_frames(pixels.to(accelerator.device))
        out = segmenter(frames, tokens_per_trajectory=1)
        loss = trajectory_segmentation_loss(out.assignment_logits, labels, chunk_size=segmenter.config.chunk_size)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(segmenter.parameters(), 10.0)
        optimizer.step()
        optimizer.zero_grad()
        if step % args.log_every == 0 or step == args.segmenter_steps - 1:
            accelerator.print(
                f"segmenter step {step}: loss {loss.item():.4f} active/clip "
                f"{out.num_trajectories.float().mean():.1f} ({time.time() - started:.0f}s)"
            )
    segmenter.requires_grad_(False)
    segmenter.eval()


def main(argv=None):
    args = parse_args(argv)
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    accelerator = Accelerator()
    set_seed(args.seed)
    os.makedirs(args.output_dir, exist_ok=True)
    model, processor = build_model_and_processor(args)
    # The same generator settings as examples/finetune_trajvlm_lora.py and the QA benchmark.
    synth = shapes_video_config(num_frames=args.num_frames, size=args.frame_size, max_objects=args.max_objects)

    # ---- stage 0: the segmenter (TrajTok only), then frozen
    if args.connector == "trajtok":
        if args.segmenter:
            segmenter = TrajTokModel.from_pretrained(args.segmenter)
            model.model.segmenter.load_state_dict(segmenter.state_dict())
            model.model.segmenter.requires_grad_(False)
        elif args.segmenter_steps > 0:
            pretrain_segmenter(args, model.to(accelerator.device), processor, synth, accelerator)

    # ---- stage 1: captions
    collate = VideoQACollator(processor)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, args.warmup_steps, args.steps))
    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()
    metrics_path = os.path.join(args.output_dir, "metrics.jsonl")
    started, window = time.time(), []
    for step in range(args.steps):
        index = (step * accelerator.num_processes + accelerator.process_index) * args.batch_size
        clips = clip_batch(synth, args.seed, index, args.batch_size)
        examples = [{"video": c["video"], "question": CAPTION_PROMPT, "answer": caption_example(c)} for c in clips]
        batch = {k: v.to(accelerator.device) for k, v in collate(examples).items()}
        loss = model(**batch).loss
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        window.append(loss.item())
        if (step + 1) % args.log_every == 0 or step == args.steps - 1:
            record = {
                "step": step + 1,
                "loss": sum(window) / len(window),
                "lr": scheduler.get_last_lr()[0],
                "seconds": round(time.time() - started, 1),
            }
            window = []
            accelerator.print(json.dumps(record))
            if accelerator.is_main_process:
                with open(metrics_path, "a") as f:
                    f.write(json.dumps(record) + "\n")

    train_seconds = round(time.time() - started, 1)
    save_final(accelerator, model, processor, args.output_dir)  # atomic: a kill leaves no half-written final/
    if accelerator.is_main_process:
        with open(os.path.join(args.output_dir, "train_args.json"), "w") as f:
            json.dump({**vars(args), "train_seconds": train_seconds}, f, indent=2)


if __name__ == "__main__":
    main()
