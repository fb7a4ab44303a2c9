"""hf_vq SSIM of reconstructed images, Wang et al. (2004) (an `evaluate` module)."""

import datasets
import evaluate
import numpy as np
import torch

from hf_vq.evaluation.image_metrics import ssim

_DESCRIPTION = """Structural similarity (Wang et al., 2004) with an 11×11 Gaussian window (σ = 1.5), K1 = 0.01,
K2 = 0.03 and population covariances, over the positions where the window fits, averaged over channels and
images: what skimage.metrics.structural_similarity gives with gaussian_weights=True, sigma=1.5,
use_sample_covariance=False."""
_CITATION = """@article{wang2004image,
  title={Image quality assessment: from error visibility to structural similarity},
  author={Wang, Zhou and Bovik, Alan C and Sheikh, Hamid R and Simoncelli, Eero P},
  journal={IEEE Transactions on Image Processing}, volume={13}, number={4}, pages={600--612}, year={2004}
}"""
_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of (channels, height, width) float arrays): reconstructed images, values in [0, data_range];
        at least 11×11 pixels.
    references (same): the original images.
    data_range (`float`, defaults to 1.0): the span of pixel values.
Returns:
    ssim (`float`): mean over images, in [-1, 1] (1 for identical images).
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class SSIM(evaluate.Metric):
    def _info(self):
        image = datasets.Sequence(datasets.Sequence(datasets.Sequence(datasets.Value("float32"))))
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation=_CITATION, inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": image, "references": image}),
        )

    def _compute(self, predictions, references, data_range=1.0):
        values = ssim(torch.from_numpy(np.asarray(predictions, dtype=np.float32)),
                      torch.from_numpy(np.asarray(references, dtype=np.float32)), data_range)
        return {"ssim": float(values.mean())}
