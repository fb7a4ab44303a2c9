"""hf_vq codebook usage: perplexity and active codes of the code indices a VQ model picked (an `evaluate` module)."""

import datasets
import evaluate
import torch

from hf_vq.metrics import active_codes, perplexity

_DESCRIPTION = """Codebook usage over all the code indices given (Huh et al., ICML 2023, §5.1): perplexity = 2^H of the
code histogram (K for uniform use of the K codes, 1 for a collapse onto one code) and active_codes = the fraction
of the K codes selected at least once."""
_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[list[int]]`): per example, the code indices its quantizer selected (e.g. a model output's
        `codebook_indices`, flattened).
    codebook_size (`int`): K, the number of codes.
Returns:
    perplexity (`float`): in [1, K].
    active_codes (`float`): in [0, 1].
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Codebook(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Sequence(datasets.Value("int64"))}),
        )

    def _compute(self, predictions, codebook_size=None):
        if not isinstance(codebook_size, int) or codebook_size < 1:
            raise ValueError(f"codebook_size must be the number of codes K (a positive int), got {codebook_size!r}")
        codes = torch.tensor([i for example in predictions for i in example], dtype=torch.long)
        if codes.numel() and (codes.min() < 0 or codes.max() >= codebook_size):
            raise ValueError(
                f"code indices must lie in [0, codebook_size={codebook_size}), "
                f"got {int(codes.min())}..{int(codes.max())}"
            )
        return {"perplexity": perplexity(codes, codebook_size), "active_codes": active_codes(codes, codebook_size)}
