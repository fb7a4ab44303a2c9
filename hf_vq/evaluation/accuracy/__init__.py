"""The `accuracy` evaluate module (a package so that wheels carry it): hf_vq.evaluation.load("accuracy")."""
