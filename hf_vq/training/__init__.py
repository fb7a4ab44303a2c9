"""Training with Accelerate: the task table (`tasks.py`), the one training loop (`loop.py`) and its parts:
configuration, data, optimizers and schedules, the step, evaluation, checkpoints, logging, plots and the final
export. `python -m hf_vq.train TASK` (and training/train_*.py) run `main(task, recipe)`.

The names below are imported on first use (`hf_vq.lazy`), so that `hf_vq.training.config` (the command line's
`--help`) loads without torch."""

from __future__ import annotations

from ..lazy import make_lazy

_EXPORTS = {
    "..data": ("image_processor",),
    ".checkpoint": ("complete_checkpoints", "resolve_resume", "save_checkpoint"),
    ".config": ("ConfigError", "RunConfig", "build_config", "exit_on_config_error", "flatten", "load_config"),
    ".data": ("PreparedData", "make_loaders", "prepare_data"),
    ".evaluate": ("evaluate",),
    ".export": ("CONFIG_FILE", "dump_rank_state", "print_summary", "push", "save_final"),
    ".loop": ("Callback", "TrainResult", "main", "train"),
    ".optim": ("build_optimizers", "count_steps"),
    ".plots": ("code_usage", "reconstruction_grid", "reconstruction_plot", "training_curves"),
    ".runtime": ("build_model_config", "load_checkpoint", "make_accelerator", "preflight"),
    ".step": ("StepStats", "prepare_quantizers", "seed_step", "step_scalars", "train_step"),
    ".tasks": ("TASKS", "Task", "VQVAE", "VQ_VIT"),
    ".tracking": ("LOG_FILE", "RunLogger", "progress_bar", "read_log", "tracker_config"),
}
__all__ = sorted(name for names in _EXPORTS.values() for name in names)
make_lazy(__name__, {name: module for module, names in _EXPORTS.items() for name in names})
