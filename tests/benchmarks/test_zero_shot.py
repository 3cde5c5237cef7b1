"""benchmarks/zero_shot.py: labels with held-out words, checked against the training vocabulary, and a run."""

from __future__ import annotations

import json
import os

import pytest
import torch
from testers import load_file_module, save_tiny_trajvit2_folder

from trajtok_hf.data import SyntheticVideoConfig

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def zero_shot():
    return load_file_module(os.path.join(ROOT, "benchmarks", "zero_shot.py"))


def test_shape_labels_use_only_words_no_training_caption_contains(zero_shot):
    labels = zero_shot.task_labels(SyntheticVideoConfig(num_frames=4, height=64, width=64))
    assert zero_shot.seen_words(labels["shape"]) == []
    assert set(labels["shape"].values()) == {
        "a disc",
        "a box",
        "a wedge",
        "a rhombus",
        "a starburst",
        "a plus sign",
        "a hoop",
    }
    # The motion labels are held-out phrasings; some of their words do occur, and the report says which.
    assert "left" in zero_shot.seen_words(labels["motion"])
    # The reference task reads the training words, all of them seen.
    reference = labels["shape_training_words"]
    assert set(reference) == set(labels["shape"]) and reference["circle"] == "a circle"
    assert zero_shot.seen_words(reference) == sorted(text.split(" ", 1)[1] for text in reference.values())


def test_classify_takes_the_closest_label(zero_shot):
    videos = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    labels = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    assert zero_shot.classify(videos, labels).tolist() == [1, 0, 0]


def test_per_class_recall_names_the_label_a_class_gets_most(zero_shot):
    classes = ["appear", "disappear", "static"]
    truth = torch.tensor([0, 0, 1, 1, 1, 0])
    predicted = torch.tensor([0, 2, 2, 2, 1, 0])
    rows = zero_shot.per_class_recall(predicted, truth, classes)
    assert rows == {
        "appear": {"recall": pytest.approx(2 / 3, abs=1e-4), "clips": 3, "most_often_labelled": "appear"},
        "disappear": {"recall": pytest.approx(1 / 3, abs=1e-4), "clips": 3, "most_often_labelled": "static"},
    }  # a class without clips is left out


def test_run_on_a_tiny_model(zero_shot, tmp_path):
    folder = tmp_path / "model"
    save_tiny_trajvit2_folder(folder)
    out = tmp_path / "zero_shot.json"
    record = zero_shot.main(["--model", str(folder), "--num_clips", "6", "--batch_size", "4", "--output", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(record))
    assert set(record["tasks"]) == set(zero_shot.TASKS)
    for task in zero_shot.TASKS:
        row = record["tasks"][task]
        assert 0.0 <= row["accuracy"] <= 1.0 and row["chance"] == pytest.approx(1 / row["classes"], abs=1e-4)
        if "per_class" in row:  # every clip counted once, under its true class
            assert sum(part["clips"] for part in row["per_class"].values()) == 6
            assert set(row["per_class"]) <= set(row["labels"])
