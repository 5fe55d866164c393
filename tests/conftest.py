"""Shared test settings: offline Hub, single-threaded torch, seeded everything."""

import os

# Tests never reach the Hugging Face Hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

# The tensors in these tests are small: extra intra-op threads only add synchronisation cost, and on
# a shared 2-core machine spinning worker threads made the suite an order of magnitude slower.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed_torch():
    torch.manual_seed(0)
    yield
