"""trajtok_hf: TrajTok trajectory tokens (Zheng et al., CVPR 2026) as Hugging Face transformers models.

Importing the package registers every model with the transformers Auto classes (AutoConfig, AutoModel, ...), and
marks the classes with ``register_for_auto_class`` so that ``save_pretrained`` writes an ``auto_map`` plus the model
files: a saved folder then also loads with ``trust_remote_code=True`` where trajtok_hf is not installed.
"""

from transformers import AutoConfig, AutoModel, AutoModelForVideoClassification, AutoProcessor, AutoVideoProcessor

from .models.configuration_trajtok import TrajTokConfig
from .models.configuration_trajvit2 import TrajViT2Config, TrajViT2VisionConfig
from .models.loss_contrastive import ClipContrastiveLoss, clip_contrastive_loss
from .models.modeling_trajtok import TrajTokModel, TrajTokOutput, TrajTokPreTrainedModel
from .models.modeling_trajvit2 import (
    TrajViT2Model,
    TrajViT2Output,
    TrajViT2PreTrainedModel,
    TrajViT2VisionModel,
    TrajViT2VisionOutput,
)
from .models.modeling_vit3d import ViT3DPatchTokenizer
from .models.processing_trajvit2 import TrajViT2Processor
from .models.video_processing_trajtok import TrajTokVideoProcessor

__version__ = "0.1.0"


def _register() -> None:
    AutoConfig.register(TrajTokConfig.model_type, TrajTokConfig, exist_ok=True)
    AutoModel.register(TrajTokConfig, TrajTokModel, exist_ok=True)
    TrajTokConfig.register_for_auto_class()
    TrajTokModel.register_for_auto_class("AutoModel")
    AutoVideoProcessor.register(TrajTokConfig, TrajTokVideoProcessor, exist_ok=True)
    TrajTokVideoProcessor.register_for_auto_class("AutoVideoProcessor")

    AutoConfig.register(TrajViT2Config.model_type, TrajViT2Config, exist_ok=True)
    AutoConfig.register(TrajViT2VisionConfig.model_type, TrajViT2VisionConfig, exist_ok=True)
    AutoModel.register(TrajViT2Config, TrajViT2Model, exist_ok=True)
    AutoModel.register(TrajViT2VisionConfig, TrajViT2VisionModel, exist_ok=True)
    TrajViT2Config.register_for_auto_class()
    TrajViT2VisionConfig.register_for_auto_class()
    TrajViT2Model.register_for_auto_class("AutoModel")
    TrajViT2VisionModel.register_for_auto_class("AutoModel")
    AutoVideoProcessor.register(TrajViT2Config, TrajTokVideoProcessor, exist_ok=True)
    AutoProcessor.register(TrajViT2Config, TrajViT2Processor, exist_ok=True)
    TrajViT2Processor.register_for_auto_class("AutoProcessor")


    # (also mapped under AutoModelForMultimodalLM); saved folders carry an auto_map for AutoModelForImageTextToText.
    from transformers import AutoModelForImageTextToText, AutoModelForMultimodalLM



_register()

__all__ = [
    "ClipContrastiveLoss",
    "TrajTokConfig",
    "TrajTokModel",
    "TrajTokOutput",
    "TrajTokPreTrainedModel",
    "TrajTokVideoProcessor",
    "TrajViT2Config",
    "TrajViT2Model",
    "TrajViT2Output",
    "TrajViT2PreTrainedModel",
    "TrajViT2Processor",
    "TrajViT2VisionConfig",
    "TrajViT2VisionModel",
    "TrajViT2VisionOutput",
    "ViT3DPatchTokenizer",
    "clip_contrastive_loss",
]
