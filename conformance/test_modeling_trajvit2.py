"""transformers' ModelTesterMixin and ConfigTester on TrajViT2VisionModel and TrajViT2Model (video-text CLIP, paper
Sec. 4), each with the TrajTok and the ViT3D vision tokenizer."""

import unittest

from harness import TinyModelTestBase, TinyModelTester, VisionEmbeddingsTestMixin, testers, video_inputs
from tests.test_modeling_common import ModelTesterMixin

from trajtok_hf import TrajViT2Config, TrajViT2Model, TrajViT2VisionConfig, TrajViT2VisionModel

# Sequence lengths of the tiny encoder on 4 frames of 64×64: 8 trajectory slots + [CLS] (TrajTok), or
# (4/2) × (64/16)² = 32 tubelet patches + [CLS] (ViT3D); on images (1-frame videos): 8 + 1, or 16 + 1.
SEQ_LENGTH = {"trajtok": 9, "vit3d": 33}
IMAGE_SEQ_LENGTH = {"trajtok": 9, "vit3d": 17}


def _vision_tester(parent, tokenizer):
    return TinyModelTester(
        parent,
        get_config=lambda: testers.tiny_trajvit2_vision_config(tokenizer),
        get_inputs=lambda config, batch: video_inputs(batch, 4, 64),
        seq_length=SEQ_LENGTH[tokenizer],
    )


def _image_tester(parent, tokenizer):
    # What the mixin's get_image_features tests feed: images (get_image_features takes 1-frame videos).
    return TinyModelTester(
        parent,
        get_config=lambda: testers.tiny_trajvit2_config(tokenizer),
        get_inputs=lambda config, batch: {"pixel_values": video_inputs(batch, 1, 64)["pixel_values_videos"][:, 0]},
        seq_length=IMAGE_SEQ_LENGTH[tokenizer],
    )


def _clip_tester(parent, tokenizer):
    return TinyModelTester(
        parent,
        get_config=lambda: testers.tiny_trajvit2_config(tokenizer),
        get_inputs=lambda config, batch: {**testers.text_batch(batch), **video_inputs(batch, 4, 64)},
        seq_length=SEQ_LENGTH[tokenizer],
        vision_model_tester=_image_tester(parent, tokenizer),
    )


class TrajViT2VisionModelTest(TinyModelTestBase, VisionEmbeddingsTestMixin, ModelTesterMixin, unittest.TestCase):
    all_model_classes = (TrajViT2VisionModel,)
    config_class = TrajViT2VisionConfig
    config_tester_kwargs = {"hidden_size": 32, "num_attention_heads": 4, "num_hidden_layers": 2}
    test_resize_embeddings = False
    vision_tokenizer = "trajtok"

    def get_tester(self):
        return _vision_tester(self, self.vision_tokenizer)


class TrajViT2VisionModelViT3DTest(TrajViT2VisionModelTest):
    vision_tokenizer = "vit3d"


class TrajViT2ModelTest(TinyModelTestBase, ModelTesterMixin, unittest.TestCase):
    all_model_classes = (TrajViT2Model,)
    config_class = TrajViT2Config
    config_tester_kwargs = {"projection_dim": 16}
    test_resize_embeddings = False
    vision_tokenizer = "trajtok"
    _is_composite = True
    # Inputs the mixin's tests that rebuild the inputs from `main_input_name` (input_ids) must keep.
    additional_model_inputs = ["pixel_values_videos"]

    def get_tester(self):
        return _clip_tester(self, self.vision_tokenizer)

    def _prepare_for_class(self, inputs_dict, model_class, return_labels=False):
        # The contrastive loss (as CLIPModel's) is returned when asked with return_loss; labels are the diagonal.
        inputs_dict = super()._prepare_for_class(inputs_dict, model_class, return_labels)
        if return_labels:
            inputs_dict["return_loss"] = True
        return inputs_dict


class TrajViT2ModelViT3DTest(TrajViT2ModelTest):
    vision_tokenizer = "vit3d"
