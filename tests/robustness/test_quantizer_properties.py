"""Property-based checks of VectorQuantizer over options × shapes × dtypes (hypothesis)."""

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hf_vq import VectorQuantizer

OPTIONS = st.fixed_dictionaries(
    {},
    optional={
        "distance": st.sampled_from(["euclidean", "cosine"]),
        "beta": st.floats(0.0, 1.0),
        "sync_nu": st.sampled_from([0.0, 0.01, 1.0]),
        "affine": st.sampled_from([None, "learnable", "ema"]),
        "replace_after": st.integers(0, 3),
        "kmeans_init": st.booleans(),
        "stochastic_temperature": st.sampled_from([None, 0.1, 10.0]),
        "chunk_size": st.sampled_from([None, 1, 5]),
    },
)


@st.composite
def inputs(draw):
    dim = draw(st.integers(1, 6))
    channel_first = draw(st.booleans())
    extra = draw(st.lists(st.integers(1, 3), min_size=0, max_size=3))  # total rank 1..5
    if channel_first:
        shape = [draw(st.integers(1, 3)), dim] + extra
    else:
        shape = extra + [dim]
    dtype = draw(st.sampled_from(["fp32", "bf16-autocast", "fp64"]))
    return dim, channel_first, tuple(shape), dtype


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(options=OPTIONS, spec=inputs(), codebook_size=st.integers(1, 12), seed=st.integers(0, 2**16))
def test_quantizer_invariants(options, spec, codebook_size, seed):
    dim, channel_first, shape, dtype = spec
    torch.manual_seed(seed)
    vq = VectorQuantizer(dim, codebook_size, channel_first=channel_first, **options)
    in_dtype = torch.float64 if dtype == "fp64" else torch.float32
    if dtype == "fp64":
        vq = vq.double()
    x = (torch.randn(shape, dtype=in_dtype) * 3).requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16-autocast"):
        z = x * 1.0 if dtype != "bf16-autocast" else torch.nn.functional.linear(x, torch.eye(shape[-1]))
        out = vq(z)
    index_shape = (shape[0],) + shape[2:] if channel_first else shape[:-1]
    assert out.quantized.shape == z.shape and out.quantized.dtype == z.dtype
    assert out.indices.shape == index_shape and out.indices.dtype == torch.long
    assert bool(((out.indices >= 0) & (out.indices < codebook_size)).all())
    assert torch.isfinite(out.loss) and torch.isfinite(out.perplexity)
    assert 1.0 - 1e-4 <= float(out.perplexity) <= codebook_size + 1e-3
    (out.quantized.float().pow(2).sum() + out.loss).backward()
    assert torch.isfinite(x.grad).all()
    for p in vq.parameters():
        assert p.grad is None or torch.isfinite(p.grad).all()

    vq.eval()
    with torch.no_grad():
        first, second = vq(z.detach()), vq(z.detach())
    assert torch.equal(first.indices, second.indices) and torch.equal(first.quantized, second.quantized)
    assert torch.equal(vq.lookup(first.indices).to(first.quantized.dtype), first.quantized)
