"""hf_vq effective rank of the quantizer inputs z_e (an `evaluate` module)."""

import datasets
import evaluate
import torch

from hf_vq.metrics import effective_rank

_DESCRIPTION = """Participation ratio (Σλ)²/Σλ² of the eigenvalues λ of the covariance of the quantizer's input
vectors z_e: D for an isotropic cloud of D-dimensional vectors, 1 for a line. A z_e collapsed to a low rank
leaves most codes out of reach (see hf_vq's docs/results.md)."""
_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[list[float]]`): z_e vectors, one per row, all of one dimension D (at least 2 rows).
Returns:
    ze_effective_rank (`float`): in [1, D].
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ZeEffectiveRank(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Sequence(datasets.Value("float32"))}),
        )

    def _compute(self, predictions):
        return {"ze_effective_rank": effective_rank(torch.tensor(predictions, dtype=torch.float64))}
