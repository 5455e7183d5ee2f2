import pytest
import torch
from reason_tiny import tiny_llama


@pytest.fixture(scope="module")
def model():
    return tiny_llama()


@pytest.fixture
def prompts():
    g = torch.Generator().manual_seed(3)
    return [torch.randint(2, 40, (n,), generator=g).tolist() for n in (5, 9, 7)]
