"""Setup of the training loop: the Accelerator, the model config, the output folder checks, resuming."""

from __future__ import annotations

import os
from pathlib import Path

from .checkpoint import complete_checkpoints, config_changes, load_extra_state, read_checkpoint_info, resolve_resume
from .config import ConfigError, RunConfig
from .tracking import log_with


def make_accelerator(cfg: RunConfig):
    """Accelerator for a run: DDP without buffer broadcasting (each VectorQuantizer keeps its own buffers
    in sync with explicit all-reduces; DDP's default would overwrite every rank's buffers with rank 0's at
    each forward), no unused parameters to find (every parameter, the codebook included, is in the graph
    of every training forward), a seedable sampler (epoch e shuffles with seed + e on every rank, and a
    resumed run reshuffles identically), gradient accumulation and mixed precision from the config. With
    `mixed_precision: no` the launcher's choice (`accelerate launch --mixed_precision bf16`) applies."""
    import torch
    from accelerate import Accelerator, DataLoaderConfiguration, DistributedDataParallelKwargs
    from accelerate.utils import ProjectConfiguration

    check_launcher()
    has_device = torch.accelerator.is_available() if hasattr(torch, "accelerator") else torch.cuda.is_available()
    precision = cfg.mixed_precision if cfg.mixed_precision != "no" else os.environ.get("ACCELERATE_MIXED_PRECISION")
    if precision == "fp16" and not has_device:
        # Accelerate accepts it and trains in fp32 (it has no fp16 autocast on CPU) while reporting fp16: refuse
        raise ConfigError("mixed_precision fp16 needs a GPU; on CPU use bf16 (autocast to bfloat16) or no (fp32), "
                          "in --mixed_precision or in `accelerate launch --mixed_precision`")
    accelerator = Accelerator(
        # Without cpu=True, processes started by `accelerate launch --multi_gpu` / torchrun on a machine
        # without GPUs each run alone (DistributedType.NO): say CPU explicitly so they form a gloo group.
        cpu=not has_device,
        mixed_precision=None if cfg.mixed_precision == "no" else cfg.mixed_precision,
        gradient_accumulation_steps=cfg.train.gradient_accumulation_steps,
        log_with=log_with(cfg.logging.log_with) or None,
        # trackers write to <output_dir>/tensorboard
        project_config=ProjectConfiguration(project_dir=cfg.output_dir, logging_dir=cfg.output_dir),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=cfg.seed),
        kwargs_handlers=[DistributedDataParallelKwargs(broadcast_buffers=False, find_unused_parameters=False)],
        step_scheduler_with_optimizer=False,
    )
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched != accelerator.num_processes:
        raise ConfigError(
            f"the launcher started {launched} processes (WORLD_SIZE) but Accelerate runs {accelerator.num_processes}; "
            f"they would train independently. {SEVERAL_CPU_PROCESSES}"
        )
    return accelerator


SEVERAL_CPU_PROCESSES = ("On CPU start N processes with `accelerate launch --multi_gpu --num_processes N -m "
                         "hf_vq.train ...` or `torchrun --nproc_per_node N -m hf_vq.train ...`")


def check_launcher() -> None:
    """ConfigError when `accelerate launch --cpu --num_processes N>1` started this single process: with --cpu
    Accelerate's simple launcher starts one process, yet exports the rendezvous address (MASTER_ADDR) it sets only
    for N > 1, and no WORLD_SIZE."""
    env = os.environ
    if env.get("ACCELERATE_USE_CPU", "").lower() == "true" and "MASTER_ADDR" in env and "WORLD_SIZE" not in env:
        raise ConfigError("`accelerate launch --cpu --num_processes N` starts a single process (with --cpu, "
                          "Accelerate ignores --num_processes), so N processes would not train together. "
                          f"{SEVERAL_CPU_PROCESSES}; for one process drop --num_processes")


def build_model_config(config_class, settings: dict, **extra):
    """`config_class(**settings, **extra)`, its validation errors as ConfigError naming `model.*`."""
    try:
        return config_class(**settings, **extra)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"model: {err}") from None


def preflight(cfg: RunConfig) -> Path | None:
    """Checks that need no data, before anything is loaded. Returns the checkpoint to resume from (None for
    a fresh run). A fresh run refuses an output folder that already holds checkpoints, so a forgotten
    --resume never mixes two runs; --push_to_hub needs a valid repo id, a login with write access to it and a
    reachable Hub (`hf_vq.hub.check_push_access`)."""
    if cfg.push_to_hub:
        from ..hub import check_push_access, retry_command

        try:
            check_push_access(cfg.push_to_hub)
        except ValueError as err:
            raise ConfigError(f"push_to_hub: {err}") from None
        except RuntimeError as err:
            raise ConfigError(f"push_to_hub {cfg.push_to_hub!r} cannot happen: {err}. Or train without --push_to_hub "
                              f"and upload the finished folder later: {retry_command(cfg.output_dir, cfg.push_to_hub)}"
                              ) from None
    if cfg.resume:
        return resolve_resume(cfg.resume, cfg.output_dir)
    found = complete_checkpoints(cfg.output_dir)
    if found:
        raise ConfigError(
            f"output_dir {cfg.output_dir} already holds checkpoints (latest {found[-1].name}); pass --resume to "
            "continue that run, or choose another --output_dir"
        )
    return None


def load_checkpoint(
    accelerator, path: Path | None, cfg: RunConfig | None = None, extra_state: dict | None = None
) -> dict:
    """Restore model, optimizers, schedules, the alternating optimizer, RNG states and the Accelerate step
    counter from `path`; returns its position {"step", "epoch", "batch_in_epoch"} (zeros for None). Warns
    when `cfg` differs from the checkpoint's run in a setting that changes the computation."""
    if path is None:
        return {"step": 0, "epoch": 0, "batch_in_epoch": 0}
    info = read_checkpoint_info(path)
    changes = config_changes(info.get("config"), cfg.to_dict()) if cfg is not None else []
    if changes:
        accelerator.print("warning: resuming with settings that differ from the checkpoint's run (the result will "
                          "not match an uninterrupted run):\n  " + "\n  ".join(changes))
    accelerator.load_state(str(path))
    load_extra_state(path, extra_state or {})
    accelerator.print(
        f"resumed from {path} at optimizer step {info['step']} (epoch {info['epoch']}, batch {info['batch_in_epoch']})"
    )
    return info


__all__ = ["build_model_config", "check_launcher", "load_checkpoint", "make_accelerator", "preflight"]
