"""End of a run: save_pretrained (safetensors) + image processor + model card + results, the printed summary,
the optional Hub upload, and the per-rank state dump used to check multi-process runs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..quantization import find_quantizers
from .config import RunConfig
from .tasks import TASKS
from .tracking import LOG_FILE

RESULTS_FILE = "eval_results.json"
CONFIG_FILE = "training_config.yaml"


# Offline sources that hold a Hub dataset's images: the card's `datasets` metadata and model-index name it.
OFFLINE_HUB_DATASETS = {"offline:fashion_mnist": "zalando-datasets/fashion_mnist"}


def _hub_dataset_id(source: str) -> str | None:
    if source in OFFLINE_HUB_DATASETS:
        return OFFLINE_HUB_DATASETS[source]
    if source.startswith("offline:") or Path(source).expanduser().exists() or source.startswith(("/", ".", "~")):
        return None
    return source


def eval_results(metrics: dict) -> dict:
    """The metrics of `evaluate` that the card reports (all but the example count and the histogram)."""
    return {k: float(v) for k, v in metrics.items() if k not in ("num_examples", "code_histogram")}


def training_summary(cfg: RunConfig, facts: dict) -> dict:
    """What the model card lists under training: the recipe and the run's facts."""
    t = cfg.train
    out = {
        "dataset": cfg.data.source, "optimizer": "AdamW (no weight decay on the codebook)", "learning_rate": t.lr,
        "weight_decay": t.weight_decay, "betas": list(t.betas), "schedule": f"linear warmup + {t.scheduler}",
        "batch_size_per_process": t.batch_size, "gradient_accumulation_steps": t.gradient_accumulation_steps,
        "optimization": t.optimization, "alternated_optimization": t.optimization == "alternated",
    }
    if t.optimization == "alternated":
        out.update(inner_steps=t.inner_steps, codebook_optimizer=t.codebook_optimizer,
                   codebook_learning_rate=t.codebook_lr if t.codebook_lr is not None else t.lr)
    out.update({"seed": cfg.seed, **facts})
    return out


def save_final(accelerator, model, processor, cfg: RunConfig, metrics: dict, plots: list[Path], facts: dict) -> Path:
    """Main process: weights + config (safetensors), preprocessor config, README.md card with the measured
    numbers, eval_results.json. Returns the output folder."""
    from ..hub import render_model_card, save_model_card

    out = Path(cfg.output_dir)
    if not accelerator.is_main_process:
        return out
    unwrapped = accelerator.unwrap_model(model)
    unwrapped.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    results = eval_results(metrics)
    card = render_model_card(
        unwrapped,
        template=TASKS[cfg.task].card_template,
        model_name=(cfg.push_to_hub or out.resolve().name).split("/")[-1],
        repo_id=cfg.push_to_hub,
        dataset_name=cfg.data.source,
        dataset_id=_hub_dataset_id(cfg.data.source),
        dataset_split="test",
        eval_results=results,
        perplexity=metrics["perplexity"],
        active_codes=metrics["active_codes"],
        training_args=training_summary(cfg, facts),
        plots=[p.resolve() for p in plots],
    )
    save_model_card(card, out, plots=[p.resolve() for p in plots])
    record = {**results, "num_examples": metrics.get("num_examples"), **facts}
    (out / RESULTS_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return out


def push(accelerator, cfg: RunConfig) -> bool:
    """Upload the finished output folder (model, processor, card, plots, results, log, config) in one commit,
    leaving out `hf_vq.hub.LOCAL_ONLY`. A failed upload prints one line naming the complete local folder and the
    command that retries it, and returns False (the run's results stay valid)."""
    if not cfg.push_to_hub or not accelerator.is_main_process:
        return True
    from ..hub import LOCAL_ONLY, push_folder, retry_command

    try:
        info = push_folder(cfg.output_dir, cfg.push_to_hub, ignore_patterns=LOCAL_ONLY,
                           commit_message="Upload hf_vq model trained with hf_vq.training")
    except Exception as err:  # network, permission, quota: whatever it is, the folder is complete
        reason = " ".join(f"{type(err).__name__}: {err}".split())[:300]
        print(f"push to {cfg.push_to_hub} failed ({reason}); the run is complete in {Path(cfg.output_dir).resolve()}, "
              f"upload it with: {retry_command(cfg.output_dir, cfg.push_to_hub)}", flush=True)
        return False
    print(f"pushed to {info.commit_url}")
    return True


def print_summary(cfg: RunConfig, metrics: dict, plots: list[Path], facts: dict) -> None:
    k = len(metrics["code_histogram"])
    lines = [f"=== {cfg.task}: {facts.get('steps')} optimizer steps in {facts.get('train_seconds', 0):.0f} s "
             f"on {facts.get('num_processes')} process(es) ===",
             f"test examples      {metrics['num_examples']}"]
    if "mse" in metrics:
        lines.append(f"test MSE           {metrics['mse']:.5f}  (normalised pixels)")
    if "psnr" in metrics:
        lines.append(f"test PSNR          {metrics['psnr']:.2f} dB")
    if "accuracy" in metrics:
        lines.append(f"test accuracy      {100 * metrics['accuracy']:.2f} %")
    lines += [
        f"perplexity         {metrics['perplexity']:.1f}  (of {k} codes)",
        f"active codes       {round(metrics['active_codes'] * k)}/{k} ({100 * metrics['active_codes']:.1f} %)",
        f"quantization error {metrics['quantization_error']:.4g}",
        f"model, card        {Path(cfg.output_dir).resolve()}  "
        "(model.safetensors, config.json, preprocessor_config.json, README.md)",
        f"plots              {', '.join(str(p) for p in plots)}",
        f"log                {Path(cfg.output_dir) / LOG_FILE}",
    ]
    print("\n".join(lines), flush=True)


def dump_rank_state(accelerator, model, output_dir: str | os.PathLike) -> Path:
    """Every rank writes `debug/rank<r>.safetensors`: the full model state dict plus each quantizer's
    non-persistent buffers, to check that ranks hold identical codebooks."""
    from safetensors.torch import save_file

    unwrapped = accelerator.unwrap_model(model)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in unwrapped.state_dict().items()}
    for name, module in unwrapped.named_modules():
        if module in find_quantizers(unwrapped):
            for buf_name, buf in module.named_buffers(recurse=False):
                state.setdefault(f"{name}.{buf_name}", buf.detach().cpu().contiguous().clone())
    path = Path(output_dir) / "debug" / f"rank{accelerator.process_index}.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v if v.dim() or v.dtype != torch.bool else v.reshape(1) for k, v in state.items()}, str(path))
    return path


__all__ = ["CONFIG_FILE", "RESULTS_FILE", "dump_rank_state", "eval_results", "print_summary", "push",
           "save_final"]
