"""transformers' ProcessorTesterMixin on TrajVLMProcessor (TrajTokVideoProcessor + the QA tokenizer with <video> and
a chat template)."""

import unittest

from harness import tiny_video_processor
from tests.test_processing_common import ProcessorTesterMixin

from trajtok_hf import TrajVLMProcessor
from trajtok_hf.data.video_qa import build_qa_tokenizer


class TrajVLMProcessorTest(ProcessorTesterMixin, unittest.TestCase):
    processor_class = TrajVLMProcessor

    @classmethod
    def _setup_video_processor(cls):
        return tiny_video_processor()

    @property
    def video_sampling_expectations(self):
        # The mixin's last case assumes a video processor keeps every frame unless asked to sample; TrajTok's samples
        # num_frames (here 4) by default, as its preprocessing does. The other cases are the mixin's own.
        *explicit, default = super().video_sampling_expectations
        return [*explicit, {**default, "output_length": self._setup_video_processor().num_frames}]

    @classmethod
    def _setup_tokenizer(cls):
        return build_qa_tokenizer(extra_words=["lower", "newer", "upper", "older", "longer", "string"])
