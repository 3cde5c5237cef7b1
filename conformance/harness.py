"""Shared pieces of the conformance test modules: the repository's tiny configurations and a generic model tester.

The repository's ``tests/testers.py`` is loaded from its file under the name ``trajtok_testers``: inside this harness
the package name ``tests`` belongs to transformers' test tree (see conftest.py).
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _load_testers():
    if "trajtok_testers" not in sys.modules:
        spec = importlib.util.spec_from_file_location("trajtok_testers", REPO / "tests" / "testers.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["trajtok_testers"] = module
        spec.loader.exec_module(module)
    return sys.modules["trajtok_testers"]


testers = _load_testers()


class TinyModelTester:
    """The ``model_tester`` that ``ModelTesterMixin`` reads, for one tiny configuration.

    get_config(): a fresh config (the mixin mutates it); get_inputs(config, batch_size): the forward inputs, batch
    first. hidden_size, num_hidden_layers, num_attention_heads and seq_length are those of the encoder whose
    ``hidden_states`` / ``attentions`` the mixin inspects; ``extra`` adds attributes a mixin test reads for one model
    family (e.g. ``num_masks`` for VideoMAE's masked pre-training input).
    """

    def __init__(
        self,
        parent,
        get_config: Callable,
        get_inputs: Callable,
        batch_size: int = 2,
        hidden_size: int = 32,
        num_hidden_layers: int = 2,
        num_attention_heads: int = 4,
        seq_length: int = 8,
        is_training: bool = True,
        **extra,
    ):
        self.parent = parent
        self.get_config = get_config
        self.get_inputs = get_inputs
        self.batch_size = batch_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.seq_length = seq_length
        self.is_training = is_training
        self.__dict__.update(extra)

    def prepare_config_and_inputs_for_common(self):
        config = self.get_config()
        return config, self.get_inputs(config, self.batch_size)

    def prepare_config_and_inputs(self):
        return self.prepare_config_and_inputs_for_common()


def video_inputs(batch_size: int, num_frames: int, size: int, seed: int = 0) -> dict:
    return {"pixel_values_videos": testers.video_batch(batch_size, num_frames, size=size, seed=seed)}


class TinyModelTestBase:
    """setUp and test_config shared by the model test classes (mixed in before ``ModelTesterMixin``).

    A subclass sets ``all_model_classes``, ``config_class``, ``config_tester_kwargs`` (the ConfigTester's keyword
    arguments) and implements ``get_tester()``.
    """

    config_class = None
    config_tester_kwargs: dict = {}
    has_text_modality = False

    def get_tester(self) -> TinyModelTester:
        raise NotImplementedError

    def setUp(self):
        from tests.test_configuration_common import ConfigTester

        self.model_tester = self.get_tester()
        self.config_tester = ConfigTester(
            self, config_class=self.config_class, has_text_modality=self.has_text_modality, **self.config_tester_kwargs
        )

    def test_config(self):
        self.config_tester.run_common_tests()


class VisionEmbeddingsTestMixin:
    """``test_model_get_set_embeddings`` as transformers' vision model tests override it (e.g. VideoMAE's, CLIP
    vision's): the input embedding is a patch embedding module, not an ``nn.Embedding``, and there is no output
    embedding. Mixed in before ``ModelTesterMixin``."""

    def test_model_get_set_embeddings(self):
        from torch import nn

        config, _ = self.model_tester.prepare_config_and_inputs_for_common()
        for model_class in self.all_model_classes:
            model = model_class(config)
            self.assertIsInstance(model.get_input_embeddings(), nn.Module)
            output_embeddings = model.get_output_embeddings()
            self.assertTrue(output_embeddings is None or isinstance(output_embeddings, nn.Linear))


def tiny_video_processor(**overrides):
    """TrajTokVideoProcessor sized for the tiny models: 4 frames of 32×32 (same preprocessing as the release)."""
    from trajtok_hf import TrajTokVideoProcessor

    return TrajTokVideoProcessor(**{"num_frames": 4, "size": {"height": 32, "width": 32}, **overrides})
