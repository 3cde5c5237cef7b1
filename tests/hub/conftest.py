"""Fixtures of the trajtok_hf.hub tests: a running fake Hub, and training-run-shaped folders to publish."""

from __future__ import annotations

import huggingface_hub
import pytest
import torch
from hub_testing import TOKEN, FakeHub
from testers import tiny_trajtok_model, tiny_trajvit2_model

from trajtok_hf import TrajTokVideoProcessor, TrajViT2Processor
from trajtok_hf.data.synthetic import SyntheticVideoConfig, generate_clip
from trajtok_hf.training import (
    build_caption_tokenizer,
    evaluate_retrieval,
    evaluate_segmentation,
    log_jsonl,
    synthetic_caption_words,
)


@pytest.fixture
def fake_hub(monkeypatch):
    """A running FakeHub; huggingface_hub points at it (ENDPOINT), is online for it, and uploads through LFS."""
    with FakeHub() as hub:
        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", hub.endpoint)
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # tests/conftest.py sets offline mode
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        yield hub


# ------------------------------------------------------------------------------------------------ models to publish
class _SingleProcess:
    """What trajtok_hf.training's evaluate_* need from an Accelerator on one process."""

    @staticmethod
    def gather_for_metrics(x):
        return x


def _clips(count, frames=4, size=64, seed=7):
    config = SyntheticVideoConfig(num_frames=frames, height=size, width=size, max_objects=3)
    return [generate_clip(config, seed=seed, index=i) for i in range(count)]


@pytest.fixture(scope="module")
def trajtok_run(tmp_path_factory):
    """A train_segmenter.py-shaped output_dir: final/ (model + video processor, plus files that must not be pushed)
    and metrics.jsonl whose eval record is computed by evaluate_segmentation on held-out synthetic clips."""
    run = tmp_path_factory.mktemp("seg_run")
    final = run / "final"
    model = tiny_trajtok_model()
    processor = TrajTokVideoProcessor(size={"height": 64, "width": 64}, num_frames=4)
    model.save_pretrained(final)
    processor.save_pretrained(final)
    (final / "pytorch_model.bin").write_bytes(b"pickle weights must not be pushed")
    (final / "optimizer.pt").write_bytes(b"neither must optimizer state")
    (final / "README.md").write_text("a stale local README: replaced by the generated card\n")
    (final / "checkpoints").mkdir()
    (final / "checkpoints" / "latest").write_text("step_000001\n")
    clips = _clips(3)
    batches = [
        {
            "pixel_values_videos": processor([c["video"] for c in clips], return_tensors="pt")["pixel_values_videos"],
            "segmentation_labels": torch.stack([torch.as_tensor(c["segmentation_labels"]) for c in clips]),
        }
    ]
    with torch.no_grad():
        metrics = evaluate_segmentation(model, batches, _SingleProcess())
    log_jsonl(run / "metrics.jsonl", {"step": 1, "loss": 1.5, "focal": 0.5, "dice": 1.0})
    log_jsonl(run / "metrics.jsonl", {"step": 1, **{f"eval/{k}": v for k, v in metrics.items()}})
    return final, metrics


@pytest.fixture(scope="module")
def trajvit2_run(tmp_path_factory):
    """A train_trajvit2.py-shaped output_dir: final/ with a TrajViT2Processor (word-level caption tokenizer) and a
    metrics.jsonl whose eval record is computed by evaluate_retrieval."""
    run = tmp_path_factory.mktemp("clip_run")
    final = run / "final"
    tokenizer = build_caption_tokenizer(synthetic_caption_words(), model_max_length=32)
    model = tiny_trajvit2_model(text_overrides={"vocab_size": len(tokenizer)})
    processor = TrajViT2Processor(
        video_processor=TrajTokVideoProcessor(size={"height": 64, "width": 64}, num_frames=4), tokenizer=tokenizer
    )
    model.save_pretrained(final)
    processor.save_pretrained(final)
    clips = _clips(3, seed=8)
    batch = processor(
        text=[c["caption"] for c in clips], videos=[c["video"] for c in clips], return_tensors="pt", padding=True
    )
    with torch.no_grad():
        metrics = evaluate_retrieval(model, [batch], _SingleProcess())
    log_jsonl(run / "metrics.jsonl", {"step": 2, **{f"eval/{k}": v for k, v in metrics.items()}})
    return final, metrics
