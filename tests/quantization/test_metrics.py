import torch

from hf_vq import VectorQuantizer, metrics


def test_perplexity_and_active_codes():
    assert abs(metrics.perplexity(torch.arange(8), 16) - 8) < 1e-5
    assert abs(metrics.perplexity(torch.zeros(10, dtype=torch.long), 16) - 1) < 1e-6
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
