"""FSDP2 training and sharded checkpoints (trajtok_hf.training.sharded, examples/train_sharded.py).

The multi-process cases launch ``torchrun`` with 2 CPU processes over gloo and compare with one process at the same
global batch. Tolerance: the two runs add the same numbers in another order (gradients reduce-scattered over two
processes, embeddings gathered), so each step's values differ by float32 rounding, ~1e-7 relative per operation;
after a few optimizer steps the loss agrees to ``2e-5`` relative (what the test allows), the weights to ``1e-4``
absolute (LR 1e-3 times Adam updates of at most ~1 per step).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from trajtok_hf.training import ShardedCheckpointManager, build_optimizer
from trajtok_hf.training.sharded import (
    MODEL_DIR,
    DistributedContext,
    init_distributed,
    load_model_and_optimizer,
    reduce_replicated_gradients,
    save_consolidated,
    save_model_and_optimizer,
    shard_model,
)

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "train_sharded.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}


# --------------------------------------------------------------------------------------------------------------
# Model folders


def _trajvit2_folder(folder: Path) -> Path:
    from testers import save_tiny_trajvit2_folder
    from transformers import AutoConfig

    save_tiny_trajvit2_folder(folder, num_frames=4, size=32)
    config = AutoConfig.from_pretrained(folder)  # no dropout: the runs compared must compute the same function
    config.text_config.hidden_dropout_prob = config.text_config.attention_probs_dropout_prob = 0.0
    config.save_pretrained(folder)
    return folder


def _trajvlm_folder(folder: Path) -> Path:
    from testers import load_file_module

    caption = load_file_module(ROOT / "examples" / "train_trajvlm_caption.py")
    args = caption.parse_args(["--output_dir", str(folder), "--num_frames", "4", "--frame_size", "32"])
    torch.manual_seed(0)
    model, processor = caption.build_model_and_processor(args)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def model_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("sharded_models")
    return {"trajvit2": _trajvit2_folder(root / "trajvit2"), "trajvlm": _trajvlm_folder(root / "trajvlm")}


def _train(model: Path, output_dir: Path, processes: int, *extra: str, steps: int = 4, check: bool = True):
    batch = 8 // processes  # the global batch is 8 clips whatever the number of processes
    launcher = [sys.executable] if processes == 1 else [sys.executable, "-m", "torch.distributed.run"]
    if processes > 1:
        launcher += ["--standalone", "--nproc_per_node", str(processes)]
    command = [
        *launcher,
        str(SCRIPT),
        "--model",
        str(model),
        "--data",
        "synthetic",
        "--output_dir",
        str(output_dir),
        "--per_device_train_batch_size",
        str(batch),
        "--max_steps",
        str(steps),
        "--learning_rate",
        "1e-3",
        "--logging_steps",
        "1",
        "--checkpointing_steps",
        "2",
        *extra,
    ]
    proc = subprocess.run(command, env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def _losses(output_dir: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]
    return {row["step"]: row["loss"] for row in rows}


def _final_weights(output_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    name = (
        "adapter_model.safetensors" if (output_dir / "final" / "adapter_config.json").exists() else "model.safetensors"
    )
    return load_file(str(output_dir / "final" / name))


# --------------------------------------------------------------------------------------------------------------
# 2 processes = 1 process at the same global batch; checkpoints move between process counts


@pytest.mark.parametrize(
    "model_type, lora",
    [("trajvit2", False), ("trajvlm", False), ("trajvlm", True)],
    ids=["trajvit2-full", "trajvlm-full", "trajvlm-lora"],
)
def test_two_processes_follow_the_one_process_loss_curve_and_checkpoints_reshard(
    model_folders, tmp_path, model_type, lora
):
    extra = ("--lora",) if lora else ()
    model = model_folders[model_type]
    single, double = tmp_path / "one", tmp_path / "two"
    _train(model, single, 1, *extra)
    _train(model, double, 2, *extra)
    one, two = _losses(single), _losses(double)
    assert sorted(one) == sorted(two) == [1, 2, 3, 4]
    for step in one:
        assert two[step] == pytest.approx(one[step], rel=2e-5), (step, one, two)
    assert one[4] != pytest.approx(one[1], rel=1e-3)  # it trains: the comparison is not between constants
    weights_one, weights_two = _final_weights(single), _final_weights(double)
    assert set(weights_one) == set(weights_two)
    for name, tensor in weights_one.items():
        torch.testing.assert_close(weights_two[name], tensor, rtol=0, atol=1e-4, msg=name)
    # The final folder of the sharded run loads as the model's own class (not FSDP's wrapper class).
    config = json.loads((double / "final" / ("adapter_config.json" if lora else "config.json")).read_text())
    if not lora:
        assert config["architectures"] in (["TrajViT2Model"], ["TrajVLMForConditionalGeneration"])

    # The 2-process checkpoint of step 2 resumes in 1 process (and the 1-process one in 2): same remaining curve.
    for source, processes in ((double, 1), (single, 2)):
        resumed = tmp_path / f"resumed-from-{source.name}"
        shutil.copytree(source / "checkpoints" / "step_000002", resumed / "checkpoints" / "step_000002")
        _train(model, resumed, processes, *extra, "--resume_from_checkpoint", str(resumed / "checkpoints/step_000002"))
        again = _losses(resumed)
        assert sorted(again) == [3, 4]
        for step in again:
            assert again[step] == pytest.approx(one[step], rel=2e-5), (step, one, again)
        if model_type != "trajvit2":
            break  # one direction per model type is enough for the slower TrajVLM


@pytest.fixture(scope="module")
def shard_folder(tmp_path_factory):
    """16 clips in 4 Parquet shards; one clip's file is garbage."""
    from trajtok_hf.data import SyntheticVideoConfig, write_video_folder, write_video_shards

    root = tmp_path_factory.mktemp("sharded_data")
    folder = root / "videos"
    write_video_folder(folder, 16, SyntheticVideoConfig(num_frames=4, height=32, width=32))
    (folder / "clip_000003.mp4").write_bytes(b"not a video" * 50)
    write_video_shards(folder, root / "shards", clips_per_shard=4)
    return root / "shards"


@pytest.mark.parametrize("processes", [1, 2])
def test_streamed_shards_skip_a_corrupt_clip_and_resume_exactly(model_folders, shard_folder, tmp_path, processes):
    model = model_folders["trajvit2"]
    data = ("--data", str(shard_folder), "--num_workers", "1")
    full = tmp_path / "full"
    _train(model, full, processes, *data, steps=6)  # 16 clips, batches of 8 per step: epochs 0, 1, 2
    rows = [json.loads(line) for line in (full / "metrics.jsonl").read_text().splitlines()]
    assert sum(row["skipped_clips"] for row in rows) == 3  # the garbage clip, once per epoch
    resumed = tmp_path / "resumed"
    shutil.copytree(full / "checkpoints" / "step_000002", resumed / "checkpoints" / "step_000002")
    _train(model, resumed, processes, *data, "--resume_from_checkpoint", "latest", steps=6)
    again = _losses(resumed)
    assert sorted(again) == [3, 4, 5, 6]
    for step, loss in again.items():
        assert loss == pytest.approx(_losses(full)[step], rel=1e-6), step


def test_strict_data_stops_at_a_corrupt_clip(model_folders, shard_folder, tmp_path):
    proc = _train(
        model_folders["trajvit2"], tmp_path / "strict", 1, "--data", str(shard_folder), "--strict_data", check=False
    )
    assert proc.returncode != 0 and "clip_000003" in proc.stderr


def test_a_killed_process_leaves_the_last_checkpoint_loadable(model_folders, tmp_path):
    """SIGKILL one of two processes mid-run (wherever it is, a save included): torchrun stops the run, the checkpoint
    ``latest`` names is complete and a 1-process run resumes from it."""
    output_dir = tmp_path / "killed"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command = [
        *launcher,
        str(SCRIPT),
        "--model",
        str(model_folders["trajvit2"]),
        "--data",
        "synthetic",
        "--output_dir",
        str(output_dir),
        "--per_device_train_batch_size",
        "2",
        "--max_steps",
        "1000",
        "--checkpointing_steps",
        "1",
        "--checkpoints_total_limit",
        "2",
    ]
    proc = subprocess.Popen(command, env=ENV, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    latest = output_dir / "checkpoints" / "latest"
    deadline = time.time() + 300
    try:
        while time.time() < deadline and not (latest.exists() and latest.read_text().strip() >= "step_000003"):
            time.sleep(0.2)
        assert latest.exists(), "no checkpoint was written"
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        assert len(children) == 2, children
        os.kill(int(children[-1]), signal.SIGKILL)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    step = int(latest.read_text().strip().split("_")[1])
    resumed = _train(
        model_folders["trajvit2"],
        output_dir,
        1,
        "--resume_from_checkpoint",
        "latest",
        "--max_steps_this_run",
        "1",
        steps=1000,
    )
    assert f"at step {step}" in resumed.stdout
    assert _losses(output_dir)[step + 1] > 0


# --------------------------------------------------------------------------------------------------------------
# In one process: what a checkpoint holds and refuses


class _Tied(torch.nn.Module):
    """Tied weights and a 0-dim parameter, the two cases FSDP2 / safetensors need care for."""

    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(10, 6)
        self.head = torch.nn.Linear(6, 10, bias=False)
        self.head.weight = self.embed.weight
        self.scale = torch.nn.Parameter(torch.tensor(2.0))

    def forward(self, ids):
        return self.head(self.embed(ids)) * self.scale


def _trained_tied(steps=3):
    torch.manual_seed(0)
    model = _Tied()
    optimizer = build_optimizer(model, 1e-2, 0.02)
    for _ in range(steps):
        model(torch.randint(0, 10, (4, 3))).square().mean().backward()
        optimizer.step()
        optimizer.zero_grad()
    return model, optimizer


def test_save_and_load_round_trip_bit_exact_with_tied_and_scalar_parameters(tmp_path):
    model, optimizer = _trained_tied()
    save_model_and_optimizer(tmp_path, model, optimizer)
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert all(name.endswith((".safetensors", ".json")) for name in files), files  # nothing pickled
    fresh, fresh_optimizer = _trained_tied(steps=0)
    load_model_and_optimizer(tmp_path, fresh, fresh_optimizer)
    assert fresh.head.weight is fresh.embed.weight
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    saved, loaded = optimizer.state_dict(), fresh_optimizer.state_dict()
    assert saved["param_groups"] == loaded["param_groups"]
    for index, entry in saved["state"].items():
        for key, value in entry.items():
            assert torch.equal(value, loaded["state"][index][key]), (index, key)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda folder: (folder / MODEL_DIR / "model-00001-of-00001.safetensors").unlink(), "no safetensors files"),
        (lambda folder: (folder / "optimizer.json").write_text("{not json"), "not a valid JSON file"),
        (lambda folder: (folder / "optimizer.json").write_text('{"param_groups": [], "state": {}}'), "groups"),
    ],
    ids=["missing-model", "corrupt-json", "other-groups"],
)
def test_damaged_checkpoint_parts_raise_named_errors(tmp_path, damage, message):
    model, optimizer = _trained_tied()
    save_model_and_optimizer(tmp_path, model, optimizer)
    damage(tmp_path)
    fresh, fresh_optimizer = _trained_tied(steps=0)
    with pytest.raises(ValueError, match=message):
        load_model_and_optimizer(tmp_path, fresh, fresh_optimizer)


def test_model_of_another_shape_is_refused(tmp_path):
    model, optimizer = _trained_tied()
    save_model_and_optimizer(tmp_path, model)
    other = torch.nn.Sequential(torch.nn.Linear(3, 3))
    with pytest.raises(ValueError, match="cannot load the model state"):
        load_model_and_optimizer(tmp_path, other)


def test_manager_commits_atomically_and_refuses_planted_files(tmp_path):
    from trajtok_hf.training import TrainState

    context = DistributedContext()
    manager = ShardedCheckpointManager(tmp_path / "checkpoints", context)
    model, optimizer = _trained_tied()
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (step + 1))
    path = manager.save(TrainState(step=3), model, optimizer, scheduler, data_state={"position": 5})
    assert manager.latest() == path and not list((tmp_path / "checkpoints").glob(".tmp-*"))
    fresh, fresh_optimizer = _trained_tied(steps=0)
    fresh_scheduler = torch.optim.lr_scheduler.LambdaLR(fresh_optimizer, lambda step: 1.0 / (step + 1))
    state, data = manager.load(path, fresh, fresh_optimizer, fresh_scheduler)
    assert (state.step, data) == (3, {"position": 5})
    assert fresh_scheduler.state_dict()["last_epoch"] == scheduler.state_dict()["last_epoch"]
    (path / "process_0.pkl").write_bytes(b"\x80\x04K\x01.")  # a pickle planted in the folder is never opened
    with pytest.raises(ValueError, match="unexpected file"):
        manager.load(path, fresh, fresh_optimizer)


def test_process_group_and_argument_errors():
    with pytest.raises(ValueError, match="backend"):
        init_distributed(backend="mpi")
    with pytest.raises(RuntimeError, match="process group"):
        shard_model(torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="DistributedContext"):
        ShardedCheckpointManager("x", context=None)
    with pytest.raises(TypeError, match="`block_classes`"):
        shard_model(torch.nn.Linear(2, 2), block_classes="ViTLayer")
    with pytest.raises(TypeError, match="`model`"):
        shard_model("model")
    with pytest.raises(ValueError, match="`divide_by`"):
        reduce_replicated_gradients(torch.nn.Linear(2, 2), divide_by=0)
    with pytest.raises(TypeError, match="DistributedContext"):
        save_consolidated(torch.nn.Linear(2, 2), "out", context=1)
    assert init_distributed().world_size == 1 or "WORLD_SIZE" in os.environ


# --------------------------------------------------------------------------------------------------------------
# Accelerate's FSDP2 configuration (GPU only: Accelerate does not engage FSDP on a CPU)

ACCELERATE_FSDP2 = ROOT / "examples" / "accelerate_configs" / "fsdp2.yaml"


def test_accelerate_fsdp2_config_loads_and_names_blocks_of_trajvlm(model_folders):
    from accelerate.commands.config.config_args import load_config_from_file
    from transformers import AutoModelForImageTextToText

    config = load_config_from_file(str(ACCELERATE_FSDP2))
    assert config.distributed_type == "FSDP" and config.fsdp_config["fsdp_version"] == 2
    blocks = set(config.fsdp_config["fsdp_transformer_layer_cls_to_wrap"].split(","))
    model = AutoModelForImageTextToText.from_pretrained(model_folders["trajvlm"])
    classes = {type(module).__name__ for module in model.modules()}
    assert blocks <= classes, blocks - classes  # Accelerate's wrap policy raises on a class the model lacks
    assert not [name for name, param in model.named_parameters() if param.ndim == 0]  # FSDP2 shards them all


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="Accelerate's FSDP2 needs 2 GPUs (not engaged on CPUs)")
def test_accelerate_fsdp2_config_trains_trajvlm_on_gpus(tmp_path):
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(ACCELERATE_FSDP2),
        str(ROOT / "examples" / "train_trajvlm_caption.py"),
        "--output_dir",
        str(tmp_path / "run"),
        "--segmenter_steps",
        "2",
        "--steps",
        "2",
        "--batch_size",
        "2",
        "--num_frames",
        "4",
        "--frame_size",
        "32",
    ]
    proc = subprocess.run(command, env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (tmp_path / "run" / "final" / "config.json").exists()
