import pytest
import torch

from hf_vq import VectorQuantizer, metrics


def test_perplexity_and_active_codes():
    assert abs(metrics.perplexity(torch.arange(8), 16) - 8) < 1e-5
    assert abs(metrics.perplexity(torch.zeros(10, dtype=torch.long), 16) - 1) < 1e-6
    assert metrics.active_codes(torch.tensor([[0, 1], [1, 3]]), 8) == 0.375
    with pytest.warns(FutureWarning, match="active_codes"):
        assert metrics.active_code_ratio(torch.tensor([[0, 1], [1, 3]]), 8) == 0.375
    assert metrics.code_histogram(torch.tensor([2, 2, 0]), 4).tolist() == [1, 0, 2, 0]


def test_divergence_equals_brute_force_eq13():
    g = torch.Generator().manual_seed(0)
    z, c = torch.randn(100, 4, generator=g), torch.randn(9, 4, generator=g)
    brute = (0.5 * torch.cdist(z, c).pow(2).min(1).values).mean()
    assert abs(metrics.divergence(z, c, chunk_size=7) - float(brute)) < 1e-5
    assert abs(metrics.quantization_error(z, z + 1.0) - 2.0) < 1e-6


class Toy(torch.nn.Module):
    def __init__(self, vq):
        super().__init__()
        self.enc, self.vq, self.dec = torch.nn.Linear(2, 2), vq, torch.nn.Linear(2, 1)

    def forward(self, x):
        return self.dec(self.vq(self.enc(x)).quantized)


def test_gradient_gap_is_zero_without_quantization_error_and_positive_with_it():
    torch.manual_seed(0)
    x = torch.randn(16, 2)
    target = torch.randn(16, 1)
    model = Toy(VectorQuantizer(2, 4))
    loss_fn = lambda m: (m(x) - target).pow(2).mean()  # noqa: E731
    gap = metrics.gradient_gap(model, loss_fn, model.enc.parameters())
    assert gap > 0
    # a codebook holding every z_e exactly: ε = 0, so the straight-through gradient is exact (eq 14)
    exact = Toy(VectorQuantizer(2, 16))
    exact.enc.load_state_dict(model.enc.state_dict())
    exact.dec.load_state_dict(model.dec.state_dict())
    with torch.no_grad():
        exact.vq.codebook_signal.copy_(exact.enc(x))
    assert metrics.gradient_gap(exact, loss_fn, exact.enc.parameters()) < 1e-10
    assert exact.vq.training and int(exact.vq.num_steps) == 0  # measurement left no trace


def test_effective_rank_is_the_participation_ratio():
    g = torch.Generator().manual_seed(1)
    iso = torch.randn(20000, 8, generator=g)
    assert metrics.effective_rank(iso) == pytest.approx(8, rel=0.02)
    line = torch.randn(500, 1, generator=g) * torch.randn(1, 8, generator=g) + 3.0
    assert metrics.effective_rank(line) == pytest.approx(1, abs=1e-6)
    z = torch.randn(300, 5, generator=g) * torch.tensor([3.0, 1.0, 1.0, 0.5, 0.1])
    eig = torch.linalg.eigvalsh(torch.cov(z.T.double(), correction=0))
    assert metrics.effective_rank(z) == pytest.approx(float(eig.sum() ** 2 / eig.pow(2).sum()), rel=1e-9)


def test_codes_in_reach_equals_brute_force():
    g = torch.Generator().manual_seed(2)
    z = torch.randn(200, 3, generator=g)
    codebook = torch.cat([torch.randn(10, 3, generator=g) * 0.5, torch.randn(22, 3, generator=g) + 6.0])  # 22 far away
    d = torch.cdist(z, codebook).pow(2)
    median = d.min(1).values.median()
    expected = float((d.min(0).values <= median).float().mean())
    assert metrics.codes_in_reach(z, codebook) == pytest.approx(expected)
    assert metrics.codes_in_reach(z, codebook) <= 10 / 32


@pytest.mark.parametrize("covariance", ["diagonal", "full"])
def test_collapse_diagnostics_report_the_affine(covariance):
    vq = VectorQuantizer(3, 16, affine="learnable", affine_covariance=covariance)
    with torch.no_grad():
        vq.affine.bias.fill_(0.5)
        if covariance == "diagonal":
            vq.affine.scale.copy_(torch.tensor([[1.0, -0.5, 0.0]]))  # scales 2, 0.5, 1
        else:
            vq.affine.scale.copy_(torch.diag(torch.tensor([1.0, -0.5, 0.0]))[None])
    stats = metrics.collapse_diagnostics(vq, torch.randn(100, 3))
    assert (stats["affine_scale_min"], stats["affine_scale_max"]) == pytest.approx((0.5, 2.0))
    assert stats["affine_bias_norm"] == pytest.approx(0.5 * 3 ** 0.5)
    assert 0 < stats["codes_in_reach"] <= 1 and 1 <= stats["ze_effective_rank"] <= 3
    assert set(metrics.collapse_diagnostics(VectorQuantizer(3, 4), torch.randn(10, 3))) == {
        "ze_effective_rank",
        "codes_in_reach",
    }
