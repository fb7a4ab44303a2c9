"""The native CPU kernels against float64 brute force and against the pure-torch path.

Indices must equal a float64 brute force (except at exact ties, where both take the lowest index);
gradients must be bit-identical to the torch path for any thread count; sse must agree to float64
rounding. The build is cached, so only the first test of a fresh machine compiles (a few seconds).
"""

import warnings
from pathlib import Path

import pytest
import torch

from hf_vq.quantization.kernels import cpu_extension
from hf_vq.quantization.kernels.cpu_extension import native_backward, native_forward, native_library, native_supports
from hf_vq.quantization.kernels.fused_quantize import quantize_backward, quantize_forward
from hf_vq.quantization.search import argmax_form, nearest_code

needs_compiler = pytest.mark.skipif(cpu_extension._compiler() is None, reason="no C++ compiler on this machine")
DTYPES = [torch.float32, torch.float64]


def brute_force(z, c):
    return torch.cdist(z.double(), c.double()).argmin(1)


@pytest.fixture
def threads():
    """Run a test at 1 and 2 intra-op threads, restoring the setting afterwards."""
    before = torch.get_num_threads()
    yield lambda n: torch.set_num_threads(n)
    torch.set_num_threads(before)


@pytest.fixture
def torch_path(monkeypatch):
    """Switch to the pure-torch path inside a test: call it, compute, and call it with False to come back."""
    def use(on: bool = True):
        if on:
            monkeypatch.setenv(cpu_extension.DISABLE_ENV, "1")
        else:
            monkeypatch.delenv(cpu_extension.DISABLE_ENV, raising=False)
    monkeypatch.delenv(cpu_extension.DISABLE_ENV, raising=False)
    return use


@needs_compiler
def test_the_library_builds_once_and_is_reused():
    lib = native_library()
    assert lib is not None, cpu_extension._state.get("error")
    assert lib.hf_vq_abi_version() == cpu_extension.ABI_VERSION
    flags = cpu_extension.OPTIONAL_FLAGS[0]
    path = cpu_extension._build(cpu_extension._compiler(), cpu_extension.cache_dir(), flags)
    assert path.name == Path(lib._name).name  # this machine takes the fastest build (-march=native -fopenmp)
    before = path.stat().st_mtime_ns
    assert cpu_extension._build(cpu_extension._compiler(), cpu_extension.cache_dir(), flags) == path  # cache hit
    assert path.stat().st_mtime_ns == before


# shapes around the kernel's tiles: rows per micro-tile (6 or 12) and per task (96), codes per panel (16
# fp32 / 8 fp64 on AVX2), one code, one feature, D not a multiple of anything
SHAPES = [(1, 1, 1), (5, 3, 2), (97, 17, 7), (300, 50, 16), (193, 129, 64), (64, 1000, 3)]


@needs_compiler
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,k,d", SHAPES)
@pytest.mark.parametrize("n_threads", [1, 2])
def test_fused_search_equals_float64_brute_force(n, k, d, dtype, n_threads, threads):
    threads(n_threads)
    g = torch.Generator().manual_seed(n * 7 + k)
    z, c = torch.randn(n, d, generator=g, dtype=dtype), torch.randn(k, d, generator=g, dtype=dtype)
    _, centred, bias = argmax_form(c, dtype)
    indices, z_q, sse = native_forward(z, c, None, centred, bias)
    truth = brute_force(z, c)
    assert torch.equal(indices, truth)
    assert torch.equal(z_q, c[truth])
    expected = (z.double() - c[truth].double()).pow(2).sum()
    assert torch.allclose(sse, expected, rtol=1e-12 if dtype == torch.float64 else 1e-6)
    assert torch.equal(nearest_code(z, c), truth)


@needs_compiler
def test_search_is_exact_on_large_offsets_and_takes_the_first_of_tied_codes():
    g = torch.Generator().manual_seed(3)
    c = torch.randn(40, 8, generator=g) + 1000.0  # centring keeps the gaps between codes
    c[25] = c[3]  # an exact tie: both paths must take code 3, as torch.argmin does
    z = c[torch.randint(40, (500,), generator=g)] + 0.5 * torch.randn(500, 8, generator=g)
    z[:10] = c[3]
    truth = brute_force(z, c)
    assert not (truth == 25).any()
    assert torch.equal(nearest_code(z, c), truth)


@needs_compiler
def test_given_indices_are_gathered_and_bad_ones_raise():
    z, c = torch.randn(10, 4), torch.randn(6, 4)
    idx = torch.tensor([5, 0, 1, 2, 3, 4, 5, 5, 0, 1])
    out_idx, z_q, sse = native_forward(z, c, idx)
    assert torch.equal(out_idx, idx)
    assert torch.equal(z_q, c[idx])
    assert torch.allclose(sse, (z.double() - c[idx].double()).pow(2).sum())
    with pytest.raises(IndexError, match="indices must lie in"):
        native_forward(z, c, torch.full((10,), 6))
    with pytest.raises(IndexError, match="indices must lie in"):
        native_backward(z, c, torch.full((10,), -1), None, 1.0, 1.0, 0.0)


def _gradient_cases():
    # (grad_zq layout, a, b, nu): every branch of the kernel's inner loops
    yield "contiguous", 0.3, 0.7, 0.1
    yield "contiguous", 0.3, 0.0, 0.1
    yield "contiguous", 0.0, 0.7, 0.0
    yield "none", 0.3, 0.7, 0.1
    yield "expanded", 0.3, 0.7, 2.0  # the gradient of quantized.sum(): stride (0, 0), never copied
    yield "transposed", 0.25, 0.5, 0.5
    yield "none", 0.0, 0.0, 0.0


def _upstream(layout, n, d, dtype, g):
    if layout == "none":
        return None
    if layout == "expanded":
        return torch.ones((), dtype=dtype).expand(n, d)
    if layout == "transposed":
        return torch.randn(d, n, generator=g, dtype=dtype).t()
    return torch.randn(n, d, generator=g, dtype=dtype)


@needs_compiler
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout,a,b,nu", list(_gradient_cases()))
@pytest.mark.parametrize("n_threads", [1, 2])
def test_backward_is_bit_identical_to_the_torch_path(layout, a, b, nu, dtype, n_threads, threads, torch_path):
    threads(n_threads)
    g = torch.Generator().manual_seed(11)
    n, k, d = 700, 24, 40  # many rows per code, so the summation order matters
    z, c = torch.randn(n, d, generator=g, dtype=dtype), torch.randn(k, d, generator=g, dtype=dtype)
    idx = torch.randint(k, (n,), generator=g)
    upstream = _upstream(layout, n, d, dtype, g)
    native = native_backward(z, c, idx, upstream, a, b, nu)
    torch_path()
    assert not native_supports(z, c)
    reference = quantize_backward(z, c, idx, upstream, a, b, nu)
    assert torch.equal(native[0], reference[0]) and torch.equal(native[1], reference[1])
    # and the math itself, in float64
    z_q = c[idx].double()
    up = upstream.double() if upstream is not None else 0.0
    assert torch.allclose(native[0].double(), up + a * (z.double() - z_q), atol=1e-5)
    rows = nu * up + b * (z_q - z.double())
    expected = torch.zeros(k, d, dtype=torch.float64).index_add_(0, idx, torch.as_tensor(rows).expand(n, d))
    assert torch.allclose(native[1].double(), expected, atol=1e-4)


@needs_compiler
@pytest.mark.parametrize("need_z,need_codebook", [(True, False), (False, True)])
def test_backward_returns_only_what_is_needed(need_z, need_codebook, torch_path):
    z, c, idx = torch.randn(20, 3), torch.randn(4, 3), torch.randint(4, (20,))
    native = native_backward(z, c, idx, None, 1.0, 1.0, 0.0, need_z=need_z, need_codebook=need_codebook)
    torch_path()
    reference = quantize_backward(z, c, idx, None, 1.0, 1.0, 0.0, need_z=need_z, need_codebook=need_codebook)
    for got, want, needed in zip(native, reference, (need_z, need_codebook)):
        assert (got is None) == (not needed) == (want is None)
        if needed:
            assert torch.equal(got, want)


@needs_compiler
@pytest.mark.parametrize("dtype", DTYPES)
def test_quantize_forward_agrees_between_paths(dtype, torch_path):
    g = torch.Generator().manual_seed(5)
    z, c = torch.randn(400, 12, generator=g, dtype=dtype), torch.randn(33, 12, generator=g, dtype=dtype)
    native = quantize_forward(z, c)
    torch_path()
    reference = quantize_forward(z, c)
    assert torch.equal(native[0], reference[0]) and torch.equal(native[0], brute_force(z, c))
    assert torch.equal(native[1], reference[1])
    assert torch.allclose(native[2], reference[2], rtol=1e-14)


def test_environment_variable_forces_the_torch_path(torch_path):
    torch_path()
    assert native_library() is None
    z, c = torch.randn(50, 4), torch.randn(9, 4)
    assert torch.equal(nearest_code(z, c), brute_force(z, c))


def test_unbuildable_kernels_warn_once_and_the_torch_path_gives_the_same_results(monkeypatch, tmp_path):
    from hf_vq import VectorQuantizer

    torch.manual_seed(0)
    vq = VectorQuantizer(4, 16)
    z = torch.randn(64, 4)
    expected = brute_force(z, vq.codebook)
    monkeypatch.setattr(cpu_extension, "_state", {})  # as in a fresh process
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv(cpu_extension.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(cpu_extension.DISABLE_ENV, raising=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            out = vq(z)
            (out.quantized.sum() + out.loss).backward()
    native_warnings = [w for w in caught if "native CPU kernels are unavailable" in str(w.message)]
    assert len(native_warnings) == 1, [str(w.message) for w in caught]
    assert "no C++ compiler found" in str(native_warnings[0].message)
    assert "HF_VQ_DISABLE_NATIVE=1" in str(native_warnings[0].message)
    assert torch.equal(out.indices, expected)


@needs_compiler
def test_a_build_that_fails_falls_back_to_the_next_flags_without_a_warning(monkeypatch, tmp_path):
    # e.g. a compiler without OpenMP: the next, plainer build is taken
    monkeypatch.setattr(cpu_extension, "_state", {})
    monkeypatch.setattr(cpu_extension, "OPTIONAL_FLAGS", [["-fno-such-flag-hf-vq"], []])
    quick_build = [f for f in cpu_extension.BASE_FLAGS if f != "-O3"]
    monkeypatch.setattr(cpu_extension, "BASE_FLAGS", quick_build)
    monkeypatch.setenv(cpu_extension.CACHE_ENV, str(tmp_path))
    monkeypatch.delenv(cpu_extension.DISABLE_ENV, raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lib = native_library()
    assert lib is not None and Path(lib._name).parent == tmp_path
    z, c = torch.randn(100, 5), torch.randn(7, 5)
    assert torch.equal(nearest_code(z, c), brute_force(z, c))
