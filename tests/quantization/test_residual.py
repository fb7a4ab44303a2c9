"""ResidualVectorQuantizer: the math of the levels, the straight-through on the sum, quantizer dropout."""

import pytest
import torch

from hf_vq import AlternatingOptimizer
from hf_vq.quantization import find_quantizers
from hf_vq.quantization.residual import ResidualVectorQuantizer


def fitted(levels=4, k=16, dim=6, n=512, **options):
    """A residual VQ whose levels were k-means-fitted on their residuals of `z` (one training forward)."""
    torch.manual_seed(0)
    z = torch.randn(n, dim)
    rvq = ResidualVectorQuantizer(dim, k, num_levels=levels, kmeans_init=True, kmeans_iters=20, **options)
    rvq(z)
    return rvq.eval(), z


def test_levels_reduce_the_error_monotonically_and_commitment_is_the_output_error():
    rvq, z = fitted()
    out = rvq(z)
    # brute force: the error left after the first q levels, from the codes of those levels
    with torch.no_grad():
        errors = [float((z - rvq.get_codes(out.indices[..., : q + 1])).pow(2).mean()) for q in range(4)]
    assert all(b < a for a, b in zip([float(z.pow(2).mean())] + errors, errors)), errors
    torch.testing.assert_close(out.codebook_commitment, torch.tensor(errors), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(out.commitment, (z - out.quantized).pow(2).mean(), rtol=1e-5, atol=1e-7)
    assert errors[-1] < 0.5 * errors[0]


def test_quantized_is_the_sum_of_the_level_codes_and_indices_round_trip():
    rvq, z = fitted(levels=3)
    out = rvq(z)
    assert out.indices.shape == (z.shape[0], 3) and out.indices.dtype == torch.int64
    by_hand, residual = 0, z
    for q, level in enumerate(rvq.levels):
        code = level.codebook[out.indices[:, q]]
        # each level picked the nearest code of ITS residual (eq 5)
        assert torch.equal(torch.cdist(residual, level.codebook).argmin(1), out.indices[:, q])
        by_hand, residual = by_hand + code, residual - code
    assert torch.equal(out.quantized, by_hand)
    assert torch.equal(rvq.get_codes(out.indices), out.quantized)
    assert torch.equal(rvq.lookup(out.indices), out.quantized)


def test_channel_first_layout():
    rvq, _ = fitted(levels=2, dim=4)
    cf = ResidualVectorQuantizer(4, 16, num_levels=2, channel_first=True).eval()
    cf.load_state_dict(rvq.state_dict())
    x = torch.randn(2, 4, 3, 5)
    out, ref = cf(x), rvq(x.movedim(1, -1))
    assert out.indices.shape == (2, 3, 5, 2) and torch.equal(out.indices, ref.indices)
    assert torch.equal(out.quantized, ref.quantized.movedim(-1, 1))
    assert torch.equal(cf.get_codes(out.indices), out.quantized)


def test_lower_bitrate_decodes_the_first_levels_only():
    rvq, z = fitted()
    full, two = rvq(z), rvq(z, num_levels=2)
    assert torch.equal(two.indices, full.indices[:, :2])
    assert torch.equal(two.quantized, rvq.get_codes(full.indices[:, :2]))
    torch.testing.assert_close(two.commitment, full.codebook_commitment[1])
    with pytest.raises(ValueError, match="num_levels must be an int in \\[1, 4\\]"):
        rvq(z, num_levels=5)


@pytest.mark.parametrize("nu", [0.0, 0.5])
def test_straight_through_on_the_sum_and_sync_gradient_per_level(nu):
    # α = 0: the loss has no gradient, so z and the codebooks get exactly eq 7 on the sum and ν·g (eq 21)
    rvq, z = fitted(levels=3, commitment_weight=0.0, sync_nu=nu)
    rvq.train()
    z = z[:64].clone().requires_grad_(True)
    out = rvq(z)
    w = torch.randn_like(z)
    (out.quantized * w).sum().backward()
    assert torch.equal(z.grad, w)  # g once, not once per level
    for q, level in enumerate(rvq.levels):
        expected = torch.zeros_like(level.codebook_signal).index_add_(0, out.indices[:, q], nu * w)
        torch.testing.assert_close(level.codebook_signal.grad, expected)


def test_loss_is_the_sum_of_the_levels_losses():
    rvq, z = fitted(levels=3, commitment_weight=2.0)
    out = rvq(z)
    torch.testing.assert_close(out.loss, 2.0 * out.codebook_commitment.sum())


def test_quantizer_dropout_draws_from_the_step_counter_and_trains_every_level():
    rvq = ResidualVectorQuantizer(4, 8, num_levels=4, quantizer_dropout=True, min_levels=2, replace_after=3)
    used = []
    for step in range(24):
        expected = rvq.levels_to_use()
        out = rvq(torch.randn(32, 4))
        used.append(out.indices.shape[-1])
        assert used[-1] == expected and out.codebook_perplexity.shape == (used[-1],)
        assert torch.equal(out.quantized, rvq.get_codes(out.indices))
    assert set(used) == {2, 3, 4}
    # every level ran (and ticked its LRU clock) at every step, dropped or not
    assert [int(level.num_steps) for level in rvq.levels] == [24] * 4
    # the draw depends on the step counter only: a fresh module replays it
    again = ResidualVectorQuantizer(4, 8, num_levels=4, quantizer_dropout=True, min_levels=2)
    replay = []
    for _ in range(24):
        replay.append(again.levels_to_use())
        again.levels[0].num_steps.add_(1)
    assert replay == used
    assert rvq.eval()(torch.randn(5, 4)).indices.shape == (5, 4)  # no dropout outside training


def test_per_level_options_and_validation_before_allocation():
    rvq = ResidualVectorQuantizer(4, 8, num_levels=3, sync_nu=0.1,
                                  level_options=[{"affine": "learnable"}, {}, {"sync_nu": 0.0}])
    assert [lv.options.affine for lv in rvq.levels] == ["learnable", None, None]
    assert [lv.sync_nu for lv in rvq.levels] == [0.1, 0.1, 0.0]
    huge = 10**12  # would need terabytes: every error below must come before any allocation
    with pytest.raises(ValueError, match="level_options must be None or a list of 3 dicts"):
        ResidualVectorQuantizer(4, huge, num_levels=3, level_options=[{}])
    with pytest.raises(ValueError, match=r"level_options\[1\]: beta must be in \[0, 1\]"):
        ResidualVectorQuantizer(4, huge, num_levels=2, level_options=[{}, {"beta": 2.0}])
    with pytest.raises(ValueError, match=r"level_options\[0\] sets \['codebook_size'\]"):
        ResidualVectorQuantizer(4, huge, num_levels=2, level_options=[{"codebook_size": 3}, {}])
    with pytest.raises(TypeError, match="Unknown ResidualVectorQuantizer option"):
        ResidualVectorQuantizer(4, huge, num_levels=2, num_groups=2)
    with pytest.raises(ValueError, match="min_levels must be <= num_levels=2"):
        ResidualVectorQuantizer(4, huge, num_levels=2, min_levels=3)
    with pytest.raises(ValueError, match="sync_nu must be >= 0"):
        ResidualVectorQuantizer(4, huge, sync_nu=-1.0)


def test_alternation_finds_every_level_and_steps_each_codebook():
    rvq = ResidualVectorQuantizer(4, 8, num_levels=3, affine="learnable", sync_nu=0.1)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), rvq)
    inner = torch.optim.SGD(rvq.codebook_parameters(), lr=0.1)
    alternating = AlternatingOptimizer(model, inner)
    assert alternating.quantizers == list(rvq.levels) == find_quantizers(model)
    before = [lv.codebook_signal.detach().clone() for lv in rvq.levels]
    out = model(torch.randn(64, 4))
    (out.quantized.pow(2).mean() + out.loss).backward()
    assert all(p.grad is None for p in rvq.codebook_parameters())  # the codebooks belong to the inner optimizer
    assert all(not torch.equal(b, lv.codebook_signal) for b, lv in zip(before, rvq.levels))
    assert all(float(s.abs().sum()) > 0 for s in alternating.sync_grads)  # ν·g collected per level for its next step
