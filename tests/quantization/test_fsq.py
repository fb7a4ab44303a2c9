"""FiniteScalarQuantizer (Mentzer et al., ICLR 2024): the grid, the mixed-radix indices, the straight-through."""

import itertools
import math

import pytest
import torch

from hf_vq.quantization.fsq import BOUND_EPS, FiniteScalarQuantizer

LEVELS = [3, 4, 5]  # odd and even levels


def grid_values(level: int) -> torch.Tensor:
    half = level // 2
    return (torch.arange(level) - half) / half


def test_codes_lie_on_the_grid_and_indices_are_mixed_radix():
    fsq = FiniteScalarQuantizer(3, LEVELS)
    out = fsq(torch.randn(200, 3) * 3)
    for channel, level in enumerate(LEVELS):
        assert torch.isin(out.quantized[:, channel], grid_values(level)).all()
    digits = [torch.round(out.quantized[:, c] * (n // 2)).long() + n // 2 for c, n in enumerate(LEVELS)]
    assert torch.equal(out.indices, digits[0] + 3 * digits[1] + 3 * 4 * digits[2])
    assert out.indices.dtype == torch.int64 and fsq.codebook_size == 60


def test_every_grid_point_is_reached():
    fsq = FiniteScalarQuantizer(3, LEVELS)
    sweep = torch.linspace(-6, 6, 31)
    z = torch.tensor(list(itertools.product(sweep, repeat=3)))
    out = fsq(z)
    assert out.active_codes == 1.0
    assert torch.equal(torch.unique(out.indices), torch.arange(60))


def test_index_code_round_trip_is_exact_for_all_codes():
    fsq = FiniteScalarQuantizer(3, [8, 5, 5, 3][:3])
    every = torch.arange(fsq.codebook_size)
    codes = fsq.get_codes(every)
    assert torch.equal(codes, fsq.codebook)
    assert torch.equal(fsq.codes_to_indices(codes), every)
    assert len(torch.unique(codes, dim=0)) == fsq.codebook_size
    out = fsq(torch.randn(500, 3) * 2)
    assert torch.equal(out.quantized, fsq.get_codes(out.indices))  # the value is the code, exactly


def test_gradient_is_straight_through_the_bound():
    fsq = FiniteScalarQuantizer(3, LEVELS).double()
    z = (torch.randn(50, 3, dtype=torch.float64) * 2).requires_grad_()
    g = torch.randn(50, 3, dtype=torch.float64)
    (fsq(z).quantized * g).sum().backward()
    levels = torch.tensor(LEVELS, dtype=torch.float64)
    h = (levels - 1) * (1 - BOUND_EPS) / 2
    offset = (levels % 2 == 0).double() * 0.5
    t = torch.tanh(z.detach() + torch.atanh(offset / h))
    expected = g * (1 - t**2) * h / (levels // 2)  # ∂(z_b/⌊L/2⌋)/∂z, the round passing gradients unchanged
    assert torch.allclose(z.grad, expected, atol=1e-12)


def test_bound_maps_zero_to_zero_and_stays_in_range():
    fsq = FiniteScalarQuantizer(4, [3, 4, 7, 8])
    assert torch.allclose(fsq.bound(torch.zeros(4)), torch.zeros(4), atol=1e-6)
    far = fsq(torch.tensor([[100.0] * 4, [-100.0] * 4])).quantized
    assert torch.equal(far[0], torch.tensor([1.0, 0.5, 1.0, 0.75]))  # even levels stop one step short of +1
    assert torch.equal(far[1], -torch.ones(4))


def test_projection_when_dim_differs_from_the_number_of_levels():
    torch.manual_seed(0)
    fsq = FiniteScalarQuantizer(16, [8, 8, 8], channel_first=True)
    z = torch.randn(2, 16, 3, 3, requires_grad=True)
    out = fsq(z)
    assert out.quantized.shape == z.shape and out.indices.shape == (2, 3, 3)
    assert torch.allclose(out.quantized, fsq.get_codes(out.indices), atol=1e-6)
    grid = fsq.indices_to_grid(out.indices)
    assert torch.allclose(out.quantized.movedim(1, -1), fsq.project_out(grid), atol=1e-6)
    out.quantized.sum().backward()
    assert z.grad.abs().sum() > 0 and fsq.project_in.weight.grad.abs().sum() > 0
    assert fsq.project_out.weight.grad.abs().sum() > 0


def test_output_contract():
    fsq = FiniteScalarQuantizer(4, [5, 5, 5, 5])
    z = torch.randn(3, 7, 4, dtype=torch.float64)
    out = fsq(z)
    assert out.quantized.dtype == torch.float64 and out.indices.shape == (3, 7)
    assert out.loss == 0 and out.loss.dtype == torch.float32 and not out.commitment.requires_grad
    counts = torch.bincount(out.indices.flatten(), minlength=625).double()
    p = counts[counts > 0] / counts.sum()
    assert torch.allclose(out.perplexity.double(), torch.exp(-(p * p.log()).sum()), rtol=1e-5)
    assert math.isclose(float(out.active_codes), float((counts > 0).double().mean()), rel_tol=1e-6)
    bounded = fsq.bound(z.reshape(-1, 4))
    expected = ((bounded - bounded.round()) / 2).pow(2).mean()  # the rounding error in code units
    assert torch.allclose(out.commitment.double(), expected, rtol=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert fsq(z.float().bfloat16()).quantized.dtype == torch.bfloat16
    empty = fsq(torch.randn(0, 4))
    assert empty.quantized.shape == (0, 4) and empty.indices.shape == (0,)


def test_state_dict_round_trip():
    torch.manual_seed(1)
    fsq = FiniteScalarQuantizer(6, [8, 5, 5, 5], projection_bias=False)
    fresh = FiniteScalarQuantizer(6, [8, 5, 5, 5], projection_bias=False)
    fresh.load_state_dict(fsq.state_dict(), strict=True)
    z = torch.randn(10, 6)
    assert torch.equal(fsq(z).quantized, fresh(z).quantized)
    assert set(fsq.state_dict()) == {"project_in.weight", "project_out.weight"}  # no state beyond the projections


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(levels=[]), TypeError, "levels"),
    (dict(levels=[8, 2]), ValueError, ">= 3"),
    (dict(levels=[8, 4.5]), TypeError, "levels must hold ints"),
    (dict(levels="888"), TypeError, "levels"),
    (dict(dim=0), ValueError, "dim"),
    (dict(channel_first=1), TypeError, "channel_first"),
    (dict(codebook_size=512), TypeError, "codebook_size"),
])
def test_invalid_arguments_name_the_argument(kwargs, error, match):
    args = dict(dim=3, levels=[8, 8, 8]) | kwargs
    with pytest.raises(error, match=match):
        FiniteScalarQuantizer(**args)


def test_invalid_inputs_name_the_problem():
    fsq = FiniteScalarQuantizer(3, [5, 5, 5])
    with pytest.raises(ValueError, match="feature width 5.*dim=3"):
        fsq(torch.randn(4, 5))
    with pytest.raises(TypeError, match="floating-point"):
        fsq(torch.ones(4, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 125\)"):
        fsq.get_codes(torch.tensor([125]))
