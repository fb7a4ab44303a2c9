#!/usr/bin/env python
"""Training-step benchmark of `hf_vq.VectorQuantizer` against other VQ layers and the GEMM floor.

One process, fp32, CPU tensors, N = 65,536 vectors of D = 64. For every thread count (--threads, default
1 and 2) and codebook size (--k, default 1,024 and 4,096) it times one training step (forward + backward
of ``quantized.sum() + loss``) of
   - hf_vq ``VectorQuantizer(D, K)`` on (N, D), default settings (native CPU kernels);
   - the same on its pure-torch path (``HF_VQ_DISABLE_NATIVE=1``);
   - hf_vq with ``affine="learnable", sync_nu=0.01, replace_after=20`` (the options' cost);
   - hf_vq with ``channel_first=True`` on (B, D, H, W), like-for-like with diffusers;
   - diffusers' ``VectorQuantizer`` as ``VQModel`` builds it (n_e=K, vq_embed_dim=D, beta=0.25), (B, D, H, W);
   - vector-quantize-pytorch's ``VectorQuantize(dim=D, codebook_size=K)`` with its defaults, if installed;
   - vqtorch's ``VectorQuant(D, K)``, if a checkout is given with --vqtorch PATH;
   - the bare (N×D)·(D×K) GEMM any exact search must do: the floor is the fastest of a one-shot
     ``torch.mm`` and ``torch.mm`` in row blocks of 64–1,024 rows into one reused output block;
then prints the ratios against their targets, where the native step's time goes (torch.profiler), and
the peak memory of a forward + backward at N = 1,048,576, K = 4,096 above its input (fresh subprocess).

Repetitions of all rows are interleaved round-robin, so a burst of load from other processes hits every
row alike. Ratios compare each row's fastest repetition (the least disturbed); medians are printed too.
`--json PATH` writes every number; `benchmarks/speed_table.py PATH` renders README.md's speed table from it.

Usage: python benchmarks/quantizer.py [--quick] [--json PATH] [--reps R] [--threads 1 2] [--k 1024 4096]
                                      [--vqtorch PATH] [--skip-memory] [--skip-profile]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections import defaultdict

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import torch  # noqa: E402

from hf_vq import VectorQuantizer  # noqa: E402
from hf_vq.quantization.kernels import cpu_extension  # noqa: E402

VQP_MISSING = "not installed: pip install vector-quantize-pytorch"
SPATIAL = 64  # channel-first inputs are (N / 64², D, 64, 64)
GEMM_BLOCKS = (64, 128, 256, 512, 1_024)

FULL = dict(n=65_536, d=64, ks=[1_024, 4_096], reps=5, warmup=1, mem_n=1_048_576, mem_k=4_096, mem_check_n=131_072)
QUICK = dict(n=8_192, d=64, ks=[1_024], reps=2, warmup=1, mem_n=32_768, mem_k=1_024, mem_check_n=8_192)

# ratio name: (comparison, target per K; None = reported, no target)
TARGETS = {
    "hf_vq/GEMM": ("<=", {1_024: 1.5, 4_096: 1.3}),
    "diffusers/hf_vq": (">=", 2.5),
    "vqp/hf_vq": (">=", 10.0),
}
MEMORY_TARGET_GB = 0.6


# ---------------------------------------------------------------------------------------------- helpers
def _fmt_ms(seconds: float) -> str:
    return f"{seconds * 1e3:9.1f} ms"


def _mib(n_bytes: float) -> str:
    return f"{n_bytes / 2**20:8.1f} MiB"


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


class Row:
    """One timed configuration: `step()` runs a full training step; `reset()` (untimed) clears grads."""

    def __init__(self, name: str, step, reset=None, reps: int = 5, warmup: int = 1, note: str = ""):
        self.name, self.step, self.reset, self.reps, self.warmup, self.note = name, step, reset, reps, warmup, note
        self.times: list[float] = []

    def run_once(self, record: bool = True) -> float:
        if self.reset is not None:
            self.reset()
        t0 = time.perf_counter()
        self.step()
        dt = time.perf_counter() - t0
        if record:
            self.times.append(dt)
        return dt

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def best(self) -> float:
        return min(self.times)

    def record(self) -> dict:
        return {"min_ms": self.best * 1e3, "median_ms": self.median * 1e3, "times_ms": [t * 1e3 for t in self.times],
                "note": self.note}


def run_round_robin(rows: list[Row]) -> None:
    for row in rows:
        for _ in range(row.warmup):
            row.run_once(record=False)
    for r in range(max(row.reps for row in rows)):
        for row in rows:
            if r < row.reps:
                row.run_once()


def _clear_grads(module: torch.nn.Module):
    def reset():
        for p in module.parameters():
            p.grad = None
    return reset


# ---------------------------------------------------------------------------------------------- rows
def hf_vq_row(name: str, x: torch.Tensor, d: int, k: int, reps: int, warmup: int, native: bool = True,
              **kwargs) -> Row:
    torch.manual_seed(0)
    vq = VectorQuantizer(d, k, **kwargs)

    def step():
        previous = os.environ.get(cpu_extension.DISABLE_ENV)
        os.environ[cpu_extension.DISABLE_ENV] = "0" if native else "1"
        try:
            z = x.detach().requires_grad_(True)
            out = vq(z)
            (out.quantized.sum() + out.loss).backward()
        finally:
            if previous is None:
                del os.environ[cpu_extension.DISABLE_ENV]
            else:
                os.environ[cpu_extension.DISABLE_ENV] = previous

    opts = ", ".join(f"{a}={b!r}" for a, b in kwargs.items())
    return Row(name, step, _clear_grads(vq), reps, warmup,
               note=f"VectorQuantizer({d}, {k}{', ' + opts if opts else ''}), {'native' if native else 'torch'} path")


def diffusers_row(x_cf: torch.Tensor, d: int, k: int, reps: int, warmup: int) -> Row | str:
    try:
        from diffusers.models.autoencoders.vae import VectorQuantizer as DiffusersVQ
    except Exception as exc:  # pragma: no cover - diffusers is a hard dependency of hf_vq
        return f"diffusers unavailable: {exc}"
    torch.manual_seed(0)
    vq = DiffusersVQ(k, vq_embed_dim=d, beta=0.25, remap=None, sane_index_shape=False)  # as VQModel builds it

    def step():
        z = x_cf.detach().requires_grad_(True)
        z_q, loss, _ = vq(z)
        (z_q.sum() + loss).backward()

    return Row("diffusers VectorQuantizer (B,D,H,W)", step, _clear_grads(vq), reps, warmup,
               note=f"diffusers VectorQuantizer(n_e={k}, vq_embed_dim={d}, beta=0.25): cdist + argmin, legacy loss")


def vqp_row(x: torch.Tensor, d: int, k: int, reps: int, warmup: int) -> Row | str:
    try:
        import vector_quantize_pytorch
        from vector_quantize_pytorch import VectorQuantize
    except ImportError:
        return VQP_MISSING
    torch.manual_seed(0)
    vq = VectorQuantize(dim=d, codebook_size=k)  # defaults: EMA codebook (decay 0.8), rotation trick, commitment 1.0
    x3 = x.view(-1, SPATIAL * SPATIAL, d) if x.shape[0] % (SPATIAL * SPATIAL) == 0 else x.unsqueeze(0)

    def step():
        z = x3.detach().requires_grad_(True)
        quantized, _, loss = vq(z)
        (quantized.sum() + loss.sum()).backward()

    version = getattr(vector_quantize_pytorch, "__version__", None)
    if version is None:
        try:
            from importlib.metadata import version as _v
            version = _v("vector-quantize-pytorch")
        except Exception:
            version = "?"
    return Row("vector-quantize-pytorch VectorQuantize (B,HW,D)", step, _clear_grads(vq), max(2, min(reps, 3)), warmup,
               note=f"vector-quantize-pytorch {version} VectorQuantize(dim={d}, codebook_size={k}) defaults: "
                    "EMA codebook update (decay 0.8), rotation trick, commitment_weight 1.0")


def vqtorch_row(checkout: str, x: torch.Tensor, d: int, k: int, reps: int, warmup: int) -> Row | str:
    """vqtorch (the paper authors' library) from a source checkout: `--vqtorch PATH` (PATH holds vqtorch/)."""
    if checkout not in sys.path:
        sys.path.insert(0, checkout)
    if "stringcolor" not in sys.modules:
        try:
            import stringcolor  # noqa: F401
        except ImportError:  # vqtorch only colours its messages with it; not on every package index
            import types

            sys.modules["stringcolor"] = types.SimpleNamespace(cs=lambda text, *_args, **_kw: text)
    try:
        from vqtorch.nn import VectorQuant
    except Exception as exc:
        return f"vqtorch unavailable from {checkout}: {exc}"
    torch.manual_seed(0)
    vq = VectorQuant(d, k, beta=0.95, kmeans_init=False, norm=None, cb_norm=None, affine_lr=0.0, sync_nu=0.0,
                     replace_freq=0, dim=-1)
    x3 = x.view(-1, SPATIAL * SPATIAL, d)

    def step():
        z = x3.detach().requires_grad_(True)
        z_q, out = vq(z)
        (z_q.sum() + out["loss"]).backward()

    return Row("vqtorch VectorQuant (B,HW,D)", step, _clear_grads(vq), max(2, min(reps, 3)), warmup,
               note=f"vqtorch VectorQuant({d}, {k}, beta=0.95) from {checkout}: chunked cdist search")


def gemm_rows(x: torch.Tensor, k: int, reps: int, warmup: int) -> list[Row]:
    """Candidates for the GEMM floor: one-shot, and row blocks into one reused (cache-resident) output."""
    n, d = x.shape
    codes_t = torch.randn(k, d).t()  # (D, K) view, as a layer would pass codebook.t()
    rows = [Row("GEMM one-shot", lambda: torch.mm(x, codes_t), None, reps, warmup,
                note=f"torch.mm ({n}x{d})·({d}x{k})")]
    for block in GEMM_BLOCKS:
        if block >= n:
            continue
        buffer = torch.empty(block, k)

        def step(block=block, buffer=buffer):
            for s in range(0, n, block):
                torch.mm(x[s:s + block], codes_t, out=buffer[: min(block, n - s)])

        rows.append(Row(f"GEMM blocks of {block}", step, None, reps, warmup,
                        note=f"torch.mm in row blocks of {block} into one reused ({block}, K) output"))
    return rows


# ---------------------------------------------------------------------------------------------- profile
_CATEGORIES = [  # (category, predicate on a top-level op name)
    ("native search (GEMM tiles + argmax)", lambda n: n == "hf_vq::native_search"),
    ("native forward (gather + squared error)", lambda n: n == "hf_vq::native_forward"),
    ("native backward (one pass)", lambda n: n == "hf_vq::native_backward"),
    ("search GEMM (mm/addmm)",
     lambda n: n in ("aten::addmm", "aten::mm", "aten::matmul", "aten::cdist", "aten::_cdist_forward")),
    ("argmin / argmax", lambda n: n in ("aten::argmin", "aten::argmax")),
    ("gather codes (index_select)", lambda n: n in ("aten::index_select", "aten::embedding", "aten::index")),
    ("backward index_add_",
     lambda n: n in ("aten::index_add_", "aten::index_add", "aten::scatter_add_", "aten::index_put_")),
    ("check_finite (sum / isfinite)", lambda n: n in ("aten::isfinite", "aten::all")),
    ("bincount / perplexity / LRU",
     lambda n: n in ("aten::bincount", "aten::log", "aten::exp", "aten::gt", "aten::masked_fill_", "aten::clamp_min",
                     "aten::nonzero", "aten::ge", "aten::mean")),
    ("copies (flatten/unflatten/clone/contiguous)",
     lambda n: n in ("aten::clone", "aten::contiguous", "aten::copy_", "aten::to", "aten::_to_copy", "aten::reshape",
                     "aten::_reshape_alias")),
    ("elementwise (loss, residual, grad)",
     lambda n: n in ("aten::sub", "aten::sub_", "aten::pow", "aten::sum", "aten::mul", "aten::mul_", "aten::add",
                     "aten::add_", "aten::div", "aten::div_", "aten::zeros_like", "aten::ones_like", "aten::fill_",
                     "aten::zero_", "aten::expand")),
]


def _category(name: str) -> str:
    for cat, pred in _CATEGORIES:
        if pred(name):
            return cat
    return "other ops"


def _categorise(events) -> tuple[dict, float]:
    """Group the time of top-level ops (an aten op or native kernel not called by another one; its
    children's time is included) by category and forward/backward phase. Returns ({category: [fwd µs,
    bwd µs]}, µs)."""
    per = defaultdict(lambda: [0.0, 0.0])
    counted = ("aten::", "hf_vq::")
    for ev in events:
        if not ev.name.startswith(counted):
            continue
        parent = ev.cpu_parent
        if parent is not None and parent.name.startswith(counted):
            continue
        backward = False
        p = parent
        while p is not None:
            if "Backward" in p.name or p.name.startswith("autograd::engine"):
                backward = True
                break
            p = p.cpu_parent
        per[_category(ev.name)][1 if backward else 0] += ev.cpu_time_total
    return per, sum(f + b for f, b in per.values())


def profile_breakdown(row: Row, steps: int) -> dict:
    """Profile `steps` steps of `row` one at a time (torch.profiler, CPU) and break down the fastest one:
    on a shared machine the fastest step is the one least disturbed by other processes."""
    from torch.profiler import ProfilerActivity, profile

    row.run_once(record=False)
    best = None
    for _ in range(steps):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            wall = row.run_once(record=False)
        if best is None or wall < best[0]:
            best = (wall, prof)
    wall, prof = best
    per, accounted_us = _categorise(prof.events())
    table = {cat: {"forward_ms": f / 1e3, "backward_ms": b / 1e3} for cat, (f, b) in per.items()}
    return {"step_ms": wall * 1e3, "profiled_steps": steps, "categories": table,
            "python_and_dispatch_ms": max(0.0, wall * 1e3 - accounted_us / 1e3)}


def print_breakdown(title: str, bd: dict) -> None:
    step = bd["step_ms"]
    print(f"\n{title}: {step:.1f} ms (fastest of {bd['profiled_steps']} profiled steps)")
    print(f"  {'where':48s} {'fwd ms':>8s} {'bwd ms':>8s} {'total':>8s} {'share':>6s}")
    items = sorted(bd["categories"].items(), key=lambda kv: -(kv[1]["forward_ms"] + kv[1]["backward_ms"]))
    for cat, v in items:
        tot = v["forward_ms"] + v["backward_ms"]
        print(f"  {cat:48s} {v['forward_ms']:8.1f} {v['backward_ms']:8.1f} {tot:8.1f} {100 * tot / step:5.1f}%")
    py = bd["python_and_dispatch_ms"]
    print(f"  {'python / autograd / dispatch (in no op)':48s} {'':8s} {'':8s} {py:8.1f} {100 * py / step:5.1f}%")


def noise_probe() -> dict:
    """Median/min time of a small parallel op (isfinite(8192×64).all()). With >1 intra-op thread and other
    processes on the cores, each parallel op waits for a descheduled worker and median ≫ min."""
    t = torch.randn(8192, 64)
    times = []
    for _ in range(40):
        t0 = time.perf_counter()
        torch.isfinite(t).all()
        times.append(time.perf_counter() - t0)
    times = times[5:]
    return {"median_ms": statistics.median(times) * 1e3, "min_ms": min(times) * 1e3}


# ---------------------------------------------------------------------------------------------- memory
def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _hwm_bytes() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_hwm() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) to the current RSS (Linux ≥ 4.0: clear_refs 5)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _memory_child(spec: dict) -> dict:
    """Runs in a fresh interpreter: peak RSS of one forward+backward above the RSS with the input allocated."""
    import resource

    torch.manual_seed(0)
    kind, n, d, k = spec["kind"], spec["n"], spec["d"], spec["k"]
    if kind in ("hf_vq", "hf_vq torch path"):
        if kind == "hf_vq torch path":
            os.environ[cpu_extension.DISABLE_ENV] = "1"
        layer = VectorQuantizer(d, k)

        def step(z):
            out = layer(z)
            (out.quantized.sum() + out.loss).backward()
            return out

        make = lambda m: torch.randn(m, d)  # noqa: E731
    else:
        from diffusers.models.autoencoders.vae import VectorQuantizer as DiffusersVQ

        layer = DiffusersVQ(k, vq_embed_dim=d, beta=0.25, remap=None, sane_index_shape=False)

        def step(z):
            out = layer(z)
            (out[0].sum() + out[1]).backward()
            return out

        make = lambda m: torch.randn(m // SPATIAL**2, d, SPATIAL, SPATIAL)  # noqa: E731
    # Small warm-up so one-time lazy allocations (thread pools, allocator arenas, the kernels) are in the baseline.
    step(make(SPATIAL**2).requires_grad_(True))
    layer.zero_grad(set_to_none=True)
    x = make(n).requires_grad_(True)  # the input: fully written, so resident
    gc.collect()
    base = _rss_bytes()
    method = "VmHWM after clear_refs"
    if not _reset_hwm():
        method = "ru_maxrss (lifetime peak; baseline may already include earlier peaks)"
    t0 = time.perf_counter()
    out = step(x)
    secs = time.perf_counter() - t0
    hwm = _hwm_bytes() if method.startswith("VmHWM") else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    del out
    return {"kind": kind, "n": n, "d": d, "k": k, "input_bytes": x.numel() * x.element_size(),
            "input_grad_bytes": x.grad.numel() * x.grad.element_size(), "baseline_rss": base, "peak_rss": hwm,
            "extra_bytes": hwm - base, "method": method, "step_s": secs}


def measure_memory(kind: str, n: int, d: int, k: int, threads: int, timeout: float = 600) -> dict:
    spec = json.dumps({"kind": kind, "n": n, "d": d, "k": k})
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--_memory-child", spec],
                          capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["failed"]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def diffusers_analytic_bytes(n: int, d: int, k: int) -> dict:
    """diffusers' peak above its input for an (N, D) batch and K codes, fp32, from its forward's source.

    The peak is inside torch.cdist(z, E): the full (N, K) distance matrix, cdist's augmented copy of the
    input [-2z, ‖z‖², 1] (N, D+2), and the permuted contiguous copy of z (N, D) that the forward made.
    (The check run at a smaller N measures this within a few per cent.)
    """
    f = 4
    parts = {"distance_matrix": n * k * f, "augmented_input": n * (d + 2) * f, "permuted_copy": n * d * f}
    return {**parts, "total": sum(parts.values())}


def run_memory(cfg: dict, d: int, threads: int, quick: bool) -> dict:
    mn, mk, cn = cfg["mem_n"], cfg["mem_k"], cfg["mem_check_n"]
    print(f"\npeak memory of one forward+backward, fresh subprocess ({threads} threads), RSS above the RSS with the "
          "input allocated")
    mem = {}
    for kind in ("hf_vq",) if quick else ("hf_vq", "hf_vq torch path"):
        hf = measure_memory(kind, mn, d, mk, threads)
        mem[kind] = hf
        if "error" in hf:
            print(f"  {kind} N={mn:,} K={mk:,}: failed: {hf['error']}")
            continue
        outputs = hf["input_grad_bytes"] + hf["input_bytes"]  # z_q (same size as the input) + input.grad
        met = hf["extra_bytes"] <= MEMORY_TARGET_GB * 1e9
        print(f"  {kind} (N,D) N={mn:,} D={d} K={mk:,}: input {_mib(hf['input_bytes'])}; extra above input "
              f"{_mib(hf['extra_bytes'])} = {hf['extra_bytes'] / 1e9:.2f} GB"
              + (f" (target <= {MEMORY_TARGET_GB} GB: {'met' if met else 'NOT met'})" if kind == "hf_vq" else "")
              + f"; step {hf['step_s']:.1f} s [{hf['method']}]")
        print(f"    of which the step's own outputs quantized (N,D) and input.grad (N,D): {_mib(outputs)}")
    check = measure_memory("diffusers", cn, d, mk, threads)
    mem["diffusers_check"] = check
    est_small, est_full = diffusers_analytic_bytes(cn, d, mk), diffusers_analytic_bytes(mn, d, mk)
    if "error" in check:
        print(f"  diffusers check run N={cn:,}: failed: {check['error']}")
    else:
        print(f"  diffusers (B,D,H,W) measured at N={cn:,} K={mk:,}: extra above input {_mib(check['extra_bytes'])} "
              f"(analytic {_mib(est_small['total'])}, of which the (N,K) distance matrix "
              f"{_mib(est_small['distance_matrix'])})")
    print(f"  diffusers at N={mn:,} K={mk:,} (analytic, not run): (N,K) fp32 distance matrix "
          f"{est_full['distance_matrix'] / 2**30:.1f} GiB + (N,D+2) augmented input "
          f"{_mib(est_full['augmented_input'])}"
          f" + (N,D) permuted copy {_mib(est_full['permuted_copy'])} = {est_full['total'] / 2**30:.2f} GiB")
    mem["diffusers_analytic_full"] = est_full
    mem["diffusers_analytic_check"] = est_small
    mem["target_gb"] = MEMORY_TARGET_GB
    return mem


# ---------------------------------------------------------------------------------------------- one run
def _target(name: str, k: int) -> tuple[str, float] | None:
    cmp, target = TARGETS[name]
    target = target.get(k) if isinstance(target, dict) else target
    return None if target is None else (cmp, target)


def run_config(x: torch.Tensor, x_cf: torch.Tensor, k: int, threads: int, cfg: dict,
               vqtorch: str | None) -> tuple[dict, Row]:
    torch.set_num_threads(threads)
    n, d, reps, warmup = cfg["n"], cfg["d"], cfg["reps"], cfg["warmup"]
    load_start = _loadavg()
    print(f"\n=== {threads} thread{'s' if threads > 1 else ''}, K = {k:,}  (N={n:,} D={d} fp32; {reps} timed reps "
          f"after {warmup} warm-up, rows interleaved round-robin; load average {load_start})")
    hf = hf_vq_row("hf_vq (N,D)", x, d, k, reps, warmup)
    hf_torch = hf_vq_row("hf_vq (N,D) torch path", x, d, k, reps, warmup, native=False)
    hf_opt = hf_vq_row("hf_vq (N,D) affine+sync+LRU", x, d, k, reps, warmup, affine="learnable", sync_nu=0.01,
                       replace_after=20)
    hf_cf = hf_vq_row("hf_vq (B,D,H,W) channel_first", x_cf, d, k, reps, warmup, channel_first=True)
    rows = [hf, hf_torch, hf_opt, hf_cf]
    peers = {"diffusers": diffusers_row(x_cf, d, k, reps, warmup), "vqp": vqp_row(x, d, k, reps, warmup)}
    if vqtorch:
        peers["vqtorch"] = vqtorch_row(vqtorch, x, d, k, reps, warmup)
    rows += [p for p in peers.values() if isinstance(p, Row)]
    gemms = gemm_rows(x, k, reps, warmup)
    run_round_robin(rows + gemms)
    floor = min(gemms, key=lambda r: r.best)

    print(f"\n{'training step':48s} {'min':>12s} {'median':>12s}  reps")
    for row in rows:
        print(f"{row.name:48s} {_fmt_ms(row.best)} {_fmt_ms(row.median)}  {len(row.times)}")
    for name, peer in peers.items():
        if isinstance(peer, str):
            print(f"{name:48s} {peer}")
    print(f"{'GEMM floor (' + floor.name + ')':48s} {_fmt_ms(floor.best)} {_fmt_ms(floor.median)}  {len(floor.times)}")
    print("  GEMM candidates (min): "
          + ", ".join(f"{r.name.removeprefix('GEMM ')} {r.best * 1e3:.1f} ms" for r in gemms))

    ratios = {}

    def ratio(label: str, num: Row | str, den: Row | str, target: str | None = None) -> None:
        if not isinstance(num, Row) or not isinstance(den, Row):
            print(f"ratio {label}: n/a ({num if isinstance(num, str) else den})")
            ratios[label] = None
            return
        value, median = num.best / den.best, num.median / den.median
        entry = {"min": value, "median": median}
        line = f"ratio {label}: {value:5.2f}x  (medians {median:5.2f}x"
        goal = _target(target, k) if target else None
        if goal:
            cmp, bound = goal
            met = value >= bound if cmp == ">=" else value <= bound
            entry.update(target=f"{cmp} {bound:g}", met=met)
            line += f"; target {cmp} {bound:g}x: {'met' if met else 'NOT met'}"
        print(line + ")")
        ratios[label] = entry

    print()
    ratio("hf_vq/GEMM", hf, floor, "hf_vq/GEMM")
    ratio("hf_vq channel_first/GEMM", hf_cf, floor)
    ratio("hf_vq torch path/GEMM", hf_torch, floor)
    ratio("hf_vq options/hf_vq", hf_opt, hf)
    ratio("diffusers/hf_vq (both (B,D,H,W))", peers["diffusers"], hf_cf, "diffusers/hf_vq")
    ratio("diffusers/hf_vq (hf_vq channel-last)", peers["diffusers"], hf, "diffusers/hf_vq")
    ratio("vqp/hf_vq (both channel-last)", peers["vqp"], hf, "vqp/hf_vq")
    if vqtorch:
        ratio("vqtorch/hf_vq (both channel-last)", peers["vqtorch"], hf)
    result = {"threads": threads, "k": k, "loadavg_start": load_start, "loadavg_end": _loadavg(),
              "rows": {r.name: r.record() for r in rows},
              "skipped": {name: p for name, p in peers.items() if isinstance(p, str)},
              "gemm": {"floor": floor.name, "min_ms": floor.best * 1e3, "median_ms": floor.median * 1e3,
                       "candidates": {r.name: r.record() for r in gemms}},
              "ratios": ratios}
    return result, hf


# ---------------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (N=8192, K=1024), a minute: smoke test")
    parser.add_argument("--json", metavar="PATH", help="also write all numbers to this JSON file")
    parser.add_argument("--reps", type=int, help="timed repetitions per row (default 5, quick 2)")
    parser.add_argument("--threads", type=int, nargs="+", help="intra-op thread counts to run (default 1 2; quick: 1)")
    parser.add_argument("--k", type=int, nargs="+", help="codebook sizes (default 1024 4096; quick 1024)")
    parser.add_argument("--vqtorch", metavar="PATH", help="a vqtorch source checkout: adds its VectorQuant row")
    parser.add_argument("--skip-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--skip-profile", action="store_true", help="skip the torch.profiler breakdown")
    parser.add_argument("--_memory-child", dest="memory_child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.memory_child:
        print(json.dumps(_memory_child(json.loads(args.memory_child))))
        return 0

    started = time.perf_counter()
    cfg = dict(QUICK if args.quick else FULL)
    cfg["reps"] = args.reps or cfg["reps"]
    cfg["ks"] = args.k or cfg["ks"]
    cfg["threads"] = args.threads or ([1] if args.quick else [1, 2])
    n, d = cfg["n"], cfg["d"]
    assert n % (SPATIAL * SPATIAL) == 0, "N must be a multiple of 64*64 for the (B, D, 64, 64) rows"
    lib = cpu_extension.native_library()
    native = {"available": lib is not None, "simd_bytes": lib.hf_vq_simd_bytes() if lib is not None else None,
              "error": cpu_extension._state.get("error")}
    environment = {"torch": torch.__version__, "cpu": _cpu_name(), "cpu_count": os.cpu_count(),
                   "python": platform.python_version(), "loadavg_start": _loadavg(), "native": native}
    results: dict = {"config": {**cfg, "dtype": "float32", "device": "cpu", "quick": args.quick},
                     "environment": environment}
    print(f"hf_vq quantizer benchmark  N={n:,} D={d} K={cfg['ks']} threads={cfg['threads']} fp32 CPU "
          f"({'quick' if args.quick else 'full'})")
    kernels = f"yes ({8 * native['simd_bytes']}-bit SIMD)" if lib is not None else f"NO ({native['error']})"
    print(f"torch {torch.__version__}, {_cpu_name()} ({os.cpu_count()} CPUs), load average {_loadavg()}; native "
          f"kernels: {kernels}")
    probe = noise_probe()
    results["environment"]["noise_probe"] = probe
    if probe["median_ms"] > 3 * probe["min_ms"] + 0.2:
        print(f"noise probe (small parallel op): median {probe['median_ms']:.2f} ms, min {probe['min_ms']:.2f} ms  "
              "<- other processes are competing for the cores: compare the min columns")

    torch.manual_seed(0)
    x = torch.randn(n, d)
    x_cf = x.view(n // SPATIAL**2, SPATIAL, SPATIAL, d).permute(0, 3, 1, 2).contiguous()  # same vectors, (B, D, H, W)
    results["runs"], results["breakdown"] = [], {}
    for threads in cfg["threads"]:
        for k in cfg["ks"]:
            run, hf = run_config(x, x_cf, k, threads, cfg, args.vqtorch)
            results["runs"].append(run)
            if not args.skip_profile and threads == cfg["threads"][0]:
                bd = profile_breakdown(hf, 2 if args.quick else 3)
                print_breakdown(f"where hf_vq's native step goes, (N,D), K={k:,}, {threads} thread(s)", bd)
                results["breakdown"][f"k={k}"] = bd
            del hf
            gc.collect()

    if not args.skip_memory:
        results["memory"] = run_memory(cfg, d, cfg["threads"][0], args.quick)

    results["environment"]["loadavg_end"] = _loadavg()
    results["elapsed_s"] = time.perf_counter() - started
    print(f"\nload average at end: {_loadavg()} (on {os.cpu_count()} CPUs; above that, other processes shared the "
          "cores: compare the min columns)")
    print(f"benchmark took {results['elapsed_s']:.0f} s")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2, default=str)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
