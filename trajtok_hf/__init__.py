"""trajtok_hf: TrajTok trajectory tokens (Zheng et al., CVPR 2026) as Hugging Face transformers models.

Importing the package registers every model with the transformers Auto classes (AutoConfig, AutoModel, ...), and
marks the classes with ``register_for_auto_class`` so that ``save_pretrained`` writes an ``auto_map`` plus the model
files: a saved folder then also loads with ``trust_remote_code=True`` where trajtok_hf is not installed.
"""

from transformers import AutoConfig, AutoModel, AutoVideoProcessor

from .models.configuration_trajtok import TrajTokConfig
from .models.modeling_trajtok import TrajTokModel, TrajTokOutput, TrajTokPreTrainedModel
from .models.video_processing_trajtok import TrajTokVideoProcessor

__version__ = "0.1.0"


def _register() -> None:
    AutoConfig.register(TrajTokConfig.model_type, TrajTokConfig, exist_ok=True)
    AutoModel.register(TrajTokConfig, TrajTokModel, exist_ok=True)
    TrajTokConfig.register_for_auto_class()
    TrajTokModel.register_for_auto_class("AutoModel")
    AutoVideoProcessor.register(TrajTokConfig, TrajTokVideoProcessor, exist_ok=True)
    TrajTokVideoProcessor.register_for_auto_class("AutoVideoProcessor")


_register()

__all__ = ["TrajTokConfig", "TrajTokModel", "TrajTokOutput", "TrajTokPreTrainedModel", "TrajTokVideoProcessor"]
