"""benchmarks/attribute_probes.py: linear probes of what a video representation holds about an object."""

from __future__ import annotations

import json
import os

import pytest
import torch
from testers import load_file_module, save_tiny_trajvit2_folder

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def probes():
    return load_file_module(os.path.join(ROOT, "benchmarks", "attribute_probes.py"))


def _data(num_rows, separable, seed):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (num_rows,), generator=generator)
    features = torch.randn(num_rows, 16, generator=generator)
    if separable:
        features[torch.arange(num_rows), labels] += 6.0  # class k lifts feature k
    return features, labels


# (features carry the label, lowest / highest accepted test accuracy)
PROBE_CASES = {"separable": (True, 0.95, 1.0), "label noise only": (False, 0.0, 0.5)}


@pytest.mark.parametrize("case", PROBE_CASES)
def test_probe_accuracy(probes, case):
    separable, low, high = PROBE_CASES[case]
    train_x, train_y = _data(200, separable, 0)
    test_x, test_y = _data(400, separable, 1)
    row = probes.probe_accuracy(train_x, train_y, test_x, test_y, steps=200)
    assert low <= row["accuracy"] <= high
    assert row["weight_decay"] in probes.WEIGHT_DECAYS
    assert row["chance"] == pytest.approx(float(torch.bincount(test_y).max()) / 400, abs=1e-4)


def test_probe_accuracy_rejects_mismatched_rows(probes):
    x, y = _data(10, True, 0)
    with pytest.raises(ValueError, match="one dim"):
        probes.probe_accuracy(x, y, x[:, :3], y)
    with pytest.raises(ValueError, match="one label per feature row"):
        probes.probe_accuracy(x, y[:5], x, y)


def test_run_on_a_tiny_model(probes, tmp_path, capsys):
    folder = tmp_path / "model"
    save_tiny_trajvit2_folder(folder)
    out = tmp_path / "probes.json"
    argv = ["--model", str(folder), "--num_train_clips", "10", "--num_test_clips", "4", "--probe_steps", "5"]
    record = probes.main([*argv, "--batch_size", "4", "--output", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(record))
    assert set(record["attributes"]) == set(probes.ATTRIBUTES)
    assert record["num_fit_clips"] + record["num_test_clips"] + record["skipped_clips"] == 14
    names = {"video_embedding", "cls", "object_token_input", "object_token_output"}
    for row in record["attributes"].values():
        assert names <= set(row)
        assert all(0.0 <= row[name]["accuracy"] <= 1.0 for name in names)
    assert "chance" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--num_train_clips", "3"], "--num_train_clips must be >= 5"),
        (["--fit_seed", "7", "--seed", "7"], "must differ"),
        (["--model", "/nonexistent"], "no config.json"),
    ],
)
def test_rejects_bad_arguments(probes, argv, message, capsys):
    with pytest.raises(SystemExit):
        probes.parse_args(argv)
    assert message in capsys.readouterr().err
