"""Train a VQ-VAE (hf_vq.VQVAEModel) with the techniques of Huh et al. (ICML 2023), through Accelerate.

    python training/train_vqvae.py                                  # small offline run (a few minutes, CPU)
    accelerate launch training/train_vqvae.py --config demo_vqvae
    accelerate launch training/train_vqvae.py --config paper_vqvae_cifar10 --mixed_precision bf16
    accelerate launch --multi_gpu --num_processes 2 training/train_vqvae.py ...   # 2 processes (also on CPU)
    python training/train_vqvae.py --config ... --resume            # continue from the latest checkpoint
    python training/train_vqvae.py --config ... --resume auto       # the same, or a fresh start: pre-emptible jobs

The same as `python -m hf_vq.train vqvae` (the entry point inside the package, for an installed wheel); any setting:
--KEY VALUE, `--help` lists them all with this run's values, --print_config shows the resolved config.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # a source checkout runs without `pip install -e .`
from hf_vq.train import main  # noqa: E402

if __name__ == "__main__":
    main(["vqvae", *sys.argv[1:]], prog=f"python {sys.argv[0]}")
