"""Harness check: transformers' own VideoMAEModel through the same harness (stand-ins, expectations, media) must pass,
as it does in transformers' CI. A failure here is a harness problem, not a trajtok_hf one."""

import unittest

from harness import TinyModelTestBase, TinyModelTester, VisionEmbeddingsTestMixin, video_inputs
from tests.test_modeling_common import ModelTesterMixin
from transformers import VideoMAEConfig, VideoMAEModel

# As transformers' VideoMAEModelTester: 2 frames of 10×10, patch 2, tubelets of 2 → 25 tokens, width 32, 2 layers.
IMAGE_SIZE, PATCH_SIZE, NUM_FRAMES, TUBELET_SIZE = 10, 2, 2, 2
SEQ_LENGTH = (NUM_FRAMES // TUBELET_SIZE) * (IMAGE_SIZE // PATCH_SIZE) ** 2
VIDEOS = "pixel_values_videos"


def _config():
    return VideoMAEConfig(
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        num_frames=NUM_FRAMES,
        tubelet_size=TUBELET_SIZE,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
        attn_implementation="eager",
    )


class VideoMAEModelTest(TinyModelTestBase, VisionEmbeddingsTestMixin, ModelTesterMixin, unittest.TestCase):
    all_model_classes = (VideoMAEModel,)
    config_class = VideoMAEConfig
    config_tester_kwargs = {"hidden_size": 32}
    test_resize_embeddings = False

    def get_tester(self):
        return TinyModelTester(
            self,
            get_config=_config,
            get_inputs=lambda config, batch: {"pixel_values": video_inputs(batch, NUM_FRAMES, IMAGE_SIZE)[VIDEOS]},
            batch_size=13,
            seq_length=SEQ_LENGTH,
            num_masks=int(0.9 * SEQ_LENGTH),  # upstream's mask ratio
        )
