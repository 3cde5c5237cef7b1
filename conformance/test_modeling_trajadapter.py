"""transformers' ModelTesterMixin and ConfigTester on TrajAdapterForVideoClassification (the trajectory probe on a
frozen video backbone, paper Sec. 5)."""

import unittest

import torch
from harness import TinyModelTestBase, TinyModelTester, VisionEmbeddingsTestMixin, testers, video_inputs
from tests.test_modeling_common import ModelTesterMixin

from trajtok_hf import TrajAdapterConfig, TrajAdapterForVideoClassification


class TrajAdapterForVideoClassificationTest(
    TinyModelTestBase, VisionEmbeddingsTestMixin, ModelTesterMixin, unittest.TestCase
):
    all_model_classes = (TrajAdapterForVideoClassification,)
    config_class = TrajAdapterConfig
    config_tester_kwargs = {"num_attention_heads": 4}
    test_resize_embeddings = False
    _is_composite = True

    def get_tester(self):
        # The tiny VideoMAE backbone takes exactly 8 frames of 32×32: (8 / 2) × (32 / 8)² = 64 tokens, 1 layer; the
        # hidden states and attentions are the backbone's (TrajAdapterClassifierOutput).
        return TinyModelTester(
            self,
            get_config=lambda: testers.tiny_trajadapter_config(tokens_per_trajectory=2),
            get_inputs=lambda config, batch: video_inputs(batch, 8, 32),
            num_hidden_layers=1,
            seq_length=64,
        )

    def _prepare_for_class(self, inputs_dict, model_class, return_labels=False):
        # The mixin adds labels only for classes in transformers' own video-classification mapping.
        inputs_dict = super()._prepare_for_class(inputs_dict, model_class, return_labels)
        if return_labels:
            batch_size = inputs_dict["pixel_values_videos"].shape[0]
            inputs_dict["labels"] = torch.zeros(batch_size, dtype=torch.long)
        return inputs_dict
