import os
import sys

import pytest
import torch

# Triton reads TRITON_INTERPRET when it is first imported (lightning imports it early): without a
# GPU, the Triton kernels are tested in its interpreter, in this process.
if "triton" not in sys.modules and not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(scope="module")
def one_thread():
    """Many small ops on 2 busy cores: one intra-op thread is ~10x faster than two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
