"""SimVQ (Zhu et al. 2024): codes = one learnable linear map of a frozen random basis; foldable into plain codes."""

import torch

from hf_vq import VectorQuantizer


def trained_simvq(steps: int = 5, **options) -> VectorQuantizer:
    torch.manual_seed(0)
    vq = VectorQuantizer(4, 16, codebook_parametrization="simvq", **options)
    encoder = torch.nn.Linear(4, 4)
    opt = torch.optim.Adam(list(encoder.parameters()) + list(vq.parameters()), lr=0.05)
    for _ in range(steps):
        out = vq(encoder(torch.randn(32, 4)))
        opt.zero_grad()
        (out.quantized.pow(2).mean() + out.loss).backward()
        opt.step()
    return vq


def test_options_imply_the_full_learnable_affine():
    vq = VectorQuantizer(4, 16, codebook_parametrization="simvq")
    assert (vq.options.affine, vq.options.affine_covariance) == ("learnable", "full")
    # a model config's paper defaults (learnable diagonal affine) become SimVQ's full map
    paper = VectorQuantizer(4, 16, codebook_parametrization="simvq", affine="learnable", affine_lr_scale=10.0)
    assert (paper.options.affine, paper.options.affine_covariance) == ("learnable", "full")
    assert not vq.codebook_signal.requires_grad and "codebook_signal" not in dict(vq.named_parameters())
    assert {id(p) for p in vq.codebook_parameters()} == {id(vq.affine.scale), id(vq.affine.bias)}


def test_basis_stays_frozen_and_every_code_follows_the_linear_map():
    torch.manual_seed(0)
    basis = VectorQuantizer(4, 16, codebook_parametrization="simvq").codebook_signal.detach().clone()
    vq = trained_simvq()
    assert torch.equal(vq.codebook_signal, basis)  # no gradient, no optimizer step reached it
    w, b = vq.affine.params()
    assert not torch.allclose(w[0], torch.eye(4))  # the map learned
    assert torch.allclose(vq.codebook, basis @ w[0].T + b[0], atol=1e-6)  # c = W·c_signal + b, for every code


def test_fold_gives_plain_codes_with_identical_outputs():
    vq = trained_simvq().eval()
    z = torch.randn(50, 4)
    before = vq(z)
    codes = vq.codebook.clone()
    vq.fold_affine()
    after = vq(z)
    assert vq.affine is None and vq.options.codebook_parametrization == "direct" and vq.options.affine is None
    assert vq.codebook_signal.requires_grad and vq.codebook_parametrization == "direct"  # a plain codebook again
    assert torch.equal(before.indices, after.indices)
    assert torch.allclose(before.quantized, after.quantized, atol=1e-6)
    assert torch.allclose(vq.codebook, codes, atol=1e-6)
    plain = VectorQuantizer(4, 16, **{k: v for k, v in vars(vq.options).items() if k not in ("dim", "codebook_size")})
    plain.load_state_dict(vq.state_dict(), strict=True)  # the folded layer is a plain layer with these codes
    assert torch.equal(plain.eval()(z).quantized, after.quantized)


def test_save_and_load_restore_basis_and_map():
    vq = trained_simvq(rotation_trick=True)
    fresh = VectorQuantizer(4, 16, codebook_parametrization="simvq", rotation_trick=True)
    fresh.load_state_dict(vq.state_dict(), strict=True)
    z = torch.randn(20, 4)
    assert torch.equal(vq.eval()(z).quantized, fresh.eval()(z).quantized)
    assert "codebook_signal" in dict(fresh.named_buffers())  # a buffer: no loader or optimizer can train it
