"""Experiments behind docs/results.md (`training/reproduce.py`): the paper's toys and ablation tables."""
