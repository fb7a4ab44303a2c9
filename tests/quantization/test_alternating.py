import pytest
import torch

from hf_vq import AlternatingOptimizer, VectorQuantizer


def sgd_commitment_step(codebook, z, lr, alpha, beta):
    """One SGD step of eq 17 on detached z: c ← c − lr·∂/∂c αβ·mean ½‖sg z − c_k‖²."""
    idx = torch.cdist(z, codebook).argmin(1)
    c = codebook.clone().requires_grad_()
    loss = alpha * beta * 0.5 * (z - c[idx]).pow(2).sum(-1).mean()
    (grad,) = torch.autograd.grad(loss, c)
    return codebook - lr * grad, idx


def setup(inner_steps, **kw):
    torch.manual_seed(0)
    vq = VectorQuantizer(3, 6, beta=0.9, commitment_weight=2.0, **kw)
    opt = torch.optim.SGD(vq.codebook_parameters(), lr=0.5)
    alt = AlternatingOptimizer(vq, opt, inner_steps=inner_steps)
    return vq, alt


def test_fused_single_pass_steps_the_codebook_then_reuses_the_indices():
    vq, _ = setup(1)
    c0 = vq.codebook_signal.detach().clone()
    z = torch.randn(20, 3, requires_grad=True)
    out = vq(z)
    c1, idx = sgd_commitment_step(c0, z.detach(), 0.5, 2.0, 0.9)
    assert torch.allclose(vq.codebook_signal.detach(), c1, atol=1e-6)
    assert torch.equal(out.indices, idx)
    assert torch.allclose(out.quantized, c1[idx], atol=1e-6)  # the outer step sees the updated codes
    # outer step: the encoder gets g + α(1−β)(z − z_q)/N, the codebook only ν·g (ν = 0 here)
    g = torch.randn(20, 3)
    vq.codebook_signal.grad = None
    ((out.quantized * g).sum() + out.loss).backward()
    expected = g + 2.0 * 0.1 * (z.detach() - c1[idx]) / 20
    assert torch.allclose(z.grad, expected, atol=1e-6)
    assert vq.codebook_signal.grad.abs().max() == 0


def test_k_inner_steps_use_sequential_sub_batches_then_search_again():
    vq, _ = setup(2)
    c = vq.codebook_signal.detach().clone()
    z = torch.randn(20, 3)
    out = vq(z)
    c, _ = sgd_commitment_step(c, z[:10], 0.5, 2.0, 0.9)
    c, _ = sgd_commitment_step(c, z[10:], 0.5, 2.0, 0.9)
    assert torch.allclose(vq.codebook_signal.detach(), c, atol=1e-6)
    assert torch.equal(out.indices, torch.cdist(z, c).argmin(1))


def test_alternation_with_affine_and_sync_runs_repeatedly_and_moves_affine():
    vq, alt = setup(2, affine="learnable", sync_nu=0.2)
    enc = torch.nn.Linear(3, 3)
    outer = torch.optim.SGD(enc.parameters(), lr=0.1)
    for _ in range(3):
        out = vq(enc(torch.randn(16, 3)))
        outer.zero_grad()
        (out.quantized.pow(2).mean() + out.loss).backward()
        outer.step()
    assert vq.affine.scale.abs().sum() > 0
    assert torch.isfinite(enc.weight.grad).all()
    assert vq.codebook_signal.grad.abs().sum() > 0  # ν·g reaches the codebook in the outer step


def test_no_inner_step_in_eval_or_without_grad():
    vq, _ = setup(1)
    c0 = vq.codebook_signal.detach().clone()
    with torch.no_grad():
        vq(torch.randn(8, 3))
    vq.eval()
    vq(torch.randn(8, 3))
    assert torch.equal(vq.codebook_signal.detach(), c0)


def test_alternation_under_autocast_and_gradient_accumulation():
    vq, alt = setup(1, affine="learnable")
    enc = torch.nn.Linear(3, 3)
    for _ in range(3):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = vq(enc(torch.randn(8, 3)))
        (out.quantized.float().sum() + out.loss).backward()  # grads accumulate over micro-batches
    assert torch.isfinite(enc.weight.grad).all()


def test_detach_returns_to_joint_training():
    vq, alt = setup(1)
    alt.detach()
    c0 = vq.codebook_signal.detach().clone()
    vq(torch.randn(8, 3))
    assert torch.equal(vq.codebook_signal.detach(), c0)


def test_bad_arguments():
    vq = VectorQuantizer(3, 6)
    opt = torch.optim.SGD(vq.codebook_parameters(), lr=0.1)
    with pytest.raises(ValueError, match="inner_steps"):
        AlternatingOptimizer(vq, opt, inner_steps=0)
    with pytest.raises(ValueError, match="codebook_parameters"):
        AlternatingOptimizer(vq, torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1))
    with pytest.raises(ValueError, match="no VectorQuantizer"):
        AlternatingOptimizer(torch.nn.Linear(2, 2), opt)
    with pytest.raises(TypeError, match="optimizer"):
        AlternatingOptimizer(vq, "adam")
