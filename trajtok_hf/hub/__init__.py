"""Publishing trajtok_hf models on the Hugging Face Hub: folder validation, model cards, push.

A folder written by ``save_pretrained`` (``examples/train_*.py``'s ``final/``, a converter's output, ...) goes up in
three steps, all before or without touching the folder itself:

1. :func:`validate_folder` (``validation``) — the folder must be something a Hub user can load. It reads
   ``config.json``, picks the Auto class registered for its ``model_type`` (:data:`MODEL_SPECS`, ``specs``), checks
   the weights are safetensors (``files``), loads the model (no missing / unexpected weights), loads the processor
   if the folder has one, and runs a forward pass in eval mode under ``no_grad`` on a clip of
   :func:`trajtok_hf.data.synthetic.generate_clip` at the model's frame size (``inputs``; TrajViT2: with a caption
   through the processor; TrajVLM: with a ``<video>`` prompt). The remote code is the folder's own ``*.py`` files
   when it has every module its ``auto_map`` entries name; otherwise (checkpoint folders hold no code) the upload is
   staged in a temporary folder where the installed package writes it the way ``save_pretrained`` does
   (``transformers.dynamic_module_utils.custom_object_save``; ``staging``). Either way it must define every
   ``auto_map`` class and import only its siblings, never trajtok_hf (``remote_code``). With
   ``check_remote_code=True`` the same inputs also go through that remote code (``trust_remote_code=True``) in a
   Python where trajtok_hf cannot be imported — what a Hub user without the package runs — and the outputs must
   match the installed package's. Any failure raises :class:`FolderValidationError`; nothing is uploaded.
2. :func:`build_model_card` (``cards``) — a ``huggingface_hub.ModelCard`` from the per-model template (package
   data: ``trajtok_hf/hub/templates/<card>.md``) and a ``ModelCardData`` (``library_name: transformers``,
   ``pipeline_tag``, ``tags``, ``license``, ``datasets`` and ``base_model`` when given, and ``eval_results`` as
   ``EvalResult`` objects). The numbers come from the files the training/eval scripts write (``eval_results``:
   :func:`find_eval_metrics`: ``metrics.jsonl``'s last ``eval/*`` record, ``finetune_trajvlm_lora.py``'s
   ``eval.json``) or from an ``--eval_results`` JSON — never typed into a card.
   ``ModelCard.validate()`` posts the card to ``{HF_ENDPOINT}/api/validate-yaml`` (network), so
   :func:`validate_card_metadata` checks the metadata locally instead (YAML parses, ``ModelCardData`` and the
   ``model-index`` round-trip to the same ``EvalResult`` list, required keys present). ``create_commit`` itself
   sends the README to the Hub's validator before any file is uploaded.
3. :func:`push_folder` (``push``) — ``HfApi.create_repo(exist_ok=True)`` (+ ``create_branch`` for a ``revision``),
   then ONE ``create_commit`` with the selected files (:func:`select_files`: safetensors weights, configs, processor /
   tokenizer files, the remote-code ``*.py``, read from the staged folder when there is one) and the card as
   ``README.md`` from memory. The local folder is only read; any failure raises :class:`PushError` naming the step
   (repo creation, LFS upload, commit, ...) that failed.

``examples/push_to_hub.py`` is the command line around these functions.
"""

from .cards import CITATION, build_model_card, read_card_template, validate_card_metadata
from .cards import TEMPLATE_FOLDER as TEMPLATE_FOLDER
from .cards import TEMPLATE_PACKAGE as TEMPLATE_PACKAGE
from .errors import FolderValidationError, PushError
from .eval_results import SYNTHETIC_DATASET as SYNTHETIC_DATASET
from .eval_results import EvalMetrics, eval_results_from_metrics, find_eval_metrics, load_eval_results_json
from .files import PUSH_PATTERNS as PUSH_PATTERNS
from .files import select_files
from .push import PushResult, push_folder
from .specs import MODEL_SPECS, ModelSpec
from .validation import FolderReport, validate_folder

__all__ = [
    "MODEL_SPECS",
    "CITATION",
    "EvalMetrics",
    "FolderReport",
    "FolderValidationError",
    "ModelSpec",
    "PushError",
    "PushResult",
    "build_model_card",
    "eval_results_from_metrics",
    "find_eval_metrics",
    "load_eval_results_json",
    "push_folder",
    "read_card_template",
    "select_files",
    "validate_card_metadata",
    "validate_folder",
]
