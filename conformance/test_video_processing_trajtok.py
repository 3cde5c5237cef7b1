"""transformers' VideoProcessingTestMixin on TrajTokVideoProcessor (paper Sec. 3 preprocessing: uniform frame sampling,
bicubic resize, ImageNet normalisation)."""

import unittest

from tests.test_video_processing_common import VideoProcessingTestMixin, prepare_video_inputs

from trajtok_hf import TrajTokVideoProcessor


class TrajTokVideoProcessingTester:
    """Follows transformers' video processor testers (e.g. LLaVA-OneVision's): random clips of 8 frames, 30-400 px."""

    def __init__(self, parent, batch_size=5, num_frames=8, num_channels=3, min_resolution=30, max_resolution=400):
        self.parent = parent
        self.batch_size = batch_size
        self.num_frames = num_frames
        self.num_channels = num_channels
        self.min_resolution = min_resolution
        self.max_resolution = max_resolution
        self.size = {"height": 20, "width": 20}

    def prepare_video_processor_dict(self):
        # Sampling off: the mixin checks that the frame count is kept.
        return {"do_resize": True, "size": self.size, "do_normalize": True, "do_sample_frames": False}

    def expected_output_video_shape(self, videos):
        return self.num_frames, self.num_channels, self.size["height"], self.size["width"]

    def prepare_video_inputs(self, equal_resolution=False, return_tensors="pil"):
        return prepare_video_inputs(
            batch_size=self.batch_size,
            num_frames=self.num_frames,
            num_channels=self.num_channels,
            min_resolution=self.min_resolution,
            max_resolution=self.max_resolution,
            equal_resolution=equal_resolution,
            return_tensors=return_tensors,
        )


class TrajTokVideoProcessingTest(VideoProcessingTestMixin, unittest.TestCase):
    fast_video_processing_class = TrajTokVideoProcessor

    def setUp(self):
        super().setUp()
        self.video_processor_tester = TrajTokVideoProcessingTester(self)

    @property
    def video_processor_dict(self):
        return self.video_processor_tester.prepare_video_processor_dict()

    def test_video_processor_from_dict_with_kwargs(self):
        # As transformers' testers of fixed-size video processors (e.g. LLaVA-OneVision's) override it: the mixin's
        # version assumes a shortest-edge resize; TrajTok resizes to a fixed square (an int size means height = width).
        video_processor = self.fast_video_processing_class.from_dict(self.video_processor_dict)
        self.assertEqual(video_processor.size, {"height": 20, "width": 20})

        video_processor = self.fast_video_processing_class.from_dict(self.video_processor_dict, size=42)
        self.assertEqual(video_processor.size, {"height": 42, "width": 42})
