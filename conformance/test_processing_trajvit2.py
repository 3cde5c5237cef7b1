"""transformers' ProcessorTesterMixin on TrajViT2Processor (TrajTokVideoProcessor + a caption tokenizer)."""

import unittest

from harness import tiny_video_processor
from tests.test_processing_common import ProcessorTesterMixin

from trajtok_hf import TrajViT2Processor
from trajtok_hf.training import build_caption_tokenizer


class TrajViT2ProcessorTest(ProcessorTesterMixin, unittest.TestCase):
    processor_class = TrajViT2Processor

    @classmethod
    def _setup_video_processor(cls):
        return tiny_video_processor()

    @classmethod
    def _setup_tokenizer(cls):
        # A word-level BERT tokenizer over the words the mixin's prompts use ("lower newer", ...), no download.
        return build_caption_tokenizer(["lower newer upper older longer string"], model_max_length=512)
