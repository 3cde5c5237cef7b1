"""The conformance expectations table: transformers common tests that do not apply to a class, or fail for a known
cause that is being fixed.

Keys are ``<file>::<TestClass>::<test name>`` (the pytest node id inside ``conformance/``); ``*`` matches any text,
for a family of parametrized tests or the same test in several classes. Values:

- ``("skip", reason)``: the test's assumption does not apply to this model; the reason says which assumption and why;
- ``("xfail", cause)``: a known failure, strictly expected (``strict=True``), so a fix shows up as an unexpected pass
  and the entry must then be removed.

docs/conformance.md carries the same table (``test_harness.py`` checks that they agree).
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from pathlib import Path

# Reasons shared by several rows.
_BASE_MODEL_NO_LOSS = (
    "a base model (registered with AutoModel) has no loss to train; the mixin skips base models by transformers' own "
    "class names only, so it runs these on ours"
)
_NO_INPUT_EMBEDDING = (
    "no input embedding: pixels enter through the TrajTok segmenter's convolutional (ConvNeXt) backbone, and "
    "transformers' ConvNeXt tests skip this too"
)
_DUAL_ENCODER = (
    "a dual encoder, like CLIPModel (whose transformers tests skip this too): each tower's hidden states and "
    "attentions are in vision_model_output / text_model_output and are checked by the TrajViT2VisionModel tests"
)

EXPECTATIONS: dict[str, tuple[str, str]] = {
    # TrajTokModel
    "test_modeling_trajtok.py::TrajTok*ModelTest::test_training*": ("skip", _BASE_MODEL_NO_LOSS),
    "test_modeling_trajtok.py::TrajTok*ModelTest::test_model_get_set_embeddings": ("skip", _NO_INPUT_EMBEDDING),
    "test_modeling_trajtok.py::TrajTok*ModelTest::test_retain_grad_hidden_states_attentions": (
        "skip",
        "the Perceivers run per chunk (chunks are tokenized independently); the returned hidden states and "
        "attentions are the per-chunk streams re-assembled into one (B, C·K, D) / (B, h, C·K, keys) tensor, a copy "
        "that the outputs do not depend on, so retain_grad on it receives no gradient",
    ),
    # TrajViT2VisionModel, TrajViT2Model
    "test_modeling_trajvit2.py::TrajViT2VisionModel*Test::test_training*": ("skip", _BASE_MODEL_NO_LOSS),
    "test_modeling_trajvit2.py::TrajViT2VisionModelTest::test_model_get_set_embeddings": ("skip", _NO_INPUT_EMBEDDING),
    "test_modeling_trajvit2.py::TrajViT2Model*Test::test_hidden_states_output": ("skip", _DUAL_ENCODER),
    "test_modeling_trajvit2.py::TrajViT2Model*Test::test_attention_outputs": ("skip", _DUAL_ENCODER),
    "test_modeling_trajvit2.py::TrajViT2Model*Test::test_retain_grad_hidden_states_attentions": (
        "skip",
        _DUAL_ENCODER,
    ),
    # TrajAdapterForVideoClassification
    "test_modeling_trajadapter.py::TrajAdapterForVideoClassificationTest::test_retain_grad_hidden_states_attentions": (
        "skip",
        "the returned hidden states and attentions are the frozen backbone's (a probe, paper Sec. 5): they carry no "
        "gradient by design",
    ),
    # TrajVLMModel, TrajVLMForConditionalGeneration
    "test_modeling_trajvlm.py::TrajVLM*Test::test_eager_matches_sdpa_inference_*": (
        "skip",
        "the test rebuilds a batch of 7 from input_ids alone plus random rows; a prompt with a <video> placeholder "
        "but no video is a named ValueError here, so the rebuilt inputs are invalid",
    ),
    "test_modeling_trajvlm.py::TrajVLMModelTest::test_training*": ("skip", _BASE_MODEL_NO_LOSS),
    "test_modeling_trajvlm.py::TrajVLMForConditionalGenerationTest::test_multimodal_outputs_are_returned": (
        "skip",
        "the test checks image_outputs only (its FIXME: video not yet supported); TrajVLM takes videos and returns "
        "video_outputs",
    ),
    # TrajTokVideoProcessor
    "test_video_processing_trajtok.py::TrajTokVideoProcessingTest::test_call_sample_frames": (
        "skip",
        "asserts a ValueError when num_frames exceeds the clip; TrajTok's sampling repeats frames of a short clip "
        "uniformly instead (uniform_frame_indices), as its preprocessing does",
    ),
    # TrajViT2Processor, TrajVLMProcessor
    "test_processing_trajvit2.py::TrajViT2ProcessorTest::test_model_input_names": (
        "skip",
        "passes images and videos in one call; TrajViT2 has one visual input (images are 1-frame videos in "
        "pixel_values_videos), so a call takes one or the other",
    ),
    "test_processing_trajvit2.py::TrajViT2ProcessorTest::test_flat_kwarg_applied_when_modality_dict_lacks_it": (
        "skip",
        "passes images and videos in one call; TrajViT2 has one visual input (images are 1-frame videos in "
        "pixel_values_videos), so a call takes one or the other",
    ),
}


def expectation_key(nodeid: str) -> str:
    """`conformance/test_x.py::Class::test` (or `test_x.py::...`) -> `test_x.py::Class::test`."""
    path, _, rest = nodeid.partition("::")
    return f"{Path(path).name}::{rest}"


def expectation_for(nodeid: str) -> tuple[str, str] | None:
    """The (kind, reason) of the first entry whose key matches the test `nodeid`, or None."""
    key = expectation_key(nodeid)
    return next((value for pattern, value in EXPECTATIONS.items() if fnmatchcase(key, pattern)), None)
