"""Training with Accelerate: the task table (`tasks.py`), the one training loop (`loop.py`) and its parts:
configuration, data, optimizers and schedules, the step, evaluation, checkpoints, logging, plots and the final
export. `training/train_vqvae.py` and `training/train_vq_vit.py` are `main(task, DEFAULTS)`."""

from ..data import image_processor
from .checkpoint import complete_checkpoints, resolve_resume, save_checkpoint
from .config import ConfigError, RunConfig, build_config, exit_on_config_error, flatten, load_config
from .data import PreparedData, make_loaders, prepare_data
from .evaluate import evaluate
from .export import CONFIG_FILE, dump_rank_state, print_summary, push, save_final
from .loop import Callback, TrainResult, main, train
from .optim import build_optimizers, count_steps
from .plots import code_usage, reconstruction_grid, reconstruction_plot, training_curves
from .runtime import build_model_config, load_checkpoint, make_accelerator, preflight
from .step import StepStats, prepare_quantizers, seed_step, step_scalars, train_step
from .tasks import TASKS, VQ_VIT, VQVAE, Task
from .tracking import LOG_FILE, RunLogger, progress_bar, read_log, tracker_config

__all__ = [
    "CONFIG_FILE", "Callback", "ConfigError", "LOG_FILE", "PreparedData", "RunConfig", "RunLogger",
    "StepStats", "TASKS", "Task", "TrainResult", "VQVAE", "VQ_VIT", "build_config", "build_model_config",
    "build_optimizers", "code_usage", "complete_checkpoints", "count_steps", "dump_rank_state", "evaluate",
    "exit_on_config_error", "flatten", "image_processor", "load_checkpoint", "load_config", "main",
    "make_accelerator", "make_loaders", "preflight", "prepare_data", "prepare_quantizers", "print_summary",
    "progress_bar", "push", "read_log", "reconstruction_grid", "reconstruction_plot", "resolve_resume",
    "save_checkpoint", "save_final", "seed_step", "step_scalars", "tracker_config", "train", "train_step",
    "training_curves",
]
