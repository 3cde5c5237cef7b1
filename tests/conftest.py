import os
import sys

import pytest
import torch

# `testers.py` (tiny configs shared by the model tests and the common checks) lives beside this file.
sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# Tiny models gain nothing from intra-op threads, and on a shared 2-core machine two threads per process make
# small ops 10–100× slower when other processes compete for the cores. Subprocess tests set their own.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
