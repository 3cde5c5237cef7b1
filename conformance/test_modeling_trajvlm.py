"""transformers' ModelTesterMixin and ConfigTester on TrajVLMModel and TrajVLMForConditionalGeneration (the video LLM
with trajectory tokens, paper Sec. 5).

``GenerationTesterMixin`` is the harness's empty stand-in (its module is not in transformers' source distribution);
TrajVLM's generation paths are tested by the repository's own tests against greedy decoding.
"""

import unittest

from harness import TinyModelTestBase, TinyModelTester, testers, video_inputs
from tests.generation.test_utils import GenerationTesterMixin
from tests.test_modeling_common import ModelTesterMixin

from trajtok_hf import TrajVLMConfig, TrajVLMForConditionalGeneration, TrajVLMModel

PROMPT_LENGTH = 6
NUM_CLIPS = 2


def _inputs(config, batch_size):
    # One <video> placeholder per prompt; 8 frames of 32×32 = two clips of the tiny segmenter.
    return {**testers.trajvlm_text_batch(batch_size, PROMPT_LENGTH), **video_inputs(batch_size, 4 * NUM_CLIPS, 32)}


class TrajVLMModelTest(TinyModelTestBase, ModelTesterMixin, unittest.TestCase):
    all_model_classes = (TrajVLMModel,)
    config_class = TrajVLMConfig
    config_tester_kwargs = {"video_token_id": testers.TRAJVLM_VIDEO_TOKEN_ID}
    test_resize_embeddings = True
    _is_composite = True

    def get_tester(self):
        # One trajectory slot per clip: every video gets the same number of tokens, so batches stack. The language
        # model's sequence (its hidden states and attentions) is the prompt with <video> expanded to one token per
        # clip and trajectory: 6 − 1 + 2 = 7 positions.
        return TinyModelTester(
            self,
            get_config=lambda: testers.tiny_trajvlm_config(tokenizer_overrides={"num_trajectories": 1}),
            get_inputs=_inputs,
            seq_length=PROMPT_LENGTH - 1 + NUM_CLIPS,
        )


class TrajVLMForConditionalGenerationTest(GenerationTesterMixin, TrajVLMModelTest):
    all_model_classes = (TrajVLMForConditionalGeneration,)

    def _prepare_for_class(self, inputs_dict, model_class, return_labels=False):
        # The mixin adds labels only for classes in transformers' own causal-LM mappings.
        inputs_dict = super()._prepare_for_class(inputs_dict, model_class, return_labels)
        if return_labels:
            inputs_dict["labels"] = inputs_dict["input_ids"].clone()
        return inputs_dict
