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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # a source checkout runs without `pip install -e .`
from hf_vq.training import VQVAE, main  # noqa: E402

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

if __name__ == "__main__":
    main(VQVAE, DEFAULTS)
