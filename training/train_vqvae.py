"""Train a VQ-VAE (hf_vq.VQVAEModel) with the techniques of Huh et al. (ICML 2023), through Accelerate.

    python training/train_vqvae.py                                  # small offline run (a few minutes, CPU)
    accelerate launch training/train_vqvae.py --config configs/demo_vqvae.yaml
    accelerate launch training/train_vqvae.py --config configs/paper_vqvae_cifar10.yaml --mixed_precision bf16
    accelerate launch --multi_gpu --num_processes 2 training/train_vqvae.py ...   # 2 processes (also on CPU)
    python training/train_vqvae.py --config ... --resume            # continue from the latest checkpoint
    python training/train_vqvae.py --config ... --resume auto       # the same, or a fresh start: pre-emptible jobs

Any setting: --KEY VALUE with KEY a dotted path or a unique tail of one (--lr 3e-4, --quantizer.beta 0.9,
--optimization alternated --inner_steps 2); --help lists them all, --print_config shows the resolved config.
"""

import sys
import time
from pathlib import Path

try:
    import hf_vq
except ImportError:  # run from a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import hf_vq

from accelerate.utils import set_seed

from hf_vq.training import (
    CONFIG_FILE, RunLogger, StepStats, build_model_config, build_optimizers, preflight,
    code_usage, count_steps, dump_rank_state, evaluate, exit_on_config_error, image_processor,
    load_checkpoint, load_config, make_accelerator, make_loaders, prepare_data, prepare_quantizers, print_summary,
    progress_bar, push, reconstruction_grid, reconstructions, save_checkpoint, save_final, seed_step,
    step_scalars, train_step, training_curves,
)

# The run without arguments: the improved quantizer (affine + sync + alternated + LRU + k-means init) on
# 32×32 photo patches that ship with scikit-image (about 25 dB test PSNR); about four minutes on 2 CPU cores.
DEFAULTS = {
    "task": "vqvae",
    "output_dir": "outputs/vqvae_default",
    "data": {"source": "offline:patches", "label_column": None},
    "model": {
        "image_size": 32, "block_out_channels": [32, 64], "layers_per_block": 1, "latent_channels": 32,
        "mid_block_add_attention": False,
        "quantizer": {"codebook_size": 256, "affine": "learnable", "affine_lr_scale": 10.0, "sync_nu": 0.01,
                      "beta": 0.995, "commitment_weight": 1.6, "replace_after": 20, "kmeans_init": True},
    },
    "train": {"batch_size": 32, "epochs": 3, "lr": 1e-3, "weight_decay": 1e-4, "warmup_epochs": 0.3,
              "optimization": "alternated", "inner_steps": 1},
    "eval": {"eval_every": 100},
    "logging": {"log_every": 10},
}

# ------------------------------------------------------------------------------------------------ setup
cfg = load_config(sys.argv[1:], task="vqvae", model_config_class=hf_vq.VQVAEConfig, defaults=DEFAULTS,
                  script="training/train_vqvae.py")
accelerator = make_accelerator(cfg)
with exit_on_config_error():  # every bad input stops here, before any training
    resume_from = preflight(cfg)
    model_config = build_model_config(hf_vq.VQVAEConfig, cfg.model)
    with accelerator.main_process_first():  # the main process builds offline datasets once
        data = prepare_data(cfg.data, image_size=model_config.image_size, num_channels=model_config.num_channels,
                            need_labels=False, seed=cfg.seed)
out_dir = Path(cfg.output_dir)
if accelerator.is_main_process:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / CONFIG_FILE).write_text(cfg.to_yaml())

set_seed(cfg.seed)  # same initial weights on every rank
model = hf_vq.VQVAEModel(model_config)
prepare_quantizers(model)  # LRU steps counted per optimizer step (gradient accumulation)
train_dl, test_dl = accelerator.prepare(*make_loaders(data, batch_size=cfg.train.batch_size,
                                                      eval_batch_size=cfg.eval.eval_batch_size, num_workers=cfg.data.num_workers))
total_steps, warmup_steps, steps_per_epoch = count_steps(cfg.train, len(train_dl))
opt = build_optimizers(model, cfg.train, total_steps, warmup_steps)
model, opt.optimizer = accelerator.prepare(model, opt.optimizer)
position = load_checkpoint(accelerator, resume_from, cfg, extra_state=opt.checkpoint_objects())

log = RunLogger(accelerator, out_dir, cfg.to_dict(), resume_step=position["step"] if resume_from else None)
facts = {"num_processes": accelerator.num_processes, "mixed_precision": accelerator.mixed_precision,
         "total_steps": total_steps, "steps_per_epoch": steps_per_epoch, "warmup_steps": warmup_steps,
         "parameters": sum(p.numel() for p in model.parameters()), "train_examples": len(data.train),
         "test_examples": len(data.test)}
log.start(position["step"], resumed_from=str(resume_from) if resume_from else None, **facts)
accelerator.print(f"training {facts['parameters']:,} parameters for {total_steps} optimizer steps on "
                  f"{accelerator.num_processes} process(es), mixed precision: {accelerator.mixed_precision}")

# ------------------------------------------------------------------------------------------------ loop
step, epoch, skip = position["step"], position["epoch"], position["batch_in_epoch"]
stats = StepStats()
bar = progress_bar(total_steps, step, accelerator.is_main_process and cfg.logging.progress_bar)
start = time.perf_counter()
model.train()
while step < total_steps:
    train_dl.set_epoch(epoch)  # the seedable sampler shuffles epoch e identically on every rank and on resume
    batches = accelerator.skip_first_batches(train_dl, skip) if skip else train_dl
    for i, batch in enumerate(batches, start=skip):
        seed_step(cfg.seed, epoch * len(train_dl) + i, accelerator.process_index)
        output, stepped = train_step(accelerator, model, batch, opt, cfg.train.max_grad_norm, cfg.data.augment)
        stats.add(**step_scalars(output))
        if not stepped:
            continue
        step += 1
        bar.update(1)
        if step % cfg.logging.log_every == 0 or step == total_steps:
            record = {"epoch": epoch + (i + 1) / len(train_dl), **stats.pop(accelerator), **opt.lrs()}
            log.train(step, record)
            bar.set_postfix(loss=f"{record['loss']:.4f}", mse=f"{record.get('mse', float('nan')):.4f}",
                            ppl=f"{record['perplexity']:.0f}")
        if cfg.eval.eval_every and step % cfg.eval.eval_every == 0 and step < total_steps:
            log.eval(step, evaluate(model, test_dl, accelerator, "vqvae", mean=data.mean, std=data.std))
        if cfg.checkpoint.save_every and step % cfg.checkpoint.save_every == 0:
            done = i + 1 == len(train_dl)
            save_checkpoint(accelerator, out_dir, step, {"epoch": epoch + done, "batch_in_epoch": 0 if done else i + 1},
                            cfg.checkpoint.keep_last, config=cfg.to_dict(), extra_state=opt.checkpoint_objects())
        if step >= total_steps:
            break
    epoch, skip = epoch + 1, 0
bar.close()
train_seconds = time.perf_counter() - start

# ------------------------------------------------------------------------------------------------ eval, save
metrics = evaluate(model, test_dl, accelerator, "vqvae", mean=data.mean, std=data.std)
log.eval(step, metrics)
facts.update(steps=step, train_seconds=round(train_seconds, 1))
log.end(step, train_seconds=train_seconds)
if cfg.debug_dump_rank_state:
    dump_rank_state(accelerator, model, out_dir)
plots = []
if accelerator.is_main_process:
    plots.append(training_curves(log.records(), out_dir / "plots" / "training_curves.png", task_metric="mse"))
    plots.append(code_usage(metrics["code_histogram"], out_dir / "plots" / "code_usage.png"))
    originals, recons = reconstructions(accelerator.unwrap_model(model), data.test, cfg.eval.num_reconstructions, accelerator.device)
    plots.append(reconstruction_grid(originals, recons, data.mean, data.std, out_dir / "plots" / "reconstructions.png"))
    processor = image_processor(model_config.image_size, data.mean, data.std, cfg.data.resample)
    save_final(accelerator, model, processor, cfg, metrics, plots, facts)
    print_summary(cfg, metrics, plots, facts)
    push(accelerator, model, processor, cfg, plots)
accelerator.wait_for_everyone()
accelerator.end_training()
