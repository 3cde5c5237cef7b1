"""Packaging: the licence matches the metadata, and the model card templates are package data that
``trajtok_hf.hub`` reads with importlib.resources (``.ci/wheel`` checks the same from an installed wheel)."""

from __future__ import annotations

import fnmatch
from importlib import resources
from pathlib import Path

import pytest

from trajtok_hf.hub import MODEL_SPECS, TEMPLATE_FOLDER, TEMPLATE_PACKAGE, read_card_template

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
TEMPLATES = resources.files(TEMPLATE_PACKAGE).joinpath(TEMPLATE_FOLDER)
CARDS = sorted({spec.card for spec in MODEL_SPECS.values()})


def test_license_file_is_apache_2_and_matches_the_metadata():
    project = PYPROJECT["project"]
    assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    for line in (
        "Apache License",
        "Version 2.0, January 2004",
        "TERMS AND CONDITIONS FOR USE, REPRODUCTION",
        "END OF TERMS AND CONDITIONS",
        "APPENDIX: How to apply the Apache License to your work.",
    ):
        assert line in text, line


@pytest.mark.parametrize("card", CARDS)
def test_every_card_template_is_package_data(card):
    """Each ModelSpec's template is inside the package and matched by pyproject's package-data globs."""
    assert TEMPLATES.joinpath(f"{card}.md").is_file()
    globs = PYPROJECT["tool"]["setuptools"]["package-data"][TEMPLATE_PACKAGE]
    assert any(fnmatch.fnmatch(f"{TEMPLATE_FOLDER}/{card}.md", glob) for glob in globs), globs
    assert read_card_template(card).startswith("---\n")


def test_no_stray_templates():
    """Every shipped template belongs to a ModelSpec (a renamed card leaves no orphan behind)."""
    shipped = sorted(Path(entry.name).stem for entry in TEMPLATES.iterdir() if entry.name.endswith(".md"))
    assert shipped == CARDS


def test_template_dir_replaces_the_package_templates(tmp_path):
    (tmp_path / "trajvit2.md").write_text("---\n{{ card_data }}\n---\nown template\n", encoding="utf-8")
    assert read_card_template("trajvit2", tmp_path).endswith("own template\n")


def test_missing_template_is_a_named_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"trajvit2\.md not found in template_dir="):
        read_card_template("trajvit2", tmp_path)
