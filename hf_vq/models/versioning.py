"""`hf_vq_version` in config.json: the release that wrote a model config, and what this release does with a
config from a newer one.

Saving writes `hf_vq_version` next to transformers' `transformers_version`. A config from a newer release
loads when this release knows every field it sets (as transformers reads configs of newer versions). When it
sets a field or a quantizer option this release does not know, dropping it would silently build another
model than the one saved, so loading raises a `ValueError` naming the fields and both versions. Unknown
fields in a config of this or an older release stay attributes, as in transformers (users keep metadata
there); an unknown quantizer option is always an error (QuantizerConfig).

hf_vq 0.2 changed the unit of α (`quantizer.commitment_weight`) to the paper's: the commitment is the
mean-squared error over all elements (A.1), where 0.1 used ½‖·‖² summed over the D features. A config saved
by 0.1 (its `hf_vq_version` says so, or it has transformers' `transformers_version` but no `hf_vq_version`,
which only 0.1 wrote) keeps its effective loss: α is multiplied by D/2 on load, with one log line.
"""

from __future__ import annotations

import logging
from typing import Any

from packaging.version import Version

from ..version import __version__, written_by_newer_release
from ..quantization.registry import QUANTIZER_TYPES
from .quantizer_config import QuantizerConfig

VERSION_FIELD = "hf_vq_version"
# Written by transformers or by save_pretrained, not by the config's own fields.
_BOOKKEEPING = ("auto_map", "transformers_version", "torch_dtype", "custom_pipelines", "quantization_config")
# The first release whose α multiplies the element-wise mean-squared error (A.1).
MSE_COMMITMENT_SINCE = Version("0.2.0")

logger = logging.getLogger(__name__)


def written_before_mse_commitment(written_by: str | None) -> bool:
    """True for a file written by hf_vq 0.1 (`written_by` its version, None where 0.1 wrote none)."""
    return written_by is None or Version(str(written_by)) < MSE_COMMITMENT_SINCE


def convert_old_commitment_weight(
    quantizer: dict[str, Any], dim: int, written_by: str | None, source: str
) -> dict[str, Any]:
    """`quantizer` settings of a 0.1 file in this release's units (a new dict; one log line).

    0.1's α weighted ½‖z_e − z_q‖² summed over D; the same loss is α·D/2 times the element-wise mean."""
    alpha = quantizer.get("commitment_weight")
    if alpha is None:
        return quantizer
    converted = float(alpha) * dim / 2
    logger.warning(
        "%s was written by hf_vq %s, whose commitment_weight (alpha) weighted 1/2*||z_e - z_q||^2 summed over the "
        "D=%d features; since 0.2 alpha weights the paper's element-wise mean-squared error (A.1). Using "
        "commitment_weight=%g (= %g * D/2), the same loss.", source, written_by or "0.1", dim, converted, alpha)
    return {**quantizer, "commitment_weight": converted}


class VersionedConfigMixin:
    """Config mixin: writes `hf_vq_version`; refuses a newer release's config that sets fields unknown here."""

    def to_dict(self) -> dict[str, Any]:
        output = super().to_dict()
        output[VERSION_FIELD] = __version__
        return output

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **kwargs):
        config_dict = dict(config_dict)
        written_by = config_dict.pop(VERSION_FIELD, None)
        if written_by is not None and written_by_newer_release(written_by, f"config {VERSION_FIELD}"):
            unknown = cls.unknown_fields(config_dict)
            if unknown:
                raise ValueError(
                    f"This {cls.__name__} was saved by hf_vq {written_by}, newer than the installed {__version__}, "
                    f"and sets {', '.join(unknown)}, which hf_vq {__version__} does not know; ignoring them would "
                    "build another model than the one saved. Upgrade hf_vq (`pip install -U hf_vq`); or, in a "
                    "process that does not import hf_vq (its registered classes win over a folder's code), load the "
                    "code saved with the model: AutoModel.from_pretrained(..., trust_remote_code=True), only for a "
                    "repository you trust."
                )
        quantizer = config_dict.get("quantizer")
        if written_by is None:
            saved_by_01 = "transformers_version" in config_dict
        else:
            saved_by_01 = written_before_mse_commitment(written_by)
        if isinstance(quantizer, dict) and saved_by_01:
            dim = config_dict.get(cls.quantizer_dim_field, getattr(cls(), cls.quantizer_dim_field))
            config_dict["quantizer"] = convert_old_commitment_weight(
                quantizer, int(dim), written_by, f"This {cls.__name__}"
            )
        return super().from_dict(config_dict, **kwargs)

    @classmethod
    def unknown_fields(cls, config_dict: dict[str, Any]) -> list[str]:
        """The keys of `config_dict` (and of its `quantizer` object) that this release's config does not have."""
        known = set(cls().to_dict()) | set(_BOOKKEEPING)
        unknown = sorted(k for k in config_dict if k not in known)
        quantizer = config_dict.get("quantizer")
        if isinstance(quantizer, dict):
            kind = quantizer.get("type")
            if kind is not None and kind not in QUANTIZER_TYPES:
                return [*unknown, f"quantizer.type={kind!r}"]
            unknown += sorted(f"quantizer.{k}" for k in quantizer if k not in QuantizerConfig.valid_keys(kind))
        return unknown
