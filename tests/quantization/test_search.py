import pytest
import torch

from hf_vq.quantization.kernels.cpu_extension import DISABLE_ENV, native_library
from hf_vq.quantization.search import DEFAULT_BLOCK_ELEMENTS, default_chunk_size, nearest_code, squared_distances


@pytest.fixture(autouse=True, params=["native", "torch"])
def search_path(request, monkeypatch):
    """Every test here runs on the native kernel and on the chunked torch path."""
    monkeypatch.setenv(DISABLE_ENV, "1" if request.param == "torch" else "0")
    assert (native_library() is not None) == (request.param == "native")
    return request.param


def brute_force(z, c):
    return torch.cdist(z.double(), c.double()).argmin(1)


@pytest.mark.parametrize("chunk_size", [1, 7, 64, None])
def test_chunked_search_equals_brute_force(chunk_size):
    g = torch.Generator().manual_seed(0)
    z, c = torch.randn(300, 16, generator=g), torch.randn(50, 16, generator=g)
    assert torch.equal(nearest_code(z, c, chunk_size=chunk_size), brute_force(z, c))


def test_chunk_size_bounds_block_memory():
    # one (chunk, K) block holds ~2^20 values whatever K is: O(chunk x K), not O(N x K)
    assert default_chunk_size(1024) * 1024 == DEFAULT_BLOCK_ELEMENTS == 2**20
    assert default_chunk_size(65536) * 65536 == DEFAULT_BLOCK_ELEMENTS
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


def test_half_precision_search_with_rerank_is_exact_on_large_norm_inputs():
    # With an offset of 1000, ‖c‖² ≈ 1.6e7 and the raw expansion ‖c‖² − 2z·c cannot resolve gaps of ~1
    # even in fp32; centring removes the offset, and the fp32 re-scoring of the bf16 pass's best
    # candidates fixes near-ties (bf16 keeps 8 bits).
    g = torch.Generator().manual_seed(4)
    c = torch.randn(256, 16, generator=g) + 1000.0
    z = c[torch.randint(256, (2000,), generator=g)] + 0.7 * torch.randn(2000, 16, generator=g)
    truth = brute_force(z, c)
    raw = squared_distances(z, c).argmin(1)
    assert (raw != truth).float().mean() > 0.05  # the hazard is real
    assert (nearest_code(z, c, search_dtype=torch.bfloat16, rerank=1) != truth).any()  # bf16 alone has ties wrong
    assert torch.equal(nearest_code(z, c, search_dtype=torch.bfloat16), truth)
    assert torch.equal(nearest_code(z, c), truth)
