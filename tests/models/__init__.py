import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def single_threaded():
    """Run a test module with one intra-op thread, then restore the setting.

    The models here are tiny and gain nothing from threading, while on a shared 2-core machine two OpenMP
    threads spin against other processes and slow a test down tenfold or more (measured).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
