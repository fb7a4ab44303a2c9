"""One reproduction run (`ablations.run_one`) through the training loop: the gradient-gap curve, τ annealing and
the loss curve at the steps the spec names, and the same numbers run after run in one process (as in a pool
worker that trains many specs)."""

from __future__ import annotations

import math

import torch

from hf_vq.experiments.ablations import make_spec, run_one, time_steps

SETTINGS = {
    "vqvae": {
        "model": {"image_size": 16, "block_out_channels": [8, 8], "layers_per_block": 1, "latent_channels": 4,
                  "norm_num_groups": 4, "mid_block_add_attention": False},
        "quantizer": {"codebook_size": 16, "commitment_weight": 0.5, "beta": 0.995, "sync_nu": 0.0, "affine": None,
                      "replace_after": 0},
        "affine_lr_scale": 10.0, "sync_nu": 0.01, "replace_after": 2, "stochastic_tau": [1.0, 0.01],
        "train": {"batch_size": 4, "max_steps": 6, "warmup_steps": 1, "lr": 1e-3, "weight_decay": 1e-4,
                  "betas": [0.9, 0.95]},
        "eval": {"eval_batch_size": 8, "max_test_samples": {"patches": 6}},
    },
}


def test_run_one_trains_through_the_loop_and_repeats_itself(tmp_path):
    images = torch.randint(0, 256, (20, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    labels = torch.zeros(20, dtype=torch.long)
    path = tmp_path / "data.pt"
    torch.save({"patches": {"train": (images[:14], labels[:14]), "test": (images[14:], labels[14:])}}, path)
    variant = {"affine": "learnable", "sync": True, "optimization": "alternated", "replace": True, "stochastic": True}
    spec = make_spec({**SETTINGS, "data_path": str(path)}, table="t", row="r", dataset="patches", task="vqvae",
                     variant=variant, seed=1, gap_every=2)
    first, second = run_one(spec), run_one(spec)
    assert not first["diverged"] and first["num_test"] == 6 and first["steps"] == 6
    assert [g["step"] for g in first["gap_curve"]] == [0, 2, 4, 6] and all(g["gap"] >= 0 for g in first["gap_curve"])
    assert [c["step"] for c in first["train_curve"]] == list(range(6))  # every step of a 6-step run (steps // 20 < 1)
    m = first["metrics"]
    assert m["mse01"] == m["mse"] / 4 and 0 < m["active_codes"] <= 1 and math.isfinite(m["psnr"])
    for key in ("metrics", "train_curve", "gap_curve", "diverged"):
        assert first[key] == second[key], key


def test_every_frontier_row_trains_and_reaches_the_report(tmp_path):
    """The head-to-head (`--only frontier`): each row builds its quantizer (VQ with the paper's options, rotation
    trick, SimVQ, FSQ, LFQ, residual VQ, vector-quantize-pytorch's layer), trains a few steps through the loop and
    lands in the report's table with numbers; the codebook-free rows keep only K from the shared settings."""
    from hf_vq.experiments import report
    from hf_vq.experiments.ablations import FRONTIER_CROSS_CHECK, FRONTIER_ROWS

    images = torch.randint(0, 256, (20, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    labels = torch.zeros(20, dtype=torch.long)
    path = tmp_path / "data.pt"
    torch.save({"patches": {"train": (images[:14], labels[:14]), "test": (images[14:], labels[14:])}}, path)
    settings = {**SETTINGS, "data_path": str(path)}
    overrides = {"quantizer": {"codebook_size": 64}, "train": {"max_steps": 3}}
    results, specs = [], []
    for name, variant in FRONTIER_ROWS:
        spec = make_spec(settings, table="frontier", row=name, dataset="patches", task="vqvae", variant=variant,
                         seed=0, overrides=overrides)
        if spec["quantizer"].get("type") == "fsq":
            assert spec["quantizer"] == {"type": "fsq", **variant["quantizer"]}  # no α, β, K: FSQ has none
        if spec["quantizer"].get("type") == "lfq":
            assert spec["quantizer"] == {"type": "lfq", "codebook_size": 64}
        specs.append(spec)
        result = run_one(spec)
        assert not result["diverged"] and "error" not in result, name
        assert 0 < result["metrics"]["active_codes"] <= 1 and math.isfinite(result["metrics"]["mse01"]), name
        results.append({**result, "table": "frontier", "row": name})
    step_times = time_steps(specs, steps=2, warmup=1, repeats=1)
    assert set(step_times) == {name for name, _ in FRONTIER_ROWS} and all(t > 0 for t in step_times.values())
    lines, stats = report.frontier(results, "patches", step_times)
    assert len(lines) == 2 + len(FRONTIER_ROWS) and not any("pending" in line for line in lines)
    assert set(stats) == {name for name, _ in FRONTIER_ROWS} and FRONTIER_CROSS_CHECK <= set(stats)
    assert report.frontier_verdict(stats)[0].startswith("- Best configuration of the paper's techniques: Huh et al.")
