#!/usr/bin/env python
"""Training-step benchmark of `hf_vq.VectorQuantizer` against other VQ layers and the GEMM floor.

One process, fp32, CPU tensors. Prints:

1. the time of one training step (forward + backward of ``quantized.sum() + commitment loss``) for
   - hf_vq ``VectorQuantizer(D, K)``, channel-last (N, D), default settings;
   - hf_vq with ``affine="learnable", sync_nu=0.01, replace_after=20`` (the options' cost);
   - hf_vq with ``channel_first=True`` on (B, D, H, W), like-for-like with diffusers;
   - diffusers' ``VectorQuantizer`` as ``VQModel`` builds it (n_e=K, vq_embed_dim=D, beta=0.25), (B, D, H, W);
   - vector-quantize-pytorch's ``VectorQuantize(dim=D, codebook_size=K)`` with its defaults (EMA codebook,
     rotation trick), optional: skipped with a message when not installed;
   - the bare (N×D)·(D×K) GEMM that any exact search must do (fastest of one-shot and chunked);
2. the ratios diffusers/hf_vq, vqp/hf_vq and hf_vq/GEMM against their targets;
3. where hf_vq's step time goes (torch.profiler, grouped by operation);
4. peak memory of an hf_vq forward+backward at N=1,048,576, D=64, K=4,096 above its input, measured in
   a fresh subprocess, and diffusers' requirement for the same (analytic, checked against a smaller run).

Repetitions of all rows are interleaved round-robin, so a burst of load from other processes on a shared
machine hits every row alike; median and minimum are both printed, ratios use medians.

Usage: python benchmarks/quantizer.py [--quick] [--json PATH] [--reps R] [--threads T] [--skip-memory]
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

VQP_MISSING = "not installed: pip install vector-quantize-pytorch"
SPATIAL = 64  # channel-first inputs are (N / 64², D, 64, 64)

FULL = dict(n=65_536, d=64, k=1_024, reps=9, warmup=2, mem_n=1_048_576, mem_k=4_096, mem_check_n=131_072)
QUICK = dict(n=8_192, d=64, k=1_024, reps=3, warmup=1, mem_n=32_768, mem_k=1_024, mem_check_n=8_192)

TARGETS = {  # ratio name: (comparison, target)
    "diffusers/hf_vq": (">=", 2.0),
    "vqp/hf_vq": (">=", 8.0),
    "hf_vq/GEMM": ("<=", 1.3),
}


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


def _loadavg() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


class Row:
    """One timed configuration: `step()` runs a full training step; `reset()` (untimed) clears grads."""

    def __init__(self, name: str, step, reset=None, reps: int = 5, warmup: int = 1, note: str = ""):
        self.name, self.step, self.reset, self.reps, self.warmup, self.note = name, step, reset, reps, warmup, note
        self.times: list[float] = []
        self.cpu_times: list[float] = []

    def run_once(self, record: bool = True) -> float:
        if self.reset is not None:
            self.reset()
        c0, t0 = time.process_time(), time.perf_counter()
        self.step()
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        if record:
            self.times.append(dt)
            self.cpu_times.append(dc)
        return dt

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def best(self) -> float:
        return min(self.times)

    @property
    def cpu_best(self) -> float:
        return min(self.cpu_times)


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
def hf_vq_row(name: str, x: torch.Tensor, d: int, k: int, channel_first: bool, reps: int, warmup: int,
              **kwargs) -> Row:
    torch.manual_seed(0)
    vq = VectorQuantizer(d, k, channel_first=channel_first, **kwargs)

    def step():
        z = x.detach().requires_grad_(True)
        out = vq(z)
        (out.quantized.sum() + out.loss).backward()

    opts = ", ".join(f"{a}={b!r}" for a, b in kwargs.items())
    note = f"VectorQuantizer({d}, {k}, channel_first={channel_first}{', ' + opts if opts else ''})"
    return Row(name, step, _clear_grads(vq), reps, warmup, note=note)


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
    return Row("vector-quantize-pytorch VectorQuantize (B,HW,D)", step, _clear_grads(vq), max(3, min(reps, 5)), 1,
               note=f"vector-quantize-pytorch {version} VectorQuantize(dim={d}, codebook_size={k}) defaults: "
                    "EMA codebook update (decay 0.8), rotation trick, commitment_weight 1.0")


def gemm_rows(x: torch.Tensor, k: int, reps: int, warmup: int) -> list[Row]:
    n, d = x.shape
    codes_t = torch.randn(k, d).t()  # (D, K) view, as a layer would pass codebook.t()
    rows = [Row("GEMM one-shot", lambda: torch.mm(x, codes_t), None, reps, warmup,
                note=f"torch.mm ({n}x{d})·({d}x{k})")]
    for chunk in (1_024, 4_096, 16_384):
        if chunk >= n:
            continue

        def step(chunk=chunk):
            for s in range(0, n, chunk):
                torch.mm(x[s:s + chunk], codes_t)

        rows.append(Row(f"GEMM chunks of {chunk}", step, None, reps, warmup,
                        note=f"torch.mm in row chunks of {chunk}"))
    chunk = min(1_024, n)
    buffer = torch.empty(chunk, k)

    def step_out():  # the output block stays allocated (and cache-warm): no page faults, no allocator
        for s in range(0, n, chunk):
            rows_ = x[s:s + chunk]
            torch.mm(rows_, codes_t, out=buffer[: rows_.shape[0]])

    rows.append(Row(f"GEMM chunks of {chunk}, reused out=", step_out, None, reps, warmup,
                    note=f"torch.mm in row chunks of {chunk} into one preallocated (chunk, K) buffer"))
    return rows


# ---------------------------------------------------------------------------------------------- profile
_CATEGORIES = [  # (category, predicate on a top-level aten op name)
    ("search GEMM (addmm)",
     lambda n: n in ("aten::addmm", "aten::mm", "aten::matmul", "aten::cdist", "aten::_cdist_forward")),
    ("argmin", lambda n: n in ("aten::argmin", "aten::argmax")),
    ("gather codes (index_select)", lambda n: n in ("aten::index_select", "aten::embedding", "aten::index")),
    ("backward index_add_",
     lambda n: n in ("aten::index_add_", "aten::index_add", "aten::scatter_add_", "aten::index_put_")),
    ("check_finite (isfinite.all)", lambda n: n in ("aten::isfinite", "aten::all")),
    ("bincount / perplexity / LRU",
     lambda n: n in ("aten::bincount", "aten::log", "aten::exp", "aten::gt", "aten::masked_fill_", "aten::clamp_min",
                     "aten::nonzero", "aten::ge", "aten::mean")),
    ("copies (flatten/unflatten/clone/contiguous)",
     lambda n: n in ("aten::clone", "aten::contiguous", "aten::copy_", "aten::to", "aten::_to_copy", "aten::reshape",
                     "aten::_reshape_alias")),
    ("elementwise (commitment loss, residual, grad)",
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
    """Group the time of top-level aten ops (an aten op not called by another aten op; its children's
    time is included) by category and forward/backward phase. Returns ({category: [fwd µs, bwd µs]}, µs)."""
    per = defaultdict(lambda: [0.0, 0.0])
    bias_copy = 0.0
    for ev in events:
        if not ev.name.startswith("aten::"):
            continue
        parent = ev.cpu_parent
        if parent is not None and parent.name.startswith("aten::"):
            continue
        backward = False
        p = parent
        while p is not None:
            if "Backward" in p.name or p.name.startswith("autograd::engine"):
                backward = True
                break
            p = p.cpu_parent
        total = ev.cpu_time_total
        if ev.name == "aten::addmm":
            inner = sum(c.cpu_time_total for c in ev.cpu_children if c.name == "aten::copy_")
            bias_copy += inner
            total -= inner
        per[_category(ev.name)][1 if backward else 0] += total
    if bias_copy:
        per[BIAS_COPY][0] += bias_copy
    return per, sum(f + b for f, b in per.values())


BIAS_COPY = "addmm bias: copy ‖c‖² into each fresh (chunk,K) block"


def profile_breakdown(row: Row, steps: int) -> dict:
    """Profile `steps` steps of `row` one at a time (torch.profiler, CPU) and break down the fastest one:
    on a shared machine the fastest step is the one least disturbed by other processes."""
    from torch.profiler import ProfilerActivity, profile

    for _ in range(2):
        row.run_once(record=False)
    best = None
    for _ in range(steps):
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            wall = row.run_once(record=False)
        if best is None or wall < best[0]:
            best = (wall, prof)
    wall, prof = best
    per, accounted_us = _categorise(prof.events())
    table = {cat: {"forward_ms": f / 1e3, "backward_ms": b / 1e3} for cat, (f, b) in per.items()}
    top = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=14, max_name_column_width=34)
    return {"step_ms": wall * 1e3, "profiled_steps": steps, "categories": table,
            "python_and_dispatch_ms": max(0.0, wall * 1e3 - accounted_us / 1e3), "top_ops_table": top}


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


def print_breakdown(title: str, bd: dict) -> None:
    step = bd["step_ms"]
    print(f"\n{title}: {step:.1f} ms (fastest of {bd['profiled_steps']} profiled steps)")
    print(f"  {'where':60s} {'fwd ms':>8s} {'bwd ms':>8s} {'total':>8s} {'share':>6s}")
    items = sorted(bd["categories"].items(), key=lambda kv: -(kv[1]["forward_ms"] + kv[1]["backward_ms"]))
    for cat, v in items:
        tot = v["forward_ms"] + v["backward_ms"]
        print(f"  {cat:60s} {v['forward_ms']:8.1f} {v['backward_ms']:8.1f} {tot:8.1f} {100 * tot / step:5.1f}%")
    py = bd["python_and_dispatch_ms"]
    print(f"  {'python / autograd / dispatch (not in any aten op)':60s} {'':8s} {'':8s} {py:8.1f} "
          f"{100 * py / step:5.1f}%")


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
    if kind == "hf_vq":
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
    # Small warm-up so one-time lazy allocations (thread pools, allocator arenas) are in the baseline.
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


def measure_memory(kind: str, n: int, d: int, k: int, timeout: float = 600) -> dict:
    spec = json.dumps({"kind": kind, "n": n, "d": d, "k": k})
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--_memory-child", spec],
                          capture_output=True, text=True, timeout=timeout)
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


# ---------------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (N=8192), runs in seconds: smoke test")
    parser.add_argument("--json", metavar="PATH", help="also write all numbers to this JSON file")
    parser.add_argument("--reps", type=int, help="timed repetitions per row (default 9, quick 3)")
    parser.add_argument("--skip-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's default)")
    parser.add_argument("--_memory-child", dest="memory_child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.memory_child:
        print(json.dumps(_memory_child(json.loads(args.memory_child))))
        return 0

    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    cfg = dict(QUICK if args.quick else FULL)
    if args.reps:
        cfg["reps"] = args.reps
    n, d, k, reps, warmup = cfg["n"], cfg["d"], cfg["k"], cfg["reps"], cfg["warmup"]
    assert n % (SPATIAL * SPATIAL) == 0, "N must be a multiple of 64*64 for the (B, D, 64, 64) rows"
    results: dict = {"config": {**cfg, "dtype": "float32", "device": "cpu", "quick": args.quick},
                     "environment": {"torch": torch.__version__, "threads": torch.get_num_threads(),
                                     "cpu": _cpu_name(), "cpu_count": os.cpu_count(),
                                     "python": platform.python_version(), "loadavg_start": _loadavg()}}
    print(f"hf_vq quantizer benchmark  N={n:,} D={d} K={k:,} fp32 CPU  ({'quick' if args.quick else 'full'})")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {_cpu_name()} ({os.cpu_count()} CPUs), "
          f"load average {_loadavg()}")
    probe = noise_probe()
    results["environment"]["noise_probe"] = probe
    noisy = probe["median_ms"] > 3 * probe["min_ms"] + 0.2
    print(f"noise probe (small parallel op): median {probe['median_ms']:.2f} ms, min {probe['min_ms']:.2f} ms"
          + ("  <- other processes are competing for the cores: medians are inflated, compare the min columns"
             if noisy else ""))
    print(f"step = forward + backward of quantized.sum() + commitment loss; {reps} timed reps after {warmup} warm-up, "
          "rows interleaved round-robin")

    torch.manual_seed(0)
    x = torch.randn(n, d)
    b = n // (SPATIAL * SPATIAL)
    x_cf = x.view(b, SPATIAL, SPATIAL, d).permute(0, 3, 1, 2).contiguous()  # the same vectors, (B, D, H, W)

    hf_cl = hf_vq_row("hf_vq (N,D) default", x, d, k, False, reps, warmup)
    hf_opt = hf_vq_row("hf_vq (N,D) affine+sync+LRU", x, d, k, False, reps, warmup,
                       affine="learnable", sync_nu=0.01, replace_after=20)
    hf_cf = hf_vq_row("hf_vq (B,D,H,W) channel_first", x_cf, d, k, True, reps, warmup)
    rows = [hf_cl, hf_opt, hf_cf]
    diff = diffusers_row(x_cf, d, k, reps, warmup)
    vqp = vqp_row(x, d, k, reps, warmup)
    for other in (diff, vqp):
        if isinstance(other, Row):
            rows.append(other)
    gemms = gemm_rows(x, k, reps, warmup)
    run_round_robin(rows + gemms)

    print(f"\n{'training step':48s} {'median':>12s} {'min':>12s} {'CPU-time min':>13s}  reps")
    for row in rows:
        print(f"{row.name:48s} {_fmt_ms(row.median)} {_fmt_ms(row.best)} {_fmt_ms(row.cpu_best)}  {len(row.times)}")
    for other in (diff, vqp):
        if isinstance(other, str):
            print(f"{'vector-quantize-pytorch VectorQuantize':48s} {other}" if other == VQP_MISSING else other)
    gemm = min(gemms, key=lambda r: r.best)  # the least-disturbed candidate
    print(f"{'GEMM floor (' + gemm.name + ')':48s} {_fmt_ms(gemm.median)} {_fmt_ms(gemm.best)} "
          f"{_fmt_ms(gemm.cpu_best)}  {len(gemm.times)}")
    print("  (CPU-time = process CPU time of all threads: with 1 thread it is immune to other processes)")
    print("  GEMM candidates: " + ", ".join(f"{r.name} {r.median * 1e3:.1f} ms" for r in gemms))
    if isinstance(vqp, Row):
        print(f"  note: {vqp.note}")
    results["rows"] = {r.name: {"median_ms": r.median * 1e3, "min_ms": r.best * 1e3, "cpu_min_ms": r.cpu_best * 1e3,
                                "times_ms": [t * 1e3 for t in r.times],
                                "note": r.note} for r in rows}
    results["gemm"] = {"best": gemm.name, "median_ms": gemm.median * 1e3, "min_ms": gemm.best * 1e3,
                       "candidates": {r.name: {"median_ms": r.median * 1e3, "min_ms": r.best * 1e3} for r in gemms}}
    if isinstance(vqp, str):
        results["rows"]["vector-quantize-pytorch VectorQuantize"] = {"skipped": vqp}

    # ratios
    print()
    ratios = {}

    def ratio(name: str, label: str, num: Row | str, den: Row) -> None:
        cmp, target = TARGETS[name]
        if not isinstance(num, Row):
            print(f"ratio {label}: n/a ({num})")
            ratios[label] = None
            return
        value, value_min = num.median / den.median, num.best / den.best
        met = value >= target if cmp == ">=" else value <= target
        print(f"ratio {label}: {value:5.2f}x  (min/min {value_min:5.2f}x; target {cmp} {target:g}x: "
              f"{'met' if met else 'NOT met'})")
        ratios[label] = {"median": value, "min": value_min, "target": f"{cmp} {target:g}", "met": met}

    ratio("diffusers/hf_vq", "diffusers/hf_vq (both (B,D,H,W))", diff, hf_cf)
    ratio("diffusers/hf_vq", "diffusers/hf_vq (hf_vq channel-last)", diff, hf_cl)
    ratio("vqp/hf_vq", "vqp/hf_vq (both channel-last)", vqp, hf_cl)
    ratio("hf_vq/GEMM", "hf_vq/GEMM (channel-last default)", hf_cl, gemm)
    ratio("hf_vq/GEMM", "hf_vq/GEMM (channel_first)", hf_cf, gemm)
    print(f"options cost: affine+sync+LRU / default = {hf_opt.median / hf_cl.median:.2f}x")
    results["ratios"] = ratios
    results["options_cost"] = hf_opt.median / hf_cl.median

    # breakdown
    steps = 2 if args.quick else 5
    bd_cl = profile_breakdown(hf_cl, steps)
    bd_cf = profile_breakdown(hf_cf, steps)
    print_breakdown("where hf_vq's step goes, (N,D) default", bd_cl)
    print_breakdown("where hf_vq's step goes, (B,D,H,W) channel_first", bd_cf)
    print("\ntop ops by self CPU time, hf_vq (N,D) default, fastest profiled step "
          "(an op's copy_/fill_ children are separate rows):")
    print(bd_cl["top_ops_table"])
    results["breakdown"] = {"channel_last": {k2: v for k2, v in bd_cl.items()},
                            "channel_first": {k2: v for k2, v in bd_cf.items()}}
    del rows, gemms, hf_cl, hf_opt, hf_cf, diff, vqp
    gc.collect()

    # memory
    if not args.skip_memory:
        mn, mk, cn = cfg["mem_n"], cfg["mem_k"], cfg["mem_check_n"]
        print("\npeak memory of one forward+backward, fresh subprocess, RSS above the RSS with the input allocated")
        mem = {}
        hf = measure_memory("hf_vq", mn, d, mk)
        mem["hf_vq"] = hf
        if "error" in hf:
            print(f"  hf_vq N={mn:,} K={mk:,}: failed: {hf['error']}")
        else:
            outputs = hf["input_grad_bytes"] + hf["input_bytes"]  # z_q (same size as the input) + input.grad
            print(f"  hf_vq (N,D) N={mn:,} D={d} K={mk:,}: input {_mib(hf['input_bytes'])}; extra above input "
                  f"{_mib(hf['extra_bytes'])} = {hf['extra_bytes'] / 1e9:.2f} GB (target < 1.5 GB: "
                  f"{'met' if hf['extra_bytes'] < 1.5e9 else 'NOT met'}); step {hf['step_s']:.1f} s [{hf['method']}]")
            print(f"    the extra includes the step's own outputs quantized (N,D) and input.grad (N,D): "
                  f"{_mib(outputs)}; extra above input + input.grad: "
                  f"{_mib(hf['extra_bytes'] - hf['input_grad_bytes'])}")
        check = measure_memory("diffusers", cn, d, mk)
        mem["diffusers_check"] = check
        est_small = diffusers_analytic_bytes(cn, d, mk)
        est_full = diffusers_analytic_bytes(mn, d, mk)
        if "error" in check:
            print(f"  diffusers check run N={cn:,}: failed: {check['error']}")
        else:
            print(f"  diffusers (B,D,H,W) measured at N={cn:,} K={mk:,}: extra above input "
                  f"{_mib(check['extra_bytes'])} (analytic {_mib(est_small['total'])}, of which the (N,K) distance "
                  f"matrix {_mib(est_small['distance_matrix'])})")
        print(f"  diffusers at N={mn:,} K={mk:,} (analytic, not run): (N,K) fp32 distance matrix "
              f"{est_full['distance_matrix'] / 2**30:.1f} GiB + (N,D+2) augmented input "
              f"{_mib(est_full['augmented_input'])}"
              f" + (N,D) permuted copy {_mib(est_full['permuted_copy'])} = {est_full['total'] / 2**30:.2f} GiB")
        if "error" not in hf and "error" not in check:
            scale = mn / cn
            print(f"    linear extrapolation of the measured check run: "
                  f"{check['extra_bytes'] * scale / 2**30:.1f} GiB; "
                  f"diffusers/hf_vq memory ≈ {est_full['total'] / max(1, hf['extra_bytes']):.0f}x")
        mem["diffusers_analytic_full"] = est_full
        mem["diffusers_analytic_check"] = est_small
        results["memory"] = mem

    results["environment"]["loadavg_end"] = _loadavg()
    results["elapsed_s"] = time.perf_counter() - started
    print(f"\nload average at end: {_loadavg()} (on {os.cpu_count()} CPUs; a load above that means other "
          "processes shared the cores and the times are noisy — compare the min column)")
    print(f"benchmark took {time.perf_counter() - started:.0f} s")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2, default=str)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
