"""Model cards (trajtok_hf.hub.build_model_card): the metadata is validated locally, and online by the fake Hub."""

from __future__ import annotations

import pytest
from huggingface_hub import ModelCard

from trajtok_hf.hub import build_model_card, validate_card_metadata, validate_folder


def test_card_metadata_is_validated_locally(fake_hub, trajtok_run, monkeypatch):
    """card.validate() needs the network (it posts to {ENDPOINT}/api/validate-yaml — here the fake Hub), so
    build_model_card validates the metadata locally: YAML + ModelCardData + model-index round trip."""
    final, metrics = trajtok_run
    report = validate_folder(final)
    card = build_model_card(report, "me/seg")
    metadata = validate_card_metadata(card)
    assert metadata["model-index"][0]["name"] == "seg"
    assert len(metadata["model-index"][0]["results"][0]["metrics"]) == len(metrics)
    card.validate()  # online check, answered by the fake Hub
    assert ("POST", "/api/validate-yaml") in fake_hub.requests
    broken = ModelCard(str(card).replace("library_name: transformers\n", ""))
    with pytest.raises(ValueError, match="library_name"):
        validate_card_metadata(broken)
