"""Renamed config keys: ``trajtok_config`` for the TrajTok sub-config (deprecated name ``tokenizer_config``, which
collides with the text tokenizer's ``tokenizer_config.json``) and TrajVLM's ``chunk_size`` (deprecated name
``clip_length``; the same quantity as ``TrajTokConfig.chunk_size``).

Every renamed key goes through the same checks: the old name (keyword, ``config.json`` key, attribute) gives the new
value with a ``FutureWarning``; both names at once raise a ``ValueError`` naming both; a saved config writes only the
new name and reloads without a warning.
"""

import json
import warnings
from dataclasses import dataclass

import pytest
from testers import TINY_BERT, TINY_QWEN3, TINY_SIGLIP, TINY_VIDEOMAE, TRAJVLM_VIDEO_TOKEN_ID, tiny_trajtok_config

from trajtok_hf import TrajAdapterConfig, TrajViT2Config, TrajViT2VisionConfig, TrajVLMConfig

TRAJTOK = tiny_trajtok_config(chunk_size=4, num_trajectories=16).to_dict()
TINY_VISION = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, image_size=64)
TINY_VLM = dict(
    vision_config=TINY_SIGLIP,
    text_config=TINY_QWEN3,
    video_token_id=TRAJVLM_VIDEO_TOKEN_ID,
    segmenter_image_size=32,
    connector_num_attention_heads=4,
    subtoken_fourier_frequencies=4,
)


@dataclass(frozen=True)
class RenamedKey:
    config_class: type
    base: dict  # the other arguments of a valid config
    old: str
    new: str
    value: object
    json_path: tuple[str, ...]  # where config.json holds the key (new name last)
    writable: bool = True  # the old attribute name can be assigned (False: the new one is a read-only shortcut)


CASES = [
    RenamedKey(TrajViT2VisionConfig, TINY_VISION, "tokenizer_config", "trajtok_config", TRAJTOK, ("trajtok_config",)),
    RenamedKey(
        TrajViT2Config,
        dict(vision_config=TINY_VISION, text_config=TINY_BERT),
        "tokenizer_config",
        "trajtok_config",
        TRAJTOK,
        ("vision_config", "trajtok_config"),
        writable=False,
    ),
    RenamedKey(
        TrajVLMConfig, dict(TINY_VLM, chunk_size=4), "tokenizer_config", "trajtok_config", TRAJTOK, ("trajtok_config",)
    ),
    RenamedKey(TrajVLMConfig, dict(TINY_VLM, trajtok_config=TRAJTOK), "clip_length", "chunk_size", 4, ("chunk_size",)),
    RenamedKey(
        TrajAdapterConfig,
        dict(backbone_config=TINY_VIDEOMAE, num_attention_heads=4, subtoken_fourier_frequencies=4),
        "tokenizer_config",
        "trajtok_config",
        TRAJTOK,
        ("trajtok_config",),
    ),
]
RENAMED = pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.config_class.__name__}.{c.old}")


def _build(case, *names):
    """The config of ``case`` with its value given under each of ``names``."""
    return case.config_class(**case.base, **dict.fromkeys(names, case.value))


def _comparable(config) -> dict:
    return {k: v for k, v in config.to_dict().items() if k != "_name_or_path"}


def _deprecation_message(case) -> str:
    return rf"'{case.old}' is deprecated.*use '{case.new}'"


def _renamed_warnings(record, case) -> list:
    return [w for w in record if issubclass(w.category, FutureWarning) and repr(case.old) in str(w.message)]


def _keys(tree) -> set:
    """Every key at any depth of a JSON tree."""
    if isinstance(tree, dict):
        return set(tree).union(*(_keys(v) for v in tree.values()))
    if isinstance(tree, list):
        return set().union(*(_keys(v) for v in tree))
    return set()


def _rename_in_json(folder, path, old) -> None:
    """Rewrite ``folder/config.json`` with the key at ``path`` under its old name (a config saved before the
    rename)."""
    file = folder / "config.json"
    saved = json.loads(file.read_text())
    parent = saved
    for key in path[:-1]:
        parent = parent[key]
    parent[old] = parent.pop(path[-1])
    file.write_text(json.dumps(saved))


@RENAMED
def test_old_keyword_gives_the_new_value_with_a_future_warning(case):
    expected = _build(case, case.new)
    with pytest.warns(FutureWarning, match=_deprecation_message(case)):
        config = _build(case, case.old)
    assert _comparable(config) == _comparable(expected)


@RENAMED
def test_both_names_raise_naming_both(case):
    with pytest.raises(ValueError, match=rf"'{case.old}'.*'{case.new}'"):
        _build(case, case.old, case.new)


@RENAMED
def test_saved_config_writes_only_the_new_name_and_reloads_silently(case, tmp_path):
    config = _build(case, case.new)
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert case.old not in _keys(saved)
    node = saved
    for key in case.json_path:
        node = node[key]
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        loaded = case.config_class.from_pretrained(tmp_path)
    assert _renamed_warnings(record, case) == []
    assert _comparable(loaded) == _comparable(config)


@RENAMED
def test_config_json_with_the_old_key_loads_with_a_future_warning(case, tmp_path):
    config = _build(case, case.new)
    config.save_pretrained(tmp_path)
    _rename_in_json(tmp_path, case.json_path, case.old)
    with pytest.warns(FutureWarning, match=_deprecation_message(case)):
        loaded = case.config_class.from_pretrained(tmp_path)
    assert _comparable(loaded) == _comparable(config)
    loaded.save_pretrained(tmp_path / "resaved")
    assert case.old not in _keys(json.loads((tmp_path / "resaved" / "config.json").read_text()))


@RENAMED
def test_old_attribute_reads_the_new_one_with_a_future_warning(case):
    config = _build(case, case.new)
    with pytest.warns(FutureWarning, match=_deprecation_message(case)):
        value = getattr(config, case.old)
    assert value is getattr(config, case.new)


@pytest.mark.parametrize("case", [c for c in CASES if c.writable], ids=lambda c: f"{c.config_class.__name__}.{c.old}")
def test_old_attribute_assignment_sets_the_new_one_with_a_future_warning(case):
    config = _build(case, case.new)
    replacement = object()
    with pytest.warns(FutureWarning, match=_deprecation_message(case)):
        setattr(config, case.old, replacement)
    assert getattr(config, case.new) is replacement and case.old not in vars(config)
