"""Training checkpoints (trajtok_hf/training/checkpoints.py: CheckpointManager; outputs.py: save_final), in-process
with a real Accelerator.

A checkpoint is safetensors + JSON only: a resume never unpickles anything (a pickle payload planted in every file a
resume reads, or under accelerate's legacy pickle names, is refused or ignored, never run), refuses a damaged file
with a ValueError naming it, and is bit-exact. Every save is atomic (a crash mid-save leaves the previous state).
The end-to-end runs of the training scripts (SIGKILL mid-save, 2 processes) are in test_train_scripts.py.
"""

from __future__ import annotations

import json
import pickle
import random
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from safetensors.torch import load_file, save_file
from testers import tiny_trajtok_model

from trajtok_hf import TrajTokVideoProcessor
from trajtok_hf.file_utils import atomic_folder
from trajtok_hf.training import CheckpointManager, TrainState, build_optimizer, build_scheduler, hooks, save_final

RNG_FILES = ("rng_state_0.safetensors", "rng_state_0.json")
CHECKPOINT_FILES = {
    "model.safetensors",
    "optimizer.safetensors",
    "optimizer.json",
    "scheduler.json",
    *RNG_FILES,
    "trainer_state.json",
}


@pytest.fixture(scope="module")
def accelerator():
    return Accelerator(cpu=True)


def make_run(accelerator, seed=0):
    """A small model with dropout (so training draws on the torch RNG), AdamW and the warm-up + cosine schedule."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 8), torch.nn.Dropout(0.5), torch.nn.LayerNorm(8), torch.nn.Linear(8, 1)
    )
    optimizer = build_optimizer(model, 1e-2)
    scheduler = build_scheduler(optimizer, num_training_steps=20, num_warmup_steps=2)
    model, optimizer = accelerator.prepare(model, optimizer)
    return model, optimizer, scheduler


def train(accelerator, run, steps):
    model, optimizer, scheduler = run
    for _ in range(steps):
        # Inputs draw on python's `random`, numpy and torch: the resumed run must restore all three.
        x = torch.randn(3, 4) + random.random() + float(np.random.rand())
        accelerator.backward(model(x).pow(2).mean())
        optimizer.step()
        optimizer.zero_grad()
        scheduler.step()


def snapshot(run):
    model, optimizer, scheduler = run
    tensors = {f"model.{k}": v.clone() for k, v in model.state_dict().items()}
    for index, state in optimizer.state_dict()["state"].items():
        tensors.update({f"optimizer.{index}.{k}": v.clone() for k, v in state.items()})
    return tensors, scheduler.get_last_lr()


@pytest.fixture
def checkpoint(tmp_path, accelerator):
    """A checkpoint after 3 steps (and the run it came from)."""
    run = make_run(accelerator)
    train(accelerator, run, 3)
    path = CheckpointManager(tmp_path / "checkpoints").save(accelerator, TrainState(step=3, epoch=1), *run)
    return path, run


def test_checkpoint_holds_only_safetensors_and_json(checkpoint):
    path, _ = checkpoint
    assert {p.name for p in path.iterdir()} == CHECKPOINT_FILES
    state = json.loads((path / "trainer_state.json").read_text())
    assert state["files"] == sorted(CHECKPOINT_FILES - {"trainer_state.json"})
    assert (state["step"], state["epoch"], state["batch_in_epoch"]) == (3, 1, 0)
    assert load_file(path / "rng_state_0.safetensors")["rng_state_0.torch"].dtype == torch.uint8


def test_resume_is_bit_exact(tmp_path, accelerator, checkpoint):
    """Resumed at step 3 from another initialisation and scrambled RNGs = the uninterrupted run, bit for bit."""
    path, run = checkpoint
    train(accelerator, run, 4)
    expected, expected_lr = snapshot(run)

    resumed = make_run(accelerator, seed=1)
    torch.manual_seed(99), random.seed(99), np.random.seed(99)
    state = CheckpointManager.load(accelerator, path, *resumed)
    assert state == TrainState(step=3, epoch=1, batch_in_epoch=0)
    train(accelerator, resumed, 4)
    got, got_lr = snapshot(resumed)
    assert got.keys() == expected.keys()
    assert all(torch.equal(got[k], expected[k]) for k in expected)
    assert got_lr == expected_lr


# ---------------------------------------------------------------------------------------------------------------------
# A resume never unpickles anything


class Payload:
    """Unpickling this calls ``open(marker, "a")``, which creates the marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "a")


READ_BY_RESUME = sorted(CHECKPOINT_FILES)
LEGACY_PICKLES = [
    "random_states_0.pkl",
    "custom_checkpoint_0.pkl",
    "optimizer.bin",
    "scheduler.bin",
    "pytorch_model.bin",
    "sampler.bin",
    "scaler.pt",
    "dl_state_dict.bin",
]


def test_the_payload_is_live(tmp_path):
    """What unpickling the planted bytes would call creates the marker (so the tests below can fail)."""
    marker = tmp_path / "ran"
    function, args = Payload(marker).__reduce__()
    function(*args).close()
    assert marker.exists()


@pytest.mark.parametrize("name", READ_BY_RESUME + LEGACY_PICKLES)
def test_planted_pickle_is_refused_never_run(tmp_path, accelerator, checkpoint, name):
    path, run = checkpoint
    marker = tmp_path / "payload_ran"
    (path / name).write_bytes(pickle.dumps({"state": Payload(marker)}))
    with pytest.raises(ValueError, match=re.escape(str(path / name))):
        CheckpointManager.load(accelerator, path, *run)
    assert not marker.exists()


@pytest.mark.parametrize("name", LEGACY_PICKLES)
def test_planted_pickle_listed_as_a_checkpoint_file_is_never_opened(tmp_path, accelerator, checkpoint, name):
    path, run = checkpoint
    marker = tmp_path / "payload_ran"
    (path / name).write_bytes(pickle.dumps(Payload(marker)))
    edit_json(path / "trainer_state.json", lambda s: s["files"].append(name))
    assert CheckpointManager.load(accelerator, path, *run).step == 3
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------------------------------
# Damaged or foreign files: a ValueError naming the file


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def edit_tensors(path: Path, change) -> None:
    tensors = load_file(path)
    change(tensors)
    save_file(tensors, path)


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def lr_as_text(state):
    state["param_groups"][0]["lr"] = "fast"


DAMAGE = {
    "truncated model": ("model.safetensors", truncate, "not a readable safetensors"),
    "empty model": ("model.safetensors", lambda p: p.write_bytes(b""), "not a readable safetensors"),
    "model of another shape": (
        "model.safetensors",
        lambda p: edit_tensors(p, lambda t: t.update({"0.weight": torch.zeros(2, 2)})),
        "does not fit the model",
    ),
    "model with an extra tensor": (
        "model.safetensors",
        lambda p: edit_tensors(p, lambda t: t.update({"extra": torch.zeros(1)})),
        "unexpected \\['extra'\\]",
    ),
    "model in half precision": (
        "model.safetensors",
        lambda p: edit_tensors(p, lambda t: t.update({"0.bias": t["0.bias"].half()})),
        "does not fit the model",
    ),
    "optimizer JSON not JSON": ("optimizer.json", lambda p: p.write_text("{"), "not a valid JSON"),
    "optimizer lr not a number": ("optimizer.json", lambda p: edit_json(p, lr_as_text), "must be a number"),
    "optimizer group missing": (
        "optimizer.json",
        lambda p: edit_json(p, lambda s: s["param_groups"].pop()),
        "parameter groups",
    ),
    "optimizer tensor missing": (
        "optimizer.json",
        lambda p: edit_tensors(p.with_suffix(".safetensors"), lambda t: t.pop(sorted(t)[0])),
        "does not hold",
    ),
    "optimizer tensor unused": (
        "optimizer.safetensors",
        lambda p: edit_tensors(p, lambda t: t.update({"stray": torch.zeros(1)})),
        "never uses",
    ),
    "optimizer state of another shape": (
        "optimizer.safetensors",
        lambda p: edit_tensors(p, lambda t: t.update({k: torch.zeros(5) for k in t if k.endswith("exp_avg")})),
        "has shape",
    ),
    "scheduler key missing": (
        "scheduler.json",
        lambda p: edit_json(p, lambda s: s.pop("last_epoch")),
        "expected the keys",
    ),
    "scheduler key added": (
        "scheduler.json",
        lambda p: edit_json(p, lambda s: s.update(optimizer=1)),
        "expected the keys",
    ),
    "scheduler not a dict": ("scheduler.json", lambda p: p.write_text("[1, 2]"), "expected the keys"),
    "torch RNG state of the wrong size": (
        "rng_state_0.safetensors",
        lambda p: edit_tensors(p, lambda t: t.update({"rng_state_0.torch": torch.zeros(10, dtype=torch.uint8)})),
        "rng_state_0",
    ),
    "python RNG state malformed": (
        "rng_state_0.json",
        lambda p: edit_json(p, lambda s: s.update(python=[1, 2])),
        "rng_state_0.json",
    ),
    "numpy RNG state malformed": (
        "rng_state_0.json",
        lambda p: edit_json(p, lambda s: s.update(numpy=["MT19937", [2**40], 0, 0, 0.0])),
        "rng_state_0.json",
    ),
    "RNG JSON not UTF-8": ("rng_state_0.json", lambda p: p.write_bytes(b"\xff\xfe"), "not a valid JSON"),
    "trainer state of an older format": (
        "trainer_state.json",
        lambda p: edit_json(p, lambda s: s.pop("format")),
        "pickle-based save_state",
    ),
    "trainer state negative step": (
        "trainer_state.json",
        lambda p: edit_json(p, lambda s: s.update(step=-1)),
        "'step' must be an int >= 0",
    ),
    "trainer state without file list": (
        "trainer_state.json",
        lambda p: edit_json(p, lambda s: s.pop("files")),
        "'files' must be",
    ),
    "listed file deleted": ("scheduler.json", lambda p: p.unlink(), "missing from the checkpoint"),
    "unlisted text file": ("notes.txt", lambda p: p.write_text("hello"), "unexpected file"),
}


@pytest.mark.parametrize("name, damage, match", DAMAGE.values(), ids=DAMAGE.keys())
def test_damaged_checkpoint_is_refused_naming_the_file(accelerator, checkpoint, name, damage, match):
    path, run = checkpoint
    damage(path / name)
    with pytest.raises(ValueError, match=match) as info:
        CheckpointManager.load(accelerator, path, *run)
    assert str(path / name) in str(info.value)


# ---------------------------------------------------------------------------------------------------------------------
# Atomic saves, `latest`, pruning


def crash_at(monkeypatch, target: str):
    """Set the test-only `fault_hook` to raise (in place of SIGKILL) at ``target`` ("stage" or "stage:step")."""

    def fault(stage, step):
        if target == (stage if step is None else f"{stage}:{step}"):
            raise KeyboardInterrupt(f"killed at {target}")

    monkeypatch.setattr(hooks, "fault_hook", fault)


def test_save_latest_prune_and_load(tmp_path, accelerator):
    run = make_run(accelerator)
    manager = CheckpointManager(tmp_path / "checkpoints", total_limit=2)
    assert manager.latest() is None and manager.resolve("latest") is None and manager.resolve(None) is None
    for step in (2, 4, 6):
        train(accelerator, run, 1)
        path = manager.save(accelerator, TrainState(step=step, epoch=1, batch_in_epoch=3), *run)
        assert path.name == f"step_{step:06d}"
        assert (tmp_path / "checkpoints" / "latest").read_text().strip() == path.name
    assert [p.name for p in manager.checkpoints()] == ["step_000004", "step_000006"]  # total_limit=2
    assert manager.resolve("latest") == tmp_path / "checkpoints" / "step_000006"
    assert manager.load(accelerator, manager.latest(), *run) == TrainState(step=6, epoch=1, batch_in_epoch=3)
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))
    with pytest.raises(ValueError, match="no such checkpoint"):
        manager.resolve(tmp_path / "nowhere")


@pytest.mark.parametrize("stage", ["before_commit", "before_pointer"])
def test_crash_during_save_keeps_latest(tmp_path, accelerator, monkeypatch, stage):
    run = make_run(accelerator)
    checkpoints = tmp_path / "checkpoints"
    manager = CheckpointManager(checkpoints)
    manager.save(accelerator, TrainState(step=2), *run)
    crash_at(monkeypatch, f"{stage}:4")
    with pytest.raises(KeyboardInterrupt):
        manager.save(accelerator, TrainState(step=4), *run)
    assert manager.latest() == checkpoints / "step_000002"
    if stage == "before_commit":
        assert (checkpoints / ".tmp-step_000004").is_dir() and not (checkpoints / "step_000004").exists()
        with pytest.raises(ValueError, match="not a complete checkpoint"):
            manager.resolve(checkpoints / ".tmp-step_000004")
    # A new run cleans the debris up and can save the same step again (replacing an uncommitted step_000004).
    monkeypatch.undo()
    manager = CheckpointManager(checkpoints)
    assert not list(checkpoints.glob(".tmp-*"))
    manager.save(accelerator, TrainState(step=4, epoch=9), *run)
    assert manager.latest() == checkpoints / "step_000004"
    assert manager.load(accelerator, manager.latest(), *run).epoch == 9
    assert not list(checkpoints.glob(".t*-*"))


def test_dangling_or_missing_pointer(tmp_path, accelerator):
    run = make_run(accelerator)
    manager = CheckpointManager(tmp_path)
    manager.save(accelerator, TrainState(step=1), *run)
    manager.save(accelerator, TrainState(step=3), *run)
    (tmp_path / "latest").unlink()  # pointer deleted by hand: newest complete checkpoint
    assert manager.latest() == tmp_path / "step_000003"
    (tmp_path / "latest").write_text("step_000099\n")
    with pytest.raises(RuntimeError, match="not a complete checkpoint"):
        manager.latest()


def test_final_save_is_atomic(tmp_path, accelerator, monkeypatch):
    """A crash while final/ is written leaves the previous final/ untouched; the next save replaces it whole."""
    processor = TrajTokVideoProcessor(size={"height": 64, "width": 64}, num_frames=4)
    first, second = tiny_trajtok_model(), tiny_trajtok_model()
    with torch.no_grad():
        second.logit_scale.add_(1.0)
    final = Path(save_final(accelerator, first, processor, tmp_path))
    assert final == tmp_path / "final"
    before = sorted(p.name for p in final.iterdir())
    crash_at(monkeypatch, "final_before_commit")
    with pytest.raises(KeyboardInterrupt):
        save_final(accelerator, second, processor, tmp_path)
    assert sorted(p.name for p in final.iterdir()) == before
    assert torch.equal(load_file(final / "model.safetensors")["logit_scale"], first.logit_scale.detach())
    assert (tmp_path / ".tmp-final").is_dir()
    monkeypatch.undo()
    save_final(accelerator, second, processor, tmp_path)
    assert torch.equal(load_file(final / "model.safetensors")["logit_scale"], second.logit_scale.detach())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]


@pytest.mark.parametrize("previous", [None, "old"], ids=["fresh", "over a previous folder"])
def test_atomic_folder_commits_whole_or_nothing(tmp_path, previous):
    target = tmp_path / "merged"
    if previous:
        target.mkdir()
        (target / "weights.txt").write_text(previous)
    with pytest.raises(RuntimeError, match="killed"):
        with atomic_folder(target) as folder:
            (folder / "weights.txt").write_text("new, half")
            raise RuntimeError("killed")  # an error (or a kill) before the body ends: nothing is committed
    assert (target / "weights.txt").read_text() == previous if previous else not target.exists()
    with atomic_folder(target) as folder:
        (folder / "weights.txt").write_text("new")
    assert (target / "weights.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged"]  # no temporary or trash folder left


def test_checkpoint_copy_resumes(tmp_path, accelerator, checkpoint):
    """A checkpoint folder copied elsewhere (its files listed relative to it) resumes from there."""
    path, run = checkpoint
    copy = shutil.copytree(path, tmp_path / "elsewhere")
    assert CheckpointManager.load(accelerator, copy, *run).step == 3


def test_gradient_scaler_state_round_trips(tmp_path):
    """fp16 runs: the GradScaler's state goes to scaler.json and comes back (a CPU scaler stands in for CUDA's)."""
    accelerator = Accelerator(cpu=True)
    run = make_run(accelerator)
    accelerator.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=7)
    accelerator.scaler.scale(torch.ones(1))  # creates the scale tensor
    accelerator.scaler.update(new_scale=96.0)
    path = CheckpointManager(tmp_path).save(accelerator, TrainState(step=1), *run)
    assert json.loads((path / "scaler.json").read_text())["scale"] == 96.0
    accelerator.scaler = torch.amp.GradScaler("cpu", init_scale=2.0, growth_interval=7)
    CheckpointManager.load(accelerator, path, *run)
    assert accelerator.scaler.get_scale() == 96.0
    edit_json(path / "scaler.json", lambda s: s.update(scale="big"))
    with pytest.raises(ValueError, match=re.escape(str(path / "scaler.json"))):
        CheckpointManager.load(accelerator, path, *run)
