"""One torch thread per test: the tensors here are tiny, so a second thread buys little, and on
a shared 2-core machine (CI, or a busy VM) OpenMP threads waiting for a taken core stall a test
for seconds. A test that trains with ``[train] threads`` sets its own count; this resets it."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    torch.set_num_threads(1)
    yield
