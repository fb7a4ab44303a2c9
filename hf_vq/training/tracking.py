"""Logging: a JSONL file always (one JSON object per line), Accelerate trackers (TensorBoard) when installed,
and a tqdm progress bar on the main process.

Records carry `"step"` (optimizer steps done) and `"kind"`: "start" (run facts: processes, steps,
parameters), "train" (means since the previous record), "eval" (test-split metrics) and "end". When a run
is resumed from step N, records after N (written by the killed run after its last checkpoint) are dropped
from the file first, so it reads as one uninterrupted run.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
from pathlib import Path

from .config import flatten

LOG_FILE = "train_log.jsonl"


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _records(path: Path) -> list[tuple[str, dict]]:
    """(line, record) for each complete line; a line torn by a kill in the middle of a write is skipped."""
    out = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            out.append((line, record))
    return out


class RunLogger:
    """The JSONL log (appended by the main process) plus the Accelerate trackers, one call per kind of record;
    nothing is written when not `enabled`."""

    def __init__(self, accelerator, output_dir: str | os.PathLike, config: dict, resume_step: int | None = None,
                 enabled: bool = True):
        self.accelerator = accelerator
        self.path = Path(output_dir) / LOG_FILE
        self.writes = enabled and accelerator.is_main_process
        if self.writes:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # a resumed run drops the records the killed run wrote after its checkpoint; written aside and
            # renamed, so a kill during the rewrite leaves the old log, not a truncated one
            old = _records(self.path) if resume_step is not None and self.path.exists() else []
            kept = [
                line for line, record in old if record.get("step", 0) <= resume_step and record.get("kind") != "end"
            ]
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text("".join(line + "\n" for line in kept))
            os.replace(tmp, self.path)
        if enabled:
            accelerator.init_trackers("tensorboard", config=tracker_config(flatten(config)))

    def _write(self, record: dict) -> None:
        if self.writes:
            with open(self.path, "a") as f:
                f.write(json.dumps({k: _clean(v) for k, v in record.items()}) + "\n")

    def start(self, step: int, **facts) -> None:
        self._write({"kind": "start", "step": step, **facts})

    def train(self, step: int, values: dict) -> None:
        self._write({"kind": "train", "step": step, **values})
        self.accelerator.log({f"train/{k}": v for k, v in values.items()}, step=step)

    def eval(self, step: int, metrics: dict) -> None:
        values = {k: v for k, v in metrics.items() if k != "code_histogram"}
        self._write({"kind": "eval", "step": step, **values})
        self.accelerator.log({f"eval/{k}": v for k, v in values.items()}, step=step)

    def end(self, step: int, **facts) -> None:
        self._write({"kind": "end", "step": step, **facts})

    def records(self) -> list[dict]:
        return read_log(self.path)


def read_log(path: str | os.PathLike) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    return [record for _, record in _records(path)]


def log_with(choice: str) -> list[str]:
    """Accelerate `log_with` for logging.log_with: "auto" → tensorboard when importable."""
    available = (
        importlib.util.find_spec("tensorboard") is not None or importlib.util.find_spec("tensorboardX") is not None
    )
    if choice == "tensorboard" or (choice == "auto" and available):
        return ["tensorboard"]
    return []


def tracker_config(flat: dict) -> dict:
    """Hyper-parameters in the types TensorBoard's hparams accept (lists and None become strings)."""
    return {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in flat.items()}


# What a train line on the console shows, in order: the task's own loss (cross-entropy, or the reconstruction MSE),
# the commitment L_cmt (eq 10, before α) and the codebook's perplexity and active codes; "loss" (their sum with α)
# stays in the log only.
CONSOLE_TRAIN_KEYS = ("task_loss", "commitment", "perplexity", "active_codes")
# Left out of the console's eval line (still in the log, eval_results.json and the card): the histogram, the example
# count and the affine's statistics.
_NOT_ON_CONSOLE = ("code_histogram", "num_examples", "affine_")


def _number(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def console_line(kind: str, step: int, total: int, values: dict) -> str:
    """One line for the console: `train step 120/1345: task_loss 0.5123 | commitment 0.01234 | ...` or
    `eval step 200/1345: mse 0.01234 | psnr 24.12 | ...`."""
    if kind == "train":
        shown = [(key, values[key]) for key in CONSOLE_TRAIN_KEYS if key in values]
    else:
        shown = [(key, value) for key, value in values.items() if not key.startswith(_NOT_ON_CONSOLE)]
    return f"{kind} step {step}/{total}: " + " | ".join(f"{key} {_number(value)}" for key, value in shown)


def progress_bar(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, dynamic_ncols=True, desc="train")


__all__ = ["CONSOLE_TRAIN_KEYS", "LOG_FILE", "RunLogger", "console_line", "log_with", "progress_bar", "read_log",
           "tracker_config"]
