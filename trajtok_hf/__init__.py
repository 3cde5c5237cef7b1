"""trajtok_hf: TrajTok trajectory tokens (Zheng et al., CVPR 2026) as Hugging Face transformers models.

Importing the package registers every model with the transformers Auto classes (AutoConfig, AutoModel, ...), and
marks the classes with ``register_for_auto_class`` so that ``save_pretrained`` writes an ``auto_map`` plus the model
files: a saved folder then also loads with ``trust_remote_code=True`` where trajtok_hf is not installed.
"""

from transformers import AutoConfig, AutoModel, AutoModelForVideoClassification, AutoProcessor, AutoVideoProcessor

from .models.configuration_trajadapter import TrajAdapterConfig
from .models.configuration_trajtok import TrajTokConfig
from .models.configuration_trajvit2 import TrajViT2Config, TrajViT2VisionConfig
from .models.configuration_trajvlm import TrajVLMConfig
from .models.loss_contrastive import (
    ClipContrastiveLoss,
    clip_contrastive_loss,
    negative_caption_loss,
    paired_contrastive_loss,
    paraphrase_loss,
)
from .models.modeling_trajadapter import (
    TrajAdapterClassifierOutput,
    TrajAdapterForVideoClassification,
    TrajAdapterFrozenFeatures,
    TrajAdapterPreTrainedModel,
)
from .models.modeling_trajtok import TrajTokModel, TrajTokOutput, TrajTokPreTrainedModel
from .models.modeling_trajvit2 import (
    TrajViT2Model,
    TrajViT2Output,
    TrajViT2PreTrainedModel,
    TrajViT2VisionModel,
    TrajViT2VisionOutput,
)
from .models.modeling_trajvlm import (
    TrajVLMCausalLMOutputWithPast,
    TrajVLMForConditionalGeneration,
    TrajVLMModel,
    TrajVLMModelOutputWithPast,
    TrajVLMPreTrainedModel,
    TrajVLMVideoOutput,
)
from .models.modeling_vit3d import ViT3DPatchTokenizer
from .models.processing_trajvit2 import TrajViT2Processor
from .models.processing_trajvlm import TrajVLMProcessor
from .models.video_processing_trajtok import TrajTokVideoProcessor
from .pipelines import ZeroShotVideoClassificationPipeline, register_pipelines

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

    AutoConfig.register(TrajAdapterConfig.model_type, TrajAdapterConfig, exist_ok=True)
    AutoModelForVideoClassification.register(TrajAdapterConfig, TrajAdapterForVideoClassification, exist_ok=True)
    TrajAdapterConfig.register_for_auto_class()
    TrajAdapterForVideoClassification.register_for_auto_class("AutoModelForVideoClassification")
    AutoVideoProcessor.register(TrajAdapterConfig, TrajTokVideoProcessor, exist_ok=True)

    # TrajVLM: the closest Auto class transformers offers for video-text-to-text is AutoModelForImageTextToText
    # (also mapped under AutoModelForMultimodalLM); saved folders carry an auto_map for AutoModelForImageTextToText.
    from transformers import AutoModelForImageTextToText, AutoModelForMultimodalLM

    AutoConfig.register(TrajVLMConfig.model_type, TrajVLMConfig, exist_ok=True)
    AutoModel.register(TrajVLMConfig, TrajVLMModel, exist_ok=True)
    AutoModelForImageTextToText.register(TrajVLMConfig, TrajVLMForConditionalGeneration, exist_ok=True)
    AutoModelForMultimodalLM.register(TrajVLMConfig, TrajVLMForConditionalGeneration, exist_ok=True)
    TrajVLMConfig.register_for_auto_class()
    TrajVLMModel.register_for_auto_class("AutoModel")
    TrajVLMForConditionalGeneration.register_for_auto_class("AutoModelForImageTextToText")
    AutoVideoProcessor.register(TrajVLMConfig, TrajTokVideoProcessor, exist_ok=True)
    AutoProcessor.register(TrajVLMConfig, TrajVLMProcessor, exist_ok=True)
    TrajVLMProcessor.register_for_auto_class("AutoProcessor")


_register()
register_pipelines()

__all__ = [
    "TrajVLMCausalLMOutputWithPast",
    "TrajVLMConfig",
    "TrajVLMForConditionalGeneration",
    "TrajVLMModel",
    "TrajVLMModelOutputWithPast",
    "TrajVLMPreTrainedModel",
    "TrajVLMProcessor",
    "TrajVLMVideoOutput",
    "ClipContrastiveLoss",
    "TrajAdapterClassifierOutput",
    "TrajAdapterConfig",
    "TrajAdapterForVideoClassification",
    "TrajAdapterFrozenFeatures",
    "TrajAdapterPreTrainedModel",
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
    "ZeroShotVideoClassificationPipeline",
    "clip_contrastive_loss",
    "negative_caption_loss",
    "paired_contrastive_loss",
    "paraphrase_loss",
]
