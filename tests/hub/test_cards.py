"""Model cards (trajtok_hf.hub.build_model_card): the metadata is validated locally, and online by the fake Hub; an
evaluation of several datasets gives one model-index entry each, and its breakdown tables a section of the segmenter's
card; the shipped checkpoints' cards re-render byte-identical from the files next to them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from huggingface_hub import ModelCard
from test_eval_results import ONE_DATASET, PHOTOS_DATASET, SHAPES_DATASET, TWO_DATASETS

from trajtok_hf.hub import build_model_card, load_eval_results_json, validate_card_metadata, validate_folder

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = (
    "trajtok-lite0-photos",
    "trajtok-lite0-photos-qupdate",
    "trajtok-lite0-photos-qupdate4",
    "trajtok-small-shapes",
    "trajvit2-minilm-lite0",
    "trajvit2-minilm-lite0-facts",
    "trajvit2-minilm-lite0-qupdate4-facts",
    "trajvit2-minilm-shapes",
    "trajvit2-tiny-shapes",
    "vit3d-tiny-shapes",
)
SECTION = "## Real-photo composites"


def test_card_metadata_is_validated_locally(fake_hub, trajtok_run, monkeypatch):
    """card.validate() needs the network (it posts to {ENDPOINT}/api/validate-yaml — here the fake Hub), so
    build_model_card validates the metadata locally: YAML + ModelCardData + model-index round trip."""
    final, metrics = trajtok_run
    report = validate_folder(final)
    card = build_model_card(report, "me/seg")
    metadata = validate_card_metadata(card)
    assert metadata["model-index"][0]["name"] == "seg"
    assert len(metadata["model-index"][0]["results"][0]["metrics"]) == len(metrics)
    card.validate()  # online check, answered by the fake Hub
    assert ("POST", "/api/validate-yaml") in fake_hub.requests
    broken = ModelCard(str(card).replace("library_name: transformers\n", ""))
    with pytest.raises(ValueError, match="library_name"):
        validate_card_metadata(broken)


@pytest.fixture(scope="module")
def trajtok_report(trajtok_run):
    return validate_folder(trajtok_run[0])


WITHOUT_TABLES = {k: v for k, v in TWO_DATASETS.items() if not k.startswith("by_")}
TABLE_LINES = [
    "Per held-out photo (means over its clips):\n\n| held-out photo | FG-ARI | clips |\n|---|---:|---:|\n"
    "| chelsea | 0.500 | 2 |\n| coffee | 0.250 | 2 |\n",
    "| objects per clip | FG-ARI | clips |\n|---|---:|---:|\n| 1 | 1.000 | 1 |\n| 2 | 0.500 | 3 |\n",
    # a cell a row lacks is a dash
    "| object size | IoU | recall | objects |\n|---|---:|---:|---:|\n| small | 0.250 | 0.500 | 4 |\n"
    "| large | 0.750 | — | 1 |\n\n## Notes",
]


@pytest.mark.parametrize(
    "data, datasets, rendered",
    [
        (ONE_DATASET, [SHAPES_DATASET], []),
        (
            TWO_DATASETS,
            [PHOTOS_DATASET, SHAPES_DATASET],
            [SECTION, "(photo composites)", "`photos=(P,)`", *TABLE_LINES],
        ),
        (WITHOUT_TABLES, [PHOTOS_DATASET, SHAPES_DATASET], []),
    ],
)
def test_card_of_several_datasets(data, datasets, rendered, trajtok_report, tmp_path):
    """Each dataset of the evaluation JSON is a model-index entry (in the file's order) and rows of the results
    table; the breakdown tables are rendered, in their order, only when the JSON has them."""
    path = tmp_path / "eval_results.json"
    path.write_text(json.dumps(data))
    card = build_model_card(trajtok_report, "me/seg", eval_metrics=load_eval_results_json(path), notes="A note.")
    metadata = validate_card_metadata(card)
    entries = metadata["model-index"][0]["results"]
    assert [entry["dataset"] for entry in entries] == datasets
    assert all(len(entry["metrics"]) == 4 for entry in entries)
    for dataset in datasets:
        assert sum(f"| {dataset['name']} | {dataset['split']} |" in line for line in card.text.splitlines()) == 4
    text = card.text
    assert (SECTION in text) == bool(rendered)
    positions = [text.index(piece) for piece in rendered]
    assert positions == sorted(positions)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_cards_render_unchanged(name):
    """model_cards/<name>.md is what build_model_card writes from checkpoints/<name>: its eval_results.json, the
    notes of model_cards/notes/ and the training command the card quotes."""
    folder, expected = ROOT / "checkpoints" / name, (ROOT / "model_cards" / f"{name}.md").read_text(encoding="utf-8")
    command = re.search(r"given at push time\):\n\n```bash\n(.*?)\n```", expected, flags=re.S).group(1)
    card = build_model_card(
        validate_folder(folder),
        f"trajtok-hf/{name}",
        eval_metrics=load_eval_results_json(folder / "eval_results.json"),
        training_command=command,
        notes=(ROOT / "model_cards" / "notes" / f"{name}.md").read_text(encoding="utf-8"),
    )
    assert str(card) == expected


@pytest.mark.parametrize(
    "weight, text",
    [
        (1.0, "tokenizer's segmentation loss (weight 1) on clips with trajectory labels"),
        (0.5, "tokenizer's segmentation loss (weight 0.5) on clips with trajectory labels"),
        (0.0, "tokenizer's segmenter kept as its segmentation pre-training left it (frozen, no segmentation loss)"),
    ],
)
def test_trajvit2_card_says_how_the_segmenter_was_trained(trajvit2_run, tmp_path, weight, text):
    """The training section follows the config's segmentation_loss_weight: a TrajViT2 trained with its segmenter
    frozen (weight 0) does not claim a segmentation loss."""
    import shutil

    folder = tmp_path / "final"
    shutil.copytree(trajvit2_run[0], folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "segmentation_loss_weight": weight}))
    card = str(build_model_card(validate_folder(folder), "me/clip"))
    assert " ".join(text.split()) in " ".join(card.split())
    assert ("segmentation loss (weight" in card) == bool(weight)
