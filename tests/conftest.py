import os
import sys

import pytest
import torch

# `testers.py` (tiny configs shared by the model tests and the common checks) lives beside this file.
sys.path.insert(0, os.path.dirname(__file__))
# The scripts import their shared flags (examples/training_args.py) by name, as `python examples/x.py` finds them;
# a test that loads a script as a module needs that folder on the path too (last: it never shadows a package).
sys.path.append(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# Tiny models gain nothing from intra-op threads, and on a shared 2-core machine two threads per process make
# small ops 10–100× slower when other processes compete for the cores. Subprocess tests set their own.
torch.set_num_threads(1)


def pytest_addoption(parser):
    group = parser.getgroup("app", "the Gradio app (app.py)")
    group.addoption(
        "--run-browser",
        action="store_true",
        default=False,
        help="run the end-to-end test of app.py in headless Chromium (needs gradio, selenium, chromium, chromedriver)",
    )
    group.addoption(
        "--app-screenshot",
        default=None,
        metavar="PATH",
        help="with --run-browser: save a screenshot of the app's page there (e.g. docs/app.png)",
    )
    parser.getgroup("inductor", "torch.compile").addoption(
        "--run-inductor",
        action="store_true",
        default=False,
        help="also compile the TrajViT2 tower with inductor in the benchmark test (minutes on two cores; its own CI "
        "step)",
    )


@pytest.fixture(scope="module")
def single_thread():
    """One intra-op thread for a module of tests on tiny tensors, where threads cost more in synchronisation than they
    save (10-100x more on a shared, loaded CPU); the setting is restored afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
