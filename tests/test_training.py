"""Training scripts (examples/train_*.py) and their reusable pieces (trajtok_hf/training.py).

Unit tests (optimizer groups, scheduler, data) run in-process (the checkpoint manager's are in
test_training_checkpoints.py); the end-to-end tests run the scripts as subprocesses with tiny models on 64×64
synthetic clips: a 2-process accelerate run, the exact-resume check (uninterrupted vs stopped + resumed: identical
final weights) and SIGKILLs in the middle of a checkpoint save and of the final save.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from testers import float_error_bound, load_file_module, tiny_trajtok_model, tiny_trajvit2_model, video_batch

import trajtok_hf  # noqa: F401  (registers the Auto classes)
from trajtok_hf import TrajTokVideoProcessor
from trajtok_hf.data import SyntheticVideoConfig, generate_clip
from trajtok_hf.training import (
    EpochShuffleSampler,
    SyntheticClipDataset,
    build_optimizer,
    build_scheduler,
    load_segmenter,
    normalize_video,
    parameter_groups,
)

ROOT = Path(__file__).resolve().parents[1]
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


# Runs SCRIPT as __main__ with trajtok_hf.training.fault_hook set to SIGKILL the process at KILL_AT ("stage:step",
# or "stage" for the final save): argv is [KILL_AT, SCRIPT, *script args].
KILL_RUNNER = """
import os, runpy, signal, sys
from trajtok_hf import training
kill_at, script = sys.argv[1:3]
sys.argv = [script, *sys.argv[3:]]
sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
def kill(stage, step):
    if kill_at == (stage if step is None else f"{stage}:{step}"):
        os.kill(os.getpid(), signal.SIGKILL)
training.fault_hook = kill
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
# Optimizer and scheduler


def test_parameter_groups_exclude_norms_biases_latents_and_logit_scale():
    model = tiny_trajtok_model()
    decay, no_decay = parameter_groups(model, 0.02)
    assert decay["weight_decay"] == 0.02 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    not_decayed = {names[id(p)] for p in no_decay["params"]}
    assert len(decayed) + len(not_decayed) == len(names)
    for name in (
        "query_latents",
        "logit_scale",
        "subtoken_offsets",
        "feature_extractor.layer_norms.0.weight",
        "query_head.0.bias",
        "feature_extractor.backbone.embeddings.layernorm.weight",
        "feature_extractor.backbone.encoder.stages.1.downsampling_layer.0.weight",
    ):
        assert name in not_decayed, name
    for name in (
        "query_head.0.weight",
        "feature_extractor.projections.0.weight",
        "feature_extractor.backbone.embeddings.patch_embeddings.weight",
    ):
        assert name in decayed, name
    optimizer = build_optimizer(model)
    assert optimizer.defaults["lr"] == 1e-4 and optimizer.defaults["betas"] == (0.9, 0.999)


def test_parameter_groups_per_prefix_learning_rates():
    model = tiny_trajtok_model()
    groups = parameter_groups(model, 0.02, {"query_perceiver": 1e-5, "feature_extractor.backbone": 2e-5})
    names = {id(p): n for n, p in model.named_parameters()}
    seen = [names[id(p)] for g in groups for p in g["params"]]
    assert sorted(seen) == sorted(names.values())  # every parameter exactly once
    for group in groups:
        group_names = [names[id(p)] for p in group["params"]]
        if "lr" not in group:
            assert not any(n.startswith(("query_perceiver.", "feature_extractor.backbone.")) for n in group_names)
        else:
            prefix = "query_perceiver." if group["lr"] == 1e-5 else "feature_extractor.backbone."
            assert all(n.startswith(prefix) for n in group_names)
    assert {(g.get("lr"), g["weight_decay"]) for g in groups} >= {(1e-5, 0.02), (1e-5, 0.0), (2e-5, 0.02)}
    assert "lr" not in groups[0] and groups[0]["weight_decay"] == 0.02  # default-LR decayed group first
    # The scheduler scales every group by the same factor, so the ratio of the peaks is kept.
    optimizer = build_optimizer(model, 1e-3, learning_rates={"query_perceiver": 1e-5})
    scheduler = build_scheduler(optimizer, num_training_steps=10, num_warmup_steps=2)
    for _ in range(5):
        optimizer.step()
        scheduler.step()
    lrs = {group.get("initial_lr"): group["lr"] for group in optimizer.param_groups}
    # bound: float64 Python arithmetic, two scaled LRs and their ratio (3 roundings of values <= 1e-2).
    assert lrs[1e-5] / lrs[1e-3] == pytest.approx(1e-2, rel=0, abs=float_error_bound(1e-2, 3, torch.float64))


@pytest.mark.parametrize(
    "learning_rates, match",
    [
        ({"query_perceivr": 1e-5}, "no trainable parameter"),  # a typo must not silently use the default LR
        ({"query": 1e-5}, "no trainable parameter"),  # prefixes match whole module names
        ({"query_perceiver": 0.0}, "must be a number > 0"),
        ({"": 1e-5}, "non-empty"),
    ],
)
def test_parameter_groups_reject_bad_learning_rates(learning_rates, match):
    with pytest.raises(ValueError, match=match):
        parameter_groups(tiny_trajtok_model(), 0.02, learning_rates)


def test_parameter_groups_reject_learning_rates_that_are_not_a_mapping():
    with pytest.raises(TypeError, match="learning_rates must be a mapping"):
        parameter_groups(tiny_trajtok_model(), 0.02, [("query_perceiver", 1e-5)])


def test_segmenter_modules_are_what_the_segmentation_loss_trains():
    """SEGMENTER_MODULES (the parts --segmenter_learning_rate applies to) = the tokenizer's top-level modules that
    get a gradient from the §8 loss, which is all that segmentation pre-training trains."""
    from trajtok_hf.models.loss_trajtok import trajectory_segmentation_loss
    from trajtok_hf.training import SEGMENTER_MODULES

    model = tiny_trajtok_model().train()
    labels = torch.randint(0, 3, (2, 4, 16, 16))
    out = model(pixel_values_videos=video_batch(2, 4, 64))
    trajectory_segmentation_loss(out.assignment_logits, labels).backward()
    trained = {name.split(".")[0] for name, p in model.named_parameters() if p.grad is not None and p.grad.any()}
    assert trained == set(SEGMENTER_MODULES)


def test_evaluate_segmentation_skips_the_refinement_of_a_bare_tokenizer(monkeypatch):
    """The ids come from the assignment alone: evaluating a TrajTokModel must not run (and pay for) its refinement
    Perceiver, and must give the ids of a full forward."""
    from accelerate import Accelerator

    from trajtok_hf.metrics import segmentation_metrics
    from trajtok_hf.training import evaluate_segmentation

    model = tiny_trajtok_model().eval()
    pixels = video_batch(2, 4, 64)
    labels = torch.randint(0, 3, (2, 4, 16, 16))
    with torch.no_grad():
        full_ids = model(pixel_values_videos=pixels).trajectory_ids
    expected = segmentation_metrics(list(full_ids), list(labels), background_id=0)

    def refinement_must_not_run(*args, **kwargs):
        raise AssertionError("the refinement Perceiver ran during evaluate_segmentation")

    monkeypatch.setattr(model.refinement_perceiver, "forward", refinement_must_not_run)
    batches = [{"pixel_values_videos": pixels, "segmentation_labels": labels}]
    metrics = evaluate_segmentation(model, batches, Accelerator(cpu=True))
    # The same hard ids (the refinement is skipped, not the logits) and the same float64 metric code: the default
    # approx (rel 1e-6) only absorbs the order of a per-batch mean (float64 rounding ~1e-16), not float32 order.
    assert metrics == {key: pytest.approx(expected[key]) for key in ("ARI", "FG-ARI", "mIoU", "FG-mIoU")}


def test_load_segmenter_from_a_trajtok_or_a_trajvit2_folder(tmp_path):
    processor = TrajTokVideoProcessor(size={"height": 64, "width": 64}, num_frames=4)
    segmenter = tiny_trajtok_model().eval()
    segmenter.save_pretrained(tmp_path / "seg")
    processor.save_pretrained(tmp_path / "seg")
    loaded, loaded_processor = load_segmenter(tmp_path / "seg")
    assert type(loaded) is type(segmenter) and loaded_processor.num_frames == 4
    for name, tensor in segmenter.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name

    trajvit2 = tiny_trajvit2_model().eval()
    trajvit2.save_pretrained(tmp_path / "trajvit2")
    processor.save_pretrained(tmp_path / "trajvit2")
    tokenizer, _ = load_segmenter(tmp_path / "trajvit2")
    expected = trajvit2.vision_model.tokenizer.state_dict()
    assert tokenizer.state_dict().keys() == expected.keys()
    assert all(torch.equal(tokenizer.state_dict()[k], v) for k, v in expected.items())

    tiny_trajvit2_model(vision_tokenizer="vit3d").save_pretrained(tmp_path / "vit3d")
    with pytest.raises(ValueError, match="ViT3D"):
        load_segmenter(tmp_path / "vit3d")


def test_scheduler_warms_up_then_cosine_to_one_percent():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([param], lr=1e-4)
    scheduler = build_scheduler(optimizer, num_training_steps=100, num_warmup_steps=10, min_lr_ratio=0.01)
    lrs = []
    for _ in range(100):
        lrs.append(scheduler.get_last_lr()[0])  # the LR the next optimizer step uses
        optimizer.step()
        scheduler.step()
    # bound: float64 Python arithmetic of the schedule (progress ratio, cosine, interpolation, scaling: <= 8 roundings
    # of values <= the 1e-4 peak).
    lr_bound = float_error_bound(1e-4, 8, torch.float64)
    assert lrs[0] == 0.0 and lrs[5] == pytest.approx(0.5e-4, rel=0, abs=lr_bound)
    assert lrs[10] == pytest.approx(1e-4, rel=0, abs=lr_bound)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))  # cosine: non-increasing after warm-up
    assert scheduler.get_last_lr()[0] == pytest.approx(1e-6, rel=0, abs=lr_bound)  # ends at 1 % of the peak
    assert min(lrs[10:]) > 1e-6


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_training_steps=0), "num_training_steps"),
        (dict(num_training_steps=10, num_warmup_steps=10), "num_warmup_steps"),
        (dict(num_training_steps=10, min_lr_ratio=2.0), "min_lr_ratio"),
    ],
)
def test_scheduler_rejects_bad_arguments(kwargs, match):
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-4)
    with pytest.raises(ValueError, match=match):
        build_scheduler(optimizer, **kwargs)


# ---------------------------------------------------------------------------------------------------------------------
# Data


def test_normalize_video_matches_processor_and_synthetic_dataset_is_deterministic():
    processor = TrajTokVideoProcessor(size={"height": 64, "width": 64}, num_frames=4)
    config = SyntheticVideoConfig(num_frames=4, height=64, width=64)
    clip = generate_clip(config, seed=5, index=3)
    expected = processor(videos=[clip["video"]], return_tensors="pt")["pixel_values_videos"][0]
    # bound: terms up to 1/std <= 4.5, the two float32 paths' roundings (<= 5 for (x·(1/255) − mean)/std with rounded
    # constants, 4 for the processor's folded affine map), fp32 eps.
    pixel_bound = float_error_bound(1 / min(processor.image_std), 5 + 4)
    torch.testing.assert_close(normalize_video(clip["video"], processor), expected, atol=pixel_bound, rtol=0)
    # Frames of another size go through the full processor (resize).
    big = np.repeat(np.repeat(clip["video"], 2, axis=1), 2, axis=2)
    assert normalize_video(big, processor).shape == (4, 3, 64, 64)

    dataset = SyntheticClipDataset(config, seed=5, num_clips=4, video_processor=processor)
    item = dataset[3]
    torch.testing.assert_close(item["pixel_values_videos"], expected, atol=pixel_bound, rtol=0)
    assert torch.equal(item["segmentation_labels"], torch.from_numpy(clip["segmentation_labels"]))
    dataset.set_epoch(1)  # epoch 1 = clips 4..7: fresh data
    fresh = generate_clip(config, 5, 4)["segmentation_labels"]
    assert torch.equal(dataset[0]["segmentation_labels"], torch.from_numpy(fresh))
    with pytest.raises(IndexError):
        dataset[4]
    # An evaluation set ignores the epoch (accelerate's DataLoader calls set_epoch at every pass).
    held_out = SyntheticClipDataset(config, seed=5, num_clips=4, video_processor=processor, fresh_each_epoch=False)
    held_out.set_epoch(7)
    assert torch.equal(held_out[3]["segmentation_labels"], item["segmentation_labels"])


def test_epoch_shuffle_sampler_depends_only_on_seed_and_epoch():
    a, b = EpochShuffleSampler(50, seed=1), EpochShuffleSampler(50, seed=1)
    torch.manual_seed(123)  # the global RNG plays no part
    first = list(a)
    assert first == list(b) and sorted(first) == list(range(50))
    a.set_epoch(1)
    assert list(a) != first
    assert list(EpochShuffleSampler(5, shuffle=False)) == [0, 1, 2, 3, 4]


# ---------------------------------------------------------------------------------------------------------------------
# Command line


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
    ],
)
def test_segmenter_cli_rejects_bad_arguments(tmp_path, capsys, argv, message):
    script = load_script(SEGMENTER)
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
        load_script(ROOT / "examples" / f"{script_name}.py").parse_args(
            ["--output_dir", str(tmp_path / "out"), flag, str(folder)]
        )
    assert exc.value.code == 2
    assert f"{flag} {folder}: no metadata.jsonl or metadata.csv there" in capsys.readouterr().err


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


def test_caption_tokenizer_covers_the_synthetic_vocabulary():
    from trajtok_hf.training import build_caption_tokenizer, synthetic_caption_words

    tokenizer = build_caption_tokenizer(synthetic_caption_words())
    config = SyntheticVideoConfig(num_frames=2, height=64, width=64, max_objects=4, caption_background=True)
    captions = [generate_clip(config, seed=0, index=i)["caption"] for i in range(100)]
    ids = tokenizer(captions)["input_ids"]
    assert all(tokenizer.unk_token_id not in row for row in ids)
    assert tokenizer.convert_ids_to_tokens(ids[0])[0] == "[CLS]"


def test_segmenter_train_objects_changes_only_the_training_clips(tmp_path):
    script = load_script(SEGMENTER)
    processor = TrajTokVideoProcessor(size={"height": 64, "width": 64}, num_frames=4)
    args = script.parse_args(["--output_dir", str(tmp_path), "--num_frames", "4", "--train_objects", "4", "6"])
    train, sampler, held_out = script.build_datasets(args, processor)
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
    train, _, held_out = script.build_datasets(args, processor)
    assert train.config.texture_probability == 0.6 and held_out.config.texture_probability == 0.25
    assert (train.config.min_objects, train.config.max_objects) == (1, 6)  # both overrides apply
    textured = [obj["texture"] != "plain" for i in range(60) for obj in generate_clip(train.config, 0, i)["objects"]]
    assert 0.45 < np.mean(textured) < 0.75


def _build_trajvit2(tmp_path, *argv):
    from trajtok_hf.training import synthetic_caption_words

    script = load_script(TRAJVIT2)
    args = script.parse_args(["--output_dir", str(tmp_path), "--num_frames", "4", *argv])
    processor = TrajTokVideoProcessor(size={"height": 64, "width": 64}, num_frames=4)
    return script.build_model_and_processor(args, processor, synthetic_caption_words())


def test_trajvit2_warm_starts_tokenizer_from_a_segmenter_checkpoint(segmenter_run, tmp_path):
    checkpoint = segmenter_run[0] / "checkpoints" / "step_000002"  # a training checkpoint, not only `final`
    model, processor = _build_trajvit2(tmp_path, "--segmenter", str(checkpoint))
    segmenter = load_file(checkpoint / "model.safetensors")
    tokenizer_state = model.vision_model.tokenizer.state_dict()
    assert segmenter.keys() == tokenizer_state.keys()
    assert all(torch.equal(segmenter[k], tokenizer_state[k]) for k in segmenter)
    assert processor.video_processor.size["height"] == 64


def test_trajvit2_segmenter_learning_rate_covers_exactly_the_segmenter_modules(tmp_path):
    from trajtok_hf.training import SEGMENTER_MODULES

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
    assert set(SEGMENTER_MODULES) <= {n.split(".")[0] for n, _ in model.vision_model.tokenizer.named_parameters()}
    default_args = script.parse_args(["--output_dir", str(tmp_path)])
    default = script.make_optimizer(default_args, model)
    assert {group["lr"] for group in default.param_groups} == {default_args.learning_rate}


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
    script = load_script(TRAJVIT2)
    with pytest.raises(SystemExit) as exc:
        script.parse_args(["--output_dir", str(tmp_path / "out"), *argv])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("preset", ["tiny", "small", "base"])
def test_presets_give_valid_configs(preset):
    from transformers import BertConfig

    from trajtok_hf import TrajTokConfig, TrajViT2Config
    from trajtok_hf.training import TRAJTOK_PRESETS, TRAJVIT2_PRESETS

    tokenizer = TrajTokConfig(**TRAJTOK_PRESETS[preset])
    spec = TRAJVIT2_PRESETS[preset]
    for vision_tokenizer in ("trajtok", "vit3d"):
        vision = dict(spec["vision"], vision_tokenizer=vision_tokenizer)
        if vision_tokenizer == "trajtok":
            vision["tokenizer_config"] = tokenizer
        config = TrajViT2Config(
            vision_config=vision, text_config=BertConfig(vocab_size=60, **spec["text"]).to_dict(), **spec["model"]
        )
        assert config.vision_tokenizer == vision_tokenizer


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
    script = load_script(SEGMENTER)
    if not refused:
        assert script.parse_args(["--output_dir", str(tmp_path), *extra]).output_dir == str(tmp_path)
        return
    with pytest.raises(SystemExit) as info:
        script.parse_args(["--output_dir", str(tmp_path), *extra])
    assert info.value.code == 2 and "--output_dir" in capsys.readouterr().err


def test_training_cli_accepts_a_checkpoint_inside_the_output_dir_only(tmp_path, capsys):
    from trajtok_hf.training import check_output_dir

    parser = argparse.ArgumentParser()
    args = argparse.Namespace(output_dir=str(tmp_path / "run"), overwrite_output_dir=False)
    (tmp_path / "run" / "checkpoints" / "step_2").mkdir(parents=True)
    check_output_dir(parser, args, resume=str(tmp_path / "run" / "checkpoints" / "step_2"))
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(SystemExit):
        check_output_dir(parser, args, resume=str(tmp_path / "elsewhere"))
    assert "--output_dir" in capsys.readouterr().err
