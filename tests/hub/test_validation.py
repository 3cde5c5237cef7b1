"""Folders that cannot be published are refused by trajtok_hf.hub.validate_folder with the reason, and the
command line sends nothing."""

from __future__ import annotations

import json
import shutil

import pytest
from hub_testing import TOKEN, push_to_hub

from trajtok_hf.hub import FolderValidationError, validate_folder


def _break_remove(folder):
    (folder / "perceiver_trajtok.py").unlink()


def _break_weights(folder, name="model.safetensors"):
    data = (folder / name).read_bytes()
    (folder / name).write_bytes(data[: len(data) // 2])


def _break_a_shard(folder):
    """Re-save the weights as two shards + index (as save_pretrained(max_shard_size=...)), then cut the second."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(folder / "model.safetensors")
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for shard, keys in shards.items():
        save_file({k: tensors[k] for k in keys}, folder / shard, metadata={"format": "pt"})
    weight_map = {k: shard for shard, keys in shards.items() for k in keys}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (folder / "model.safetensors").unlink()
    _break_weights(folder, "model-00002-of-00002.safetensors")


def _break_extra_weights(folder):
    (folder / "extra.safetensors").write_bytes(b"not safetensors")  # would be pushed: refused, by name


def _break_index(folder):
    (folder / "model.safetensors.index.json").write_text('{"weight_map": {"a": "model-0')


def _break_only_pickle(folder):
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")


def _break_model_type(folder):
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "bert"}))


def _break_missing_tensor(folder):
    from safetensors.torch import load_file, save_file

    tensors = load_file(folder / "model.safetensors")
    tensors.pop(sorted(tensors)[0])
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})


def _break_no_auto_map(folder):
    config = json.loads((folder / "config.json").read_text())
    config.pop("auto_map")
    (folder / "config.json").write_text(json.dumps(config))


BROKEN = [
    (_break_remove, "perceiver_trajtok.py is not in"),
    (_break_weights, "does not load: .*/model.safetensors is not a readable safetensors file"),
    (_break_a_shard, "does not load: .*/model-00002-of-00002.safetensors is not a readable safetensors file"),
    (_break_extra_weights, "does not load: .*/extra.safetensors is not a readable safetensors file"),
    (_break_index, "weight index .*/model.safetensors.index.json cannot be read as JSON"),
    (_break_only_pickle, "no \\*.safetensors weights .*pytorch_model.bin"),
    (_break_model_type, "not a trajtok_hf model"),
    (_break_missing_tensor, "missing_keys"),
    (_break_no_auto_map, "no auto_map"),
]


def test_invalid_folders_are_refused_and_nothing_is_sent(fake_hub, trajtok_run, tmp_path, capsys):
    final, _ = trajtok_run
    for index, (breaker, match) in enumerate(BROKEN):
        folder = tmp_path / f"broken_{index}"
        shutil.copytree(final, folder)
        breaker(folder)
        with pytest.raises(FolderValidationError, match=match):
            validate_folder(folder)
    # the command line: exit 2, a clear message, and not one request reached the Hub
    code = push_to_hub.main(
        [
            "--model",
            str(tmp_path / "broken_1"),
            "--repo_id",
            "me/broken",
            "--endpoint",
            fake_hub.endpoint,
            "--token",
            TOKEN,
            "--skip_remote_code_check",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "refusing to push" in err and "does not load" in err
    assert fake_hub.requests == [] and fake_hub.repos == {}
