"""The `accuracy` evaluate module: a package so that wheels carry it; load it with hf_vq.evaluation.load."""
