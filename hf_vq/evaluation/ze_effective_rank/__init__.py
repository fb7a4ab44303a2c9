"""The `ze_effective_rank` evaluate module (a package so that wheels carry it): hf_vq.evaluation.load("ze_effective_rank")."""
