"""Fixtures of the metric tests."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_cpu_thread():
    """Run the metric networks on one thread: the test machines' cores are shared, and small convolutions
    on several busy threads run many times slower than on one."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
