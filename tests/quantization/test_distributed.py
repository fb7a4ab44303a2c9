"""Two real CPU processes over gloo: every rank must end with the same codebook and state."""

import datetime
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from hf_vq import AlternatingOptimizer, VectorQuantizer

# Per-rank batch sizes: rank 1 sometimes has fewer vectors than codes, or none at all.
BATCH_SIZES = [[64, 48, 64, 64, 32, 64, 64, 64], [3, 0, 40, 2, 64, 0, 5, 64]]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(rank, world, port, options, alternate, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=60))
    torch.manual_seed(100 + rank)  # different data and different initial codebooks on each rank
    enc = torch.nn.Linear(4, 4)
    vq = VectorQuantizer(4, 16, **options)
    if not options.get("kmeans_init"):  # DDP broadcasts rank 0's initial state; k-means must sync by itself
        for t in list(vq.parameters()) + list(vq.buffers()):
            dist.broadcast(t.data, 0)
    opt = torch.optim.Adam(list(enc.parameters()) + list(vq.parameters()), lr=0.05)
    vq.attach_optimizer(opt)
    if alternate:
        AlternatingOptimizer(vq, torch.optim.Adam(vq.codebook_parameters(), lr=0.05), inner_steps=2)
    for n in BATCH_SIZES[rank]:
        out = vq(enc(torch.randn(n, 4) * (1 + rank)))
        opt.zero_grad()
        if n:
            (out.quantized.pow(2).mean() + out.loss).backward()
        # average the codebook's gradients as DDP would; this test isolates the layer's own sync
        for p in vq.parameters():
            if p.requires_grad:
                g = p.grad if p.grad is not None else torch.zeros_like(p)
                dist.all_reduce(g)
                p.grad = g / world
        opt.step()
    save_file(
        {k: v.contiguous() for k, v in vq.state_dict().items()}, os.path.join(out_dir, f"rank{rank}.safetensors")
    )
    dist.destroy_process_group()


@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    "options,alternate",
    [
        (dict(kmeans_init=True, replace_after=2, affine="learnable"), False),
        (dict(kmeans_init=True, replace_after=2, affine="ema", sync_nu=0.1), True),
        (dict(codebook_update="ema", replace_after=3), False),
        (dict(kmeans_init=True, replace_after=2, affine="learnable", affine_covariance="full", sync_nu=0.1), True),
        (dict(replace_after=2, affine="ema", affine_covariance="full"), False),
        (dict(kmeans_init=True, replace_after=2, rotation_trick=True, sync_nu=0.1), False),
        (dict(replace_after=2, codebook_parametrization="simvq", rotation_trick=True, sync_nu=0.1), True),
        (dict(kmeans_init=True, codebook_parametrization="simvq"), False),
    ],
)
def test_two_processes_keep_identical_codebooks(tmp_path, options, alternate):
    mp.start_processes(
        worker, args=(2, free_port(), options, alternate, str(tmp_path)), nprocs=2, join=True, start_method="spawn"
    )
    a, b = (load_file(tmp_path / f"rank{r}.safetensors") for r in range(2))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs across ranks"
    assert int(a["num_steps"]) == 8 and int(a["code_usage"].sum()) == sum(map(sum, BATCH_SIZES))
