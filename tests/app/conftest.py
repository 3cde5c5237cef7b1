"""Fixtures of the app tests: ``app.py`` loaded as a module. The browser test's flags (``--run-browser``,
``--app-screenshot PATH``; it runs in its own CI step) are declared in ``tests/conftest.py``, so that they work
from any test path."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def app():
    """``app.py`` imported as the module ``trajtok_app`` (its models and clips are loaded once, on first use)."""
    spec = importlib.util.spec_from_file_location("trajtok_app", ROOT / "app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
