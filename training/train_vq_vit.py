"""Train a VQ-ViT classifier (hf_vq.VQViTForImageClassification) with the techniques of Huh et al. (ICML 2023),
through Accelerate.

    python training/train_vq_vit.py                                 # small offline run (a few minutes, CPU)
    accelerate launch training/train_vq_vit.py --config configs/paper_vit_tiny_imagenet100.yaml --mixed_precision bf16
    accelerate launch --multi_gpu --num_processes 2 training/train_vq_vit.py ...  # 2 processes (also on CPU)
    python training/train_vq_vit.py --config ... --resume           # continue from the latest checkpoint
    python training/train_vq_vit.py --config ... --resume auto      # the same, or a fresh start: pre-emptible jobs

Any setting: --KEY VALUE with KEY a dotted path or a unique tail of one (--lr 3e-4, --quantizer.beta 0.9,
--optimization alternated --inner_steps 2); --help lists them all, --print_config shows the resolved config.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # a source checkout runs without `pip install -e .`
from hf_vq.training import VQ_VIT, main  # noqa: E402

# The run without arguments: a small VQ-ViT (quantizer after block 2 of 4) with the improved quantizer
# (affine + sync + alternated + LRU + k-means init) on scikit-learn's 8×8 digits: about 93 % test
# accuracy in one to two minutes on 2 CPU cores.
DEFAULTS = {
    "task": "vq_vit",
    "output_dir": "outputs/vq_vit_default",
    "data": {"source": "offline:digits"},
    "model": {
        "image_size": 8, "patch_size": 2, "num_channels": 1, "hidden_size": 64, "num_hidden_layers": 4,
        "num_attention_heads": 4, "intermediate_size": 128, "quantizer_layer": 2,
        "quantizer": {"codebook_size": 128, "affine": "learnable", "affine_lr_scale": 10.0, "sync_nu": 0.01,
                      "beta": 0.995, "commitment_weight": 32.0, "replace_after": 20, "kmeans_init": True},
    },
    "train": {"batch_size": 64, "epochs": 40, "lr": 2e-3, "weight_decay": 0.03, "warmup_epochs": 2,
              "optimization": "alternated", "inner_steps": 1, "codebook_lr": 1e-2},
    "eval": {"eval_every": 200},
    "logging": {"log_every": 10},
}

if __name__ == "__main__":
    main(VQ_VIT, DEFAULTS)
