"""A pretrained backbone for TrajTok: its weights load only through ``TrajTokModel.from_pretrained_backbone`` /
``load_pretrained_backbone``, through the concrete backbone class's ``from_pretrained``, key for key; building a
model or loading a saved TrajTok never reads it; the folder or Hub id is recorded in config.json."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from huggingface_hub import constants as hub_constants
from safetensors.torch import load_file, save_file
from testers import TINY_BACKBONE, assert_backbone_refused, load_file_module, tiny_trajtok_config, video_batch
from transformers import (
    AutoConfig,
    ConvNextBackbone,
    ConvNextConfig,
    ConvNextForImageClassification,
    ConvNextModel,
    ConvNextV2Backbone,
    ConvNextV2Config,
    DINOv3ConvNextBackbone,
    DINOv3ConvNextConfig,
    DINOv3ConvNextModel,
    ResNetConfig,
)
from transformers.testing_utils import CaptureLogger

from trajtok_hf import TrajTokConfig, TrajTokModel
from trajtok_hf.models import modeling_trajtok

ALL_STAGES = ["stage1", "stage2", "stage3", "stage4"]
TINY_SIZES = {"depths": [1, 1, 1, 1], "hidden_sizes": [8, 16, 24, 32], "out_features": ALL_STAGES}
# The backbone-only per-stage output norms that a Model / classifier checkpoint of ConvNeXt lacks.
BACKBONE_ONLY = modeling_trajtok.BACKBONE_ONLY_WEIGHT_PREFIXES


def _saved(model_class, config, folder: Path) -> dict[str, torch.Tensor]:
    """Saves ``model_class(config)`` with every weight moved off its initialisation; returns its state dict, each
    weight also under its name without the base-model prefix (``convnext.`` of a classifier)."""
    model = model_class(config)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter))
    model.save_pretrained(folder)
    prefix = f"{model.base_model_prefix}."
    state = model.state_dict()
    return {**{key.removeprefix(prefix): value for key, value in state.items()}, **state}


# (name, class saved to the folder, its config): every ConvNeXt-family checkpoint layout a user can have.
SOURCES = [
    ("convnext_backbone", ConvNextBackbone, ConvNextConfig(**TINY_SIZES)),
    ("convnext_model", ConvNextModel, ConvNextConfig(**TINY_SIZES)),
    ("convnext_classifier", ConvNextForImageClassification, ConvNextConfig(**TINY_SIZES)),
    ("convnextv2_backbone", ConvNextV2Backbone, ConvNextV2Config(**TINY_SIZES)),
    ("dinov3_convnext_model", DINOv3ConvNextModel, DINOv3ConvNextConfig(**TINY_SIZES, layer_norm_eps=1e-6)),
    ("dinov3_convnext_backbone", DINOv3ConvNextBackbone, DINOv3ConvNextConfig(**TINY_SIZES)),
]


@pytest.mark.parametrize("name, model_class, config", SOURCES, ids=[s[0] for s in SOURCES])
@pytest.mark.parametrize("entry", ["from_pretrained_backbone", "load_pretrained_backbone"])
def test_backbone_weights_load_key_for_key(tmp_path, name, model_class, config, entry):
    source = _saved(model_class, config, tmp_path / name)
    if entry == "from_pretrained_backbone":
        model = TrajTokModel.from_pretrained_backbone(tmp_path / name, tiny_trajtok_config())
    else:
        model = TrajTokModel(tiny_trajtok_config(backbone_config=config.to_dict()))
        model.load_pretrained_backbone(tmp_path / name)
    backbone = model.feature_extractor.backbone
    assert type(backbone).config_class is type(config)
    assert model.config.pretrained_backbone_name_or_path == str(tmp_path / name)
    for key, value in backbone.state_dict().items():
        if key.startswith(BACKBONE_ONLY) and key not in source:
            expected = torch.ones_like(value) if key.endswith("weight") else torch.zeros_like(value)
        else:
            expected = source[key]
        torch.testing.assert_close(value, expected, rtol=0, atol=0, msg=key)
    # The loaded model runs as any other.
    assert model.eval()(video_batch(batch=1, frames=2, size=32)).trajectory_ids.shape == (1, 2, 8, 8)


def test_from_pretrained_backbone_adopts_the_checkpoint_architecture_and_leaves_the_config_alone(tmp_path):
    _saved(DINOv3ConvNextModel, DINOv3ConvNextConfig(depths=[1, 2, 1, 1], hidden_sizes=[8, 16, 24, 40]), tmp_path)
    config = tiny_trajtok_config()
    with CaptureLogger(modeling_trajtok.logger) as captured:
        model = TrajTokModel.from_pretrained_backbone(str(tmp_path), config)
    backbone_config = model.config.backbone_config
    assert (backbone_config.model_type, backbone_config.depths) == ("dinov3_convnext", [1, 2, 1, 1])
    assert backbone_config.out_features == ALL_STAGES
    for change in ("model_type='dinov3_convnext'", "depths=[1, 2, 1, 1]", "hidden_sizes=[8, 16, 24, 40]"):
        assert change in captured.out
    assert config.backbone_config.model_type == "convnext" and config.pretrained_backbone_name_or_path is None
    assert model.feature_extractor.projections[3].in_features == 40


def test_construction_and_from_pretrained_never_read_the_backbone(tmp_path, monkeypatch):
    _saved(ConvNextBackbone, ConvNextConfig(**TINY_SIZES), tmp_path / "backbone")

    def refuse(*args, **kwargs):
        raise AssertionError("a pretrained backbone was read")

    for owner in (ConvNextBackbone, AutoConfig):
        monkeypatch.setattr(owner, "from_pretrained", refuse)
    for path in (
        str(tmp_path / "backbone"),
        str(tmp_path / "missing"),
        "facebook/dinov3-convnext-small-pretrain-lvd1689m",
    ):
        model = TrajTokModel(tiny_trajtok_config(pretrained_backbone_name_or_path=path))
        model.save_pretrained(tmp_path / "trajtok")
        reloaded = TrajTokModel.from_pretrained(tmp_path / "trajtok")
        assert reloaded.config.pretrained_backbone_name_or_path == path
        for key, value in model.state_dict().items():
            torch.testing.assert_close(reloaded.state_dict()[key], value, rtol=0, atol=0)


@pytest.mark.parametrize("value", [None, "facebook/dinov3-convnext-small-pretrain-lvd1689m", "/data/convnext"])
def test_pretrained_backbone_name_round_trips_through_config_json(tmp_path, value):
    tiny_trajtok_config(pretrained_backbone_name_or_path=value).save_pretrained(tmp_path)
    assert TrajTokConfig.from_pretrained(tmp_path).pretrained_backbone_name_or_path == value
    assert (f'"pretrained_backbone_name_or_path": "{value}"' in (tmp_path / "config.json").read_text()) == (
        value is not None
    )


@pytest.mark.parametrize("value", ["", 3, ["a"]])
def test_pretrained_backbone_name_must_be_a_string(value):
    with pytest.raises(ValueError, match="pretrained_backbone_name_or_path"):
        tiny_trajtok_config(pretrained_backbone_name_or_path=value)


def test_hub_id_offline_gives_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    hub_id = "facebook/dinov3-convnext-small-pretrain-lvd1689m"
    for load in (
        lambda: TrajTokModel.from_pretrained_backbone(hub_id, tiny_trajtok_config(), cache_dir=str(tmp_path)),
        lambda: TrajTokModel(tiny_trajtok_config()).load_pretrained_backbone(hub_id, cache_dir=str(tmp_path)),
    ):
        with pytest.raises(OSError, match="offline") as error:
            load()
        assert hub_id in str(error.value) and f"hf download {hub_id} --local-dir DIR" in str(error.value)


def _drop_weight(folder: Path, name: str) -> None:
    weights = load_file(folder / "model.safetensors")
    del weights[name]
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})


# (name, how the bad pretrained folder is made, error type, message): each refused with what is wrong.
BAD_BACKBONES = [
    (
        "wider",
        lambda folder: _saved(
            ConvNextBackbone, ConvNextConfig(**{**TINY_SIZES, "hidden_sizes": [8, 16, 24, 40]}), folder
        ),
        ValueError,
        r"hidden_sizes=\[8, 16, 24, 40\] \(backbone_config: \[8, 16, 24, 32\]\)",
    ),
    (
        "other_activation",
        lambda folder: _saved(ConvNextBackbone, ConvNextConfig(**TINY_SIZES, hidden_act="relu"), folder),
        ValueError,
        "hidden_act='relu'",
    ),
    ("not_convnext", lambda folder: ResNetConfig().save_pretrained(folder), ValueError, "'resnet' model"),
    (
        "missing_weight",
        lambda folder: (
            _saved(ConvNextBackbone, ConvNextConfig(**TINY_SIZES), folder),
            _drop_weight(folder, "encoder.stages.3.layers.0.pwconv2.weight"),
        ),
        ValueError,
        r"missing weights \['encoder.stages.3.layers.0.pwconv2.weight'\]",
    ),
    ("not_a_folder", lambda folder: None, OSError, "not a local folder with a config.json"),
]


@pytest.mark.parametrize("name, make, error, message", BAD_BACKBONES, ids=[b[0] for b in BAD_BACKBONES])
def test_a_backbone_that_does_not_fit_is_refused(tmp_path, name, make, error, message):
    make(tmp_path / name)
    model = TrajTokModel(tiny_trajtok_config(backbone_config={**TINY_BACKBONE, "layer_norm_eps": 1e-12}))
    assert_backbone_refused(model, tmp_path / name, error, message)


def test_load_pretrained_backbone_defaults_to_the_config_field(tmp_path):
    source = _saved(ConvNextBackbone, ConvNextConfig(**TINY_SIZES), tmp_path)
    model = TrajTokModel(tiny_trajtok_config(pretrained_backbone_name_or_path=str(tmp_path)))
    model.load_pretrained_backbone()
    torch.testing.assert_close(
        model.feature_extractor.backbone.state_dict()["embeddings.patch_embeddings.weight"],
        source["embeddings.patch_embeddings.weight"],
        rtol=0,
        atol=0,
    )
    with pytest.raises(ValueError, match="needs a folder or Hub id"):
        TrajTokModel(tiny_trajtok_config()).load_pretrained_backbone()
    with pytest.raises(TypeError, match="unknown pretrained-backbone options \\['dtype'\\]"):
        model.load_pretrained_backbone(dtype="bfloat16")


def test_segmenter_script_refuses_backbone_with_model(tmp_path, capsys):
    script = load_file_module(Path(__file__).resolve().parents[2] / "examples" / "train_segmenter.py")
    with pytest.raises(SystemExit) as exc:
        script.parse_args(["--output_dir", str(tmp_path / "out"), "--model", ".", "--backbone", str(tmp_path)])
    assert exc.value.code == 2
    assert "--backbone starts a new model from a pretrained backbone" in capsys.readouterr().err
