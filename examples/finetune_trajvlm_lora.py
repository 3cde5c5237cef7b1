"""Stage 2 of TrajVLM training: question-answering fine-tuning with PEFT LoRA, trained with accelerate.

    python examples/finetune_trajvlm_lora.py --model outputs/trajvlm-caption/final --output_dir outputs/trajvlm-qa
    python examples/finetune_trajvlm_lora.py --model DIR --data train.jsonl --eval_data test.jsonl --output_dir OUT
    python examples/finetune_trajvlm_lora.py --model DIR --output_dir OUT --lora_mlp --merge
    accelerate launch examples/finetune_trajvlm_lora.py ...

LoRA adapters go on the LLM's attention projections (q/k/v/o; ``--lora_mlp`` adds gate/up/down), selected with a
regex on ``language_model`` so that the vision tower's own q/k/v projections are left alone; the multimodal
projector is trained in full and saved with the adapter (``modules_to_save``). Everything else (tower, connector,
frozen segmenter, LLM weights) stays frozen.

Data: ``--data synthetic`` (default) asks colour / shape / count / direction / motion questions about procedural
clips (trajtok_hf.data.video_qa, exact answers); ``--data FILE.jsonl`` reads local ``{"video", "question",
"answer"}`` rows (``.npy`` uint8 frames or video files). Held-out evaluation: ``--eval_data FILE.jsonl``, or synthetic
clips of another seed. The model's processor (saved next to it) turns videos and prompts into inputs.

Output: ``output_dir/final`` with the adapter (``adapter_config.json``, ``adapter_model.safetensors``; load it with
``PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(base), output_dir + "/final")``) and the
processor; ``output_dir/eval.json`` (exact-match accuracy before/after, per question type, seconds per answer) and,
with ``--merge``, ``output_dir/merged``: a full TrajVLM with the LoRA folded in, written with ``save_pretrained``.
Both folders are written atomically (a temporary sibling renamed when complete), so a kill during a save leaves the
previous folder or none, never a half-written one.
"""

import argparse
import json
import math
import os
import random
import time

from training_args import add_output_dir_args, check_output_dir

QUESTION_TYPES = ("colour", "shape", "count", "direction", "motion")  # trajtok_hf.data.video_qa's (a test checks)
LLM_ATTENTION = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj)"
LLM_ATTENTION_AND_MLP = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--model",
        required=True,
        help="a saved TrajVLM folder (model + processor), e.g. train_trajvlm_caption.py's OUTPUT/final",
    )
    add_output_dir_args(p, "the LoRA adapter, metrics and (with --merge) merged/ go here")
    p.add_argument("--data", default="synthetic", help="'synthetic' or a (video, question, answer) JSONL file")
    p.add_argument("--eval_data", default=None, help="held-out JSONL (default: synthetic clips of another seed)")
    p.add_argument("--num_eval", type=int, default=200, help="synthetic held-out questions")
    p.add_argument("--eval_before", action="store_true", help="also evaluate the model before fine-tuning")
    p.add_argument("--question_types", nargs="+", default=list(QUESTION_TYPES), choices=QUESTION_TYPES)
    p.add_argument("--max_objects", type=int, default=3, help="synthetic data: objects per clip (1..max)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--warmup_steps", type=int, default=20)
    p.add_argument("--lora_r", type=int, default=8)
    p.add_argument("--lora_alpha", type=int, default=16)
    p.add_argument("--lora_dropout", type=float, default=0.0)
    p.add_argument("--lora_mlp", action="store_true", help="also put LoRA on the LLM's MLP projections")
    p.add_argument("--modules_to_save", nargs="*", default=["multi_modal_projector"])
    p.add_argument("--merge", action="store_true", help="also write output_dir/merged, a full model with LoRA merged")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--num_threads",
        type=int,
        default=None,
        help="torch CPU threads (on a shared CPU, 1 thread per process avoids oversubscription)",
    )
    p.add_argument("--log_every", type=int, default=25)
    args = p.parse_args(argv)
    for flag in ("data", "eval_data"):
        value = getattr(args, flag)
        if value not in (None, "synthetic") and not os.path.isfile(value):
            p.error(f"--{flag} {value}: expected 'synthetic' or a JSONL file of (video, question, answer) records")
    check_output_dir(p, args)
    return args


if __name__ == "__main__":
    parse_args()  # answers --help and usage errors before the heavy imports below

# Heavy imports, after the argument parsing: --help and usage errors need neither torch nor trajtok_hf.
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForImageTextToText, AutoProcessor

import trajtok_hf  # noqa: F401  (registers the TrajVLM Auto classes)
from trajtok_hf.data.video_qa import (
    VideoQACollator,
    evaluate_video_qa,
    generate_qa,
    load_qa_jsonl,
    shapes_video_config,
)
from trajtok_hf.file_utils import atomic_folder


def synthetic_config(processor, max_objects):
    size = processor.video_processor.size
    return shapes_video_config(
        num_frames=processor.video_processor.num_frames,
        size=size["height"],
        max_objects=max_objects,
        height=size["height"],
        width=size["width"],
    )


def main(argv=None):
    args = parse_args(argv)
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    accelerator = Accelerator()
    set_seed(args.seed)
    os.makedirs(args.output_dir, exist_ok=True)
    processor = AutoProcessor.from_pretrained(args.model)
    model = AutoModelForImageTextToText.from_pretrained(args.model)
    synth = synthetic_config(processor, args.max_objects)

    # ---- data: an example stream for training, a fixed held-out list for evaluation
    if args.data == "synthetic":

        def example(i):
            return generate_qa(synth, args.seed, i, args.question_types)
    else:
        rows = load_qa_jsonl(args.data)
        order = list(range(len(rows)))

        def example(i):
            epoch, position = divmod(i, len(rows))
            if position == 0:
                random.Random(args.seed + epoch).shuffle(order)
            return rows[order[position]]

    if args.eval_data:
        eval_examples = load_qa_jsonl(args.eval_data)
    else:  # another generator seed: never a training clip
        eval_examples = [
            generate_qa(synth, args.seed + 1_000_000, i, args.question_types) for i in range(args.num_eval)
        ]

    results = {}
    if args.eval_before and accelerator.is_main_process:
        before = evaluate_video_qa(model.to(accelerator.device), processor, eval_examples)
        results["before"] = {k: v for k, v in before.items() if k != "predictions"}
        accelerator.print(f"before LoRA: accuracy {before['accuracy']:.3f} {before.get('accuracy_by_type', '')}")

    # ---- LoRA on the LLM, projector trained in full
    lora = LoraConfig(
        r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        target_modules=LLM_ATTENTION_AND_MLP if args.lora_mlp else LLM_ATTENTION,
        modules_to_save=args.modules_to_save or None,
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lora)
    if accelerator.is_main_process:
        model.print_trainable_parameters()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)

    def warmup_cosine(step):
        return min(1.0, (step + 1) / args.warmup_steps) * 0.5 * (1 + math.cos(math.pi * min(step / args.steps, 1)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine)
    model, optimizer = accelerator.prepare(model, optimizer)
    collate = VideoQACollator(processor)

    model.train()
    started, window = time.time(), []
    for step in range(args.steps):
        first = (step * accelerator.num_processes + accelerator.process_index) * args.batch_size
        batch = collate([example(first + i) for i in range(args.batch_size)])
        loss = model(**{k: v.to(accelerator.device) for k, v in batch.items()}).loss
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        window.append(loss.item())
        if (step + 1) % args.log_every == 0 or step == args.steps - 1:
            accelerator.print(
                json.dumps(
                    {
                        "step": step + 1,
                        "loss": round(sum(window) / len(window), 4),
                        "seconds": round(time.time() - started, 1),
                    }
                )
            )
            window = []
    train_seconds = time.time() - started

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        peft_model = accelerator.unwrap_model(model)
        with atomic_folder(os.path.join(args.output_dir, "final")) as folder:
            peft_model.save_pretrained(folder)  # the adapter (+ the projector, modules_to_save)
            processor.save_pretrained(folder)
        after = evaluate_video_qa(peft_model, processor, eval_examples)
        results["after"] = {k: v for k, v in after.items() if k != "predictions"}
        results["train_seconds"] = round(train_seconds, 1)
        results["examples"] = [
            {"question": ex["question"], "answer": ex["answer"], "prediction": pred}
            for ex, pred in list(zip(eval_examples, after["predictions"], strict=True))[:10]
        ]
        accelerator.print(f"after LoRA: accuracy {after['accuracy']:.3f} {after.get('accuracy_by_type', '')}")
        if args.merge:
            merged = peft_model.merge_and_unload()
            with atomic_folder(os.path.join(args.output_dir, "merged")) as folder:
                merged.save_pretrained(folder)
                processor.save_pretrained(folder)
        with open(os.path.join(args.output_dir, "eval.json"), "w") as f:
            json.dump({**results, "args": vars(args)}, f, indent=2)


if __name__ == "__main__":
    main()
