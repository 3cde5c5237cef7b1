"""transformers' ModelTesterMixin and ConfigTester on TrajTokModel (the trajectory tokenizer, paper Sec. 3)."""

import unittest

from harness import TinyModelTestBase, TinyModelTester, testers, video_inputs
from tests.test_modeling_common import ModelTesterMixin

from trajtok_hf import TrajTokConfig, TrajTokModel


class TrajTokModelTest(TinyModelTestBase, ModelTesterMixin, unittest.TestCase):
    all_model_classes = (TrajTokModel,)
    config_class = TrajTokConfig
    config_tester_kwargs = {"hidden_size": 32, "num_attention_heads": 4}
    test_resize_embeddings = False

    def get_tester(self):
        # 4 frames of 64×64 = C = 1 chunk of the tiny segmenter, K = 8 trajectory slots, a 16×16 feature map.
        # hidden_states / attentions: the query Perceiver's (1 layer here, latents C·K, keys K + T·h·w) then the
        # refinement Perceiver's (1 layer): 2 attention maps, 2 × (1 + 1) hidden states (TrajTokOutput).
        return TinyModelTester(
            self,
            get_config=lambda: testers.tiny_trajtok_config(query_perceiver_depth=1, refinement_perceiver_depth=1),
            get_inputs=lambda config, batch: video_inputs(batch, 4, 64),
            num_hidden_layers=2,
            expected_num_hidden_layers=4,
            seq_length=8,
            key_length=8 + 4 * 16 * 16,
        )


class TrajTokWithSegmenterOptionsModelTest(TrajTokModelTest):
    """The same common tests with the options that add segmenter parameters (space-time blocks on the features and
    the gates of the clustering update of the queries), so their initialisation, saving and loading are covered."""

    def get_tester(self):
        tester = super().get_tester()
        get_config = tester.get_config

        def config_with_options():
            config = get_config()
            config.pixel_context_layers = 1
            config.query_update_iterations = 2
            return config

        tester.get_config = config_with_options
        return tester
