"""GroupedVectorQuantizer: G independent quantizers on slices of the features, with α for the whole vector."""

import pytest
import torch

from hf_vq import VectorQuantizer
from hf_vq.quantization import find_quantizers
from hf_vq.quantization.grouped import GroupedVectorQuantizer


@pytest.mark.parametrize("channel_first", [False, True])
def test_grouped_equals_independent_quantizers_on_the_slices(channel_first):
    torch.manual_seed(0)
    options = dict(commitment_weight=3.0, beta=0.9, sync_nu=0.2, affine="learnable", replace_after=2)
    gvq = GroupedVectorQuantizer(6, 8, num_groups=3, channel_first=channel_first, **options)
    # independent layers with the same state, built by hand with α/G each
    solo = [VectorQuantizer(2, 8, channel_first=channel_first, **{**options, "commitment_weight": 1.0})
            for _ in range(3)]
    for layer, group in zip(solo, gvq.groups):
        layer.load_state_dict(group.state_dict())
    z = torch.randn(4, 6, 5) if channel_first else torch.randn(20, 6)
    z1, z2 = z.clone().requires_grad_(True), z.clone().requires_grad_(True)
    out = gvq(z1)
    axis = 1 if channel_first else -1
    parts = [layer(p) for layer, p in zip(solo, z2.chunk(3, dim=axis))]
    assert torch.equal(out.quantized, torch.cat([p.quantized for p in parts], dim=axis))
    assert torch.equal(out.indices, torch.stack([p.indices for p in parts], dim=-1))
    assert out.indices.shape == z.movedim(axis, -1).shape[:-1] + (3,)
    torch.testing.assert_close(out.loss, sum(p.loss for p in parts))
    torch.testing.assert_close(out.codebook_perplexity, torch.stack([p.perplexity for p in parts]))
    w = torch.randn_like(z)
    ((out.quantized * w).sum() + out.loss).backward()
    ((torch.cat([p.quantized for p in parts], dim=axis) * w).sum() + sum(p.loss for p in parts)).backward()
    torch.testing.assert_close(z1.grad, z2.grad)
    for layer, group in zip(solo, gvq.groups):
        torch.testing.assert_close(group.codebook_signal.grad, layer.codebook_signal.grad)
        torch.testing.assert_close(group.affine.scale.grad, layer.affine.scale.grad)


def test_loss_is_alpha_times_the_mse_over_all_features_and_indices_round_trip():
    torch.manual_seed(1)
    gvq = GroupedVectorQuantizer(8, 16, num_groups=4, commitment_weight=5.0).eval()
    single = VectorQuantizer(8, 16, commitment_weight=5.0).eval()
    z = torch.randn(50, 8)
    out = gvq(z)
    mse = (z - out.quantized).pow(2).mean()
    torch.testing.assert_close(out.commitment, mse)
    torch.testing.assert_close(out.loss, 5.0 * mse)  # what one VectorQuantizer's α means (A.1)
    torch.testing.assert_close(single(z).loss, 5.0 * (z - single(z).quantized).pow(2).mean())
    assert torch.equal(gvq.get_codes(out.indices), out.quantized)
    for g, group in enumerate(gvq.groups):  # each group searched its own slice (eq 5)
        assert torch.equal(torch.cdist(z[:, 2 * g: 2 * g + 2], group.codebook).argmin(1), out.indices[:, g])


def test_options_per_group_and_errors():
    gvq = GroupedVectorQuantizer(4, 8, num_groups=2, group_options=[{"affine": "learnable"}, {"replace_after": 5}])
    assert [g.options.affine for g in gvq.groups] == ["learnable", None]
    assert [g.replace_after for g in gvq.groups] == [0, 5]
    assert find_quantizers(gvq) == list(gvq.groups)
    with pytest.raises(ValueError, match="num_groups=3 must divide dim=4"):
        GroupedVectorQuantizer(4, 10**12, num_groups=3)
    with pytest.raises(ValueError, match=r"group_options\[1\]: affine must be one of"):
        GroupedVectorQuantizer(4, 10**12, group_options=[{}, {"affine": "full"}])
    gvq = GroupedVectorQuantizer(4, 8)
    with pytest.raises(ValueError, match="dim=4 features on axis -1"):
        gvq(torch.randn(3, 5))
    with pytest.raises(ValueError, match=r"indices must be a tensor \(\.\.\., num_groups=2\)"):
        gvq.get_codes(torch.zeros(3, 3, dtype=torch.long))
