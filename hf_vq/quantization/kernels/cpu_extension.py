"""The native CPU kernels (vq_cpu.cpp): built on first use, cached, called through ctypes.

The source has no torch or Python headers, so a build takes a few seconds and needs only a C++17
compiler (`$CXX`, else `c++`, `g++` or `clang++`); OpenMP is used when the compiler has it. The library is
built once per machine for its own CPU (`-march=native`) into `$HF_VQ_CACHE_DIR` (default
`~/.cache/hf_vq/kernels`), named by a hash of the source, the compiler, the flags and the CPU, so every
later process loads it in milliseconds. Where it cannot be built, `native_library()` returns None after ONE
warning and the layer runs its pure-torch path (same results). `HF_VQ_DISABLE_NATIVE=1` forces that path.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("vq_cpu.cpp")
ABI_VERSION = 1
DISABLE_ENV = "HF_VQ_DISABLE_NATIVE"
CACHE_ENV = "HF_VQ_CACHE_DIR"
BASE_FLAGS = ["-O3", "-std=c++17", "-shared", "-fPIC", "-ffp-contract=off", "-fno-math-errno"]
# Tried in order until one compiles: the fastest first.
OPTIONAL_FLAGS = [["-march=native", "-fopenmp"], ["-march=native"], ["-fopenmp"], []]
DTYPES = {torch.float32: "f32", torch.float64: "f64"}

_lock = threading.Lock()
_state: dict = {}  # "lib": ctypes.CDLL | None once tried, "error": str


def native_disabled() -> bool:
    """True when `HF_VQ_DISABLE_NATIVE` asks for the pure-torch path."""
    return os.environ.get(DISABLE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def cache_dir() -> Path:
    """Where built libraries are kept: `$HF_VQ_CACHE_DIR`, else `$XDG_CACHE_HOME/hf_vq/kernels`, else ~/.cache/…"""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hf_vq" / "kernels"


def _compiler() -> str | None:
    for name in ([os.environ["CXX"]] if os.environ.get("CXX") else ["c++", "g++", "clang++"]):
        path = shutil.which(name)
        if path:
            return path
    return None


def _cpu_identity() -> str:
    """The CPU's model and feature flags: a library built with -march=native must not run on another CPU."""
    try:
        with open("/proc/cpuinfo") as f:
            lines = [line for line in f if line.startswith(("model name", "flags", "Features", "CPU part"))]
        return "".join(sorted(set(lines)))
    except OSError:
        return platform.processor() + platform.machine()


def _compiler_version(compiler: str) -> str:
    try:
        return subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise RuntimeError(f"{compiler} --version failed: {exc}") from exc


def _build(compiler: str, directory: Path, extra: list[str]) -> Path:
    """The library built with BASE_FLAGS + `extra`, from the cache when this exact build is there."""
    parts = [SOURCE.read_bytes(), _compiler_version(compiler), " ".join(BASE_FLAGS + extra), _cpu_identity()]
    key = hashlib.sha256(b"\0".join(p if isinstance(p, bytes) else p.encode() for p in parts)).hexdigest()[:16]
    target = directory / f"vq_cpu-{key}.so"
    if target.is_file():
        return target
    directory.mkdir(parents=True, exist_ok=True)
    # Built under a private name and renamed: concurrent processes (DDP ranks, test workers) never load a
    # half-written file, and the last rename wins with an identical library.
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=directory)
    os.close(fd)
    cmd = [compiler, *BASE_FLAGS, *extra, str(SOURCE), "-o", tmp]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.SubprocessError) as exc:
        os.unlink(tmp)
        raise RuntimeError(f"{' '.join(cmd)}: {exc}") from exc
    if proc.returncode != 0:
        os.unlink(tmp)
        raise RuntimeError(f"{' '.join(cmd)}:\n{(proc.stderr or proc.stdout).strip()[-1500:]}")
    os.replace(tmp, target)
    return target


def _bind(lib: ctypes.CDLL) -> ctypes.CDLL:
    p, i64, i32, f64 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_double
    lib.hf_vq_abi_version.restype = i32
    lib.hf_vq_simd_bytes.restype = i32
    for suffix in DTYPES.values():
        fwd = getattr(lib, f"hf_vq_forward_{suffix}")
        fwd.argtypes = [p, i64, i64, p, i64, p, p, p, p, p, i32]
        fwd.restype = i32
        bwd = getattr(lib, f"hf_vq_backward_{suffix}")
        bwd.argtypes = [p, i64, i64, p, i64, p, p, i64, i64, f64, f64, f64, p, p, i32]
        bwd.restype = i32
    if lib.hf_vq_abi_version() != ABI_VERSION:
        raise RuntimeError(f"library ABI {lib.hf_vq_abi_version()} != {ABI_VERSION}")
    return lib


def native_library() -> ctypes.CDLL | None:
    """The loaded kernels, building them on the first call; None (after one warning) where that fails."""
    if native_disabled():
        return None
    if "lib" not in _state:
        with _lock:
            if "lib" not in _state:
                _state["lib"] = _load()
    return _state["lib"]


def _load() -> ctypes.CDLL | None:
    try:
        if not SOURCE.is_file():
            raise RuntimeError(f"its source {SOURCE.name} is not next to {Path(__file__).name} (code loaded as "
                               "remote code without the hf_vq package?)")
        compiler = _compiler()
        if compiler is None:
            raise RuntimeError("no C++ compiler found (set $CXX, or install g++ or clang++)")
        errors = []
        for extra in OPTIONAL_FLAGS:  # e.g. a library whose OpenMP the process cannot load: the next one
            try:
                return _bind(ctypes.CDLL(str(_build(compiler, cache_dir(), extra))))
            except (OSError, RuntimeError, AttributeError) as exc:
                errors.append(str(exc))
        raise RuntimeError("no build could be loaded:\n" + "\n".join(errors))
    except Exception as exc:  # noqa: BLE001 - any failure means: use the torch path, and say why once
        _state["error"] = str(exc)
        warnings.warn(
            f"hf_vq: the native CPU kernels are unavailable, so VectorQuantizer uses its pure-torch path (same "
            f"results, about 2x slower on CPU). Reason: {exc}. Set {DISABLE_ENV}=1 to silence this.",
            RuntimeWarning, stacklevel=3,
        )
        return None


def native_supports(*tensors: torch.Tensor | None) -> bool:
    """Whether the kernels take these tensors (CPU, one dtype of float32/float64) and are available."""
    present = [t for t in tensors if t is not None]
    return (all(t.device.type == "cpu" for t in present) and present[0].dtype in DTYPES
            and all(t.dtype == present[0].dtype for t in present) and native_library() is not None)


def _check(status: int, what: str) -> None:
    if status == 1:
        raise IndexError(f"{what}: indices must lie in [0, codebook_size)")
    if status == 2:
        raise MemoryError(f"{what}: out of memory")
    if status != 0:
        raise RuntimeError(f"{what}: native kernel failed with status {status}")


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def native_forward(
    z: torch.Tensor,
    codebook: torch.Tensor,
    indices: torch.Tensor | None = None,
    search_codebook: torch.Tensor | None = None,
    search_bias: torch.Tensor | None = None,
    *,
    gather: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """One pass: indices (searched when None), z_q = codebook[indices] and Σ(z − z_q)².

    Args:
        z: (N, D) float32/float64 CPU tensor.
        codebook: (K, D) codes gathered into z_q, same dtype.
        indices: (N,) int64 given indices; None searches k_i = argmax_j (z_i·s_j − h_j) with s =
            `search_codebook` (K, D) and h = `search_bias` (K,).
        gather: False returns only the indices (the search alone).

    Returns:
        (indices (N,) int64, z_q (N, D) or None, sse float64 scalar tensor or None).
    """
    lib = native_library()
    n, d = z.shape
    z, codebook = z.detach().contiguous(), codebook.detach().contiguous()
    search = indices is None
    if search:
        search_codebook, search_bias = search_codebook.detach().contiguous(), search_bias.detach().contiguous()
        indices = torch.empty(n, dtype=torch.long)
    else:
        indices = indices.contiguous()
    z_q = torch.empty_like(z) if gather else None
    sse = torch.zeros((), dtype=torch.float64) if gather else None
    if not search:
        search_codebook = search_bias = None
    fn = getattr(lib, f"hf_vq_forward_{DTYPES[z.dtype]}")
    with torch.profiler.record_function("hf_vq::native_search" if not gather else "hf_vq::native_forward"):
        status = fn(z.data_ptr(), n, d, codebook.data_ptr(), codebook.shape[0], _ptr(search_codebook),
                    _ptr(search_bias), indices.data_ptr(), _ptr(z_q), _ptr(sse), torch.get_num_threads())
    _check(status, "hf_vq native forward")
    return indices, z_q, sse


def native_backward(
    z: torch.Tensor,
    codebook: torch.Tensor,
    indices: torch.Tensor,
    grad_zq: torch.Tensor | None,
    a: float,
    b: float,
    nu: float,
    *,
    need_z: bool = True,
    need_codebook: bool = True,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """grad_z = grad_zq + a·(z − z_q) and grad_codebook[k] = Σ_{i: k_i = k} ν·grad_zq_i + b·(z_q,i − z_i), one pass.

    `grad_zq` (N, D) may be None (zero) or any strided view (an expanded scalar gradient is not copied).
    Returns (grad_z or None, grad_codebook or None) as asked by need_z / need_codebook.
    """
    lib = native_library()
    n, d = z.shape
    z, codebook, indices = z.detach().contiguous(), codebook.detach().contiguous(), indices.contiguous()
    g_row = g_col = 0
    if grad_zq is not None:
        if grad_zq.stride(1) not in (0, 1):
            grad_zq = grad_zq.contiguous()
        g_row, g_col = grad_zq.stride()
    grad_z = torch.empty_like(z) if need_z else None
    grad_codebook = torch.empty_like(codebook) if need_codebook else None
    fn = getattr(lib, f"hf_vq_backward_{DTYPES[z.dtype]}")
    with torch.profiler.record_function("hf_vq::native_backward"):
        status = fn(z.data_ptr(), n, d, codebook.data_ptr(), codebook.shape[0], indices.data_ptr(), _ptr(grad_zq),
                    g_row, g_col, float(a), float(b), float(nu), _ptr(grad_z), _ptr(grad_codebook),
                    torch.get_num_threads())
    _check(status, "hf_vq native backward")
    return grad_z, grad_codebook
