#!/usr/bin/env python
"""Reproduce the paper's ablations at CPU scale and write docs/results.md + docs/figures/*.png.

    python training/reproduce.py                 # full run (< 60 min on 2 CPU cores) → docs/
    python training/reproduce.py --smoke         # ~2 min: 1 seed, a few steps, every row, toys → a temp dir
    python training/reproduce.py --only table3   # parts: toys, table3, nu; with --only also gap, table2, table1, diag
    python training/reproduce.py --out DIR       # write DIR/results.md and DIR/figures/
    python training/reproduce.py --render-only   # re-render DIR/results.md from DIR/figures/raw_runs.jsonl

Runs execute in a spawn `ProcessPoolExecutor` (`workers` in the config, default 2), one single-threaded
training per worker, in-process (`hf_vq.experiments.ablations.run_one`). Each finished run is appended to
figures/raw_runs.jsonl and the markdown is re-rendered, so an interrupted reproduction still reports every
finished run (`--resume` then skips them).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import copy
import json
import multiprocessing
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import yaml  # noqa: E402

from hf_vq.experiments import ablations as A  # noqa: E402
from hf_vq.experiments import report as R  # noqa: E402

PARTS = ("toys", "table3", "nu")
EXTRA_PARTS = ("frontier", "gap", "table2", "table1", "diag")  # only with --only


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def load_config(path: Path) -> dict:
    cfg = yaml.safe_load(path.read_text())
    if "base" in cfg:
        base = load_config(path.parent / cfg.pop("base"))
        cfg = deep_merge(base, cfg)
    return cfg


def build_requests(cfg: dict, parts) -> list[tuple[dict, str, str]]:
    """(spec, table, row) in priority order, so that a reproduction cut short still answers the targets: seed by
    seed, the Table 3 rows run on both datasets (the targets) and the ν sweep; then the other Table 3 rows
    (colour patches); then the opt-in parts (gradient gap, Table 2, Table 1, diagnostics)."""
    req = []
    seeds = cfg["seeds"]

    def table3(rows, datasets, seed):
        for dataset in datasets:
            for name, variant, *_ in rows:
                req.append((A.make_spec(cfg, table="table3", row=name, dataset=dataset, task="vqvae",
                                        variant=variant, seed=seed), "table3", name))

    # seed-major: a run cut short has every target row and the ν sweep on every dataset for its first seeds
    for seed in seeds:
        if "table3" in parts:
            table3([r for r in A.TABLE3_ROWS if r[0] in A.TABLE3_SECOND_DATASET], cfg["datasets"], seed)
        if "nu" in parts and "patches" in cfg["datasets"]:
            for name, variant in A.NU_ROWS:
                req.append((A.make_spec(cfg, table="nu", row=name, dataset="patches", task="vqvae", variant=variant,
                                        seed=seed), "nu", name))
    if "table3" in parts and "patches" in cfg["datasets"]:
        for seed in seeds:
            table3([r for r in A.TABLE3_ROWS if r[0] not in A.TABLE3_SECOND_DATASET], ["patches"], seed)
    if "frontier" in parts:  # seed-major too: a head-to-head cut short has every row for its first seeds
        for seed in seeds:
            for dataset in cfg["datasets"]:
                for name, variant in A.FRONTIER_ROWS:
                    if dataset == "patches" or name not in A.FRONTIER_CROSS_CHECK:
                        req.append((A.make_spec(cfg, table="frontier", row=name, dataset=dataset, task="vqvae",
                                                variant=variant, seed=seed, overrides=cfg["frontier"]), "frontier", name))
    if "gap" in parts:
        for name, variant in A.GAP_ROWS:
            req.append((A.make_spec(cfg, table="gap", row=name, dataset="patches", task="vqvae", variant=variant,
                                    seed=seeds[0], gap_every=cfg["gap_every"]), "gap", name))
    if "table2" in parts:
        for seed in seeds:
            for name, variant, *_ in A.TABLE2_ROWS:
                req.append((A.make_spec(cfg, table="table2", row=name, dataset="fashion_mnist", task="vq_vit",
                                        variant=variant, seed=seed, init="kmeans"), "table2", name))
    if "table1" in parts:
        for seed in seeds:
            for init in ("kmeans", "kaiming"):
                for name, variant, *_ in A.TABLE1_ROWS:
                    req.append((A.make_spec(cfg, table="table1", row=name, dataset="fashion_mnist", task="vq_vit",
                                            variant=variant, seed=seed, init=init), "table1", name))
    if "diag" in parts:
        for seed in seeds[: cfg.get("diag_seeds", 1)]:
            for name, variant, overrides in A.DIAG_ROWS:
                req.append((A.make_spec(cfg, table="diag", row=name, dataset="patches", task="vqvae", variant=variant,
                                        seed=seed, overrides=overrides), "diag", name))
    return req


def fmt_time(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="~2-minute version (hf_vq/recipes/reproduce/smoke.yaml) to a temp dir")
    p.add_argument("--config", default=None, help="YAML config (default hf_vq/recipes/reproduce/full.yaml or smoke.yaml)")
    p.add_argument("--out", default=None, help="output dir for results.md and figures/ (default docs/, smoke: a temp dir)")
    p.add_argument("--only", default=None, help=f"comma-separated parts among {','.join(PARTS + EXTRA_PARTS)} (diag: not in the default run)")
    p.add_argument("--workers", type=int, default=None, help="parallel single-threaded runs (default: config, 2)")
    p.add_argument("--resume", action="store_true", help="skip runs already in OUT/figures/raw_runs.jsonl")
    p.add_argument("--render-only", action="store_true", help="re-render results.md from raw_runs.jsonl; train nothing")
    args = p.parse_args(argv)

    config_path = Path(args.config) if args.config else ROOT / "hf_vq/recipes/reproduce" / ("smoke.yaml" if args.smoke else "full.yaml")
    cfg = load_config(config_path)
    if args.out:
        out = Path(args.out)
    elif args.smoke:
        out = Path(tempfile.mkdtemp(prefix="hf_vq_reproduce_smoke_"))
    else:
        out = ROOT / "docs"
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    raw_path = fig_dir / "raw_runs.jsonl"
    parts = PARTS if args.only is None else tuple(s.strip() for s in args.only.split(","))
    bad = [s for s in parts if s not in PARTS + EXTRA_PARTS]
    if bad:
        p.error(f"--only: unknown part(s) {bad}; choose among {PARTS + EXTRA_PARTS}")
    workers = args.workers or cfg.get("workers", 2)
    torch.set_num_threads(1)
    os.environ.setdefault("ACCELERATE_USE_CPU", "true")  # a CPU reproduction, GPU or not (workers inherit it)
    t0 = time.time()

    command = "python training/reproduce.py" + ("" if argv is None and len(sys.argv) == 1 else " " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)))
    ctx = {"config": cfg, "config_path": str(config_path.relative_to(ROOT)) if config_path.is_relative_to(ROOT) else str(config_path),
           "command": command, "status": "running",
           "hardware": f"{os.cpu_count()} CPU cores visible ({platform.processor() or platform.machine()}), torch "
                       f"{torch.__version__}, {workers} workers × 1 thread, no GPU"}
    results: list[dict] = []
    if (args.resume or args.render_only) and raw_path.is_file():
        results = [json.loads(line) for line in raw_path.read_text().splitlines() if line.strip()]
    elif raw_path.is_file():
        raw_path.unlink()
    previous_timing = ""
    if args.resume and (fig_dir / "run_info.json").is_file():
        previous = json.loads((fig_dir / "run_info.json").read_text())
        previous_timing = f"Earlier: {previous.get('timing')} (`{previous.get('command')}`). Then: "
        if previous.get("command") and previous.get("command") != command:
            ctx["extra_commands"] = [c for c in previous.get("extra_commands") or [] if c != command] + [command]
            ctx["command"] = previous["command"]
        ctx.update({k: previous[k] for k in ("frontier_timing", "frontier_step_times") if previous.get(k)})
        if "toys" not in parts and previous.get("toys"):
            ctx["toys"] = previous["toys"]

    frontier_runs = []  # head-to-head runs finished by this invocation

    def write(status: str | None = None) -> None:
        if status:
            ctx["status"] = status
        ctx["fig_table3"] = R.plot_table3(results, cfg["datasets"], fig_dir)
        ctx["fig_gap"] = R.plot_gap(results, fig_dir)
        ctx["fig_frontier"] = R.plot_frontier(results, cfg["datasets"], fig_dir)
        if frontier_runs:  # the timing of the invocation that trained head-to-head runs
            ctx["frontier_timing"] = ctx.get("run_timing", "")
        (out / "results.md").write_text(R.render(results, ctx))
        info = {k: ctx.get(k) for k in ("command", "timing", "hardware", "status", "toys", "extra_commands",
                                         "frontier_timing", "frontier_step_times")}
        (fig_dir / "run_info.json").write_text(json.dumps(info, indent=1))

    if args.render_only:
        info_path = fig_dir / "run_info.json"
        prev = json.loads(info_path.read_text()) if info_path.is_file() else {}
        ctx.update({k: v for k, v in prev.items()
                    if k in ("command", "timing", "hardware", "toys", "extra_commands", "frontier_timing",
                             "frontier_step_times") and v})
        if "toys" in parts:
            ctx["toys"], _ = R.plot_toys(fig_dir)
        write(prev.get("status", "complete"))
        print(f"rendered {out / 'results.md'}")
        return 0

    if "toys" in parts:
        ctx["toys"], _ = R.plot_toys(fig_dir)
        print(f"[{fmt_time(time.time() - t0)}] toys done (figures in {fig_dir})", flush=True)
    write()

    requests = build_requests(cfg, parts)
    if requests:
        data_cache = Path(os.environ.get("HF_VQ_REPRODUCE_CACHE", "")) if os.environ.get("HF_VQ_REPRODUCE_CACHE") else None
        if data_cache is None:
            from hf_vq.data import default_data_dir
            data_cache = default_data_dir() / "reproduce_uint8.pt"
        datasets_needed = sorted({spec["dataset"] for spec, _, _ in requests})
        data_path = A.prepare_data(data_cache, datasets_needed)
        print(f"[{fmt_time(time.time() - t0)}] data ready: {data_path}", flush=True)
        labels: dict[str, list[tuple[str, str]]] = {}
        unique: dict[str, dict] = {}
        for spec, table, row in requests:
            spec["data_path"] = data_path
            key = A.spec_key(spec)
            labels.setdefault(key, []).append((table, row))
            unique.setdefault(key, spec)
        done_keys = {r["key"] for r in results}
        todo = [spec for key, spec in unique.items() if key not in done_keys]
        total_cost = sum(A.estimated_cost(s) for s in todo)
        print(f"{len(requests)} table rows × seeds → {len(unique)} distinct runs, {len(todo)} to do; "
              f"estimated {fmt_time(total_cost / workers)} on {workers} free cores", flush=True)
        start, done_cost, n_done = time.time(), 0.0, 0
        ctx["timing"] = f"{len(todo)} runs on {workers} workers."
        with raw_path.open("a") as raw, cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(A.run_one, spec): spec for spec in todo}
            for fut in cf.as_completed(futures):
                spec = futures[fut]
                try:
                    res = fut.result()
                except Exception as err:  # a crashed run is reported, not fatal
                    res = {"key": A.spec_key(spec), "dataset": spec["dataset"], "task": spec["task"], "seed": spec["seed"],
                           "init": spec["init"], "metrics": {}, "diverged": True, "error": repr(err),
                           "train_curve": [], "gap_curve": [], "seconds": 0.0, "steps": 0}
                    print(f"  run failed: {spec['table']} {spec['row']} seed {spec['seed']}: {err!r}", flush=True)
                for table, row in labels[res["key"]]:
                    rec = {**res, "table": table, "row": row, "context": {"command": command}}
                    results.append(rec)
                    raw.write(json.dumps(rec) + "\n")
                    if table == "frontier":
                        frontier_runs.append(rec)
                raw.flush()
                n_done += 1
                done_cost += A.estimated_cost(spec)
                elapsed = time.time() - start
                remaining = (total_cost - done_cost) * elapsed / max(done_cost, 1e-9)
                m = res["metrics"]
                main_metric = (f"mse01={m['mse01'] * 1e3:.2f}e-3" if "mse01" in m else
                               f"acc={m['accuracy'] * 100:.1f}%" if "accuracy" in m else "failed")
                ctx["timing"] = ctx["run_timing"] = (f"{n_done}/{len(todo)} runs finished after "
                                                     f"{fmt_time(time.time() - t0)} wall ({workers} workers).")
                write()
                print(f"[{fmt_time(time.time() - t0)}] {n_done}/{len(todo)} {spec['table']}/{spec['dataset']} "
                      f"'{spec['row']}' seed {spec['seed']} init {spec['init']}: {main_metric} "
                      f"ppl={m.get('perplexity', float('nan')):.1f} ({res['seconds']:.0f}s) — "
                      f"estimated remaining {fmt_time(remaining)}", flush=True)
    if "frontier" in parts and requests:  # step times, after the runs: alone on the machine, rows interleaved
        print(f"[{fmt_time(time.time() - t0)}] timing the head-to-head rows' training steps", flush=True)
        timed = [spec for spec, table, _ in requests
                 if table == "frontier" and spec["dataset"] == "patches" and spec["seed"] == cfg["seeds"][0]]
        ctx["frontier_step_times"] = A.time_steps(timed)
    ctx["run_timing"] = f"total wall time {fmt_time(time.time() - t0)} ({workers} workers × 1 thread, {ctx['hardware']})."
    ctx["timing"] = previous_timing + f"Total wall time {fmt_time(time.time() - t0)} ({workers} workers × 1 thread)."
    write("complete")
    # keep the status for --render-only
    print(f"[{fmt_time(time.time() - t0)}] wrote {out / 'results.md'} and {fig_dir}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
