import pytest
import torch

from hf_vq.quantization.search import default_chunk_size, nearest_code


def brute_force(z, c):
    return torch.cdist(z.double(), c.double()).argmin(1)


@pytest.mark.parametrize("chunk_size", [1, 7, 64, None])
def test_chunked_search_equals_brute_force(chunk_size):
    g = torch.Generator().manual_seed(0)
    z, c = torch.randn(300, 16, generator=g), torch.randn(50, 16, generator=g)
    assert torch.equal(nearest_code(z, c, chunk_size=chunk_size), brute_force(z, c))


def test_chunk_size_bounds_block_memory():
    # one (chunk, K) block holds ~2^24 values whatever K is: O(chunk x K), not O(N x K)
    assert default_chunk_size(1024) * 1024 == 2**24
    assert default_chunk_size(65536) * 65536 == 2**24
    assert default_chunk_size(2**30) == 1


def test_large_codebook_search_matches_brute_force_on_a_slice():
    g = torch.Generator().manual_seed(1)
    z, c = torch.randn(64, 8, generator=g), torch.randn(65536, 8, generator=g)
    assert torch.equal(nearest_code(z, c, chunk_size=16), brute_force(z, c))


def test_stochastic_sampling_follows_eq12_softmax():
    # p(k | z) ∝ exp(-½‖z - c_k‖² / τ): compare empirical frequencies with the exact softmax.
    torch.manual_seed(0)
    c = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    z = torch.zeros(20000, 2)
    tau = 0.5
    idx = nearest_code(z, c, temperature=tau, chunk_size=4096, generator=torch.Generator().manual_seed(3))
    freq = torch.bincount(idx, minlength=3).float() / idx.numel()
    expected = torch.softmax(-0.5 * (c**2).sum(1) / tau, 0)
    assert torch.allclose(freq, expected, atol=0.015), (freq, expected)


def test_stochastic_low_temperature_is_argmin():
    g = torch.Generator().manual_seed(2)
    z, c = torch.randn(200, 4, generator=g), torch.randn(10, 4, generator=g)
    assert torch.equal(nearest_code(z, c, temperature=1e-6), brute_force(z, c))
