"""Train a VQ-VAE (hf_vq.VQVAEModel) with the techniques of Huh et al. (ICML 2023), through Accelerate.

    python training/train_vqvae.py                                  # small offline run (a few minutes, CPU)
    accelerate launch training/train_vqvae.py --config demo_vqvae
    accelerate launch training/train_vqvae.py --config paper_vqvae_cifar10 --mixed_precision bf16
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
from hf_vq.training.config import RECIPES, read_yaml  # noqa: E402

if __name__ == "__main__":
    main(VQVAE, read_yaml(RECIPES / "vqvae_default.yaml"))  # the run without arguments
