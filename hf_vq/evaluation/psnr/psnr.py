"""hf_vq PSNR of reconstructed images (an `evaluate` module)."""

import datasets
import evaluate
import numpy as np
import torch

from hf_vq.evaluation.image_metrics import mean_squared_error, psnr_from_mse

_DESCRIPTION = """PSNR = 10·log10(data_range² / MSE) in dB, with MSE the mean squared error over all pixels, channels
and images given (the PSNR of the set's mean MSE, as torchmetrics reduces it)."""
_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of (channels, height, width) float arrays): reconstructed images, values in [0, data_range].
    references (same): the original images.
    data_range (`float`, defaults to 1.0): the span of pixel values (1.0 for [0, 1] images, 255 for bytes).
Returns:
    psnr (`float`): in dB (inf for a perfect reconstruction).
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class PSNR(evaluate.Metric):
    def _info(self):
        image = datasets.Sequence(datasets.Sequence(datasets.Sequence(datasets.Value("float32"))))
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": image, "references": image}),
        )

    def _compute(self, predictions, references, data_range=1.0):
        mse = float(mean_squared_error(torch.from_numpy(np.asarray(predictions, dtype=np.float32)),
                                       torch.from_numpy(np.asarray(references, dtype=np.float32))).mean())
        return {"psnr": psnr_from_mse(mse, data_range)}
