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


@pytest.mark.parametrize(
    "parts", [("motion",), ("shape",), ("template",), ("motion", "shape", "template"), ("shape", "template")]
)
def test_reword_parts_keeps_only_the_chosen_parts_held_out(probes, parts):
    import numpy as np

    from trajtok_hf.data import CLAUSE_TEMPLATES, MOTION_WORDINGS, SHAPE_WORDS, SyntheticVideoConfig, generate_clip

    config = SyntheticVideoConfig(num_frames=4, height=64, width=64, min_objects=2, caption_wording="held_out")
    for index in range(10):
        clip = generate_clip(config, 2, index)
        mixed = probes.reword_parts(clip, parts, np.random.default_rng(index))
        last_template = len(CLAUSE_TEMPLATES) - 1
        assert (mixed["caption_template"] == last_template) == ("template" in parts)
        for obj, new in zip(clip["objects"], mixed["objects"], strict=True):
            assert new["motion"] == obj["motion"] and new["colour"] == obj["colour"]
            assert (new["wording"] == len(MOTION_WORDINGS[obj["motion"]]) - 1) == ("motion" in parts)
            assert new["shape_word"] == SHAPE_WORDS[obj["shape"]][1 if "shape" in parts else 0]
        assert mixed["caption"] == probes.caption_from_objects(mixed["objects"], None, mixed["caption_template"])
        if len(parts) == 3:
            assert mixed["caption"] == clip["caption"]


FACT_CASES = {
    "speed": (
        [{**_obj("move_left"), "id": 1, "speed": "quickly"}, {**_obj("rotate_cw", "blue", "star"), "id": 2}],
        {
            "speed": "a small red circle moves left slowly while a small blue star rotates clockwise",
            "occlusion": None,
        },
    ),
    "occlusion": (
        [
            {**_obj("static"), "id": 1, "in_front_of": []},
            {**_obj("rises", "blue", "star"), "id": 2, "in_front_of": [1]},
        ],
        {
            "speed": None,
            "occlusion": "a small red circle stays still, in front of the blue star while a small blue star rises",
        },
    ),
}


@pytest.mark.parametrize("case", FACT_CASES)
def test_speed_and_occlusion_probe_pairs(probes, case):
    objects, expected = FACT_CASES[case]
    objects = [{**obj, "motion": {"rises": "move_up"}.get(obj["motion"], obj["motion"])} for obj in objects]
    pairs = probes.probe_pairs([_clip(probes, *objects)], probes.PROBES + ("speed", "occlusion"))
    for name, altered in expected.items():
        if altered is None:
            assert pairs[name] == []
        else:
            ((index, true, other),) = pairs[name]
            assert index == 0 and true == probes.caption_from_objects(objects) and other == altered
    assert "speed" not in probes.probe_pairs([_clip(probes, *objects)])  # only when asked for


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


@pytest.mark.parametrize("change, group", [(0.0, 0), (0.0499, 0), (0.05, 1), (0.2499, 1), (0.25, 2), (1.7, 2)])
def test_text_change_group(probes, change, group):
    assert probes.text_change_group(change) == probes.TEXT_CHANGE_GROUPS[group]
    with pytest.raises(ValueError, match="NaN"):
        probes.text_change_group(float("nan"))


@pytest.mark.parametrize("change, group", [(0.0, 0), (0.0499, 0), (0.05, 1), (0.2499, 1), (0.25, 2), (1.7, 2)])
def test_video_change_group(probes, change, group):
    assert probes.video_change_group(change) == probes.VIDEO_CHANGE_GROUPS[group]
    with pytest.raises(ValueError, match="NaN"):
        probes.video_change_group(float("nan"))


def test_pass_rates_by_motion_count_a_pair_for_both_its_motions(probes):
    true, other = torch.tensor([1.0, 0.0, 1.0]), torch.tensor([0.0, 1.0, 1.0])
    motions = [("move_left", "disappear"), ("disappear", "rotate_cw"), ("move_left", "static")]
    rows = probes.pass_rates_by_motion(true, other, motions)
    assert list(rows) == [m for m in probes.MOTIONS if m in {"move_left", "disappear", "rotate_cw", "static"}]
    assert rows["disappear"] == {"pass_rate": 0.5, "pairs": 2}
    assert rows["move_left"] == {"pass_rate": 0.75, "pairs": 2}  # a pass and a tie
    assert rows["rotate_cw"] == {"pass_rate": 0.0, "pairs": 1} and rows["static"] == {"pass_rate": 0.5, "pairs": 1}


def test_pass_rate_counts_ties_as_half(probes):
    assert probes.pass_rate(torch.tensor([1.0, 0.5, 0.2]), torch.tensor([0.0, 0.5, 0.3])) == pytest.approx(0.5)


def test_run_on_a_tiny_model(probes, tmp_path, capsys):
    folder = tmp_path / "model"
    save_tiny_trajvit2_folder(folder)
    out = tmp_path / "probes.json"
    argv = ["--model", str(folder), "--num_clips", "6", "--batch_size", "4", "--caption_wording", "train"]
    record = probes.main([*argv, "--output", str(out)])
    assert "held_out_parts" not in record
    assert json.loads(out.read_text()) == json.loads(json.dumps(record))
    assert set(record["probes"]) == set(probes.PROBES)
    for row in record["probes"].values():
        assert row["pairs"] == 0 or 0.0 <= row["pass_rate"] <= 1.0
    groups = record["probes"]["object_swap"].get("groups", {})
    assert sum(part["pairs"] for part in groups.values()) == record["probes"]["object_swap"]["pairs"]
    assert "chance 50 %" in capsys.readouterr().out
    argv = ["--model", str(folder), "--num_clips", "6", "--batch_size", "4", "--caption_wording", "held_out"]
    mixed = probes.main([*argv, "--held_out_parts", "motion"])
    assert mixed["held_out_parts"] == ["motion"] and "held out: motion" in capsys.readouterr().out
    argv = ["--model", str(folder), "--num_clips", "12", "--batch_size", "6", "--caption_facts", "speed", "occlusion"]
    facts = probes.main([*argv, "--shuffle_clauses"])
    assert list(facts["probes"]) == [*probes.PROBES, "speed", "occlusion"]
    assert facts["probes"]["speed"]["pairs"] > 0 and facts["caption_facts"] == ["speed", "occlusion"]
    assert facts["shuffle_clauses"] is True
    assert "with speed and occlusion, objects named in a random order" in capsys.readouterr().out


# (trajectory ids of the 8 cells that hold object 1 (first 4) and object 2 (last 4), the group; background id 0)
SEGMENTATION_CASES = {
    "one trajectory for both": ([3, 3, 3, 3, 3, 3, 3, 3], 0),
    "two, each whole": ([3, 3, 3, 3, 5, 5, 5, 5], 1),
    "two, one object partly in the background": ([3, 3, 3, 0, 5, 5, 5, 5], 2),
    "two, one object partly in the other's trajectory": ([3, 3, 3, 3, 5, 5, 5, 3], 2),
    "the majority decides which trajectory an object is in": ([3, 3, 3, 5, 3, 3, 5, 5], 0),
}


@pytest.mark.parametrize("case", SEGMENTATION_CASES)
def test_swapped_objects_segmentation(probes, case):
    import numpy as np

    cells, group = SEGMENTATION_CASES[case]
    labels = np.zeros((2, 4, 4), dtype=np.int64)
    labels.reshape(-1)[:8] = [1, 1, 1, 1, 2, 2, 2, 2]
    ids = np.zeros_like(labels)
    ids.reshape(-1)[:8] = cells
    assert probes.swapped_objects_segmentation(ids, labels) == probes.SEGMENTATION_GROUPS[group]
    assert probes.swapped_objects_segmentation(torch.as_tensor(ids), labels) == probes.SEGMENTATION_GROUPS[group]


def test_swapped_objects_segmentation_edge_cases(probes):
    import numpy as np

    labels = np.ones((2, 4, 4), dtype=np.int64)  # object 2 has no cell on the grid
    assert probes.swapped_objects_segmentation(labels, labels) == probes.SEGMENTATION_GROUPS[3]
    labels = np.repeat([1, 2], 20).reshape(2, 4, 5)  # 20 cells each
    ids = np.where(labels == 1, 4, 7)
    ids.reshape(-1)[0] = 7  # 19 of 20 cells (95 %) in its trajectory: clean
    assert probes.swapped_objects_segmentation(ids, labels) == probes.SEGMENTATION_GROUPS[1]
    ids.reshape(-1)[1] = 7  # 18 of 20
    assert probes.swapped_objects_segmentation(ids, labels) == probes.SEGMENTATION_GROUPS[2]
    with pytest.raises(ValueError, match="must have one shape"):
        probes.swapped_objects_segmentation(ids[:1], labels)


def test_swap_by_segmentation_on_a_tiny_model(probes, tmp_path, capsys):
    folder = tmp_path / "model"
    save_tiny_trajvit2_folder(folder)
    argv = ["--model", str(folder), "--num_clips", "12", "--batch_size", "6", "--swap_by_segmentation"]
    swap = probes.main(argv)["probes"]["object_swap"]
    assert swap["pairs"] > 0 and list(swap["by_segmentation"]) == list(probes.SEGMENTATION_GROUPS)
    assert sum(part["pairs"] for part in swap["by_segmentation"].values()) == swap["pairs"]
    assert "in one trajectory" in capsys.readouterr().out
    vit3d = tmp_path / "vit3d"
    save_tiny_trajvit2_folder(vit3d, vision_tokenizer="vit3d")
    with pytest.raises(SystemExit, match="needs a TrajViT2 with TrajTok tokens"):
        probes.main(["--model", str(vit3d), "--num_clips", "4", "--swap_by_segmentation"])


def test_swapped_clip_probe_on_a_tiny_model(probes, tmp_path, capsys):
    from transformers import AutoProcessor

    from trajtok_hf import TrajViT2Model
    from trajtok_hf.data import SyntheticVideoConfig, generate_swapped_clip

    folder = tmp_path / "model"
    save_tiny_trajvit2_folder(folder)
    argv = ["--model", str(folder), "--num_clips", "12", "--batch_size", "6", "--swapped_clip_probe"]
    record = probes.main([*argv, "--caption_wording", "train"])
    row = record["probes"]["object_swap_clip"]
    model = TrajViT2Model.from_pretrained(folder).eval()
    processor = AutoProcessor.from_pretrained(folder)
    size, frames = processor.video_processor.size, processor.video_processor.num_frames
    config = SyntheticVideoConfig(num_frames=frames, height=size["height"], width=size["width"], max_objects=3)
    expected = sum(generate_swapped_clip(config, probes.HELD_OUT_SEED, i) is not None for i in range(12))
    assert row["pairs"] == expected > 0 and 0.0 <= row["pass_rate"] <= 1.0
    printed = capsys.readouterr().out
    assert "object_swap_clip" in printed and "pairs with each motion:" in printed
    assert "median 1 - cos of the clip and its swapped copy" in printed
    # a "swapped" copy that is the clip itself scores a tie on every pair: the probe reads the copy's embedding
    clips = [
        {**c, "swapped_video": c["video"], "swapped_caption": c["caption"]}
        for c in (probes.generate_clip(config, 5, i) for i in range(4))
    ]
    same = probes.run_probes(model, processor, clips, 4, "cpu", (*probes.PROBES, "object_swap_clip"))[
        "object_swap_clip"
    ]
    assert (same["pass_rate"], same["pairs"], same["matching_pass_rate"]) == (0.5, 4, 0.5)
    assert same["video_change_median"] == pytest.approx(0.0, abs=1e-6)  # the copy is the clip: the video is unmoved
    alike, moved, far = (same["by_video_change"][g] for g in probes.VIDEO_CHANGE_GROUPS)
    assert alike == {"pass_rate": 0.5, "pairs": 4} and moved["pairs"] == far["pairs"] == 0
    assert 0.0 <= row["matching_pass_rate"] <= 1.0
    assert sum(part["pairs"] for part in row["by_video_change"].values()) == row["pairs"]
    swap = record["probes"]["object_swap"]
    assert sum(part["pairs"] for part in swap["by_text_change"].values()) == swap["pairs"]
    assert swap["text_change_median"] >= 0
    # each pair counts for both of its swapped motions
    assert sum(part["pairs"] for part in swap["by_motion"].values()) == 2 * swap["pairs"]


def _moving_square(shift_x: int, shift_y: int, frames: int = 4, size: int = 64, side: int = 8):
    import numpy as np

    segmentation = np.zeros((frames, size, size), dtype=np.int64)
    for t in range(frames):
        y, x = 20 + t * shift_y, 20 + t * shift_x
        segmentation[t, y : y + side, x : x + side] = 1
    return segmentation


# (per-frame shift of a square on a 64² frame, 4 frames, the motion sprite_motion names)
SPRITE_MOTION_CASES = {
    "right": ((4, 0), "move_right"),
    "left": ((-4, 0), "move_left"),
    "down (image y points down)": ((0, 4), "move_down"),
    "up": ((0, -4), "move_up"),
    "mostly right": ((4, 1), "move_right"),
    "diagonal": ((4, 3), None),
    "too short": ((1, 0), None),
}


@pytest.mark.parametrize("case", SPRITE_MOTION_CASES)
def test_sprite_motion_from_exact_ids(probes, case):
    shift, motion = SPRITE_MOTION_CASES[case]
    assert probes.sprite_motion(_moving_square(*shift)) == motion


def test_sprite_motion_needs_the_sprite_in_the_first_and_last_frames(probes):
    segmentation = _moving_square(4, 0)
    segmentation[-1] = 0
    assert probes.sprite_motion(segmentation) is None


@pytest.mark.parametrize("bad", [[[[1]]], "ids", _moving_square(4, 0)[0], _moving_square(4, 0)[:0]])
def test_sprite_motion_refuses_what_is_not_a_clip_of_ids(probes, bad):
    with pytest.raises(ValueError, match="`segmentation` must be a non-empty"):
        probes.sprite_motion(bad)


def test_photo_clips_are_held_out_photos_with_one_named_motion(probes):
    from trajtok_hf.data import HELD_OUT_PHOTOS

    clips = probes.photo_probe_clips(num_frames=4, height=64, width=64, seed=2, num_clips=6)
    assert len(clips) == 6 and len({c["index"] for c in clips}) == 6
    for clip in clips:
        (obj,) = clip["objects"]
        assert obj["photo"] in HELD_OUT_PHOTOS and obj["motion"] in probes.PHOTO_MOTIONS.values()
        assert clip["video"].shape == (4, 64, 64, 3)
        assert clip["caption"] == f"a {obj['size']} object {probes.MOTIONS[obj['motion']]}"
        assert clip["flipped_caption"] == probes.photo_caption(obj["size"], probes.DIRECTION_FLIPS[obj["motion"]])
    pairs = probes.probe_pairs(clips)
    assert len(pairs["direction"]) == 6 and len(pairs["time_reversal"]) == 6 and not pairs["object_swap"]


def test_run_on_photos(probes, tmp_path, capsys):
    folder = tmp_path / "model"
    save_tiny_trajvit2_folder(folder)
    record = probes.main(["--model", str(folder), "--num_clips", "4", "--batch_size", "4", "--data", "photos"])
    assert record["data"] == "photos" and record["max_objects"] == 1
    assert record["probes"]["direction"]["pairs"] == 4 and record["probes"]["object_swap"]["pairs"] == 0
    assert "held-out photographs" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--num_clips", "0"], "--num_clips"),
        (["--model", "/nonexistent"], "no config.json"),
        (["--data", "photos", "--caption_wording", "train"], "--data photos draws one sprite"),
        (["--data", "photos", "--max_objects", "3"], "--data photos draws one sprite"),  # even the default value
        (["--held_out_parts", "motion"], "it needs --caption_wording held_out"),
        (["--data", "photos", "--caption_facts", "speed"], "--data photos draws one sprite"),
        (["--data", "photos", "--shuffle_clauses"], "--data photos draws one sprite"),
        (["--data", "photos", "--swap_by_segmentation"], "the photo clips have one sprite"),
        (["--data", "photos", "--swapped_clip_probe"], "the photo clips have one sprite"),
        (
            ["--caption_wording", "held_out", "--held_out_parts", "motion", "--swapped_clip_probe"],
            "drop --held_out_parts",
        ),
        (["--held_out_parts", "colour", "--caption_wording", "held_out"], "invalid choice"),
    ],
)
def test_rejects_bad_arguments(probes, argv, message, capsys):
    with pytest.raises(SystemExit):
        probes.parse_args(argv)
    assert message in capsys.readouterr().err
