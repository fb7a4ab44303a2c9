"""hf_vq accuracy: share of predicted class ids equal to the reference ids (an `evaluate` module)."""

import datasets
import evaluate

_DESCRIPTION = "Accuracy: the fraction of examples whose predicted class id equals the reference class id."
_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[int]`): predicted class ids (e.g. the argmax of a VQ-ViT's logits).
    references (`list[int]`): the true class ids.
Returns:
    accuracy (`float`): in [0, 1].
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Accuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references):
        if not predictions:
            raise ValueError("accuracy needs at least one prediction")
        return {"accuracy": sum(int(p == r) for p, r in zip(predictions, references)) / len(predictions)}
