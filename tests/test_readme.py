"""README.md as a user meets it: its Python code runs exactly as written, its commands are the ones CI and the
Makefile run, its links resolve, and it stays short and free of internal references.

The API tour is run as one script made of every ```python block of the README, in order, in a subprocess. The tour
reads the shipped checkpoints as ``checkpoints/...`` (a user runs it from the root of a clone) and writes its outputs
(``clip.mp4``, ``trajectories.png``, ``my-trajtok/``) to the working directory. So the script runs in ``tmp_path``
with a ``checkpoints`` symlink to the repository's folder: the relative paths resolve as in a clone, nothing is
copied, and every output lands in the temporary folder and never in the repository.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from trajtok_hf.hub import CITATION

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TEXT = README.read_text(encoding="utf-8")
MAX_LINES = 200
# The user-facing pages that README.md links to and that must follow the same rules.
PAGES = [
    README,
    *(ROOT / "docs" / f"{name}.md" for name in ("results", "training", "official_checkpoints", "long_videos", "app")),
]
PAGES.append(ROOT / "benchmarks" / "README.md")
# Internal references that have no place in user documentation: section numbers of a method write-up, and work
# history (numbered work rounds, issue numbers, commit hashes, sessions).
FORBIDDEN = [
    r"§",
    r"method spec",
    r"\bwork rounds?\b",
    r"\bround \d+",
    r"\bissues? #?\d+",
    r"\bcommits? [0-9a-f]{7,40}\b",
    r"\bsessions?\b",
]
TOUR_OUTPUTS = ["clip.mp4", "trajectories.png", "my-trajtok/config.json", "my-trajtok/model.safetensors"]


def _code_blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", TEXT, flags=re.M | re.S)


def _command_lines() -> list[str]:
    return [line.strip() for block in _code_blocks("bash") for line in block.splitlines() if line.strip()]


def _make_recipe(target: str) -> str:
    """The one command of a Makefile target, with ``$(PY)`` as the README writes it (``python``)."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = re.search(rf"^{target}:.*\n\t(.+)$", makefile, flags=re.M).group(1)
    return recipe.replace("$(PY)", "python").strip()


def test_api_tour_runs_exactly_as_written(tmp_path):
    script = "\n\n".join(_code_blocks("python"))
    assert "checkpoints/trajtok-small-shapes" in script and "pipeline(" in script
    try:
        (tmp_path / "checkpoints").symlink_to(ROOT / "checkpoints", target_is_directory=True)
    except OSError as err:  # e.g. Windows without the symlink privilege
        pytest.skip(f"cannot link the checkpoints into the working directory: {err}")
    (tmp_path / "readme_tour.py").write_text(script, encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "readme_tour.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"the README's Python code failed:\n{proc.stderr[-4000:]}"
    for name in TOUR_OUTPUTS:
        assert (tmp_path / name).is_file(), f"the tour did not write {name}"
    assert "a small green triangle falls" in proc.stdout  # the label the README shows the pipeline ranking first


def test_the_two_commands_are_the_ones_ci_and_make_run():
    commands = _command_lines()
    ci_lines = {line.strip() for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()}
    demo, tests = _make_recipe("demo"), _make_recipe("test")
    assert demo == "python examples/retrieval.py" and demo in commands
    assert tests == "python -m pytest tests -q -p no:cacheprovider" and tests in commands
    assert tests in ci_lines


def test_install_instructions_match_ci():
    pin = re.search(r"torch==\S+ torchvision==\S+", (ROOT / ".ci" / "run").read_text(encoding="utf-8")).group(0)
    commands = _command_lines()
    assert f"pip install {pin}" in commands and "pip install ." in commands
    assert 'pip install -e ".[dev]"' in TEXT
    assert f"pip install {pin} --index-url https://download.pytorch.org/whl/cpu" in " ".join(TEXT.split())


def test_citation_is_the_papers_bibtex_and_the_licence_is_named():
    assert _code_blocks("bibtex") == [CITATION + "\n"]
    assert "Apache-2.0" in TEXT and "(LICENSE)" in TEXT


def test_readme_is_short():
    assert len(TEXT.splitlines()) <= MAX_LINES


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_page_has_no_internal_references(page):
    text = page.read_text(encoding="utf-8")
    for pattern in FORBIDDEN:
        match = re.search(pattern, text, flags=re.I)
        assert match is None, (
            f"{page.name}: {match.group(0)!r} in {text[max(0, match.start() - 60) : match.end() + 60]!r}"
        )


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_page_links_resolve(page):
    targets = re.findall(r"\]\(([^)\s]+)\)", page.read_text(encoding="utf-8"))
    local = [t.split("#")[0] for t in targets if not re.match(r"[a-z]+:", t) and not t.startswith("#")]
    assert local or page != README
    for target in local:
        assert (page.parent / target).exists(), f"{page.name} links to a missing {target}"
