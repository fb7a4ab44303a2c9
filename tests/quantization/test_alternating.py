import pytest
import torch

from hf_vq import AlternatingOptimizer, VectorQuantizer


def sgd_commitment_step(codebook, z, lr, alpha, beta, sync=None):
    """One SGD step of eq 17 on detached z: c ← c − lr·(∂/∂c αβ·MSE(sg z, c_k) + pending ν·g)."""
    idx = torch.cdist(z, codebook).argmin(1)
    c = codebook.clone().requires_grad_()
    loss = alpha * beta * (z - c[idx]).pow(2).mean()
    (grad,) = torch.autograd.grad(loss, c)
    if sync is not None:
        grad = grad + sync
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
    # outer step: the encoder gets g + α(1−β)·2(z − z_q)/(N·D); the codebook no gradient at all
    g = torch.randn(20, 3)
    ((out.quantized * g).sum() + out.loss).backward()
    expected = g + 2.0 * 0.1 * 2 * (z.detach() - c1[idx]) / (20 * 3)
    assert torch.allclose(z.grad, expected, atol=1e-6)
    assert vq.codebook_signal.grad is None


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
    assert alt.sync_grads[0].abs().sum() > 0  # ν·g of the last outer step waits for the next inner step
    assert vq.codebook_signal.grad is None and vq.affine.scale.grad is None


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


def run_two_alternated_steps(nu, optimizer="sgd", steps=2, affine=None):
    """`steps` alternated steps (k = 1) of a fixed linear encoder; returns the codebook parameters."""
    torch.manual_seed(3)
    vq = VectorQuantizer(3, 6, beta=0.9, commitment_weight=2.0, sync_nu=nu, affine=affine)
    params = vq.codebook_parameters()
    inner = torch.optim.SGD(params, lr=0.5) if optimizer == "sgd" else torch.optim.Adam(params, lr=0.05)
    AlternatingOptimizer(vq, inner)
    gen = torch.Generator().manual_seed(4)
    for _ in range(steps):
        z = torch.randn(24, 3, generator=gen)
        out = vq(z.requires_grad_())
        ((out.quantized * torch.randn(24, 3, generator=gen)).sum() + out.loss).backward()
    return [p.detach().clone() for p in params]


def test_k1_sgd_is_the_joint_updates_composition():
    # Step 1's outer backward collects ν·g; step 2's inner step applies c ← c − η(∇αβ·MSE + ν·g).
    nu = 0.3
    torch.manual_seed(3)
    vq = VectorQuantizer(3, 6, beta=0.9, commitment_weight=2.0, sync_nu=nu)
    c = vq.codebook_signal.detach().clone()
    (result,) = run_two_alternated_steps(nu)
    gen = torch.Generator().manual_seed(4)
    sync = None
    for _ in range(2):
        z, g = torch.randn(24, 3, generator=gen), None
        c, idx = sgd_commitment_step(c, z, 0.5, 2.0, 0.9, sync)
        g = torch.randn(24, 3, generator=gen)
        sync = torch.zeros_like(c).index_add_(0, idx, nu * g)  # eq 21's Σ ν·g_i per code
    assert torch.allclose(result, c, atol=1e-6)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_sync_displacement_scales_with_nu_under_any_inner_optimizer(optimizer):
    # The codebook's displacement due to sync (against ν = 0) must grow with ν, and vanish as ν → 0:
    # with Adam, a step on ν·g alone would be normalised to the same size for every ν.
    base = run_two_alternated_steps(0.0, optimizer, steps=4, affine="learnable")
    runs = {nu: run_two_alternated_steps(nu, optimizer, steps=4, affine="learnable") for nu in (1e-4, 1e-2, 1.0)}
    shift = {nu: sum(float((a - b).norm()) for a, b in zip(run, base)) for nu, run in runs.items()}
    assert 0 < shift[1e-4] < shift[1e-2] < shift[1.0]
    assert shift[1e-4] < 0.05 * shift[1e-2]  # small ν, proportionally small effect


def test_sync_displacement_is_linear_in_nu_with_sgd():
    # Two steps: ν·g of step 1 enters step 2's inner SGD step only, so its displacement is exactly ∝ ν.
    (base,) = run_two_alternated_steps(0.0)
    small, large = ((run_two_alternated_steps(nu)[0] - base) for nu in (0.01, 0.5))
    assert small.abs().sum() > 0
    assert torch.allclose(large, 50 * small, atol=1e-5)


def test_outer_optimizer_never_steps_the_codebook_even_with_weight_decay():
    torch.manual_seed(5)
    enc = torch.nn.Linear(3, 3)
    vq = VectorQuantizer(3, 6, sync_nu=0.5, affine="learnable")
    outer = torch.optim.AdamW(list(enc.parameters()) + list(vq.parameters()), lr=0.1, weight_decay=0.5)
    AlternatingOptimizer(vq, torch.optim.SGD(vq.codebook_parameters(), lr=0.0))  # inner lr 0: nothing moves the codes
    before = [p.detach().clone() for p in vq.codebook_parameters()]
    for _ in range(3):
        out = vq(enc(torch.randn(8, 3)))
        outer.zero_grad()
        (out.quantized.pow(2).mean() + out.loss).backward()
        outer.step()
    assert all(torch.equal(a, b) for a, b in zip(before, vq.codebook_parameters()))


def test_state_dict_carries_the_pending_sync_gradient_and_reads_the_old_format():
    torch.manual_seed(6)
    vq = VectorQuantizer(3, 6, sync_nu=0.5)
    alt = AlternatingOptimizer(vq, torch.optim.Adam(vq.codebook_parameters(), lr=0.1))
    out = vq(torch.randn(8, 3, requires_grad=True))
    out.quantized.sum().backward()
    state = alt.state_dict()
    assert state["sync_grads"][0].abs().sum() > 0

    vq2 = VectorQuantizer(3, 6, sync_nu=0.5)
    alt2 = AlternatingOptimizer(vq2, torch.optim.Adam(vq2.codebook_parameters(), lr=0.1))
    alt2.load_state_dict(state)
    assert torch.equal(alt2.sync_grads[0], alt.sync_grads[0])
    alt2.load_state_dict(alt.optimizer.state_dict())  # 0.1.x: the inner optimizer's state alone
    assert alt2.sync_grads[0].abs().sum() == 0


def test_detach_makes_the_codebook_trainable_again():
    vq, alt = setup(1)
    assert not vq.codebook_signal.requires_grad
    alt.detach()
    assert vq.codebook_signal.requires_grad
    AlternatingOptimizer(vq, torch.optim.SGD(vq.codebook_parameters(), lr=0.1))  # re-attaching after detach()
    with pytest.raises(ValueError, match="already attached"):
        AlternatingOptimizer(vq, torch.optim.SGD(vq.codebook_parameters(), lr=0.1))
