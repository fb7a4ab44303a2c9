"""The training loop of every task in `tasks.TASKS`, through Accelerate: setup, loop, eval, save.

`main(task, recipe)` is what `python -m hf_vq.train TASK` (and training/train_*.py) run: the config from the
command line, then `train`. The reproduction (hf_vq/experiments/ablations.py) calls `train` with its own data,
a `Callback` and `save=False`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from accelerate.utils import set_seed
from torch import nn

from ..data import image_processor
from .checkpoint import save_checkpoint
from .config import RunConfig, exit_on_config_error, load_config
from .data import PreparedData, make_loaders, prepare_data
from .evaluate import evaluate
from .export import CONFIG_FILE, dump_rank_state, print_summary, push, save_final
from .optim import build_optimizers, count_steps
from .plots import code_usage, training_curves
from .runtime import build_model_config, load_checkpoint, make_accelerator, preflight
from .step import StepStats, prepare_quantizers, seed_step, step_scalars, train_step
from .tasks import Task
from .tracking import RunLogger, console_line, progress_bar


class Callback:
    """Calls from `train` around each optimizer step, for experiments (the scripts use none). Under several
    processes every rank must return the same from `on_step_end`."""

    def on_step_begin(self, step: int, model: nn.Module) -> None:
        """Before the first micro-batch of the next optimizer step, `step` optimizer steps done."""

    def on_step_end(self, step: int, output) -> bool:
        """After optimizer step `step` (from 1), with its last micro-batch's model output; True stops training."""
        return False


@dataclass
class TrainResult:
    model: nn.Module  # trained, unwrapped
    metrics: dict  # `evaluate` on the test split
    facts: dict  # processes, steps, train_seconds, ...


def train(cfg: RunConfig, task: Task, *, data: PreparedData | None = None, callback: Callback | None = None,
          save: bool = True) -> TrainResult:
    """Train `task`'s model as `cfg` says, then evaluate it on the test split. `data` defaults to
    `prepare_data(cfg.data)`. With `save`, `cfg.output_dir` gets training_config.yaml, train_log.jsonl,
    checkpoints, plots, the model with its image processor and card, and eval_results.json last (it marks
    a finished run); `save=False` writes and prints nothing."""
    callback = callback or Callback()
    # ------------------------------------------------------------------------------------------------ setup
    accelerator = make_accelerator(cfg)
    resume_from = preflight(cfg) if save else None  # every bad input raises a ConfigError here, before training
    model_config = build_model_config(task.config_class, cfg.model)
    if data is None:
        with accelerator.main_process_first():  # the main process builds offline datasets once
            data = prepare_data(cfg.data, image_size=model_config.image_size, num_channels=model_config.num_channels,
                                need_labels=task.labels, seed=cfg.seed)
    if task.labels:
        model_config = build_model_config(task.config_class, cfg.model, id2label=dict(enumerate(data.class_names)),
                                          label2id={name: i for i, name in enumerate(data.class_names)})
    out_dir = Path(cfg.output_dir)
    if save and accelerator.is_main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / CONFIG_FILE).write_text(cfg.to_yaml())

    set_seed(cfg.seed)  # same initial weights on every rank
    model = task.model_class(model_config)
    prepare_quantizers(model)  # LRU steps counted per optimizer step (gradient accumulation)
    train_dl, test_dl = accelerator.prepare(*make_loaders(data, batch_size=cfg.train.batch_size,
                                                          eval_batch_size=cfg.eval.eval_batch_size,
                                                          num_workers=cfg.data.num_workers))
    total_steps, warmup_steps, steps_per_epoch = count_steps(cfg.train, len(train_dl))
    opt = build_optimizers(model, cfg.train, total_steps, warmup_steps)
    model, opt.optimizer = accelerator.prepare(model, opt.optimizer)
    position = load_checkpoint(accelerator, resume_from, cfg, extra_state=opt.checkpoint_objects())

    log = RunLogger(accelerator, out_dir, cfg.to_dict(), resume_step=position["step"] if resume_from else None,
                    enabled=save)
    facts = {"num_processes": accelerator.num_processes, "mixed_precision": accelerator.mixed_precision,
             "total_steps": total_steps, "steps_per_epoch": steps_per_epoch, "warmup_steps": warmup_steps,
             "parameters": sum(p.numel() for p in model.parameters()), "train_examples": len(data.train),
             "test_examples": len(data.test), **data.facts}
    log.start(position["step"], resumed_from=str(resume_from) if resume_from else None, **facts)
    if save:
        accelerator.print(banner(facts, accelerator, cfg))

    # ------------------------------------------------------------------------------------------------ loop
    step, epoch, skip = position["step"], position["epoch"], position["batch_in_epoch"]
    stats, new_step, stop = StepStats(), True, False
    bar = progress_bar(total_steps, step, save and accelerator.is_main_process and cfg.logging.progress_bar)

    def say(line: str) -> None:  # a console line above the progress bar, from the main process of a saving run
        if save and accelerator.is_main_process:
            bar.write(line)
    start = time.perf_counter()
    model.train()
    while step < total_steps and not stop:
        train_dl.set_epoch(epoch)  # the seedable sampler shuffles epoch e identically on every rank and on resume
        batches = accelerator.skip_first_batches(train_dl, skip) if skip else train_dl
        for i, batch in enumerate(batches, start=skip):
            if new_step:
                callback.on_step_begin(step, model)
            seed_step(cfg.seed, epoch * len(train_dl) + i, accelerator.process_index)
            output, new_step = train_step(accelerator, model, batch, opt, cfg.train.max_grad_norm, cfg.data.augment)
            # the task's own loss: the model's loss less α·L_cmt (the console shows them apart)
            stats.add(**step_scalars(output, task.train_scalars), task_loss=output.loss - output.quantizer_loss)
            if not new_step:  # gradient accumulation: more micro-batches to this optimizer step
                continue
            step += 1
            stop = callback.on_step_end(step, output)
            bar.update(1)
            if step % cfg.logging.log_every == 0 or step == total_steps:
                record = {"epoch": epoch + (i + 1) / len(train_dl), **stats.pop(accelerator), **opt.lrs()}
                log.train(step, record)
                say(console_line("train", step, total_steps, record))
            if cfg.eval.eval_every and step % cfg.eval.eval_every == 0 and step < total_steps:
                metrics = evaluate(model, test_dl, accelerator, task, data.mean, data.std)
                log.eval(step, metrics)
                say(console_line("eval", step, total_steps, metrics))
            if cfg.checkpoint.save_every and step % cfg.checkpoint.save_every == 0:
                done = i + 1 == len(train_dl)
                resume_at = {"epoch": epoch + done, "batch_in_epoch": 0 if done else i + 1}
                save_checkpoint(accelerator, out_dir, step, resume_at, cfg.checkpoint.keep_last, config=cfg.to_dict(),
                                extra_state=opt.checkpoint_objects())
            if step >= total_steps or stop:
                break
        epoch, skip = epoch + 1, 0
    bar.close()
    train_seconds = time.perf_counter() - start

    # ------------------------------------------------------------------------------------------------ eval, save
    metrics = evaluate(model, test_dl, accelerator, task, data.mean, data.std)
    log.eval(step, metrics)
    say(console_line("eval", step, total_steps, metrics))
    facts.update(steps=step, train_seconds=round(train_seconds, 1))
    log.end(step, train_seconds=train_seconds)
    if cfg.debug_dump_rank_state:
        dump_rank_state(accelerator, model, out_dir)
    unwrapped = accelerator.unwrap_model(model)
    if save and accelerator.is_main_process:
        plot_dir = out_dir / "plots"
        plots = [training_curves(log.records(), plot_dir / "training_curves.png", task_metric=task.metric),
                 code_usage(metrics["code_histogram"], plot_dir / "code_usage.png"),
                 *(plot(unwrapped, data, cfg, plot_dir) for plot in task.plots)]
        processor = data.processor or image_processor(model_config.image_size, data.mean, data.std, cfg.data.resample)
        save_final(accelerator, model, processor, cfg, metrics, plots, facts)
        print_summary(cfg, metrics, plots, facts)
        facts["pushed"] = push(accelerator, cfg) if cfg.push_to_hub else None
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return TrainResult(unwrapped, metrics, facts)


def banner(facts: dict, accelerator, cfg: RunConfig) -> str:
    """What the run is about to do, from the objects that do it (not from the config's wishes)."""
    precision = {"no": "fp32", "bf16": "bf16 autocast", "fp16": "fp16 autocast"}.get(accelerator.mixed_precision,
                                                                                     accelerator.mixed_precision)
    lines = [f"training {facts['parameters']:,} parameters for {facts['total_steps']} optimizer steps on "
             f"{accelerator.num_processes} process(es) ({accelerator.device.type}), precision: {precision}",
             f"data: {facts['train_examples']:,} train examples from {facts.get('train_split', 'the given data')}, "
             f"{facts['test_examples']:,} test examples from {facts.get('test_split', 'the given data')}"]
    lines += [f"data: {facts[key]}" for key in ("image_conversion", "subsets") if key in facts]
    lines.append(f"output: {Path(cfg.output_dir).resolve()}")
    return "\n".join(lines)


def main(task: Task, defaults: dict, argv: list[str] | None = None, *, source: str = "the default recipe",
         script: str | None = None) -> TrainResult:
    """A training run from the command line (`python -m hf_vq.train`): the config from `argv` (default: the
    command line) over `defaults` (a recipe, read from `source`), then `train`; a bad input ends the run with
    `error: <message>` and exit status 2."""
    cfg = load_config(argv, task=task.name, model_config_class=task.config_class, defaults=defaults,
                      script=script or task.script, source=source)
    with exit_on_config_error():
        result = train(cfg, task)
    if result.facts.get("pushed") is False:  # the run is complete; its upload failed (one line said how to retry)
        raise SystemExit(1)
    return result


__all__ = ["Callback", "TrainResult", "main", "train"]
