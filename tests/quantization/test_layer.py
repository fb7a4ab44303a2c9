import math

import pytest
import torch
import torch.nn.functional as F

from hf_vq import VectorQuantizer


def reference_forward(z, codebook, nu, alpha, beta):
    """Eqs 5, 8-10 and 21 written with autograd, the way the paper's snippet does."""
    idx = torch.cdist(z.detach(), codebook.detach()).argmin(1)
    z_q = codebook[idx]
    d = lambda a, b: (a - b).pow(2).mean()  # noqa: E731  (A.1: mean-squared error over all elements)
    loss = alpha * ((1 - beta) * d(z, z_q.detach()) + beta * d(z.detach(), z_q))
    out = z + (z_q - z).detach() + nu * (z_q - z_q.detach())
    return out, loss, idx


@pytest.mark.parametrize("nu", [0.0, 0.3])
@pytest.mark.parametrize("beta", [0.0, 0.7, 1.0])
def test_gradients_match_reference_expression(nu, beta):
    torch.manual_seed(0)
    vq = VectorQuantizer(6, 12, sync_nu=nu, beta=beta, commitment_weight=2.5)
    z = torch.randn(40, 6, requires_grad=True)
    upstream = torch.randn(40, 6)

    out = vq(z)
    (out.quantized * upstream).sum().add(out.loss).backward()

    z_ref = z.detach().clone().requires_grad_()
    c_ref = vq.codebook_signal.detach().clone().requires_grad_()
    ref_out, ref_loss, ref_idx = reference_forward(z_ref, c_ref, nu, 2.5, beta)
    (ref_out * upstream).sum().add(ref_loss).backward()

    assert torch.equal(out.indices, ref_idx)
    assert torch.allclose(out.quantized, ref_out, atol=1e-6)
    assert torch.allclose(out.loss, ref_loss)
    assert torch.allclose(z.grad, z_ref.grad, atol=1e-6)
    assert torch.allclose(vq.codebook_signal.grad, c_ref.grad, atol=1e-6)


def test_sync_codebook_gradient_is_nu_times_upstream_plus_commitment():
    # eq 21 spelled out: ∂L/∂c_k = Σ_{i→k} [ν·g_i + αβ·2(c_k − z_i)/(N·D)]
    torch.manual_seed(1)
    nu, alpha, beta = 0.5, 3.0, 0.9
    vq = VectorQuantizer(4, 5, sync_nu=nu, commitment_weight=alpha, beta=beta)
    z = torch.randn(30, 4)
    g = torch.randn(30, 4)
    out = vq(z)
    (out.quantized * g).sum().add(out.loss).backward()
    c = vq.codebook_signal.detach()
    expected = torch.zeros_like(c)
    for i, k in enumerate(out.indices.tolist()):
        expected[k] += nu * g[i] + alpha * beta * 2 * (c[k] - z[i]) / (30 * 4)
    assert torch.allclose(vq.codebook_signal.grad, expected, atol=1e-6)


def test_forward_value_is_exactly_the_code_vectors():
    vq = VectorQuantizer(8, 32)
    z = torch.randn(2, 5, 8) * 100
    out = vq(z)
    assert torch.equal(out.quantized, vq.lookup(out.indices))


def test_beta_one_sgd_equals_ema_rule():
    # A.2: SGD with lr η on the β = 1 commitment loss is the EMA rule (eq 11) with γ = η.
    torch.manual_seed(2)
    eta = 0.1
    z = torch.randn(16, 3) * 0.1 + 5.0  # every vector is nearest to code 0, placed next to them
    init = torch.randn(4, 3)
    init[0] = 4.0

    # α = D/2 makes α·MSE (A.1) the ½‖·‖² of A.2 averaged over vectors, whose SGD step is eq 11 exactly.
    sgd_vq = VectorQuantizer(3, 4, beta=1.0, commitment_weight=1.5)
    ema_vq = VectorQuantizer(3, 4, codebook_update="ema", ema_decay=1 - eta)
    with torch.no_grad():
        sgd_vq.codebook_signal.copy_(init)
        ema_vq.codebook_signal.copy_(init)
    opt = torch.optim.SGD(sgd_vq.parameters(), lr=eta)
    for step in range(3):
        batch = z + 0.01 * step
        opt.zero_grad()
        sgd_vq(batch).loss.backward()
        opt.step()
        ema_vq(batch)
        assert torch.allclose(sgd_vq.codebook_signal, ema_vq.codebook_signal, atol=1e-6)
    expected = init[0].clone()
    for step in range(3):
        expected = (1 - eta) * expected + eta * (z + 0.01 * step).mean(0)
    assert torch.allclose(ema_vq.codebook_signal[0], expected, atol=1e-6)
    assert torch.equal(ema_vq.codebook_signal[1:], init[1:])  # unselected codes are not touched


def test_ema_codebook_takes_no_gradient():
    vq = VectorQuantizer(4, 8, codebook_update="ema")
    assert not vq.codebook_signal.requires_grad
    assert vq.codebook_parameters() == []
    z = torch.randn(10, 4, requires_grad=True)
    out = vq(z)
    out.loss.backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()


@pytest.mark.parametrize("covariance", ["diagonal", "full"])
@pytest.mark.parametrize("affine", ["learnable", "ema"])
def test_affine_moves_codes_that_were_never_selected(affine, covariance):
    torch.manual_seed(3)
    vq = VectorQuantizer(4, 16, affine=affine, affine_covariance=covariance, affine_lr_scale=1.0, beta=0.9)
    z = torch.randn(64, 4) * 0.5 + 3.0
    opt = torch.optim.SGD(vq.parameters(), lr=0.1)
    before = vq.codebook.clone()
    out = vq(z)
    out.loss.backward()
    opt.step()
    unselected = torch.ones(16, dtype=torch.bool)
    unselected[out.indices.unique()] = False
    assert unselected.any()
    after = vq.codebook
    assert (after[unselected] - before[unselected]).abs().sum(1).min() > 1e-4
    if affine == "learnable":  # the raw codes of unselected rows got no gradient; only the shared affine moved them
        assert vq.codebook_signal.grad[unselected].abs().max() == 0
        assert vq.affine.scale.grad.abs().sum() > 0 and vq.affine.bias.grad.abs().sum() > 0


def test_ema_affine_matches_embedding_moments():
    # A.12: after the first update (momentum taken as 1) the codebook's moments equal the embedding's.
    torch.manual_seed(4)
    vq = VectorQuantizer(3, 256, affine="ema")
    z = torch.randn(4096, 3) * torch.tensor([0.5, 2.0, 3.0]) + torch.tensor([1.0, -2.0, 10.0])
    vq(z)
    codes = vq.codebook
    assert torch.allclose(codes.mean(0), z.mean(0), atol=1e-3)
    assert torch.allclose(codes.var(0, unbiased=False), z.var(0, unbiased=False), rtol=1e-3)


def test_full_ema_affine_matches_embedding_mean_and_covariance():
    # W = Σ_e^½ Σ_c^−½, bias = μ_e − W μ_c: the codes take the embedding's mean and full covariance, even
    # for a correlated, nearly rank-1 embedding that a diagonal scale cannot reach.
    torch.manual_seed(4)
    vq = VectorQuantizer(3, 512, affine="ema", affine_covariance="full")
    direction = torch.tensor([1.0, 2.0, -1.0])
    z = torch.randn(4096, 1) * direction + 0.05 * torch.randn(4096, 3) + torch.tensor([1.0, -2.0, 10.0])
    vq(z)
    codes = vq.codebook
    assert torch.allclose(codes.mean(0), z.mean(0), atol=1e-3)
    assert torch.allclose(torch.cov(codes.T, correction=0), torch.cov(z.T, correction=0), atol=1e-3)
    diagonal = VectorQuantizer(3, 512, affine="ema")
    diagonal(z)
    corr = lambda c: torch.corrcoef(c.T)[0, 1]  # noqa: E731
    assert corr(codes) == pytest.approx(float(corr(z)), abs=1e-3) and abs(float(corr(diagonal.codebook))) < 0.2


def test_full_learnable_affine_is_c_mean_plus_w_c_signal():
    vq = VectorQuantizer(3, 4, affine="learnable", affine_covariance="full", affine_lr_scale=10.0)
    theta = torch.randn(3, 3)
    with torch.no_grad():
        vq.affine.scale[0].copy_(theta)
        vq.affine.bias.fill_(-0.2)
    w = torch.eye(3) + 10.0 * theta
    assert torch.allclose(vq.codebook, vq.codebook_signal @ w.T - 2.0, atol=1e-5)


def test_learnable_affine_parameterisation_matches_a1():
    vq = VectorQuantizer(3, 4, affine="learnable", affine_lr_scale=10.0)
    with torch.no_grad():
        vq.affine.scale.fill_(0.1)
        vq.affine.bias.fill_(-0.2)
    expected = (1 + 10.0 * 0.1) * vq.codebook_signal + 10.0 * -0.2
    assert torch.allclose(vq.codebook, expected)


def test_affine_groups_have_separate_parameters():
    vq = VectorQuantizer(2, 6, affine="learnable", affine_groups=3)
    with torch.no_grad():
        vq.affine.bias[1].fill_(1.0)
    shift = vq.codebook - vq.codebook_signal
    assert (
        torch.allclose(shift[2:4], torch.ones(2, 2), atol=1e-6)
        and shift[:2].abs().max() == 0
        and shift[4:].abs().max() == 0
    )


@pytest.mark.parametrize("covariance", ["diagonal", "full"])
@pytest.mark.parametrize("affine", [None, "learnable", "ema"])
def test_fold_affine_keeps_outputs(affine, covariance):
    torch.manual_seed(5)
    vq = VectorQuantizer(4, 8, affine=affine, affine_covariance=covariance)
    for _ in range(3):
        vq(torch.randn(32, 4) * 2 + 1)
    if affine == "learnable":
        with torch.no_grad():
            vq.affine.scale.normal_()
            vq.affine.bias.normal_()
    vq.eval()
    z = torch.randn(20, 4)
    before = vq(z)
    vq.fold_affine()
    after = vq(z)
    assert vq.affine is None and not any("affine" in k for k in vq.state_dict())
    assert torch.equal(before.indices, after.indices)
    assert torch.allclose(before.quantized, after.quantized, atol=1e-6)


def test_cosine_mode_normalises_and_picks_max_cosine_similarity():
    torch.manual_seed(6)
    vq = VectorQuantizer(5, 10, distance="cosine")
    z = torch.randn(50, 5) * 7
    out = vq(z)
    sims = F.normalize(z, dim=-1) @ F.normalize(vq.codebook_signal.detach(), dim=-1).t()
    assert torch.equal(out.indices, sims.argmax(1))
    assert torch.allclose(out.quantized.norm(dim=-1), torch.ones(50), atol=1e-6)
    assert torch.allclose(vq.codebook.norm(dim=-1), torch.ones(10), atol=1e-6)


def test_cosine_with_zero_vectors_is_finite():
    vq = VectorQuantizer(3, 4, distance="cosine")
    z = torch.zeros(5, 3, requires_grad=True)
    out = vq(z)
    out.loss.backward()
    assert torch.isfinite(out.quantized).all() and torch.isfinite(z.grad).all()


def test_channel_first_4d_equals_channel_last():
    torch.manual_seed(7)
    cf = VectorQuantizer(6, 16, channel_first=True).eval()
    cl = VectorQuantizer(6, 16).eval()
    cl.load_state_dict(cf.state_dict())
    x = torch.randn(2, 6, 3, 5)
    a, b = cf(x), cl(x.permute(0, 2, 3, 1))
    assert a.quantized.shape == x.shape and a.indices.shape == (2, 3, 5)
    assert a.quantized.is_contiguous()
    assert torch.equal(a.indices, b.indices)
    assert torch.equal(a.quantized, b.quantized.permute(0, 3, 1, 2))
    assert torch.equal(cf.lookup(a.indices), a.quantized)


def test_bf16_autocast_on_cpu_keeps_input_dtype_and_is_finite():
    vq = VectorQuantizer(8, 16, affine="learnable", sync_nu=0.1)
    lin = torch.nn.Linear(8, 8)
    x = torch.randn(4, 10, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = lin(x)
        out = vq(h)
        assert h.dtype == torch.bfloat16
        assert out.quantized.dtype == torch.bfloat16
        loss = out.quantized.float().pow(2).mean() + out.loss
    loss.backward()
    assert torch.isfinite(out.quantized).all() and torch.isfinite(loss)
    assert torch.isfinite(lin.weight.grad).all() and torch.isfinite(vq.codebook_signal.grad).all()


def test_float64_input_gives_float64_output():
    vq = VectorQuantizer(4, 8).double()
    out = vq(torch.randn(6, 4, dtype=torch.float64))
    assert out.quantized.dtype == torch.float64


OPTIONS = [
    {},
    {"affine": "learnable", "affine_groups": 2},
    {"affine": "ema"},
    {"distance": "cosine"},
    {"codebook_update": "ema"},
    {"replace_after": 2, "kmeans_init": True, "sync_nu": 0.1},
    {"stochastic_temperature": 0.5},
    {"rotation_trick": True, "sync_nu": 0.1},
    {"codebook_parametrization": "simvq", "replace_after": 2},
]


@pytest.mark.parametrize("options", OPTIONS)
def test_state_dict_round_trip_is_strict_and_exact(options):
    torch.manual_seed(8)
    vq = VectorQuantizer(4, 8, **options)
    for _ in range(4):
        vq(torch.randn(16, 4))
    fresh = VectorQuantizer(4, 8, **options)
    fresh.load_state_dict(vq.state_dict(), strict=True)
    for key, value in vq.state_dict().items():
        assert torch.equal(value, fresh.state_dict()[key]), key
    vq.eval(), fresh.eval()
    z = torch.randn(10, 4)
    assert torch.equal(vq(z).quantized, fresh(z).quantized)


def test_perplexity_and_usage_of_the_batch():
    vq = VectorQuantizer(2, 4)
    with torch.no_grad():
        vq.codebook_signal.copy_(torch.tensor([[0.0, 0], [10, 0], [0, 10], [10, 10]]))
    out = vq(torch.tensor([[0.0, 0], [10, 0], [0, 10], [0.1, 0]]))
    p = torch.tensor([0.5, 0.25, 0.25])
    assert torch.allclose(out.perplexity, 2 ** (-(p * p.log2()).sum()))
    assert out.active_codes == 0.75
    with pytest.warns(FutureWarning, match="active_codes"):
        assert out.usage == 0.75


def test_nan_input_in_training_raises_and_can_be_disabled():
    vq = VectorQuantizer(3, 4)
    z = torch.randn(5, 3)
    z[2, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf.*check_finite=False"):
        vq(z)
    assert int(vq.num_steps) == 0  # nothing was updated
    VectorQuantizer(3, 4, check_finite=False)(z)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_input_in_eval_is_documented_not_checked(bad):
    """README: eval mode checks nothing; the bad vector still gets a valid index and a finite code, the loss is not
    finite."""
    vq = VectorQuantizer(3, 4, affine="learnable").eval()
    z = torch.randn(5, 3)
    z[2, 1] = bad
    out = vq(z)
    assert ((out.indices >= 0) & (out.indices < 4)).all()
    assert torch.isfinite(out.quantized).all() and torch.equal(out.quantized, vq.lookup(out.indices))
    assert torch.equal(out.indices[[0, 1, 3, 4]], vq(z[[0, 1, 3, 4]]).indices)  # the other vectors are unaffected
    assert not torch.isfinite(out.loss)


def test_empty_input_gives_empty_output():
    vq = VectorQuantizer(3, 4)
    out = vq(torch.randn(0, 7, 3))
    assert out.quantized.shape == (0, 7, 3) and out.indices.shape == (0, 7)
    assert out.loss == 0


def test_codebook_parameters_cover_codebook_and_affine():
    vq = VectorQuantizer(3, 4, affine="learnable")
    names = {id(p) for p in vq.codebook_parameters()}
    assert names == {id(vq.codebook_signal), id(vq.affine.scale), id(vq.affine.bias)}


BAD_ARGS = [
    (dict(dim=0), ValueError, "dim"),
    (dict(dim=2.5), TypeError, "dim"),
    (dict(codebook_size=0), ValueError, "codebook_size"),
    (dict(codebook_size="8"), TypeError, "codebook_size"),
    (dict(beta=1.5), ValueError, "beta"),
    (dict(beta=-0.1), ValueError, "beta"),
    (dict(beta=float("nan")), ValueError, "beta"),
    (dict(beta="0.9"), TypeError, "beta"),
    (dict(commitment_weight=-1.0), ValueError, "commitment_weight"),
    (dict(distance="manhattan"), ValueError, "distance"),
    (dict(codebook_update="adam"), ValueError, "codebook_update"),
    (dict(codebook_update="ema", affine="learnable"), ValueError, "codebook_update='ema'"),
    (dict(ema_decay=1.0), ValueError, "ema_decay"),
    (dict(affine="batchnorm"), ValueError, "affine"),
    (dict(affine="learnable", affine_groups=3), ValueError, "affine_groups"),
    (dict(affine_lr_scale=0.0), ValueError, "affine_lr_scale"),
    (dict(affine_momentum=0.0), ValueError, "affine_momentum"),
    (dict(sync_nu=-0.1), ValueError, "sync_nu"),
    (dict(replace_after=-1), ValueError, "replace_after"),
    (dict(replace_after=2.5), TypeError, "replace_after"),
    (dict(kmeans_init="yes"), TypeError, "kmeans_init"),
    (dict(kmeans_iters=-1), ValueError, "kmeans_iters"),
    (dict(stochastic_temperature=0.0), ValueError, "stochastic_temperature"),
    (dict(chunk_size=0), ValueError, "chunk_size"),
    (dict(rotation_trick=1), TypeError, "rotation_trick"),
    (dict(codebook_parametrization="lora"), ValueError, "codebook_parametrization"),
    (dict(codebook_parametrization="simvq", codebook_update="ema"), ValueError, "codebook_update='gradient'"),
    (dict(codebook_parametrization="simvq", affine="ema"), ValueError, "affine='ema'"),
]


@pytest.mark.parametrize("kwargs,error,name", BAD_ARGS)
def test_invalid_constructor_arguments_name_the_argument(kwargs, error, name):
    args = dict(dim=4, codebook_size=8) | kwargs
    with pytest.raises(error, match=name.replace("(", r"\(")):
        VectorQuantizer(**args)


def test_invalid_inputs_name_the_problem():
    vq = VectorQuantizer(4, 8)
    with pytest.raises(ValueError, match="feature width 5.*dim=4"):
        vq(torch.randn(3, 5))
    with pytest.raises(ValueError, match="channel_first=True"):
        vq(torch.randn(2, 4, 3, 3))
    with pytest.raises(TypeError, match="floating-point"):
        vq(torch.ones(3, 4, dtype=torch.long))
    with pytest.raises(TypeError, match="torch.Tensor"):
        vq([[0.0] * 4])
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 8\)"):
        vq.lookup(torch.tensor([8]))
    with pytest.raises(TypeError, match="integer"):
        vq.lookup(torch.tensor([0.0]))
    assert int(vq.num_steps) == 0


def test_gradient_accumulation_counts_one_lru_step_per_optimizer_step():
    vq = VectorQuantizer(2, 4, replace_after=3, step_on_forward=False)
    with torch.no_grad():
        vq.codebook_signal.copy_(torch.tensor([[0.0, 0], [10, 0], [0, 10], [10, 10]]))
    for _ in range(2):  # two optimizer steps of three micro-batches each
        for micro in range(3):
            vq(torch.tensor([[0.0, 0.1]]) if micro else torch.tensor([[10.0, 0.1]]))
        vq.end_step()
    assert int(vq.num_steps) == 2
    assert vq.idle_steps.tolist() == [0, 0, 2, 2]
    assert vq.code_usage.tolist() == [4, 2, 0, 0]


def test_default_codebook_init_is_kaiming_normal():
    torch.manual_seed(9)
    vq = VectorQuantizer(64, 4096)
    assert math.isclose(float(vq.codebook_signal.detach().std()), math.sqrt(2 / 64), rel_tol=0.02)


# Every option of the layer, run for a few training steps on the native CPU kernels and on the pure-torch
# path (HF_VQ_DISABLE_NATIVE=1) from the same state: indices, outputs, losses, gradients and the parameters
# after the optimizer steps must be identical, and the indices must be the float64 brute-force argmin.
TWO_PATH_OPTIONS = {
    "default": {},
    "affine+sync": {"affine": "learnable", "affine_groups": 2, "sync_nu": 0.3},
    "full affine": {"affine": "learnable", "affine_covariance": "full"},
    "ema affine": {"affine": "ema"},
    "cosine": {"distance": "cosine"},
    "channel_first": {"channel_first": True},
    "ema codebook": {"codebook_update": "ema"},
    "lru+kmeans": {"replace_after": 1, "kmeans_init": True},
    "stochastic": {"stochastic_temperature": 0.5},
    "float64": {"dtype": torch.float64},
    "bf16 autocast": {"autocast": torch.bfloat16},
    "alternating+sync": {"alternating": True, "sync_nu": 0.2},
    "rotation trick+affine+sync": {"rotation_trick": True, "affine": "learnable", "sync_nu": 0.3},
    "rotation trick+cosine": {"rotation_trick": True, "distance": "cosine"},
    "simvq+rotation trick": {"codebook_parametrization": "simvq", "rotation_trick": True, "sync_nu": 0.2},
}


def _train_steps(options: dict, native: bool, monkeypatch, steps: int = 3) -> list[dict]:
    from hf_vq import AlternatingOptimizer
    from hf_vq.quantization.kernels.cpu_extension import DISABLE_ENV, native_library

    options = dict(options)
    dtype, autocast = options.pop("dtype", torch.float32), options.pop("autocast", None)
    alternating = options.pop("alternating", False)
    monkeypatch.setenv(DISABLE_ENV, "0" if native else "1")
    assert (native_library() is not None) == native  # this machine builds the kernels (CI does)
    torch.manual_seed(0)
    dim, size = 8, 40
    vq = VectorQuantizer(dim, size, **options).to(dtype)
    encoder = torch.nn.Linear(dim, dim).to(dtype)
    named = lambda: list(encoder.named_parameters()) + list(vq.named_parameters())  # noqa: E731
    outer = [p for p in encoder.parameters()] + ([] if alternating else list(vq.parameters()))
    opt = torch.optim.SGD([p for p in outer if p.requires_grad], lr=0.1)
    if alternating:
        AlternatingOptimizer(vq, torch.optim.SGD(vq.codebook_parameters(), lr=0.1))
    searches = []  # what the search saw and chose
    assign = vq.assign

    def recording_assign(z, codebook, stochastic):
        indices = assign(z, codebook, stochastic)
        searches.append((z.clone(), codebook.detach().clone(), indices))
        return indices

    vq.assign = recording_assign
    records = []
    for step in range(steps):
        g = torch.Generator().manual_seed(step)
        x = torch.randn(2, 5, 7, dim, generator=g, dtype=dtype)
        with torch.autocast("cpu", dtype=autocast or torch.bfloat16, enabled=autocast is not None):
            h = encoder(x)
            if options.get("channel_first"):
                h = h.movedim(-1, 1)
            out = vq(h)
            upstream = torch.randn(out.quantized.shape, generator=g).to(out.quantized.dtype)
            loss = (out.quantized * upstream).sum() + out.loss
        opt.zero_grad()
        loss.backward()
        records.append({"indices": out.indices, "quantized": out.quantized, "loss": out.loss,
                        "commitment": out.commitment, "searched": searches[-1],
                        **{f"grad {n}": p.grad.clone() for n, p in named() if p.grad is not None}})
        opt.step()
    records.append({f"param {n}": p.detach().clone() for n, p in named()})
    return records


@pytest.mark.parametrize("name", list(TWO_PATH_OPTIONS))
def test_native_and_torch_paths_agree_on_every_option(name, monkeypatch):
    options = TWO_PATH_OPTIONS[name]
    native = _train_steps(options, True, monkeypatch)
    reference = _train_steps(options, False, monkeypatch)
    for step, (a, b) in enumerate(zip(native, reference)):
        assert a.keys() == b.keys(), step
        for key in a:
            if key in ("loss", "commitment"):  # one float64 sum in a different order
                assert torch.allclose(a[key], b[key], rtol=1e-6, atol=0), (step, key)
            elif key == "searched":
                assert all(torch.equal(x, y) for x, y in zip(a[key], b[key])), step
            else:
                assert torch.equal(a[key], b[key]), (step, key)
        if "searched" in a and "stochastic_temperature" not in options:
            z, codebook, indices = a["searched"]
            assert torch.equal(indices, torch.cdist(z.double(), codebook.double()).argmin(1)), step
