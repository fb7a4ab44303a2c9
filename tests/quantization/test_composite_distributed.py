"""Residual and grouped quantizers in two real CPU processes over gloo: identical codebooks and dropout draws."""

import datetime
import json
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from hf_vq import AlternatingOptimizer
from hf_vq.quantization.grouped import GroupedVectorQuantizer
from hf_vq.quantization.residual import ResidualVectorQuantizer

from .test_distributed import BATCH_SIZES, free_port

OPTIONS = dict(kmeans_init=True, replace_after=2, affine="learnable", sync_nu=0.1)


def worker(rank, world, port, kind, alternate, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=60))
    torch.manual_seed(100 + rank)  # different data and initial codebooks per rank: k-means must sync them
    enc = torch.nn.Linear(4, 4)
    for p in enc.parameters():
        dist.broadcast(p.data, 0)
    if kind == "residual":
        vq = ResidualVectorQuantizer(4, 16, num_levels=3, quantizer_dropout=True, **OPTIONS)
    else:
        vq = GroupedVectorQuantizer(4, 16, num_groups=2, **OPTIONS)
    opt = torch.optim.Adam(list(enc.parameters()) + list(vq.parameters()), lr=0.05)
    for member in vq.modules():
        if hasattr(member, "attach_optimizer"):
            member.attach_optimizer(opt)
    if alternate:
        AlternatingOptimizer(vq, torch.optim.Adam(vq.codebook_parameters(), lr=0.05), inner_steps=2)
    used = []
    for n in BATCH_SIZES[rank]:
        out = vq(enc(torch.randn(n, 4) * (1 + rank)))
        used.append(out.indices.shape[-1])
        opt.zero_grad()
        if n:
            (out.quantized.pow(2).mean() + out.loss).backward()
        for p in list(enc.parameters()) + list(vq.parameters()):  # DDP's gradient average
            if p.requires_grad:
                g = p.grad if p.grad is not None else torch.zeros_like(p)
                dist.all_reduce(g)
                p.grad = g / world
        opt.step()
    state = {k: v.contiguous() for k, v in vq.state_dict().items()}
    save_file(state, os.path.join(out_dir, f"rank{rank}.safetensors"))
    with open(os.path.join(out_dir, f"used{rank}.json"), "w") as f:
        json.dump(used, f)
    dist.destroy_process_group()


@pytest.mark.timeout(240)
@pytest.mark.parametrize("kind,alternate", [("residual", True), ("group", False)])
def test_two_processes_keep_identical_codebooks(tmp_path, kind, alternate):
    mp.start_processes(worker, args=(2, free_port(), kind, alternate, str(tmp_path)), nprocs=2, join=True,
                       start_method="spawn")
    a, b = (load_file(tmp_path / f"rank{r}.safetensors") for r in range(2))
    assert a.keys() == b.keys()
    assert len([k for k in a if k.endswith("codebook_signal")]) == (3 if kind == "residual" else 2)
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs across ranks"
    used = [json.loads((tmp_path / f"used{r}.json").read_text()) for r in range(2)]
    assert used[0] == used[1]  # quantizer dropout drew the same number of levels on both ranks
    if kind == "residual":
        assert len(set(used[0])) > 1  # and it did vary
        assert all(int(a[f"levels.{q}.num_steps"]) == len(BATCH_SIZES[0]) for q in range(3))
