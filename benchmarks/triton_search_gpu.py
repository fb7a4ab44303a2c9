#!/usr/bin/env python
"""The Triton nearest-code search on a GPU: exactness against float64 and throughput against the device.

For a session lent a CUDA device (one run, a minute or two):

    python benchmarks/triton_search_gpu.py --json triton_gpu.json

1. exactness: `nearest_code` (Triton path) equals a float64 brute force, for fp32 (IEEE) operands, and for
   bf16 operands with the fp32 re-rank of the best 8, on random data and on data with a large common offset;
2. throughput at N = 65,536 / 1,048,576, D = 64, K = 1,024 / 4,096: the kernel's time and TFLOP/s against a
   bf16 `torch.mm` of the same shape (the fused design's floor) and against the device's bf16 peak,
   measured as a large square bf16 matmul.

`--small` runs tiny shapes (with TRITON_INTERPRET=1 it runs on CPU, to check this script itself).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from hf_vq.quantization.kernels.triton_search import triton_candidates  # noqa: E402
from hf_vq.quantization.search import argmax_form, nearest_code  # noqa: E402


def brute_force(z: torch.Tensor, c: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    return torch.cat([torch.cdist(z[s:s + chunk].double(), c.double()).argmin(1) for s in range(0, z.shape[0], chunk)])


def timed(fn, device: torch.device, reps: int = 10) -> float:
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--small", action="store_true", help="tiny shapes (a check of this script)")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    g = torch.Generator(device=device).manual_seed(0)
    out = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu (interpreter)",
           "torch": torch.__version__, "exact": {}, "throughput": []}

    n, k, d = (512, 96, 16) if args.small else (65_536, 4_096, 64)
    for name, offset in (("random", 0.0), ("offset 100", 100.0)):
        c = torch.randn(k, d, device=device, generator=g) + offset
        z = c[torch.randint(k, (n,), device=device, generator=g)] + 0.5 * torch.randn(n, d, device=device, generator=g)
        truth = brute_force(z, c)
        for label, kwargs in (("fp32 ieee", {"half_precision": False}),
                              ("bf16 + rerank 8", {"search_dtype": torch.bfloat16})):
            if device.type == "cpu" and "bf16" in label:
                continue  # Triton's interpreter mis-rounds bf16 (numpy has no bfloat16)
            found = nearest_code(z, c, **kwargs) if device.type == "cuda" else _cpu_candidates(z, c)
            mismatches = int((found != truth).sum())
            out["exact"][f"{name}, {label}"] = mismatches
            print(f"exactness {name:10s} {label:16s}: {mismatches} of {n:,} differ from float64")

    peak_n = 512 if args.small else 8192
    a = torch.randn(peak_n, peak_n, device=device, dtype=torch.bfloat16)
    peak = 2 * peak_n**3 / timed(lambda: a @ a, device, 3 if args.small else 20) / 1e12
    out["bf16_peak_tflops_measured"] = peak
    print(f"device bf16 matmul peak (measured, {peak_n}^3): {peak:.1f} TFLOP/s")
    shapes = [(512, 96, 16)] if args.small else [(65_536, 1_024, 64), (65_536, 4_096, 64), (1_048_576, 4_096, 64)]
    for n, k, d in shapes:
        z = torch.randn(n, d, device=device, generator=g)
        center, centred, bias = argmax_form(torch.randn(k, d, device=device, generator=g), torch.float32)
        half_bias = 0.5 * centred.pow(2).sum(-1)
        flops = 2 * n * k * d
        zb, cb = z.bfloat16(), centred.bfloat16()
        row = {"n": n, "k": k, "d": d,
               "mm_bf16_ms": timed(lambda: zb @ cb.t(), device) * 1e3,
               "triton_fp32_top1_ms": timed(lambda: triton_candidates(z, centred, bias), device) * 1e3,
               "triton_bf16_top8_ms": timed(lambda: triton_candidates(z, centred, half_bias, top=8, center=center,
                                                                      dot_dtype=torch.bfloat16), device) * 1e3,
               "nearest_code_bf16_rerank_ms": timed(lambda: nearest_code(z, centred + center), device) * 1e3}
        for key in [key for key in row if key.endswith("_ms")]:
            row[key.replace("_ms", "_tflops")] = flops / (row[key] / 1e3) / 1e12
        out["throughput"].append(row)
        print(f"N={n:,} K={k:,} D={d}: "
              + ", ".join(f"{key} {value:.3g}" for key, value in row.items() if key.endswith(("_ms", "_tflops"))))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


def _cpu_candidates(z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    _, centred, bias = argmax_form(c, torch.float32)
    return triton_candidates(z, centred, bias)[:, 0]


if __name__ == "__main__":
    sys.exit(main())
