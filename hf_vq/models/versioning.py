"""`hf_vq_version` in config.json: the release that wrote a model config, and what this release does with a
config from a newer one.

Saving writes `hf_vq_version` next to transformers' `transformers_version`. A config from a newer release
loads when this release knows every field it sets (as transformers reads configs of newer versions). When it
sets a field or a quantizer option this release does not know, dropping it would silently build another
model than the one saved, so loading raises a `ValueError` naming the fields and both versions. Unknown
fields in a config of this or an older release stay attributes, as in transformers (users keep metadata
there); an unknown quantizer option is always an error (QuantizerConfig).
"""

from __future__ import annotations

from typing import Any

from ..version import __version__, written_by_newer_release
from .quantizer_config import QuantizerConfig

VERSION_FIELD = "hf_vq_version"
# Written by transformers or by save_pretrained, not by the config's own fields.
_BOOKKEEPING = ("auto_map", "transformers_version", "torch_dtype", "custom_pipelines", "quantization_config")


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
                    f"This {cls.__name__} was saved by hf_vq {written_by}, newer than the installed {__version__}, and "
                    f"sets {', '.join(unknown)}, which hf_vq {__version__} does not know; ignoring them would build "
                    f"another model than the one saved. Upgrade hf_vq (`pip install -U hf_vq`); or, in a process "
                    "that does not import hf_vq (its registered classes win over a folder's code), load the code "
                    "saved with the model: AutoModel.from_pretrained(..., trust_remote_code=True), only for a "
                    "repository you trust."
                )
        return super().from_dict(config_dict, **kwargs)

    @classmethod
    def unknown_fields(cls, config_dict: dict[str, Any]) -> list[str]:
        """The keys of `config_dict` (and of its `quantizer` object) that this release's config does not have."""
        known = set(cls().to_dict()) | set(_BOOKKEEPING)
        unknown = sorted(k for k in config_dict if k not in known)
        quantizer = config_dict.get("quantizer")
        if isinstance(quantizer, dict):
            unknown += sorted(f"quantizer.{k}" for k in quantizer if k not in QuantizerConfig.valid_keys())
        return unknown
