"""The rotation trick (Fifty et al., ICLR 2025): ∂z_q/∂z_e = λR with the closed form of §4.2."""

import pytest
import torch

from hf_vq import AlternatingOptimizer, VectorQuantizer


def closed_form(e: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """λR = ‖q‖/‖e‖ · (I − 2rrᵀ + 2q̂êᵀ), r = (ê + q̂)/‖ê + q̂‖, as a materialised D×D matrix."""
    e_hat, q_hat = e / e.norm(), q / q.norm()
    r = (e_hat + q_hat) / (e_hat + q_hat).norm()
    eye = torch.eye(e.shape[0], dtype=e.dtype)
    return q.norm() / e.norm() * (eye - 2 * torch.outer(r, r) + 2 * torch.outer(q_hat, e_hat))


def quantizer(**options) -> VectorQuantizer:
    torch.manual_seed(0)
    return VectorQuantizer(5, 7, rotation_trick=True, **options).double()


def test_jacobian_is_lambda_r_from_the_closed_form():
    vq = quantizer()
    z = torch.randn(3, 5, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda x: vq(x).quantized, z)  # (3, 5, 3, 5)
    q = vq(z).quantized.detach()
    for i in range(3):
        for j in range(3):
            expected = closed_form(z[i], q[i]) if i == j else torch.zeros(5, 5, dtype=torch.float64)
            assert torch.allclose(jac[i, :, j], expected, atol=1e-12), (i, j)


def test_jacobian_is_a_scaled_rotation_taking_z_e_onto_its_code():
    vq = quantizer()
    z = torch.randn(4, 5, dtype=torch.float64) * 3
    out = vq(z)
    assert torch.equal(out.quantized, vq.get_codes(out.indices))  # the value is the codes, exactly
    jac = torch.autograd.functional.jacobian(lambda x: vq(x).quantized, z)
    for i in range(4):
        block = jac[i, :, i]
        lam = out.quantized[i].norm() / z[i].norm()
        rotation = block / lam
        assert torch.allclose(rotation.T @ rotation, torch.eye(5, dtype=torch.float64), atol=1e-12)  # orthogonal
        assert torch.allclose(torch.linalg.det(rotation), torch.tensor(1.0, dtype=torch.float64))  # a rotation
        assert torch.allclose(block @ z[i], out.quantized[i], atol=1e-12)  # λR e = q, so R ê = q̂


@pytest.mark.parametrize("options", [{}, {"sync_nu": 0.3, "affine": "learnable", "beta": 0.7},
                                     {"codebook_parametrization": "simvq", "sync_nu": 0.2}])
def test_loss_and_codebook_gradient_are_those_of_straight_through(options):
    z = torch.randn(20, 5, dtype=torch.float64)
    upstream = torch.randn(20, 5, dtype=torch.float64)
    results = []
    for rotation in (False, True):
        torch.manual_seed(0)
        vq = VectorQuantizer(5, 7, rotation_trick=rotation, **options).double()
        x = z.clone().requires_grad_()
        out = vq(x)
        (out.quantized * upstream).sum().add(out.loss).backward()
        results.append((out, x.grad, {n: p.grad for n, p in vq.named_parameters() if p.requires_grad}))
    (plain, plain_zgrad, plain_grads), (rotated, rotated_zgrad, rotated_grads) = results
    assert torch.equal(plain.quantized, rotated.quantized) and torch.equal(plain.indices, rotated.indices)
    assert torch.equal(plain.loss, rotated.loss) and torch.equal(plain.commitment, rotated.commitment)
    assert plain_grads.keys() == rotated_grads.keys() and plain_grads
    for name in plain_grads:
        assert torch.allclose(plain_grads[name], rotated_grads[name], atol=1e-12), name
    # the encoder's commitment half is unchanged too: the two z-gradients differ by g − λRᵀg only
    q = plain.quantized.detach()
    rotated_g = torch.stack([closed_form(z[i], q[i]).T @ upstream[i] for i in range(20)])
    assert torch.allclose(rotated_zgrad - plain_zgrad, rotated_g - upstream, atol=1e-10)


def test_matches_vector_quantize_pytorch():
    from vector_quantize_pytorch import VectorQuantize
    from vector_quantize_pytorch.vector_quantize_pytorch import rotate_to

    torch.manual_seed(3)
    ours = VectorQuantizer(8, 16, rotation_trick=True, commitment_weight=0.0)
    theirs = VectorQuantize(8, 16, rotation_trick=True, commitment_weight=0.0, ema_update=False)
    with torch.no_grad():
        theirs._codebook.embed.copy_(ours.codebook_signal[None])
    z = torch.randn(2, 30, 8)
    upstream = torch.randn(2, 30, 8)

    grads = []
    for layer in (ours, theirs):
        x = z.clone().requires_grad_()
        out = layer(x)
        quantized, indices = (out.quantized, out.indices) if layer is ours else out[:2]
        (quantized * upstream).sum().backward()
        grads.append((quantized.detach(), indices, x.grad))
    (q_ours, i_ours, g_ours), (q_theirs, i_theirs, g_theirs) = grads
    assert torch.equal(i_ours, i_theirs)
    assert torch.allclose(q_ours, q_theirs, atol=1e-5)  # theirs is λR·e in floating point, ours the code itself
    assert torch.allclose(g_ours, g_theirs, atol=1e-5)

    x = z.reshape(-1, 8).clone().requires_grad_()  # their bare function on the same inputs and codes
    (rotate_to(x, q_ours.reshape(-1, 8)) * upstream.reshape(-1, 8)).sum().backward()
    assert torch.allclose(g_ours.reshape(-1, 8), x.grad, atol=1e-5)


def test_degenerate_rows_fall_back_to_straight_through_or_reflect():
    vq = VectorQuantizer(3, 2, rotation_trick=True, commitment_weight=0.0).double()
    with torch.no_grad():
        vq.codebook_signal.copy_(torch.tensor([[0.0, 0, 0], [-2.0, 0, 0]]))
    z = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [-3.0, 0.1, 0]], dtype=torch.float64, requires_grad=True)
    g = torch.tensor([[1.0, 2, 3], [1.0, 2, 3], [4.0, 5, 6]], dtype=torch.float64)
    out = vq(z)
    (out.quantized * g).sum().backward()
    assert out.indices.tolist() == [0, 0, 1]
    assert torch.equal(z.grad[:2], g[:2])  # ‖e‖ = 0 and ‖q‖ = 0: no direction, plain straight-through
    assert torch.allclose(z.grad[2], closed_form(z[2].detach(), out.quantized[2].detach()).T @ g[2])

    vq_anti = VectorQuantizer(2, 1, rotation_trick=True, commitment_weight=0.0).double()
    with torch.no_grad():
        vq_anti.codebook_signal.copy_(torch.tensor([[-2.0, 0.0]]))
    e = torch.tensor([[1.0, 0.0]], dtype=torch.float64, requires_grad=True)
    (vq_anti(e).quantized * torch.tensor([[1.0, 1.0]], dtype=torch.float64)).sum().backward()
    # ê = −q̂: R = I − 2êêᵀ (the reflection taking ê to q̂), λ = 2
    assert torch.allclose(e.grad, torch.tensor([[-2.0, 2.0]], dtype=torch.float64))


@pytest.mark.parametrize("options", [
    {"distance": "cosine"},
    {"stochastic_temperature": 0.5},
    {"affine": "ema", "replace_after": 1, "kmeans_init": True},
    {"codebook_update": "ema"},
    {"channel_first": True},
])
def test_composes_with_other_options(options):
    """The encoder's gradient is λRᵀg between the vectors the straight-through sees (l2-normalised in cosine
    mode) and the code each one was given (sampled codes included)."""
    torch.manual_seed(1)
    vq = VectorQuantizer(4, 6, rotation_trick=True, commitment_weight=0.0, **options)
    shape = (2, 4, 5) if options.get("channel_first") else (10, 4)
    z = torch.randn(shape, requires_grad=True)
    upstream = torch.randn(shape)
    out = vq(z)
    (out.quantized * upstream).sum().backward()
    move = (lambda t: t.movedim(1, -1).reshape(-1, 4)) if options.get("channel_first") else (lambda t: t)
    e, g, q = move(z.detach()), move(upstream), move(out.quantized.detach())
    if options.get("distance") == "cosine":
        e_ = e.clone().requires_grad_()
        e_n = torch.nn.functional.normalize(e_, dim=-1)
        (torch.stack([closed_form(e_n[i].detach(), q[i]).T @ g[i] for i in range(len(e))]) * e_n).sum().backward()
        expected = e_.grad  # λRᵀg on the sphere (λ = 1), pulled back through the l2 normalisation
    else:
        expected = torch.stack([closed_form(e[i], q[i]).T @ g[i] for i in range(len(e))])
    assert torch.allclose(move(z.grad), expected, atol=1e-5)


def test_alternation_leaves_the_inner_steps_plain_and_rotates_the_outer_gradient():
    torch.manual_seed(2)
    vq = VectorQuantizer(4, 6, rotation_trick=True, commitment_weight=0.0, sync_nu=0.5)
    AlternatingOptimizer(vq, torch.optim.SGD(vq.codebook_parameters(), lr=0.1))
    z = torch.randn(10, 4, requires_grad=True)
    g = torch.randn(10, 4)
    out = vq(z)  # the inner step moves the codes first; the outer gradient rotates onto the moved codes
    (out.quantized * g).sum().backward()
    q = out.quantized.detach()
    expected = torch.stack([closed_form(z[i].detach(), q[i]).T @ g[i] for i in range(10)])
    assert torch.allclose(z.grad, expected, atol=1e-5)
    sink = vq.alternating.sync_sink(vq)
    expected_sink = torch.zeros_like(sink).index_add_(0, out.indices, 0.5 * g)  # ν·g, not rotated
    assert torch.allclose(sink, expected_sink, atol=1e-6)
