"""Sharded training of TrajViT2 or TrajVLM with FSDP2 on streamed video shards, launched with torchrun.

    python examples/write_shards.py --video_folder my_videos --output_dir my_shards
    torchrun --nproc_per_node 2 examples/train_sharded.py --model checkpoints/trajvit2-tiny-shapes \\
        --data my_shards --output_dir runs/sharded --per_device_train_batch_size 8 --max_steps 1000
    torchrun --nproc_per_node 2 examples/train_sharded.py --model runs/trajvlm/final --lora --data my_shards ...
    torchrun --nnodes 4 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint HOST:29500 examples/train_sharded.py ...

The model (``--model``: a saved TrajViT2 or TrajVLM folder with its processor) is sharded with FSDP2
(``trajtok_hf.training.shard_model``: every ``_no_split_modules`` block, then the root) over all processes — ``gloo``
on CPUs, ``nccl`` on GPUs. TrajViT2 trains its contrastive loss (negatives gathered over every process); TrajVLM
learns to caption (prompt ``--prompt``, the clip's caption as the answer; loss per answer token over the global
batch). ``--lora`` trains LoRA adapters instead of every weight (TrajVLM: the LLM's attention projections; TrajViT2:
the query/value projections of both towers). Gradients equal those of one process with the same global batch: each
process's loss is scaled so that FSDP's average over processes gives the global-batch gradient.

Data: ``--data DIR`` reads shards written by ``examples/write_shards.py`` with ``datasets`` in streaming mode, split
by node (``--split_by shard``: each process reads its own shards; ``example``: every process reads every shard and
keeps every world-size-th clip, so a global batch holds the same clips whatever the number of processes) and by
DataLoader worker, decoded with PyAV in the workers. The order depends only on ``--seed`` and the epoch; the loader
position of every process is saved in each checkpoint, so a resumed run sees exactly the clips the uninterrupted run
would have seen (same number of processes and workers). A clip that does not decode is skipped with a warning and
counted (``skipped_clips`` in metrics.jsonl); ``--strict_data`` stops the run instead. ``--data synthetic`` renders
procedural clips on the fly (global batch ``s`` = clips ``s·G … s·G + G - 1``, split over processes in order).

Checkpoints (every ``--checkpointing_steps``, ``output_dir/checkpoints/step_N``): each process writes its shard of
the weights and optimizer state as safetensors through ``torch.distributed.checkpoint``'s Hugging Face storage
writer; counters, scheduler, data positions and random states are JSON. Nothing is pickled. A checkpoint saved by N
processes resumes with M (``--resume_from_checkpoint latest``). The final weights are one ``save_pretrained``
folder, ``output_dir/final`` (with ``--lora``: the adapter).
"""

import argparse
import json
import os
import time

from training_args import add_training_args, check_training_args

MODEL_TYPES = ("trajvit2", "trajvlm")
DEFAULT_PROMPT = "Describe the video."


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    g = parser.add_argument_group("model and data")
    g.add_argument("--model", required=True, help="a saved TrajViT2 or TrajVLM folder (model + processor)")
    g.add_argument("--data", required=True, help="a shard folder (examples/write_shards.py) or 'synthetic'")
    g.add_argument("--split_by", choices=("shard", "example"), default="shard", help="how processes share the data")
    g.add_argument("--strict_data", action="store_true", help="stop at the first clip that does not decode")
    g.add_argument("--lora", action="store_true", help="train LoRA adapters instead of every weight")
    g.add_argument("--lora_r", type=int, default=8)
    g.add_argument("--lora_alpha", type=int, default=16)
    g.add_argument("--prompt", default=DEFAULT_PROMPT, help="TrajVLM: the question whose answer is the caption")
    g.add_argument("--backend", choices=("gloo", "nccl"), default=None, help="default: nccl with CUDA, else gloo")
    g.add_argument("--num_threads", type=int, default=None, help="torch threads per process")
    add_training_args(parser)
    args = parser.parse_args(argv)
    check_training_args(parser, args)
    if args.data != "synthetic" and not os.path.isfile(os.path.join(args.data, "shards.json")):
        parser.error(f"--data {args.data}: not 'synthetic' and no shards.json there (write it with write_shards.py)")
    if not os.path.isfile(os.path.join(args.model, "config.json")):
        parser.error(f"--model {args.model}: no config.json there (a folder written by save_pretrained)")
    if args.lora_r < 1 or args.lora_alpha < 1:
        parser.error("--lora_r and --lora_alpha must be >= 1")
    if args.gradient_accumulation_steps != 1:
        parser.error("--gradient_accumulation_steps: not supported here (raise --per_device_train_batch_size)")
    if args.mixed_precision != "no":
        parser.error("--mixed_precision: load the model in the precision to train in (FSDP2 MixedPrecisionPolicy)")
    return args


# The heavy imports come after argument parsing, so that --help answers at once.
def main(argv=None):
    args = parse_args(argv)
    import torch

    from trajtok_hf.training import (
        ShardedCheckpointManager,
        TrainState,
        build_optimizer,
        build_scheduler,
        default_warmup_steps,
        init_distributed,
        log_jsonl,
        reduce_replicated_gradients,
        save_consolidated,
        shard_model,
    )

    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    ctx = init_distributed(args.backend)
    torch.manual_seed(args.seed)
    model, processor, model_type = load_model(args)
    if args.lora:
        model = add_lora(model, model_type, args)
    model.to(ctx.device)
    if ctx.distributed:
        shard_model(model)
    model.train()
    optimizer = build_optimizer(model, args.learning_rate, args.weight_decay, (args.adam_beta1, args.adam_beta2))
    warmup = default_warmup_steps(args.max_steps, None, args.warmup_steps)
    scheduler = build_scheduler(optimizer, args.max_steps, warmup, args.min_lr_ratio)
    manager = ShardedCheckpointManager(
        os.path.join(args.output_dir, "checkpoints"), ctx, total_limit=args.checkpoints_total_limit
    )
    data = TrainingData(args, processor, model_type, ctx)
    state = TrainState()
    resume = manager.resolve(args.resume_from_checkpoint)
    if resume is not None:
        state, data_state = manager.load(resume, model, optimizer, scheduler)
        data.load_state_dict(data_state, state.step)
        if ctx.is_main_process:
            print(f"resumed from {resume} at step {state.step}", flush=True)
    elif ctx.is_main_process:
        os.makedirs(args.output_dir, exist_ok=True)
        with open(os.path.join(args.output_dir, "train_args.json"), "w") as handle:
            json.dump({**vars(args), "world_size": ctx.world_size}, handle, indent=2)

    started, stop_at = time.time(), args.max_steps
    if args.max_steps_this_run is not None:
        stop_at = min(stop_at, state.step + args.max_steps_this_run)
    while state.step < stop_at:
        batch, skipped = data.next_batch(state.step)
        loss, backward_loss = compute_loss(model, model_type, batch, ctx)
        backward_loss.backward()
        # 0-dim parameters stay outside FSDP; under the gathered contrastive loss each process holds their whole
        # global-batch gradient (times world_size from the scaling above).
        reduce_replicated_gradients(model, divide_by=ctx.world_size if model_type == "trajvit2" else 1)
        grad_norm = torch.nn.utils.clip_grad_norm_(
            [p for p in model.parameters() if p.requires_grad], args.max_grad_norm
        )
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        state.step += 1
        skipped = int(ctx.all_reduce_sum(torch.tensor(skipped)).item())
        if ctx.is_main_process and (state.step % args.logging_steps == 0 or state.step == stop_at):
            grad_norm = grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm
            record = {
                "step": state.step,
                "loss": float(loss),
                "grad_norm": float(grad_norm),
                "lr": scheduler.get_last_lr()[0],
                "skipped_clips": skipped,
                "seconds": round(time.time() - started, 2),
            }
            log_jsonl(os.path.join(args.output_dir, "metrics.jsonl"), record)
            print(json.dumps(record), flush=True)
        if state.step % args.checkpointing_steps == 0 or state.step == stop_at:
            manager.save(
                state, model, optimizer, scheduler, data_state=data.state_dict(), extra={"model_type": model_type}
            )
    if state.step >= args.max_steps:
        save_consolidated(model, os.path.join(args.output_dir, "final"), ctx, artifacts=[processor])
    if ctx.distributed:
        torch.distributed.destroy_process_group()


def load_model(args):
    """The model of ``--model`` (TrajViT2Model or TrajVLMForConditionalGeneration), its processor and its type."""
    from transformers import AutoConfig, AutoModel, AutoModelForImageTextToText, AutoProcessor

    import trajtok_hf  # noqa: F401  (registers the Auto classes)

    config = AutoConfig.from_pretrained(args.model)
    if config.model_type not in MODEL_TYPES:
        raise SystemExit(f"error: --model {args.model} is a {config.model_type!r} model; expected one of {MODEL_TYPES}")
    loader = AutoModel if config.model_type == "trajvit2" else AutoModelForImageTextToText
    return loader.from_pretrained(args.model), AutoProcessor.from_pretrained(args.model), config.model_type


LORA_TARGETS = {
    "trajvlm": r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj)",
    "trajvit2": r".*(encoder|text_model).*\.(query|value)",
}


def add_lora(model, model_type, args):
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, target_modules=LORA_TARGETS[model_type])
    return get_peft_model(model, lora)


def compute_loss(model, model_type, batch, ctx):
    """(global-batch loss to log, this process's loss to back-propagate). FSDP averages gradients over the
    processes, so each process back-propagates ``world_size ×`` its share of the global-batch loss."""
    import torch

    batch = {k: v.to(ctx.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    if model_type == "trajvit2":
        # The contrastive loss gathers the embeddings of every process: each computes the global-batch loss, with
        # the gradient of its own rows.
        loss = model(**batch, return_loss=True).loss
        return loss.detach(), loss * ctx.world_size
    tokens = (batch["labels"][:, 1:] != -100).sum().to(torch.float32)
    total = ctx.all_reduce_sum(tokens)
    loss = model(**batch).loss  # mean over this process's answer tokens
    share = loss * tokens / total.clamp(min=1)
    return ctx.all_reduce_sum(share), share * ctx.world_size


class TrainingData:
    """This process's batches: streamed shards (a resumable ``StatefulDataLoader`` per epoch) or synthetic clips."""

    def __init__(self, args, processor, model_type, ctx):
        self.args, self.ctx, self.model_type = args, ctx, model_type
        self.collate = BatchCollator(processor, model_type, args.prompt)
        self.batch_size = args.per_device_train_batch_size
        self.epoch, self.loader, self.iterator = 0, None, None
        if args.data == "synthetic":
            from trajtok_hf.data.video_qa import shapes_video_config

            video_processor = processor.video_processor
            size = video_processor.size
            self.synthetic = shapes_video_config(
                num_frames=video_processor.num_frames, size=size["height"], height=size["height"], width=size["width"]
            )

    def _loader(self, epoch, state=None):
        from trajtok_hf.data import shard_dataloader

        loader = shard_dataloader(
            self.args.data,
            batch_size=self.batch_size,
            collate_fn=self.collate,
            num_workers=self.args.num_workers,
            seed=self.args.seed,
            epoch=epoch,
            rank=self.ctx.rank,
            world_size=self.ctx.world_size,
            num_frames=self.collate.num_frames,
            strict=self.args.strict_data,
            split_by=self.args.split_by,
        )
        if state is not None:
            loader.load_state_dict(state)
        return loader

    def next_batch(self, step):
        """(model inputs, clips skipped because they did not decode)."""
        if self.args.data == "synthetic":
            from trajtok_hf.data.synthetic import generate_clip

            first = (step * self.ctx.world_size + self.ctx.rank) * self.batch_size
            clips = [generate_clip(self.synthetic, self.args.seed, first + i) for i in range(self.batch_size)]
            batch = self.collate([{"video": c["video"], "caption": c["caption"]} for c in clips])
            del batch["num_dropped"], batch["num_clips"]
            return batch, 0
        skipped = 0
        while True:
            if self.iterator is None:
                if self.loader is None:
                    self.loader = self._loader(self.epoch)
                self.iterator = iter(self.loader)
            try:
                batch = next(self.iterator)
            except StopIteration:  # next epoch: another shard order
                self.epoch += 1
                self.loader, self.iterator = None, None
                continue
            skipped += batch.pop("num_dropped")
            if batch["num_clips"]:  # a batch whose clips all failed: this process draws the next one
                batch.pop("num_clips")
                return batch, skipped

    def state_dict(self):
        if self.args.data == "synthetic":
            return None  # the position is the step
        return {"epoch": self.epoch, "loader": None if self.loader is None else self.loader.state_dict()}

    def load_state_dict(self, state, step):
        if self.args.data == "synthetic" or state is None:
            return
        self.epoch = int(state["epoch"])
        self.loader = self._loader(self.epoch, state["loader"])


class BatchCollator:
    """Decoded rows → model inputs, in the DataLoader workers; rows whose clip did not decode are dropped and counted
    (``num_dropped``; ``num_clips`` is what is left)."""

    def __init__(self, processor, model_type, prompt):
        self.processor, self.model_type, self.prompt = processor, model_type, prompt
        self.num_frames = processor.video_processor.num_frames
        if model_type == "trajvlm":
            from trajtok_hf.data.video_qa import VideoQACollator

            self.qa = VideoQACollator(processor)

    def __call__(self, rows):
        kept = [row for row in rows if row.get("video") is not None and not row.get("decode_error")]
        out = {"num_dropped": len(rows) - len(kept), "num_clips": len(kept)}
        if not kept:
            return out
        if self.model_type == "trajvlm":
            examples = [{"video": row["video"], "question": self.prompt, "answer": row["caption"]} for row in kept]
            return {**out, **self.qa(examples)}
        captions, videos = [row["caption"] for row in kept], [row["video"] for row in kept]
        inputs = self.processor(text=captions, videos=videos, return_tensors="pt", padding=True)
        return {**out, **dict(inputs)}


if __name__ == "__main__":
    main()
