"""Shared fixtures (helpers live in ``helpers.py``)."""
import pytest

from helpers import write_pairs


@pytest.fixture
def one_thread():
    """Run a test with one torch thread: tiny networks are fastest so, and two threads contend on a busy 2-core
    machine (use with ``pytestmark = pytest.mark.usefixtures('one_thread')``)."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_pairs(tmp_path):
    """A folder of 4 tiny paired images: returns (gt_dir, lq_dir)."""
    return write_pairs(str(tmp_path / 'pairs'))
