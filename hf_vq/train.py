"""Train a VQ-VAE or a VQ-ViT with the techniques of Huh et al. (ICML 2023), through Accelerate.

    python -m hf_vq.train vqvae                  # the default recipe: a small offline VQ-VAE (minutes on a CPU)
    python -m hf_vq.train vq-vit                 # the default recipe: a small offline VQ-ViT
    python -m hf_vq.train vqvae --config demo_vqvae                      # a recipe of hf_vq/recipes, by name
    accelerate launch -m hf_vq.train vqvae --config paper_vqvae_cifar10 --mixed_precision bf16
    accelerate launch --multi_gpu --num_processes 2 -m hf_vq.train vqvae ...   # 2 processes (also on CPU)
    python -m hf_vq.train vqvae --config ... --resume auto                     # pre-emptible jobs
    hf-vq-train vqvae ...                        # the same, as a console script

Any setting: --KEY VALUE with KEY a dotted path or a unique tail of one; `python -m hf_vq.train vqvae --help` lists
them all with this run's values, --print_config shows the resolved config.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from .training.config import (
    command_name,
    config_argument,
    exit_on_config_error,
    help_requested,
    help_text,
    read_config,
)

TASK_NAMES = ("vqvae", "vq_vit")  # hf_vq.training.tasks.TASKS, named here so that --help needs no torch


def default_recipe(task: str) -> str:
    """The recipe of a run without `--config`: hf_vq/recipes/<task>_default.yaml."""
    return f"{task}_default"


def usage() -> str:
    commands = " | ".join(command_name(task) for task in TASK_NAMES)
    return (f"usage: python -m hf_vq.train {{{commands}}} [--config RECIPE|FILE] [--KEY VALUE ...] [--print_config]"
            " [--help]\n\n" + __doc__.strip().splitlines()[0] + "\n\n" + "\n".join(__doc__.strip().splitlines()[2:]))


def parse_task(argv: Sequence[str]) -> str:
    """The task named by the first argument (`vq-vit` or `vq_vit`); exits with the usage otherwise."""
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        raise SystemExit(0 if argv else 2)
    task = argv[0].replace("-", "_")
    if task not in TASK_NAMES:
        print(f"error: unknown task {argv[0]!r}; choose one of: {', '.join(map(command_name, TASK_NAMES))}\n\n"
              + usage(), file=sys.stderr)
        raise SystemExit(2)
    return task


def main(argv: Sequence[str] | None = None, prog: str | None = None):
    """`python -m hf_vq.train TASK [--config RECIPE|FILE] [--KEY VALUE ...]`: the task's default recipe (or
    `--config`) with the command line's settings, then `hf_vq.training.train`. `--help` reads no model code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    task, args = parse_task(argv), argv[1:]
    prog = prog or f"python -m hf_vq.train {command_name(task)}"
    with exit_on_config_error():
        recipe, source = read_config(default_recipe(task))
        if help_requested(args):  # before anything imports torch: well under 2 s
            if config_argument(args) is not None:
                recipe, source = read_config(config_argument(args))
            print(help_text(task, recipe, source, prog))
            raise SystemExit(0)
    from .training.loop import main as train_main
    from .training.tasks import TASKS

    return train_main(TASKS[task], recipe, args, source=source, script=prog)


__all__ = ["TASK_NAMES", "default_recipe", "main", "parse_task"]

if __name__ == "__main__":
    main()
