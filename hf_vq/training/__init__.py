"""Reusable parts of the training scripts (`training/train_vqvae.py`, `training/train_vq_vit.py`):
configuration, data, optimizers and schedules, the Accelerate step, evaluation, checkpoints, logging,
plots and the final export. The scripts themselves hold only the loop."""

from .checkpoint import complete_checkpoints, resolve_resume, save_checkpoint
from .config import ConfigError, RunConfig, build_config, load_config
from .data import image_processor, make_loaders, prepare_data
from .evaluate import evaluate, reconstructions
from .export import CONFIG_FILE, dump_rank_state, print_summary, push, save_final
from .optim import build_optimizers, count_steps
from .plots import code_usage, reconstruction_grid, training_curves
from .runtime import build_model_config, preflight, exit_on_config_error, load_checkpoint, make_accelerator
from .step import StepStats, prepare_quantizers, seed_step, step_scalars, train_step
from .tracking import LOG_FILE, JSONLLogger, RunLogger, flatten, progress_bar, read_log, tracker_config

__all__ = [
    "CONFIG_FILE", "ConfigError", "JSONLLogger", "LOG_FILE", "RunConfig", "RunLogger", "StepStats", "build_config",
    "build_model_config", "build_optimizers", "preflight", "code_usage", "complete_checkpoints",
    "count_steps", "dump_rank_state", "evaluate", "exit_on_config_error", "flatten", "image_processor",
    "load_checkpoint", "load_config", "make_accelerator", "make_loaders", "prepare_data", "prepare_quantizers",
    "print_summary", "progress_bar", "push", "read_log", "reconstruction_grid", "reconstructions",
    "resolve_resume", "save_checkpoint", "save_final", "seed_step", "step_scalars", "tracker_config",
    "train_step", "training_curves",
]
