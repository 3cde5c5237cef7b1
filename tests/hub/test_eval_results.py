"""Where a model card's numbers come from (trajtok_hf.hub.find_eval_metrics, --eval_results), which files are
pushed (select_files), and evaluation files cut short."""

from __future__ import annotations

import json
import re

import pytest
from hub_testing import TRAJTOK_FILES, push_to_hub
from huggingface_hub import ModelCard

from trajtok_hf.hub import find_eval_metrics, select_files


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
