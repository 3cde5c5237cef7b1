"""The committed checkpoints (checkpoints/*): size budget, no code (the remote code is written when a folder is
published), loading with trajtok_hf, publishing (a dry-run push stages the remote code of the installed package, which
loads with trust_remote_code=True where trajtok_hf cannot be imported and gives the package's outputs), model cards,
and the numbers their cards quote come from the files next to them. ``trajtok-small-shapes``,
``trajtok-lite0-photos``, ``trajtok-lite0-photos-qupdate`` and ``trajtok-lite0-photos-qupdate4`` are TrajTok
segmenters (TrajTokModels, scored by examples/evaluate_segmenter.py on the shapes and on composites of held-out
photographs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard
from testers import load_file_module

import trajtok_hf.models
from trajtok_hf.hub import select_files, validate_card_metadata, validate_folder

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = {
    "trajvit2-tiny-shapes": "trajtok",
    "vit3d-tiny-shapes": "vit3d",
    "trajvit2-minilm-shapes": "trajtok",
    "trajvit2-minilm-lite0": "trajtok",
    "trajvit2-minilm-lite0-facts": "trajtok",
    "trajvit2-minilm-lite0-qupdate4-facts": "trajtok",
}
MINILM = (
    "trajvit2-minilm-shapes",
    "trajvit2-minilm-lite0",
    "trajvit2-minilm-lite0-facts",
    "trajvit2-minilm-lite0-qupdate4-facts",
)
SEGMENTER = "trajtok-small-shapes"
PHOTO_SEGMENTER = "trajtok-lite0-photos"
# TrajViT2 checkpoints with a photo segmenter frozen in their tokenizer: (the model they continue, that segmenter)
LITE0_TRAJVIT2 = {
    "trajvit2-minilm-lite0": ("trajvit2-minilm-shapes", PHOTO_SEGMENTER),
    "trajvit2-minilm-lite0-facts": ("trajvit2-minilm-lite0", PHOTO_SEGMENTER),
    "trajvit2-minilm-lite0-qupdate4-facts": ("trajvit2-minilm-lite0-facts", "trajtok-lite0-photos-qupdate4"),
}
PHOTO_SEGMENTERS = (PHOTO_SEGMENTER, "trajtok-lite0-photos-qupdate", "trajtok-lite0-photos-qupdate4")
QUERY_UPDATES = {PHOTO_SEGMENTER: 0, "trajtok-lite0-photos-qupdate": 2, "trajtok-lite0-photos-qupdate4": 4}
SEGMENTERS = (SEGMENTER, *PHOTO_SEGMENTERS)
ALL = sorted(CHECKPOINTS) + list(SEGMENTERS)
MAX_WEIGHTS_BYTES = 25 * 1024 * 1024
# The pretrained text tower (all-MiniLM-L6-v2, 22.7 M parameters) is stored in float16: 100 MB is that checkpoint's
# budget.
MAX_WEIGHTS_BYTES_BY_NAME = dict.fromkeys(MINILM, 100 * 1000 * 1000)
# One file at most 50 MiB (git hosts warn above it): a larger checkpoint is saved in shards (save_pretrained's
# max_shard_size, with model.safetensors.index.json).
MAX_FILE_BYTES = 50 * 1024 * 1024
PACKAGE_MODELS = Path(trajtok_hf.models.__file__).parent

# (folder, model class, processor class, remote-code modules the staged upload must hold, among others)
LOADS = [
    ("trajvit2-tiny-shapes", "TrajViT2Model", "TrajViT2Processor", {"modeling_trajvit2.py", "processing_trajvit2.py"}),
    ("vit3d-tiny-shapes", "TrajViT2Model", "TrajViT2Processor", {"modeling_vit3d.py", "processing_trajvit2.py"}),
    *(
        (name, "TrajViT2Model", "TrajViT2Processor", {"modeling_trajvit2.py", "processing_trajvit2.py"})
        for name in MINILM
    ),
    *(
        (name, "TrajTokModel", "TrajTokVideoProcessor", {"modeling_trajtok.py", "video_processing_trajtok.py"})
        for name in SEGMENTERS
    ),
]


def test_checkpoints_hold_no_code():
    """Weights, config, processor files, card and evaluation only: the remote code is written on publishing."""
    folders = sorted(path.name for path in (ROOT / "checkpoints").iterdir() if path.is_dir())
    assert folders == sorted(ALL)
    assert sorted(str(path.relative_to(ROOT)) for path in ROOT.glob("checkpoints/*/*.py")) == []


@pytest.mark.parametrize("name,model_class,processor_class,modules", LOADS)
def test_checkpoint_loads_with_trajtok_hf(name, model_class, processor_class, modules):
    """The Auto classes load the package's classes (the model_type is registered; no trust_remote_code), and the
    config keeps the auto_map its Hub copy loads through."""
    from transformers import AutoModel, AutoProcessor

    folder = ROOT / "checkpoints" / name
    model = AutoModel.from_pretrained(folder)
    processor = AutoProcessor.from_pretrained(folder)
    assert (type(model).__name__, type(processor).__name__) == (model_class, processor_class)
    assert type(model).__module__.startswith("trajtok_hf.models.")
    assert "AutoModel" in json.loads((folder / "config.json").read_text())["auto_map"]


@pytest.mark.parametrize("name,model_class,processor_class,modules", LOADS)
def test_checkpoint_is_small_and_stages_the_package_remote_code(name, model_class, processor_class, modules):
    folder = ROOT / "checkpoints" / name
    weight_files = sorted(folder.glob("*.safetensors"))
    assert sum(f.stat().st_size for f in weight_files) <= MAX_WEIGHTS_BYTES_BY_NAME.get(name, MAX_WEIGHTS_BYTES)
    assert all(f.stat().st_size <= MAX_FILE_BYTES for f in weight_files)  # larger ones are sharded
    assert not list(folder.glob("*.bin")) and not list(folder.glob("*.pt"))
    report = validate_folder(folder)
    assert report.model_class == model_class and report.processor_class == processor_class
    staged = report.upload_folder
    assert staged != folder and report.remote_code_written
    assert modules | {"perceiver_trajtok.py", "attention_trajtok.py"} <= set(report.remote_code_written)
    for name_py in report.remote_code_written:  # the installed package's modules, as save_pretrained writes them
        assert (staged / name_py).read_bytes() == (PACKAGE_MODELS / name_py).read_bytes(), name_py
    local_files, _ = select_files(folder)
    assert report.files == sorted(local_files + report.remote_code_written)
    for kept in local_files:  # the weights, configs and processor files are the folder's own
        assert (staged / kept).read_bytes() == (folder / kept).read_bytes(), kept
    if name in CHECKPOINTS:
        assert report.config.vision_config.vision_tokenizer == CHECKPOINTS[name]
        assert {"tokenizer.json", "processor_config.json", "config.json"} <= set(report.files)


@pytest.mark.parametrize("name", ALL)
def test_dry_run_push_stages_remote_code_that_runs_without_trajtok_hf(name, tmp_path, capsys):
    """examples/push_to_hub.py --dry_run on a shipped folder: the remote code is staged from the installed package,
    loads with trust_remote_code=True in a Python where trajtok_hf cannot be imported and gives the same outputs;
    the folder itself is unchanged."""
    push_to_hub = load_file_module(ROOT / "examples" / "push_to_hub.py")
    folder = ROOT / "checkpoints" / name
    before = {path.name: path.read_bytes() for path in folder.iterdir()}
    code = push_to_hub.main(
        ["--model", str(folder), "--repo_id", f"local/{name}", "--dry_run", "--card_out", str(tmp_path / "card.md")]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "remote code matches" in out.out and "staged from the installed trajtok_hf" in out.out
    files = out.out.split("\nfiles: ")[1].split("\n")[0].split(", ")
    assert "modeling_trajtok.py" in files and "README.md" in files
    weights = sorted(path.name for path in folder.glob("model*.safetensors*"))  # one file, or shards + their index
    assert weights in (["model.safetensors"], [*weights[:-1], "model.safetensors.index.json"])
    assert set(weights) <= set(files)
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == before


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


# (folder, evaluation: clip count key and value, the dataset split it names)
SEGMENTER_EVALUATIONS = [
    (SEGMENTER, "num_clips", 500, "held-out (seed 2000000, 500 clips)"),
    *(
        (name, "num_clips_per_photo", 200, "held-out photos (seed 2000000, 200 clips per photo)")
        for name in PHOTO_SEGMENTERS
    ),
]


@pytest.mark.parametrize("name,count_key,count,split", SEGMENTER_EVALUATIONS)
def test_segmenter_card_quotes_the_evaluation(name, count_key, count, split):
    folder = ROOT / "checkpoints" / name
    card = ModelCard.load(folder / "README.md")
    validate_card_metadata(card)
    results = json.loads((folder / "eval_results.json").read_text())
    assert results[count_key] == count and results["dataset"]["split"] == split
    main = results["dataset"]["name"]  # the main dataset (other datasets may share its split)
    quoted = {r.metric_type: r.metric_value for r in card.data.eval_results if r.dataset_name == main}
    # the card's model-index rounds each value to 6 decimals: an error of at most 5e-7
    assert quoted["fg-ari"] == pytest.approx(results["metrics"]["FG-ARI"], rel=0, abs=5e-7)
    assert quoted["miou"] == pytest.approx(results["metrics"]["mIoU"], rel=0, abs=5e-7)
    assert "## Notes" in card.text
    assert (ROOT / "model_cards" / f"{name}.md").read_text() == (folder / "README.md").read_text()


@pytest.mark.parametrize("name", PHOTO_SEGMENTERS)
def test_photo_segmenter_is_self_contained_and_reports_held_out_photos(name):
    """The real-pixel segmenters load offline without the backbone folder they were trained from (their configs name
    none), read frame differences, and their cards report the held-out photographs, the camouflaged composites and
    the shapes beside the main numbers."""
    from transformers import AutoModel

    folder = ROOT / "checkpoints" / name
    config = json.loads((folder / "config.json").read_text())
    assert config["pretrained_backbone_name_or_path"] is None and config["frame_difference_input"] is True
    assert config["backbone_config"]["model_type"] == "timm_backbone"
    model = AutoModel.from_pretrained(folder)
    assert model.config.backbone_config.backbone == "tf_efficientnet_lite0"
    assert model.config.query_update_iterations == QUERY_UPDATES[name]
    results = json.loads((folder / "eval_results.json").read_text())
    assert results["composites"] == "mixed"
    assert sorted(results["by_photo"]) == ["chelsea", "coffee", "grace_hopper"]
    assert {"camouflaged_composites", "shapes"} <= set(results)
    card = (folder / "README.md").read_text()
    assert "## Real-photo composites" in card and "grace_hopper" in card


@pytest.mark.parametrize("name", MINILM)
def test_minilm_checkpoint_stores_its_text_tower_in_half_precision_and_loads_in_float32(name):
    """The text tower's weights are float16 on disk (the size budget), the rest float32, in shards that the index
    lists, and all load into a float32 model."""
    from safetensors import safe_open
    from transformers import AutoModel

    folder = ROOT / "checkpoints" / name
    index = json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"]
    assert sorted(set(index.values())) == sorted(f.name for f in folder.glob("*.safetensors"))
    dtypes = {}
    for shard in sorted(set(index.values())):
        with safe_open(folder / shard, framework="pt") as weights:
            dtypes.update({key: weights.get_slice(key).get_dtype() for key in weights.keys()})
    assert sorted(dtypes) == sorted(index)
    assert {dtype for key, dtype in dtypes.items() if key.startswith("text_model.")} == {"F16"}
    assert {dtype for key, dtype in dtypes.items() if not key.startswith("text_model.")} == {"F32"}
    model = AutoModel.from_pretrained(folder)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert model.config.text_config.hidden_size == 384 and model.config.text_pooling == "mean"


@pytest.mark.parametrize("name", LITE0_TRAJVIT2)
def test_lite0_trajvit2_carries_the_photo_segmenter_unchanged(name):
    """trajvit2-minilm-lite0 is the photo segmenter under the motion-aware TrajViT2, trained with the segmenter frozen;
    trajvit2-minilm-lite0-facts continues it the same way, and trajvit2-minilm-lite0-qupdate4-facts continues that one
    with trajtok-lite0-photos-qupdate4 frozen in its place: every segmenter weight equals the shipped segmenter's
    (four clustering updates included), its config describes that segmenter, and the token side was trained (its
    refinement Perceiver differs from the model it started from)."""
    from transformers import AutoModel

    from trajtok_hf.training import SEGMENTER_CONFIG_KEYS, SEGMENTER_MODULES

    model = AutoModel.from_pretrained(ROOT / "checkpoints" / name)
    start_name, segmenter_name = LITE0_TRAJVIT2[name]
    segmenter = AutoModel.from_pretrained(ROOT / "checkpoints" / segmenter_name)
    tokenizer = model.vision_model.tokenizer
    assert tokenizer.config.trajectory_motion_encoding and model.config.segmentation_loss_weight == 0
    for key in SEGMENTER_CONFIG_KEYS:
        ours, theirs = getattr(tokenizer.config, key), getattr(segmenter.config, key)
        assert (ours.to_dict() if hasattr(ours, "to_dict") else ours) == (
            theirs.to_dict() if hasattr(theirs, "to_dict") else theirs
        ), key
    state, expected = tokenizer.state_dict(), segmenter.state_dict()
    segmenter_keys = [k for k in expected if k.split(".", 1)[0] in SEGMENTER_MODULES]
    assert segmenter_keys
    for key in segmenter_keys:
        torch.testing.assert_close(state[key], expected[key], rtol=0, atol=0, msg=key)
    start = AutoModel.from_pretrained(ROOT / "checkpoints" / start_name).vision_model.tokenizer
    weight = "refinement_perceiver.layers.0.attention.to_q.weight"
    assert not torch.equal(state[weight], start.state_dict()[weight])
