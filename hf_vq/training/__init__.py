"""Training with Accelerate: the task table (`tasks.py`), the one training loop (`loop.py`) and its parts:
configuration, data, optimizers and schedules, the step, evaluation, checkpoints, logging, plots and the final
export. `python -m hf_vq.train TASK` (and training/train_*.py) run `main(task, recipe)`.

The names below are imported on first use (PEP 562), so that `hf_vq.training.config` (the command line's
`--help`) loads without torch."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types

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
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name], __name__), name)
    elif importlib.util.find_spec(f"{__name__}.{name}") is not None:  # a submodule, as after an eager import
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})


class _Package(types.ModuleType):
    """Keeps an exported name that is also a submodule's (`evaluate`) bound to the export: importing the submodule
    would otherwise rebind it to the module, as the eager `from .evaluate import evaluate` used to undo."""

    def __setattr__(self, name: str, value) -> None:
        if not (name in _WHERE and isinstance(value, types.ModuleType)):
            super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
