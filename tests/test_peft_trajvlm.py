"""PEFT LoRA on TrajVLM's language model (attention projections) with the projector in `modules_to_save`: trainable
parameters, adapter save/load, merge, a few steps reduce the loss, generate through the PeftModel."""

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from testers import (
    TRAJVLM_REDUCTION_LENGTH,
    TRAJVLM_VIDEO_TOKEN_ID,
    assert_close_within_bound,
    tiny_trajvlm_model,
    video_batch,
)
from transformers import AutoModelForImageTextToText

VID = TRAJVLM_VIDEO_TOKEN_ID
# Regex: only the LLM's projections (SigLIP's attention also has q_proj/k_proj/v_proj).
LLM_ATTENTION = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj)"


def _lora_config():
    return LoraConfig(
        r=4,
        lora_alpha=8,
        lora_dropout=0.0,
        target_modules=LLM_ATTENTION,
        modules_to_save=["multi_modal_projector"],
        task_type="CAUSAL_LM",
    )


def _batch():
    input_ids = torch.tensor([[11, VID, 12, 13, 14, 15, 16], [0, 0, 21, VID, 22, 23, 24]])
    attention_mask = torch.tensor([[1, 1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1, 1]])
    labels = torch.full_like(input_ids, -100)
    labels[:, -3:] = input_ids[:, -3:]  # learn the "answer" only
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "labels": labels,
        "pixel_values_videos": video_batch(2, 4, size=32, seed=21),
    }


@pytest.fixture
def base_dir(tmp_path):
    torch.manual_seed(0)
    model = tiny_trajvlm_model(tokenizer_overrides={"num_trajectories": 16})
    model.save_pretrained(tmp_path / "base")
    return tmp_path / "base"


def test_only_lora_and_projector_train_and_loss_decreases(base_dir, tmp_path):
    model = get_peft_model(AutoModelForImageTextToText.from_pretrained(base_dir), _lora_config())
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or "modules_to_save" in n for n in trainable)
    assert any("language_model" in n and "q_proj.lora_A" in n for n in trainable)
    assert not any("vision_tower" in n or "segmenter" in n for n in trainable)
    assert any("multi_modal_projector.modules_to_save" in n for n in trainable)

    batch = _batch()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    losses = []
    for _ in range(5):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0]

    # Adapter save → PeftModel.from_pretrained on a fresh base → identical logits.
    model.eval()
    with torch.no_grad():
        expected = model(**batch).logits
    model.save_pretrained(tmp_path / "adapter")
    fresh_base = AutoModelForImageTextToText.from_pretrained(base_dir)
    reloaded = PeftModel.from_pretrained(fresh_base, tmp_path / "adapter").eval()
    with torch.no_grad():
        # Bound: the same weights and adapter; only kernel choices for reloaded tensors may reorder the sums.
        assert_close_within_bound(reloaded(**batch).logits, expected, TRAJVLM_REDUCTION_LENGTH)

        # --merge: a plain TrajVLM with the LoRA folded in, saved with save_pretrained.
        merged = reloaded.merge_and_unload()
        merged.save_pretrained(tmp_path / "merged")
        full = AutoModelForImageTextToText.from_pretrained(tmp_path / "merged").eval()
        assert not any("lora" in n for n, _ in full.named_parameters())
        # Bound: the model's reduction chain plus the rank-4 sums folded into W + (alpha/r)·B·A, in each of the 8
        # adapted projections (2 layers × q/k/v/o).
        assert_close_within_bound(full(**batch).logits, expected, TRAJVLM_REDUCTION_LENGTH + 4 * 8)

        # Generation through the PeftModel (KV cache, video computed once).
        out = reloaded.generate(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            pixel_values_videos=batch["pixel_values_videos"],
            max_new_tokens=3,
            do_sample=False,
            pad_token_id=0,
        )
        assert out.shape == (2, 10)


def test_caption_then_lora_example_scripts_end_to_end(tmp_path):
    """examples/train_trajvlm_caption.py → examples/finetune_trajvlm_lora.py --merge, a few steps each (smoke)."""
    import json
    import os
    import subprocess
    import sys

    from transformers import AutoConfig, AutoProcessor

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    caption = [
        sys.executable,
        os.path.join(root, "examples", "train_trajvlm_caption.py"),
        "--output_dir",
        str(tmp_path / "caption"),
        "--segmenter_steps",
        "2",
        "--steps",
        "2",
        "--batch_size",
        "2",
        "--num_frames",
        "4",
        "--frame_size",
        "32",
        "--log_every",
        "1",
        "--num_threads",
        "1",
    ]
    subprocess.run(caption, check=True, env=env, cwd=root, capture_output=True, timeout=600)
    # The end-of-training save is atomic (output_dir/final, no temporary folder left) and writes the slot form.
    assert sorted(p.name for p in (tmp_path / "caption").iterdir()) == ["final", "metrics.jsonl", "train_args.json"]
    caption_processor = AutoProcessor.from_pretrained(tmp_path / "caption" / "final")
    caption_config = AutoConfig.from_pretrained(tmp_path / "caption" / "final")
    assert caption_processor.video_slot_layout == caption_config.video_slot_layout
    lora = [
        sys.executable,
        os.path.join(root, "examples", "finetune_trajvlm_lora.py"),
        "--model",
        str(tmp_path / "caption" / "final"),
        "--output_dir",
        str(tmp_path / "lora"),
        "--steps",
        "2",
        "--batch_size",
        "2",
        "--num_eval",
        "4",
        "--merge",
        "--num_threads",
        "1",
    ]
    subprocess.run(lora, check=True, env=env, cwd=root, capture_output=True, timeout=600)
    evaluation = json.loads((tmp_path / "lora" / "eval.json").read_text())
    assert 0.0 <= evaluation["after"]["accuracy"] <= 1.0 and evaluation["after"]["num_examples"] == 4
    assert sorted(p.name for p in (tmp_path / "lora").iterdir()) == ["eval.json", "final", "merged"]  # atomic saves
    assert (tmp_path / "lora" / "final" / "adapter_config.json").exists()
    merged = AutoModelForImageTextToText.from_pretrained(tmp_path / "lora" / "merged")
    processor = AutoProcessor.from_pretrained(tmp_path / "lora" / "merged")
    assert merged.config.video_token_id == processor.video_token_id
