"""Crash-safe checkpoints with `accelerator.save_state`, and resuming from them.

A checkpoint of optimizer step N is written to `<output_dir>/checkpoints/step_<N:09d>.tmp/` by every rank
(model and optimizer by the main process, each rank its RNG state), completed by the main process with
`hf_vq_checkpoint.json` (step, epoch, position in the epoch), and only then renamed to `step_<N:09d>/`
(an atomic rename on one file system). Resume only considers folders without the `.tmp` suffix that hold
the marker file, so a run killed at any instant (even with SIGKILL during the write) leaves either a
complete checkpoint or a `.tmp` folder that is ignored and removed by the next save. The last
`checkpoint.keep_last` complete checkpoints are kept; older ones are renamed to `.old.tmp` before they are
deleted, so a kill during the deletion never leaves a partial folder that looks complete.

The checkpoint holds the model state dict (the quantizers' buffers are in it: LRU clocks, usage, the EMA
affine statistics), the model optimizer (Accelerate), and `hf_vq_extra_state.pt` with the state dicts of
the model schedule and, under alternation, the `AlternatingOptimizer` (its codebook optimizer) and the
codebook schedule. These are not given to `accelerator.register_for_checkpointing`, whose loader unpickles
with `weights_only=False`; ours loads with `weights_only=True` (tensors, numbers and containers only).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import torch

from ..version import __version__, written_by_newer_release
from .config import VERSION_KEY, ConfigError, flatten

MARKER = "hf_vq_checkpoint.json"
EXTRA_STATE = "hf_vq_extra_state.pt"
_NAME = re.compile(r"^step_(\d+)$")


def checkpoints_dir(output_dir: str | os.PathLike) -> Path:
    return Path(output_dir) / "checkpoints"


def complete_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints under `output_dir/checkpoints`, oldest first."""
    root = checkpoints_dir(output_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _NAME.match(p.name)) and (p / MARKER).is_file()]
    return [p for _, p in sorted(found)]


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove(checkpoint: Path) -> None:
    """Delete a checkpoint folder so that a kill at any instant leaves it complete or invisible: it is first
    renamed to a `.tmp` name (atomic), and only then deleted file by file."""
    trash = checkpoint.with_name(checkpoint.name + ".old.tmp")
    shutil.rmtree(trash, ignore_errors=True)
    os.replace(checkpoint, trash)
    shutil.rmtree(trash, ignore_errors=True)


def save_checkpoint(accelerator, output_dir: str | os.PathLike, step: int, info: dict, keep_last: int,
                    config: dict | None = None, extra_state: dict | None = None) -> Path:
    """Write the checkpoint of optimizer step `step` atomically; every rank must call it. `info` (the
    position in the data) and `config` (the run's settings) go into the marker file. Returns its path."""
    root = checkpoints_dir(output_dir)
    final = root / f"step_{step:09d}"
    tmp = root / f"step_{step:09d}.tmp"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob("*.tmp"):  # left by a run killed while saving
            shutil.rmtree(stale, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()  # every rank's RNG file is written
    if accelerator.is_main_process:
        # identical on every rank (schedules, the all-reduced inner codebook steps): rank 0 writes them
        torch.save({name: obj.state_dict() for name, obj in (extra_state or {}).items()}, tmp / EXTRA_STATE)
        marker = tmp / MARKER
        with open(marker, "w") as f:
            json.dump({"step": step, **info, VERSION_KEY: __version__, "config": config}, f, indent=2, default=str)
            f.flush()
            os.fsync(f.fileno())
        for file in tmp.iterdir():  # data on disk before the rename makes the checkpoint visible
            if file.is_file():
                with open(file, "rb") as f:
                    os.fsync(f.fileno())
        _fsync_dir(tmp)
        if final.exists():  # resumed from an older checkpoint: this step is written again
            _remove(final)
        os.replace(tmp, final)
        _fsync_dir(root)
        for old in complete_checkpoints(output_dir)[:-keep_last]:
            _remove(old)
    accelerator.wait_for_everyone()
    return final


def resolve_resume(resume: str, output_dir: str | os.PathLike) -> Path | None:
    """The checkpoint folder `resume` names: "latest" (the newest complete one in output_dir), "auto" (the
    same, or None for a fresh start when there is none yet: the one command a pre-emptible job repeats), a
    checkpoint folder, or a run's output folder (its newest). ConfigError when there is none."""
    if resume == "auto":
        found = complete_checkpoints(output_dir)
        return _same_or_older_release(found[-1]) if found else None
    if resume == "latest":
        found = complete_checkpoints(output_dir)
        if not found:
            raise ConfigError(
                f"resume: latest: no complete checkpoint in {checkpoints_dir(output_dir)} (a checkpoint is written "
                "every checkpoint.save_every optimizer steps; incomplete '.tmp' folders are never resumed)"
            )
        return _same_or_older_release(found[-1])
    path = Path(resume)
    if (path / MARKER).is_file() and not path.name.endswith(".tmp"):
        return _same_or_older_release(path)
    if path.is_dir() and (found := complete_checkpoints(path)):
        return _same_or_older_release(found[-1])
    if path.name.endswith(".tmp"):
        raise ConfigError(f"resume: {resume} is an incomplete checkpoint (a run was killed while writing it)")
    raise ConfigError(f"resume: {resume} is not a checkpoint folder (no {MARKER}) nor a run folder with checkpoints")


def _same_or_older_release(path: Path) -> Path:
    """`path`, unless a newer hf_vq wrote it: its state may hold what this release cannot restore faithfully."""
    written_by = read_checkpoint_info(path).get(VERSION_KEY)
    try:
        newer = written_by is not None and written_by_newer_release(written_by, f"{path / MARKER}: {VERSION_KEY}")
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if newer:
        raise ConfigError(f"resume: {path} was written by hf_vq {written_by}, newer than the installed {__version__}; "
                          f"resume it with hf_vq>={written_by} (`pip install -U hf_vq`)")
    return path


def load_extra_state(path: Path, objects: dict) -> None:
    """Restore the `extra_state` objects saved with a checkpoint (`weights_only=True`: no code is unpickled)."""
    state = torch.load(Path(path) / EXTRA_STATE, map_location="cpu", weights_only=True)
    missing = sorted(set(objects) - set(state))
    if missing:
        raise ConfigError(f"checkpoint {path} has no saved state for {missing}: it was written by a run with "
                          "other optimization settings (train.optimization)")
    for name, obj in objects.items():
        obj.load_state_dict(state[name])


def read_checkpoint_info(path: Path) -> dict:
    return json.loads((path / MARKER).read_text())


# Settings a resumed run may change without changing what it computes.
_FREE_TO_CHANGE = ("resume", "output_dir", "push_to_hub", "debug_dump_rank_state", "eval.", "checkpoint.", "logging.",
                   "data.num_workers")


def config_changes(saved: dict | None, current: dict) -> list[str]:
    """'key: saved -> current' for the settings that differ between a checkpoint's run and this one."""
    if not saved:
        return []
    a, b = flatten(saved), flatten(json.loads(json.dumps(current, default=str)))
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k) and not k.startswith(_FREE_TO_CHANGE)]


__all__ = ["MARKER", "checkpoints_dir", "complete_checkpoints", "config_changes", "read_checkpoint_info",
           "resolve_resume", "save_checkpoint"]
