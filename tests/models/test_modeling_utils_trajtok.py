"""Loading a model folder whose safetensors weights (or weight index) are truncated or corrupt: an OSError that names
the file, for every model class (modeling_utils_trajtok.SafetensorsFileCheckMixin)."""

import json
import re
import shutil

import pytest
import torch
from safetensors.torch import save_file
from testers import MODEL_CASES, tiny_trajadapter_model

from trajtok_hf.models.modeling_trajadapter import TrajAdapterForVideoClassification
from trajtok_hf.models.modeling_utils_trajtok import (
    SafetensorsFileCheckMixin,
    check_safetensors_file,
    check_weight_files,
    safetensors_weight_files,
)


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _drop_last_bytes(path):
    path.write_bytes(path.read_bytes()[:-3])


def _header_only(path):
    path.write_bytes(path.read_bytes()[:5])


def _not_safetensors(path):
    path.write_bytes(b"<html>an error page saved in place of the weights</html>")


def _empty(path):
    path.write_bytes(b"")


CORRUPTIONS = {
    "truncated": _truncate,
    "last_bytes_missing": _drop_last_bytes,
    "header_cut": _header_only,
    "not_safetensors": _not_safetensors,
    "empty": _empty,
}


def _wired(model_class) -> bool:
    return issubclass(model_class, SafetensorsFileCheckMixin)


@pytest.fixture(scope="module")
def adapter_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("adapter")
    tiny_trajadapter_model("linear").save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def sharded_adapter_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("adapter_sharded")
    tiny_trajadapter_model("linear").save_pretrained(folder, max_shard_size="20KB")
    assert len(safetensors_weight_files(folder)) > 1
    return folder


# ---------------------------------------------------------------------------------------------- every model class
@pytest.mark.parametrize("case", MODEL_CASES, ids=[case.name for case in MODEL_CASES])
def test_truncated_weights_name_the_file_for_every_model(case, tmp_path):
    """A save or download cut short, through the Auto class and the model class itself."""
    model = case.build()
    assert _wired(type(model)), f"{type(model).__name__} does not use SafetensorsFileCheckMixin"
    model.save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    _truncate(weights)
    for loader in (case.auto_class, type(model)):
        with pytest.raises(OSError, match=re.escape(str(weights))):
            loader.from_pretrained(tmp_path)


# ------------------------------------------------------------------------------------------------ kinds of damage
@pytest.mark.parametrize("corrupt", list(CORRUPTIONS.values()), ids=list(CORRUPTIONS))
def test_each_kind_of_damage_names_the_file(corrupt, adapter_folder, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(adapter_folder, folder)
    corrupt(folder / "model.safetensors")
    with pytest.raises(OSError, match=re.escape(str(folder / "model.safetensors")) + ".*truncated or corrupt"):
        TrajAdapterForVideoClassification.from_pretrained(folder)


def test_a_damaged_shard_or_index_is_named(sharded_adapter_folder, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(sharded_adapter_folder, folder)
    shard = safetensors_weight_files(folder)[1]
    _truncate(shard)
    with pytest.raises(OSError, match=re.escape(str(shard))):
        TrajAdapterForVideoClassification.from_pretrained(folder)
    shutil.copy(sharded_adapter_folder / shard.name, shard)
    index = folder / "model.safetensors.index.json"
    index.write_text('{"metadata": {}, "weight_map": {"classifier.weight": "model-0000')  # cut mid-write
    with pytest.raises(OSError, match=re.escape(str(index)) + ".*not a valid safetensors weight index"):
        TrajAdapterForVideoClassification.from_pretrained(folder)


def test_subfolder_and_variant_are_followed(adapter_folder, tmp_path):
    folder = tmp_path / "repo"
    shutil.copytree(adapter_folder, folder / "sub")
    weights = folder / "sub" / "model.safetensors"
    _truncate(weights)
    with pytest.raises(OSError, match=re.escape(str(weights))):
        TrajAdapterForVideoClassification.from_pretrained(folder, subfolder="sub")
    # transformers names a variant's weights model.<variant>.safetensors
    variant = tmp_path / "variant"
    shutil.copytree(adapter_folder, variant)
    (variant / "model.safetensors").rename(variant / "model.fp16.safetensors")
    _truncate(variant / "model.fp16.safetensors")
    assert safetensors_weight_files(variant, "fp16") == [variant / "model.fp16.safetensors"]
    with pytest.raises(OSError, match=re.escape(str(variant / "model.fp16.safetensors"))):
        TrajAdapterForVideoClassification.from_pretrained(variant, variant="fp16")


def test_good_folders_load_and_pass_the_checks(adapter_folder, sharded_adapter_folder):
    for folder in (adapter_folder, sharded_adapter_folder):
        check_weight_files(folder)
        loaded = TrajAdapterForVideoClassification.from_pretrained(folder)
        assert isinstance(loaded, TrajAdapterForVideoClassification)
    assert safetensors_weight_files(adapter_folder / "missing") == []


def test_check_safetensors_file(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file({"x": torch.zeros(4)}, path)
    check_safetensors_file(path)
    _drop_last_bytes(path)
    with pytest.raises(OSError, match=re.escape(str(path))):
        check_safetensors_file(path)
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps(["not", "an", "object"]))
    with pytest.raises(OSError, match="weight_map"):
        safetensors_weight_files(tmp_path)
