"""`QuantizerConfig`: the one place a model's `VectorQuantizer` settings live.

A model config stores it as its `quantizer` field, a JSON object in config.json holding every keyword of
`VectorQuantizer.__init__` except the two the model decides (`dim`, `channel_first`):

    "quantizer": {"codebook_size": 1024, "commitment_weight": 5.0, "beta": 0.995, "sync_nu": 0.01,
                  "affine": "learnable", "affine_lr_scale": 10.0, ...}

Every option is written out, defaults included, so a checkpoint keeps its behaviour when a library
default changes. The valid keys are read from `VectorQuantizer`'s signature, so a new quantizer option is
a config option without touching this file. An unknown key raises a `ValueError` naming it and listing
the valid ones; values are checked by the layer's own `QuantizerOptions`, which allocates nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..quantization.layer import VectorQuantizer
from ..quantization.options import QuantizerOptions

# Set by the model from its own shape (hidden_size / latent_channels, token vs channel-first layout).
MODEL_DECIDED = ("dim", "channel_first")


def _signature_defaults() -> dict[str, Any]:
    """{option: default} of `QuantizerOptions`, without the model-decided ones; codebook_size: None."""
    defaults = {"codebook_size": None, **QuantizerOptions.defaults()}
    return {name: value for name, value in defaults.items() if name not in MODEL_DECIDED}


class QuantizerConfig(dict):
    """Validated `VectorQuantizer` keyword arguments; a plain `dict` subclass, so it serialises as-is.

    Args:
        settings: a mapping of quantizer options (e.g. the `quantizer` object of a config.json).
        defaults: model-level defaults applied below `settings` (e.g. the paper's Table 6 values).
        **kwargs: more options, applied above `settings`.

    Options missing from all three take `VectorQuantizer`'s own defaults, so a `QuantizerConfig` is always
    complete: given to a model config it sets every option, while a plain dict sets only the options it names
    (the rest take the model's defaults). Items read as attributes too:
    `config.quantizer.codebook_size == config.quantizer["codebook_size"]`.
    """

    def __init__(
        self, settings: Mapping[str, Any] | None = None, /, *, defaults: Mapping[str, Any] | None = None, **kwargs
    ):
        super().__init__()
        given = {**dict(settings or {}), **kwargs}
        for key in given:
            self._check_key(key)
        full = _signature_defaults()
        full.update(defaults or {})
        full.update(given)
        if full.get("codebook_size") is None:
            raise ValueError("quantizer.codebook_size is required (the number of codes K)")
        super().update(full)

    @staticmethod
    def valid_keys() -> list[str]:
        return sorted(_signature_defaults())

    @classmethod
    def _check_key(cls, key: str) -> None:
        if key in MODEL_DECIDED:
            raise ValueError(
                f"quantizer.{key} is set by the model (dim from its hidden width, channel_first from its layout); "
                f"remove it from the `quantizer` settings"
            )
        if key not in _signature_defaults():
            raise ValueError(
                f"Unknown quantizer option {key!r} (config field `quantizer.{key}`); valid options: "
                f"{', '.join(cls.valid_keys())}"
            )

    def __setitem__(self, key: str, value: Any) -> None:
        self._check_key(key)
        super().__setitem__(key, value)

    def update(self, *args, **kwargs) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __reduce__(self):
        # copy/deepcopy/pickle rebuild through __init__, so the copy is validated and complete.
        return (type(self), (dict(self),))

    def to_dict(self) -> dict[str, Any]:
        return dict(self)

    def build(self, dim: int, channel_first: bool) -> VectorQuantizer:
        """A fresh `VectorQuantizer(dim, channel_first=..., **self)`; in fp32 when torch's default dtype is fp16 or
        bf16, else in the default dtype.

        `PreTrainedModel._from_config(config, dtype=torch.float16)` builds the model under a half-precision
        default dtype; the models' `_keep_in_fp32_modules_strict = ["quantizer"]` promises an fp32 quantizer
        (codes gathered at full precision, A.1), which only `from_pretrained` enforces, so it is built in fp32
        here, as transformers' own strict-fp32 modules hard-code their dtype.
        """
        default = torch.get_default_dtype()
        if default not in (torch.float16, torch.bfloat16):
            return VectorQuantizer(dim=dim, channel_first=channel_first, **self)
        torch.set_default_dtype(torch.float32)
        try:
            return VectorQuantizer(dim=dim, channel_first=channel_first, **self)
        finally:
            torch.set_default_dtype(default)

    def validate(self, dim: int, channel_first: bool) -> None:
        """Raise `ValueError` (naming the `quantizer.*` field) if the quantizer cannot be built."""
        try:
            QuantizerOptions(dim=dim, channel_first=channel_first, **self)
        except (TypeError, ValueError) as error:
            raise ValueError(f"Invalid `quantizer` settings in the config: {error}") from error


class QuantizerSettingsMixin:
    """Model-config mixin: keeps the `quantizer` field a complete, validated `QuantizerConfig`.

    A dict assigned to `quantizer` (in the constructor, by `from_pretrained(..., quantizer={...})`, or
    directly) is completed with `quantizer_defaults` and validated, so the model never sees a partial or
    invalid dict. Subclasses set `quantizer_defaults`, `quantizer_dim_field` (the config attribute giving the
    quantizer's `dim`) and `quantizer_channel_first`, and call `_init_quantizer_settings()` in `__post_init__`.
    """

    quantizer_defaults: dict[str, Any] = {}
    quantizer_dim_field = "hidden_size"
    quantizer_channel_first = False

    def __setattr__(self, key: str, value: Any) -> None:
        if key == "quantizer" and value is not None:
            value = QuantizerConfig(value, defaults=self.quantizer_defaults)
            if getattr(self, "_post_init_done", False):
                value.validate(dim=getattr(self, self.quantizer_dim_field), channel_first=self.quantizer_channel_first)
        super().__setattr__(key, value)

    def _init_quantizer_settings(self) -> None:
        self.quantizer = QuantizerConfig(self.quantizer, defaults=self.quantizer_defaults)
        self.quantizer.validate(
            dim=getattr(self, self.quantizer_dim_field), channel_first=self.quantizer_channel_first
        )
