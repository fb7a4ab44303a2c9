"""The Triton search kernel, run by Triton's CPU interpreter (TRITON_INTERPRET=1) where there is no GPU.

The interpreter runs the same kernel source on CPU tensors with numpy, so these tests check its logic
(tiles, masks, the running top-r, the bias, the centring); speed and bf16 (which numpy lacks) only show
on a GPU. Triton reads TRITON_INTERPRET when it is imported, so the kernel runs in one child process
(this file run as a script) and the tests check what it returns.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from hf_vq.quantization.kernels import triton_search
from hf_vq.quantization.search import _rerank, argmax_form

pytestmark = pytest.mark.skipif(triton_search.triton is None,
                                reason="Triton is not installed (Linux x86-64 wheels only)")

REPO = Path(__file__).resolve().parents[2]


def brute_force(z, c):
    return torch.cdist(z.double(), c.double()).argmin(1)


def random_case(n, k, d):
    g = torch.Generator().manual_seed(n + k)
    return torch.randn(n, d, generator=g), torch.randn(k, d, generator=g)


def tied_case():
    g = torch.Generator().manual_seed(1)
    c = torch.randn(100, 16, generator=g)
    c[90] = c[2]  # in a later tile than its twin
    c[5] = c[4]  # in the same tile
    return torch.cat([c[[2, 4]], torch.randn(30, 16, generator=g)]), c


def offset_case():
    # a large common offset and near-ties: a reduced-precision argmin alone is wrong, the rerank is not
    g = torch.Generator().manual_seed(4)
    c = torch.randn(90, 16, generator=g) + 100.0
    return c[torch.randint(90, (120,), generator=g)] + 0.7 * torch.randn(120, 16, generator=g), c


def midpoint_case():
    # vectors within 1e-3 of the midpoint of two codes: fp16 scores cannot tell the two apart
    g = torch.Generator().manual_seed(6)
    c = torch.randn(64, 16, generator=g)
    pairs = torch.randint(64, (200, 2), generator=g)
    return 0.5 * (c[pairs[:, 0]] + c[pairs[:, 1]]) + 1e-3 * torch.randn(200, 16, generator=g), c


EXACT = {"single": (1, 1, 1), "tails": (150, 70, 20), "wide": (65, 130, 80)}  # every tile's tail; D > BLOCK_D


def run_cases() -> dict[str, torch.Tensor]:
    """The kernel's outputs on every case (run in the interpreter child)."""
    out = {}
    for name, shape in EXACT.items():
        z, c = random_case(*shape)
        _, centred, bias = argmax_form(c, torch.float32)
        out[name] = triton_search.triton_candidates(z, centred, bias)
    z, c = tied_case()
    _, centred, bias = argmax_form(c, torch.float32)
    out["tied"] = triton_search.triton_candidates(z, centred, bias)
    for name, (z, c), top in (("offset", offset_case(), 8), ("midpoint", midpoint_case(), 8),
                              ("midpoint_top1", midpoint_case(), 1), ("few_codes", random_case(20, 3, 4), 5)):
        center, centred, _ = argmax_form(c, torch.float32)
        out[name] = triton_search.triton_candidates(z, centred, 0.5 * centred.pow(2).sum(-1), top=top, center=center,
                                                    dot_dtype=torch.float16)
    return out


@pytest.fixture(scope="module")
def found(tmp_path_factory):
    path = tmp_path_factory.mktemp("triton") / "found.safetensors"
    pythonpath = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": pythonpath}
    proc = subprocess.run([sys.executable, __file__, str(path)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return load_file(path)


@pytest.mark.parametrize("name", list(EXACT))
def test_fp32_kernel_is_the_exact_argmin(found, name):
    z, c = random_case(*EXACT[name])
    assert found[name].shape == (z.shape[0], 1) and found[name].dtype == torch.int64
    assert torch.equal(found[name][:, 0], brute_force(z, c))


def test_fp32_kernel_takes_the_first_of_tied_codes(found):
    z, c = tied_case()
    assert torch.equal(found["tied"][:, 0], brute_force(z, c))


def test_fp16_candidates_are_the_top_r_and_the_rerank_is_exact(found):
    z, c = offset_case()
    center, centred, _ = argmax_form(c, torch.float32)
    reduced = (z - center).half().float() @ centred.half().float().t() - 0.5 * centred.pow(2).sum(-1)  # what it ranks
    assert torch.equal(found["offset"].sort(1).values, reduced.topk(8, dim=1).indices.sort(1).values)
    assert torch.equal(_rerank(z, center, centred, found["offset"]), brute_force(z, c))
    z, c = midpoint_case()
    center, centred, _ = argmax_form(c, torch.float32)
    truth = brute_force(z, c)
    assert (found["midpoint_top1"][:, 0] != truth).any()  # the hazard is real
    assert torch.equal(_rerank(z, center, centred, found["midpoint"]), truth)


def test_top_is_rounded_up_to_a_power_of_two_and_fewer_codes_give_no_wrong_index(found):
    z, c = random_case(20, 3, 4)
    center, centred, _ = argmax_form(c, torch.float32)
    assert found["few_codes"].shape == (20, 8)
    assert ((found["few_codes"] >= 0) & (found["few_codes"] < 3)).all()
    assert torch.equal(_rerank(z, center, centred, found["few_codes"]), brute_force(z, c))


if __name__ == "__main__":
    save_file({k: v.contiguous() for k, v in run_cases().items()}, sys.argv[1])
