"""Runs transformers' own common test mixins against trajtok_hf's classes (docs/conformance.md).

The mixins come from the source distribution of the installed transformers version, extracted by ``.ci/conformance``
into a cache folder named by ``TRANSFORMERS_TESTS_DIR`` (its ``tests/`` folder). This conftest:

1. makes that folder importable as the package ``tests`` (the mixins import each other relatively), together with
   ``standins/tests``: stand-ins for the modules the archive does not ship but the mixins import
   (``tests.generation.test_utils``, ``tests.exporters.test_export``, ``tests.utils.test_configuration_utils``);
2. puts ``standins/hub`` on ``sys.path`` for ``fetch_hub_objects_for_ci`` (a repository script upstream);
3. marks each test listed in ``expectations.EXPECTATIONS`` as skipped or strictly expected to fail, with its reason.
   In an expected failure, ``TestCase.subTest`` is a plain block: pytest reports a failing subtest on its own and
   passes the test, which would turn every expected failure inside a subtest into an unexpected pass.

Each stand-in's docstring says what it provides and why.
"""

from __future__ import annotations

import contextlib
import os
import sys
import types
import unittest
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
STANDINS = HERE / "standins"
collect_ignore = ["standins"]


def _transformers_tests_dir() -> Path:
    value = os.environ.get("TRANSFORMERS_TESTS_DIR")
    if not value:
        raise pytest.UsageError(
            "TRANSFORMERS_TESTS_DIR is not set: run .ci/conformance, which fetches the tests of the installed "
            "transformers version and sets it (see docs/conformance.md)."
        )
    path = Path(value).resolve()
    if not (path / "test_modeling_common.py").is_file():
        raise pytest.UsageError(f"TRANSFORMERS_TESTS_DIR={value} does not contain test_modeling_common.py")
    return path


def _install_tests_package(tests_dir: Path) -> None:
    # test_configuration_common calls direct_transformers_import(<its folder>), which executes <folder>/__init__.py
    # (empty upstream; the source distribution leaves it out).
    (tests_dir / "__init__.py").touch(exist_ok=True)
    package = types.ModuleType("tests")
    package.__path__ = [str(tests_dir), str(STANDINS / "tests")]
    package.__file__ = str(tests_dir / "__init__.py")
    sys.modules["tests"] = package
    sys.path.insert(0, str(STANDINS / "hub"))


_install_tests_package(_transformers_tests_dir())

# Markers the mixins use (registered by transformers' own conftest, which the source distribution leaves out).
UPSTREAM_MARKERS = (
    "accelerate_tests",
    "flash_attn_test",
    "flash_attn_3_test",
    "flash_attn_4_test",
    "torch_compile_test",
)


def pytest_configure(config):
    for name in UPSTREAM_MARKERS:
        config.addinivalue_line("markers", f"{name}: a transformers test marker")


def pytest_collection_modifyitems(config, items):
    from expectations import expectation_for

    for item in items:
        entry = expectation_for(item.nodeid)
        if entry is None:
            continue
        kind, reason = entry
        if kind == "skip":
            item.add_marker(pytest.mark.skip(reason=reason))
        else:
            item.add_marker(pytest.mark.xfail(reason=reason, strict=True))


def _plain_sub_test(self, msg=None, **params):
    return contextlib.nullcontext()


@pytest.fixture(autouse=True)
def _subtests_fail_expected_failures(request, monkeypatch):
    from expectations import expectation_for

    entry = expectation_for(request.node.nodeid)
    if entry is not None and entry[0] == "xfail":
        monkeypatch.setattr(unittest.TestCase, "subTest", _plain_sub_test)
