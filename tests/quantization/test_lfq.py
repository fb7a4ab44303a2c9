"""LookupFreeQuantizer (MAGVIT-v2): sign codes, binary indices, the entropy penalty against brute force."""

import itertools

import pytest
import torch

from hf_vq.quantization.lfq import LookupFreeQuantizer


def test_codes_are_signs_and_indices_are_binary_lsb_first():
    lfq = LookupFreeQuantizer(3, 8)
    z = torch.tensor([[0.5, -0.1, 2.0], [-1.0, -3.0, -0.2], [0.0, 1e-3, 4.0]])
    out = lfq(z)
    assert torch.equal(out.quantized, torch.tensor([[1.0, -1, 1], [-1, -1, -1], [-1, 1, 1]]))
    assert out.indices.tolist() == [1 + 4, 0, 2 + 4]


def test_index_code_round_trip_is_exact_for_all_codes():
    lfq = LookupFreeQuantizer(4, 16)
    every = torch.arange(16)
    codes = lfq.get_codes(every)
    assert torch.equal(codes, torch.tensor(list(itertools.product([-1.0, 1.0], repeat=4))).flip(-1))
    out = lfq(codes * 0.3)
    assert torch.equal(out.indices, every) and torch.equal(out.quantized, codes) and out.active_codes == 1
    z = torch.randn(2, 4, 3, 3)
    cf = LookupFreeQuantizer(4, 16, channel_first=True)
    out = cf(z)
    assert torch.equal(out.quantized, cf.get_codes(out.indices))


def brute_force_loss(z, temperature, entropy_weight, gamma, commitment_weight):
    d = z.shape[-1]
    codes = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=d)), dtype=z.dtype)
    probs = (-torch.cdist(z, codes).pow(2) / temperature).softmax(-1)  # (N, K)
    entropy = lambda p: -(p * p.clamp_min(1e-30).log()).sum(-1)  # noqa: E731
    avg = probs.mean(0)
    commitment = (z - torch.where(z > 0, 1.0, -1.0)).pow(2).mean()
    return entropy_weight * (entropy(probs).mean() - gamma * entropy(avg)) + commitment_weight * commitment


@pytest.mark.parametrize("temperature,gamma", [(0.01, 1.0), (0.5, 0.7), (3.0, 2.0)])
def test_loss_and_its_gradient_match_the_brute_force_entropy_over_all_codes(temperature, gamma):
    torch.manual_seed(0)
    lfq = LookupFreeQuantizer(5, 32, temperature=temperature, batch_entropy_weight=gamma, entropy_weight=0.3,
                              commitment_weight=0.25)
    z = (torch.randn(40, 5, dtype=torch.float64) * 0.5).requires_grad_()
    out = lfq(z)
    out.loss.backward()
    z_ref = z.detach().clone().requires_grad_()
    ref = brute_force_loss(z_ref, temperature, 0.3, gamma, 0.25)
    ref.backward()
    assert torch.allclose(out.loss.double(), ref, rtol=1e-5, atol=1e-7)
    assert torch.allclose(z.grad, z_ref.grad, rtol=1e-5, atol=1e-9)
    assert torch.allclose(out.commitment.double(), (z - out.quantized).pow(2).mean())


def test_quantized_gradient_is_straight_through():
    lfq = LookupFreeQuantizer(6, 64)
    z = torch.randn(10, 6, requires_grad=True)
    g = torch.randn(10, 6)
    (lfq(z).quantized * g).sum().backward()
    assert torch.equal(z.grad, g)


def test_projection_and_state_dict():
    torch.manual_seed(1)
    lfq = LookupFreeQuantizer(12, 256)
    assert lfq.bits == 8 and lfq.project_in.out_features == 8
    z = torch.randn(7, 12)
    out = lfq(z)
    assert torch.allclose(out.quantized, lfq.get_codes(out.indices), atol=1e-6)
    fresh = LookupFreeQuantizer(12, 256)
    fresh.load_state_dict(lfq.state_dict(), strict=True)
    assert torch.equal(fresh(z).quantized, out.quantized)


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(codebook_size=12), ValueError, "power of two"),
    (dict(codebook_size=1), ValueError, "power of two"),
    (dict(temperature=0.0), ValueError, "temperature"),
    (dict(entropy_weight=-1.0), ValueError, "entropy_weight"),
    (dict(commitment_weight="1"), TypeError, "commitment_weight"),
    (dict(levels=[2, 2]), TypeError, "levels"),
])
def test_invalid_arguments_name_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        LookupFreeQuantizer(**(dict(dim=4, codebook_size=16) | kwargs))
