"""Checks of the harness itself: the expectations table agrees with docs/conformance.md and names collected tests,
and the stand-ins match the installed transformers."""

from fnmatch import fnmatchcase
from pathlib import Path

import pytest
from expectations import EXPECTATIONS, expectation_key
from harness import REPO

DOCS = REPO / "docs" / "conformance.md"


def _docs_table() -> dict:
    """The rows of docs/conformance.md's expectations table: | `test id` | skip/xfail | reason |."""
    rows = {}
    for line in DOCS.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`") and cells[1] in ("skip", "xfail"):
            rows[cells[0].strip("`")] = (cells[1], cells[2])
    return rows


def test_docs_table_matches_expectations():
    assert _docs_table() == EXPECTATIONS


@pytest.mark.parametrize("key", sorted(EXPECTATIONS))
def test_expectation_entry_is_well_formed(key):
    kind, reason = EXPECTATIONS[key]
    assert kind in ("skip", "xfail")
    assert reason and "\n" not in reason and "|" not in reason
    assert (Path(__file__).parent / key.split("::")[0]).is_file()


def test_expectations_name_collected_tests(request):
    # Only files collected in this session can be checked (a run may select one file).
    collected = {expectation_key(item.nodeid) for item in request.session.items}
    files = {key.split("::")[0] for key in collected}
    stale = [
        pattern
        for pattern in EXPECTATIONS
        if pattern.split("::")[0] in files and not any(fnmatchcase(key, pattern) for key in collected)
    ]
    assert not stale, f"expectations that match no collected test: {stale}"


def test_config_common_kwargs_stand_in_is_complete():
    # As upstream's test of the same dictionary: one non-default value for every public PreTrainedConfig attribute.
    from tests.utils.test_configuration_utils import config_common_kwargs
    from transformers.configuration_utils import PreTrainedConfig

    base = PreTrainedConfig()
    public = {key for key in base.__dict__ if not key.startswith("_")} - {"is_encoder_decoder", "transformers_version"}
    assert public | {"output_attentions"} == set(config_common_kwargs)  # output_attentions is a property
    assert not [key for key, value in config_common_kwargs.items() if value == getattr(base, key)]


@pytest.mark.parametrize(
    "url, frames",
    [
        ("https://huggingface.co/datasets/hf-internal-testing/test-videos/resolve/main/sample_demo_1_320x240.mp4", 16),
        ("https://huggingface.co/datasets/hf-internal-testing/fixtures_image_utils/resolve/main/coco_sample.png", 1),
    ],
)
def test_local_media_stand_ins_decode(url, frames):
    import av
    from fetch_hub_objects_for_ci import url_to_local_path

    path = url_to_local_path(url)
    assert Path(path).is_file()
    with av.open(path) as container:
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert len(decoded) == frames and decoded[0].shape == (240, 320, 3)


def test_audio_urls_are_returned_unchanged():
    from fetch_hub_objects_for_ci import url_to_local_path

    url = "https://huggingface.co/datasets/x/resolve/main/clip.wav"
    assert url_to_local_path(url) == url
