"""benchmarks/motion_probes.py: the three motion probes (direction, time reversal, object swap)."""

from __future__ import annotations

import json
import os

import pytest
import torch
from testers import load_file_module, save_tiny_trajvit2_folder

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def probes():
    return load_file_module(os.path.join(ROOT, "benchmarks", "motion_probes.py"))


def _obj(motion, colour="red", shape="circle"):
    return {"shape": shape, "colour": colour, "size": "small", "texture": "plain", "motion": motion}


def _clip(probes, *objects):
    return {"objects": list(objects), "caption": probes.caption_from_objects(list(objects))}


# (objects, probes the clip takes part in, the altered captions)
PAIR_CASES = {
    "left mover": (
        [_obj("move_left")],
        {"direction": "a small red circle moves right", "time_reversal": None},
    ),
    "static": ([_obj("static")], {}),
    "appearing": ([_obj("appear")], {"time_reversal": None}),
    "two movers": (
        [_obj("move_up"), _obj("rotate_cw", "blue", "star")],
        {
            "direction": "a small red circle falls while a small blue star rotates counterclockwise",
            "time_reversal": None,
            "object_swap": "a small red circle rotates clockwise while a small blue star rises",
        },
    ),
    "same motion": ([_obj("bounce"), _obj("bounce", "blue")], {}),
}


@pytest.mark.parametrize("case", PAIR_CASES)
def test_probe_pairs(probes, case):
    objects, expected = PAIR_CASES[case]
    pairs = probes.probe_pairs([_clip(probes, *objects)])
    assert {name for name, rows in pairs.items() if rows} == set(expected)
    for name, altered in expected.items():
        ((index, true, other),) = pairs[name]
        assert index == 0 and true == probes.caption_from_objects(objects) and other == altered


def test_paraphrased_probes_keep_the_wording(probes):
    from trajtok_hf.data import DIRECTION_FLIPS, MOTION_WORDINGS, SyntheticVideoConfig, generate_clip

    config = SyntheticVideoConfig(num_frames=4, height=64, width=64, caption_wording="held_out")
    clips = [generate_clip(config, 2, i) for i in range(20)]
    pairs = probes.probe_pairs(clips)
    assert pairs["direction"]
    for index, true, altered in pairs["direction"]:
        motions = [DIRECTION_FLIPS.get(obj["motion"], obj["motion"]) for obj in clips[index]["objects"]]
        assert altered != true and all(MOTION_WORDINGS[motion][-1] in altered for motion in motions)


SWAP_GROUP_CASES = {
    "two kinds, two objects": ([_obj("rotate_cw"), _obj("exit_left", "blue")], 0),
    "two kinds, three objects": ([_obj("rotate_cw"), _obj("exit_left", "blue"), _obj("static", "green")], 1),
    "one kind, other directions": ([_obj("exit_top"), _obj("exit_left", "blue")], 2),
    "one kind, three objects": ([_obj("move_up"), _obj("move_down", "blue"), _obj("bounce", "green")], 2),
}


@pytest.mark.parametrize("case", SWAP_GROUP_CASES)
def test_swap_group(probes, case):
    objects, group = SWAP_GROUP_CASES[case]
    assert probes.swap_group(_clip(probes, *objects)) == probes.SWAP_GROUPS[group]


def test_pass_rate_counts_ties_as_half(probes):
    assert probes.pass_rate(torch.tensor([1.0, 0.5, 0.2]), torch.tensor([0.0, 0.5, 0.3])) == pytest.approx(0.5)


def test_run_on_a_tiny_model(probes, tmp_path, capsys):
    folder = tmp_path / "model"
    save_tiny_trajvit2_folder(folder)
    out = tmp_path / "probes.json"
    argv = ["--model", str(folder), "--num_clips", "6", "--batch_size", "4", "--caption_wording", "train"]
    record = probes.main([*argv, "--output", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(record))
    assert set(record["probes"]) == set(probes.PROBES)
    for row in record["probes"].values():
        assert row["pairs"] == 0 or 0.0 <= row["pass_rate"] <= 1.0
    groups = record["probes"]["object_swap"].get("groups", {})
    assert sum(part["pairs"] for part in groups.values()) == record["probes"]["object_swap"]["pairs"]
    assert "chance 50 %" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message", [(["--num_clips", "0"], "--num_clips"), (["--model", "/nonexistent"], "no config.json")]
)
def test_rejects_bad_arguments(probes, argv, message, capsys):
    with pytest.raises(SystemExit):
        probes.parse_args(argv)
    assert message in capsys.readouterr().err
