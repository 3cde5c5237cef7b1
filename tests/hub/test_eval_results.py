"""Where a model card's numbers come from (trajtok_hf.hub.find_eval_metrics, --eval_results), which files are
pushed (select_files), evaluation files cut short, and evaluation JSONs of several datasets with breakdown tables."""

from __future__ import annotations

import json
import re

import pytest
from hub_testing import TRAJTOK_FILES, push_to_hub
from huggingface_hub import ModelCard

from trajtok_hf.hub import (
    MODEL_SPECS,
    SYNTHETIC_DATASET,
    eval_results_from_metrics,
    find_eval_metrics,
    load_eval_results_json,
    select_files,
)


def test_file_selection_and_eval_sources(trajtok_run, tmp_path, capsys):
    final, metrics = trajtok_run
    files, skipped = select_files(final)
    assert files == [f for f in TRAJTOK_FILES if f != "README.md"]
    assert {name for name, _ in skipped} == {"README.md", "checkpoints/", "optimizer.pt", "pytorch_model.bin"}
    found = find_eval_metrics(final)
    assert found.metrics == metrics and found.step == 1 and found.extra["final_train_loss"] == 1.5
    # --eval_results overrides; --dry_run uploads nothing (no endpoint needed at all) and writes the card
    results = tmp_path / "results.json"
    results.write_text(
        json.dumps({"metrics": {"eval/ARI": 0.25}, "dataset": {"type": "davis", "name": "DAVIS-17", "split": "val"}})
    )
    card_out = tmp_path / "card.md"
    code = push_to_hub.main(
        [
            "--model",
            str(final),
            "--repo_id",
            "me/seg",
            "--eval_results",
            str(results),
            "--dry_run",
            "--skip_remote_code_check",
            "--card_out",
            str(card_out),
            "--training_command",
            "python examples/train_segmenter.py --max_steps 1",
        ]
    )
    assert code == 0 and "dry run: nothing uploaded" in capsys.readouterr().out
    card = ModelCard.load(card_out)
    assert [(r.dataset_name, r.dataset_split, r.metric_value) for r in card.data.eval_results] == [
        ("DAVIS-17", "val", 0.25)
    ]
    assert "python examples/train_segmenter.py --max_steps 1" in card.text


@pytest.mark.parametrize(
    "files, expected, warning",
    [
        # a kill while metrics.jsonl was being appended: the cut line is named and skipped, the last eval stands
        (
            {"metrics.jsonl": '{"step": 1, "eval/ARI": 0.5}\n{"step": 2, "eval/A'},
            {"ARI": 0.5},
            r"metrics.jsonl: skipped line\(s\) \[2\]",
        ),
        (
            {"metrics.jsonl": '{"step": 1, "eval/ARI": 0.5}\n[1, 2]\n'},
            {"ARI": 0.5},
            r"metrics.jsonl: skipped line\(s\) \[2\]",
        ),
        # an eval.json cut short: named, and the metrics.jsonl beside it is used instead
        (
            {"eval.json": '{"after": {"accur', "metrics.jsonl": '{"step": 3, "eval/ARI": 0.25}\n'},
            {"ARI": 0.25},
            "eval.json is not valid JSON",
        ),
        ({"eval.json": '{"after": {"accuracy": 0.75}}'}, {"accuracy": 0.75}, None),
    ],
)
def test_eval_sources_cut_short_are_named(files, expected, warning, tmp_path, recwarn):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    found = find_eval_metrics(tmp_path)
    assert found.metrics == expected
    messages = [str(w.message) for w in recwarn.list if issubclass(w.category, UserWarning)]
    if warning is None:
        assert messages == []
    else:
        assert len(messages) == 1 and re.search(warning, messages[0]) and str(tmp_path) in messages[0]


# ------------------------------------------------------------------------------- evaluation JSONs of several datasets
SHAPES_DATASET = {"type": "synthetic-shapes", "name": "trajtok_hf synthetic shapes", "split": "held-out (seed 2000000)"}
PHOTOS_DATASET = {"type": "trajtok_hf-photo-composites", "name": "photo composites", "split": "held-out photos"}
SEG_METRICS = {"FG-ARI": 0.5, "ARI": 0.25, "mIoU": 0.75, "FG-mIoU": 0.625}
SHAPES_METRICS = {"FG-ARI": 0.9, "ARI": 0.95, "mIoU": 0.97, "FG-mIoU": 0.96}
BY_PHOTO = {"chelsea": {"FG-ARI": 0.5, "clips": 2}, "coffee": {"FG-ARI": 0.25, "clips": 2}}
# The shipped segmenter's eval_results.json: one dataset, and objects without "metrics" / "dataset" are not datasets.
ONE_DATASET = {
    "metrics": SEG_METRICS,
    "dataset": SHAPES_DATASET,
    "fg_ari_by_objects_per_clip": {"1": {"FG-ARI": 0.8, "clips": 3}},
    "objects": {"objects": 9, "merged": 0, "missed_by_texture": {"plain": {"objects": 9, "with_missed_cell": 1}}},
    "num_clips": 500,
}
# examples/evaluate_segmenter.py --data photos: the photo composites, the shapes as a block of their own, breakdowns.
TWO_DATASETS = {
    "metrics": SEG_METRICS,
    "dataset": PHOTOS_DATASET,
    "by_photo": BY_PHOTO,
    "by_objects_per_clip": {"1": {"FG-ARI": 1.0, "clips": 1}, "2": {"FG-ARI": 0.5, "clips": 3}},
    "by_object_size": {"small": {"IoU": 0.25, "recall": 0.5, "objects": 4}, "large": {"IoU": 0.75, "objects": 1}},
    "shapes": {**ONE_DATASET, "metrics": SHAPES_METRICS},
    "tables_markdown": "| data | FG-ARI |\n|---|---:|",
}


@pytest.mark.parametrize(
    "data, datasets, breakdowns",
    [
        (ONE_DATASET, [("metrics", SHAPES_DATASET, SEG_METRICS)], []),
        # the flat form, with the synthetic default dataset
        ({"eval/ARI": 0.5, "step": 3}, [("metrics", SYNTHETIC_DATASET, {"ARI": 0.5})], []),
        (
            TWO_DATASETS,
            [("metrics", PHOTOS_DATASET, SEG_METRICS), ("shapes", SHAPES_DATASET, SHAPES_METRICS)],
            ["by_photo", "by_objects_per_clip", "by_object_size"],
        ),
        # a block without its own split is still a dataset of its own
        (
            {**ONE_DATASET, "real": {"metrics": {"FG-ARI": 0.1}, "dataset": {"type": "davis", "name": "DAVIS-17"}}},
            [
                ("metrics", SHAPES_DATASET, SEG_METRICS),
                ("real", {"type": "davis", "name": "DAVIS-17"}, {"FG-ARI": 0.1}),
            ],
            [],
        ),
    ],
)
def test_eval_results_json_datasets(data, datasets, breakdowns, tmp_path):
    path = tmp_path / "eval_results.json"
    path.write_text(json.dumps(data))
    loaded = load_eval_results_json(path)
    assert [(name, block.dataset, block.metrics) for name, block in loaded.datasets()] == datasets
    assert list(loaded.breakdowns) == breakdowns
    if breakdowns:
        assert loaded.breakdowns["by_photo"] == BY_PHOTO
    # one model-index entry per dataset, the metrics of each in the file's order
    results = eval_results_from_metrics(loaded, MODEL_SPECS["trajtok"])
    assert [(r.dataset_name, r.metric_value) for r in results] == [
        (dataset["name"], value) for _, dataset, metrics in datasets for value in metrics.values()
    ]
    assert {r.dataset_split for r in results} == {dataset.get("split") for _, dataset, _ in datasets}


@pytest.mark.parametrize(
    "data, error",
    [
        (
            {**ONE_DATASET, "shapes": {"metrics": SHAPES_METRICS}},
            r"block 'shapes'.*lacks 'dataset' with \['type', 'name'\]",
        ),
        (
            {**ONE_DATASET, "shapes": {"metrics": SHAPES_METRICS, "dataset": {"type": "shapes"}}},
            r"block 'shapes'.*lacks 'dataset' with \['name'\]",
        ),
        ({**ONE_DATASET, "shapes": {"dataset": SHAPES_DATASET}}, r"block 'shapes'.*lacks 'metrics'"),
        (
            {**ONE_DATASET, "shapes": {"metrics": [0.9], "dataset": PHOTOS_DATASET}},
            r"block 'shapes': 'metrics' must be an object",
        ),
        (
            {**ONE_DATASET, "shapes": {"metrics": {"FG-ARI": "high"}, "dataset": PHOTOS_DATASET}},
            r"block 'shapes': no numeric metrics",
        ),
        (
            {**ONE_DATASET, "shapes": {"metrics": SHAPES_METRICS, "dataset": SHAPES_DATASET}},
            r"blocks 'metrics' and 'shapes' describe the same dataset",
        ),
        (  # huggingface_hub's model-index groups by type, config and split: a new name alone would be merged
            {**ONE_DATASET, "shapes": {"metrics": SHAPES_METRICS, "dataset": {**SHAPES_DATASET, "name": "other"}}},
            r"blocks 'metrics' and 'shapes' describe the same dataset .*a different name is not enough",
        ),
        ({**ONE_DATASET, "by_photo": {"chelsea": 0.5}}, r"'by_photo': a breakdown table must be"),
        ({**ONE_DATASET, "by_object_size": {"small": {"IoU": "0.5"}}}, r"'by_object_size': a breakdown table must be"),
        ({**ONE_DATASET, "by_photo": {}}, r"'by_photo': a breakdown table must be"),
        ({**ONE_DATASET, "composites": "same_photo"}, r"'composites' must be one of \('camouflaged', 'mixed'\)"),
        ({"metrics": {}}, r"no numeric metrics"),
        ([1, 2], r"expected a JSON object"),
    ],
)
def test_malformed_eval_results_json_is_named(data, error, tmp_path):
    path = tmp_path / "eval_results.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=error) as info:
        load_eval_results_json(path)
    assert str(info.value).startswith(f"--eval_results {path}: ")


def test_composites_of_one_split_are_two_model_index_entries(tmp_path):
    """evaluate_segmenter.py --composites mixed camouflaged: the two blocks share type and split and differ by
    'config', so the card's model-index keeps one entry each, every number under its own dataset."""
    from huggingface_hub import ModelCardData

    camouflaged = {"metrics": SHAPES_METRICS, "dataset": {**PHOTOS_DATASET, "name": "camo", "config": "camouflaged"}}
    data = {**ONE_DATASET, "dataset": {**PHOTOS_DATASET, "config": "mixed"}, "camouflaged_composites": camouflaged}
    path = tmp_path / "eval_results.json"
    path.write_text(json.dumps(data))
    results = eval_results_from_metrics(load_eval_results_json(path), MODEL_SPECS["trajtok"])
    card_data = ModelCardData(model_name="seg", eval_results=results)
    entries = card_data.to_dict()["model-index"][0]["results"]
    assert [(e["dataset"]["name"], e["dataset"]["config"]) for e in entries] == [
        ("photo composites", "mixed"),
        ("camo", "camouflaged"),
    ]
    assert [m["value"] for m in entries[1]["metrics"]] == list(SHAPES_METRICS.values())
