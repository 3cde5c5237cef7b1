"""The committed checkpoints (checkpoints/*): size budget, publishable folders (remote code included), model cards,
and the numbers their cards quote come from the files next to them. ``trajtok-small-shapes`` is a TrajTok segmenter
(a TrajTokModel, scored by examples/evaluate_segmenter.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from trajtok_hf.hub import validate_card_metadata, validate_folder

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = {"trajvit2-tiny-shapes": "trajtok", "vit3d-tiny-shapes": "vit3d"}
SEGMENTER = "trajtok-small-shapes"
MAX_WEIGHTS_BYTES = 25 * 1024 * 1024


@pytest.mark.parametrize("name", sorted(CHECKPOINTS))
def test_checkpoint_is_small_and_publishable(name):
    folder = ROOT / "checkpoints" / name
    assert (folder / "model.safetensors").stat().st_size <= MAX_WEIGHTS_BYTES
    assert not list(folder.glob("*.bin")) and not list(folder.glob("*.pt"))
    # Loads with the Auto classes, runs a clip + caption, and loads the same with trust_remote_code=True in a
    # process where trajtok_hf cannot be imported (what a Hub user runs).
    report = validate_folder(folder, check_remote_code=True)
    assert report.remote_code_checked and report.processor_class == "TrajViT2Processor"
    assert report.config.vision_config.vision_tokenizer == CHECKPOINTS[name]
    assert {"tokenizer.json", "processor_config.json", "config.json"} <= set(report.files)


@pytest.mark.parametrize("name", sorted(CHECKPOINTS) + [SEGMENTER])
def test_checkpoint_remote_code_is_the_package_code(name):
    """The remote-code copies (what trust_remote_code runs) must be today's trajtok_hf/models files: a fix or a
    speed-up of the package reaches Hub users of these folders only if the copies are refreshed with it."""
    copies = sorted((ROOT / "checkpoints" / name).glob("*.py"))
    required = {"modeling_trajtok.py", "perceiver_trajtok.py", "attention_trajtok.py"} | (
        {"modeling_trajvit2.py"} if name != SEGMENTER else set()
    )
    assert {p.name for p in copies} >= required
    stale = [p.name for p in copies if p.read_bytes() != (ROOT / "trajtok_hf" / "models" / p.name).read_bytes()]
    assert not stale, f"refresh with: cp trajtok_hf/models/<file> checkpoints/{name}/ for {stale}"


@pytest.mark.parametrize("name", sorted(CHECKPOINTS))
def test_checkpoint_card_and_results(name):
    folder = ROOT / "checkpoints" / name
    card = ModelCard.load(folder / "README.md")
    validate_card_metadata(card)
    assert card.data.library_name == "transformers"
    results = json.loads((folder / "eval_results.json").read_text())
    assert results["num_videos"] == 500 and "seed 2000000" in results["dataset"]["split"]
    quoted = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert quoted["t2v_recall@1"] == pytest.approx(results["metrics"]["t2v_R@1"])
    assert quoted["v2t_median_rank"] == pytest.approx(results["metrics"]["v2t_MedR"])
    assert "## Notes" in card.text and "Text tower" in card.text
    assert (ROOT / "model_cards" / f"{name}.md").read_text() == (folder / "README.md").read_text()


def test_segmenter_checkpoint_is_small_publishable_and_its_card_quotes_the_evaluation():
    folder = ROOT / "checkpoints" / SEGMENTER
    assert (folder / "model.safetensors").stat().st_size <= MAX_WEIGHTS_BYTES
    report = validate_folder(folder, check_remote_code=True)
    assert report.remote_code_checked and report.config.model_type == "trajtok"
    assert report.processor_class == "TrajTokVideoProcessor"
    card = ModelCard.load(folder / "README.md")
    validate_card_metadata(card)
    results = json.loads((folder / "eval_results.json").read_text())
    assert results["num_clips"] == 500 and "seed 2000000" in results["dataset"]["split"]
    quoted = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert quoted["fg-ari"] == pytest.approx(results["metrics"]["FG-ARI"])
    assert quoted["miou"] == pytest.approx(results["metrics"]["mIoU"])
    assert "## Notes" in card.text
    assert (ROOT / "model_cards" / f"{SEGMENTER}.md").read_text() == (folder / "README.md").read_text()
