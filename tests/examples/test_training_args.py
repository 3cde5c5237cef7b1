"""The command line the example scripts share (examples/training_args.py), through the scripts' own ``parse_args``:
bad values are refused with a message naming the flag (exit status 2), and a non-empty ``--output_dir`` is refused
unless overwritten or resumed from. The names it spells out instead of importing the package match the package's."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import training_args
from testers import load_file_module
from training_args import check_output_dir, check_resume_arg

from trajtok_hf.data import video_folder, video_qa
from trajtok_hf.models.configuration_trajtok import TRAJECTORY_MOTION_FUSIONS
from trajtok_hf.training import (
    PACKAGED_TEXT_ENCODERS,
    STATE_FILE,
    TRAJTOK_PRESETS,
    TRAJVIT2_PRESETS,
    default_warmup_steps,
)

ROOT = Path(__file__).resolve().parents[2]
SEGMENTER = ROOT / "examples" / "train_segmenter.py"
TRAJVIT2 = ROOT / "examples" / "train_trajvit2.py"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--data", "/does/not/exist"], "--data /does/not/exist: not a folder"),
        (["--per_device_train_batch_size", "0"], "--per_device_train_batch_size must be >= 1"),
        (["--gradient_accumulation_steps", "-1"], "--gradient_accumulation_steps must be >= 1"),
        (["--max_steps", "10", "--warmup_steps", "10"], "--warmup_steps must lie in"),
        (["--resume_from_checkpoint", "/does/not/exist"], "no such checkpoint folder"),
        (["--frame_size", "30"], "--frame_size must be a multiple of 4"),
        (["--preset", "huge"], "invalid choice"),
        (["--model", "/does/not/exist"], "no config.json"),
        (["--train_objects", "3", "2"], "--train_objects MIN MAX needs 1 <= MIN <= MAX"),
        (["--train_objects", "0", "2"], "--train_objects MIN MAX needs 1 <= MIN <= MAX"),
        (["--train_texture_probability", "1.5"], "--train_texture_probability must lie in"),
        (["--train_texture_probability", "-0.1"], "--train_texture_probability must lie in"),
        (["--backbone_learning_rate", "0"], "--backbone_learning_rate must be > 0"),
        (["--backbone_learning_rate=-1e-4"], "--backbone_learning_rate must be > 0"),
    ],
)
def test_segmenter_cli_rejects_bad_arguments(tmp_path, capsys, argv, message):
    script = load_file_module(SEGMENTER)
    with pytest.raises(SystemExit) as exc:
        script.parse_args(["--output_dir", str(tmp_path / "out"), *argv])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--data", "--eval_data"])
@pytest.mark.parametrize("script_name", ["train_segmenter", "train_trajvit2"])
def test_training_cli_needs_a_video_folder_with_metadata(tmp_path, capsys, script_name, flag):
    folder = tmp_path / "clips"
    folder.mkdir()
    (folder / "clip_0.mp4").write_bytes(b"")  # videos, but no metadata.jsonl / metadata.csv listing them
    with pytest.raises(SystemExit) as exc:
        load_file_module(ROOT / "examples" / f"{script_name}.py").parse_args(
            ["--output_dir", str(tmp_path / "out"), flag, str(folder)]
        )
    assert exc.value.code == 2
    assert f"{flag} {folder}: no metadata.jsonl or metadata.csv there" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--vision_tokenizer", "vit3d", "--segmenter", "."], "needs --vision_tokenizer trajtok"),
        (["--vision_tokenizer", "vit3d", "--frame_size", "72"], "multiple of --patch_size"),
        (["--segmenter", "/does/not/exist"], "no config.json"),
        (["--tokenizer", "/does/not/exist"], "--tokenizer /does/not/exist: not a folder"),
        (["--segmentation_loss_weight", "-1"], "--segmentation_loss_weight must be >= 0"),
        (["--per_device_train_batch_size", "0"], "--per_device_train_batch_size must be >= 1"),
        (["--data", "/does/not/exist"], "not a folder"),
        (["--segmenter_learning_rate", "0"], "--segmenter_learning_rate must be > 0"),
        (["--vision_tokenizer", "vit3d", "--segmenter_learning_rate", "1e-4"], "needs --vision_tokenizer trajtok"),
    ],
)
def test_trajvit2_cli_rejects_bad_arguments(tmp_path, capsys, argv, message):
    script = load_file_module(TRAJVIT2)
    with pytest.raises(SystemExit) as exc:
        script.parse_args(["--output_dir", str(tmp_path / "out"), *argv])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------------------
# A non-empty --output_dir is refused unless overwritten or resumed from


@pytest.mark.parametrize(
    "extra, refused",
    [
        ([], True),
        (["--overwrite_output_dir"], False),
        (["--resume_from_checkpoint", "latest"], False),
    ],
)
def test_training_cli_refuses_a_non_empty_output_dir(tmp_path, capsys, extra, refused):
    (tmp_path / "metrics.jsonl").write_text("{}\n")
    script = load_file_module(SEGMENTER)
    if not refused:
        assert script.parse_args(["--output_dir", str(tmp_path), *extra]).output_dir == str(tmp_path)
        return
    with pytest.raises(SystemExit) as info:
        script.parse_args(["--output_dir", str(tmp_path), *extra])
    assert info.value.code == 2 and "--output_dir" in capsys.readouterr().err


def test_training_cli_accepts_a_checkpoint_inside_the_output_dir_only(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    args = argparse.Namespace(output_dir=str(tmp_path / "run"), overwrite_output_dir=False)
    (tmp_path / "run" / "checkpoints" / "step_2").mkdir(parents=True)
    check_output_dir(parser, args, resume=str(tmp_path / "run" / "checkpoints" / "step_2"))
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(SystemExit):
        check_output_dir(parser, args, resume=str(tmp_path / "elsewhere"))
    assert "--output_dir" in capsys.readouterr().err


@pytest.mark.parametrize(
    "files, message",
    [
        ([STATE_FILE, "model.safetensors"], None),
        (["model.safetensors"], "not a complete checkpoint"),  # killed before its state was written
        ([], "not a complete checkpoint"),
    ],
)
def test_resume_needs_a_complete_checkpoint(tmp_path, capsys, files, message):
    for name in files:
        (tmp_path / name).write_text("{}")
    if message is None:
        check_resume_arg(argparse.ArgumentParser(), str(tmp_path))
        return
    with pytest.raises(SystemExit) as info:
        check_resume_arg(argparse.ArgumentParser(), str(tmp_path))
    assert info.value.code == 2 and message in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------------------
# Names the scripts spell out (so that parsing imports no package) match the package's


def _finetune_question_types():
    return load_file_module(ROOT / "examples" / "finetune_trajvlm_lora.py").QUESTION_TYPES


@pytest.mark.parametrize(
    "spelled_out, package",
    [
        (lambda: training_args.STATE_FILE, STATE_FILE),
        (lambda: set(training_args.PRESET_NAMES), set(TRAJTOK_PRESETS)),
        (lambda: set(training_args.PRESET_NAMES), set(TRAJVIT2_PRESETS)),
        (lambda: training_args.VIDEO_FOLDER_METADATA, video_folder.METADATA_FILENAMES),
        (_finetune_question_types, video_qa.QUESTION_TYPES),
        (lambda: set(training_args.PACKAGED_TEXT_ENCODER_NAMES), set(PACKAGED_TEXT_ENCODERS)),
        (lambda: training_args.TRAJECTORY_MOTION_FUSIONS, TRAJECTORY_MOTION_FUSIONS),
    ],
    ids=[
        "state_file",
        "trajtok_presets",
        "trajvit2_presets",
        "video_folder_metadata",
        "question_types",
        "packaged_text_encoders",
        "trajectory_motion_fusions",
    ],
)
def test_spelled_out_names_match_the_package(spelled_out, package):
    assert spelled_out() == package


@pytest.mark.parametrize(
    "max_steps, steps_per_epoch, warmup_steps, expected",
    [
        (1000, None, 7, 7),  # --warmup_steps wins
        (1000, 40, None, 40),  # one epoch of --data DIR (paper Sec. 4)
        (1000, None, None, 50),  # synthetic data: 5 % of --max_steps
        (101, None, None, 6),  # 5 % rounded up
        (10, 40, None, 9),  # always below --max_steps
        (1, None, None, 0),
    ],
)
def test_default_warmup_steps(max_steps, steps_per_epoch, warmup_steps, expected):
    assert default_warmup_steps(max_steps, steps_per_epoch, warmup_steps) == expected


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--per_device_train_batch_size", "3"], "even batch size"),
        (["--data", "some/folder"], "transforms the synthetic clips"),
    ],
)
def test_paired_transforms_need_synthetic_data_and_an_even_batch(tmp_path, capsys, extra, message):
    script = load_file_module(TRAJVIT2)
    argv = ["--output_dir", str(tmp_path / "run"), "--paired_transforms", "reverse", *extra]
    with pytest.raises(SystemExit):
        script.parse_args(argv)
    assert message in capsys.readouterr().err
    transforms = ["reverse", "mirror_vertical", "swap_objects", "swap_objects"]
    ok = script.parse_args(["--output_dir", str(tmp_path / "ok"), "--paired_transforms", *transforms])
    assert ok.paired_transforms == transforms
    from trajtok_hf.training import PAIRED_TRANSFORMS  # the script lists the dataset's names without importing it

    every = script.parse_args(["--output_dir", str(tmp_path / "ok"), "--paired_transforms", *PAIRED_TRANSFORMS])
    assert every.paired_transforms == list(PAIRED_TRANSFORMS)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--pair_loss_weight", "1"], "--pair_loss_weight needs --paired_transforms"),
        (["--paired_transforms", "reverse", "--pair_loss_weight", "-1"], "--pair_loss_weight must be a finite"),
        (["--paired_transforms", "reverse", "--pair_loss_weight", "inf"], "--pair_loss_weight must be a finite"),
        (["--trajectory_motion_init_std", "0.1"], "needs --trajectory_motion_encoding"),
        (["--trajectory_motion_encoding", "--trajectory_motion_init_std", "-0.1"], "must be a finite number >= 0"),
        (["--trajectory_motion_encoding", "--trajectory_motion_init_std", "nan"], "must be a finite number >= 0"),
        (["--trajectory_motion_fusion", "mlp"], "--trajectory_motion_fusion mlp needs --trajectory_motion_encoding"),
        (["--trajectory_motion_fusion", "concat"], "invalid choice: 'concat'"),
        (["--motion_fusion_learning_rate", "1e-3"], "--motion_fusion_learning_rate sets the LR of the fusion MLP"),
        (
            ["--trajectory_motion_encoding", "--trajectory_motion_fusion", "mlp", "--motion_fusion_learning_rate", "0"],
            "--motion_fusion_learning_rate must be a finite number > 0",
        ),
        (
            ["--vision_tokenizer", "vit3d", "--trajectory_motion_fusion", "add"],
            "--trajectory_motion_fusion is a TrajTok tokenizer setting",
        ),
    ],
)
def test_pair_loss_and_motion_init_flags(tmp_path, capsys, extra, message):
    script = load_file_module(TRAJVIT2)
    with pytest.raises(SystemExit):
        script.parse_args(["--output_dir", str(tmp_path / "run"), *extra])
    assert message in capsys.readouterr().err
    ok = script.parse_args(
        ["--output_dir", str(tmp_path / "ok"), "--paired_transforms", "mirror_horizontal", "--pair_loss_weight", "0.5"]
        + ["--trajectory_motion_encoding", "--trajectory_motion_init_std", "0.1"]
    )
    assert (ok.pair_loss_weight, ok.trajectory_motion_init_std) == (0.5, 0.1)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--swap_negative_weight", "-1"], "--swap_negative_weight must be a finite"),
        (["--swap_negative_weight", "1", "--data", "some/folder"], "rewrites the synthetic captions"),
        (["--shape_negative_weight", "-1"], "--shape_negative_weight must be a finite"),
        (["--shape_negative_weight", "1", "--data", "some/folder"], "rewrites the synthetic captions"),
        (["--caption_facts", "speed", "--data", "some/folder"], "--caption_facts words the synthetic captions"),
        (["--shuffle_clauses", "--data", "some/folder"], "--shuffle_clauses words the synthetic captions"),
        (["--caption_facts", "colour"], "invalid choice"),
        (["--fact_negative_weight", "-2"], "--fact_negative_weight must be a finite"),
        (["--fact_negative_weight", "1"], "it needs --caption_facts"),
        (["--paraphrase_loss_weight", "inf"], "--paraphrase_loss_weight must be a finite"),
        (["--paraphrase_loss_weight", "1"], "needs synthetic data and --caption_wording train"),
        (["--paraphrase_loss_weight", "1", "--caption_wording", "train", "--data", "d"], "--caption_wording train"),
        (["--same_kind_motion_probability", "1.5"], "--same_kind_motion_probability must be in [0, 1]"),
        (["--same_kind_motion_probability", "nan"], "--same_kind_motion_probability must be in [0, 1]"),
        (["--same_kind_motion_probability", "0.5", "--data", "some/folder"], "draws the synthetic clips' motions"),
    ],
)
def test_swap_negative_flag(tmp_path, capsys, extra, message):
    script = load_file_module(TRAJVIT2)
    with pytest.raises(SystemExit):
        script.parse_args(["--output_dir", str(tmp_path / "run"), *extra])
    assert message in capsys.readouterr().err
    assert (
        script.parse_args(["--output_dir", str(tmp_path / "ok"), "--swap_negative_weight", "2"]).swap_negative_weight
        == 2
    )
