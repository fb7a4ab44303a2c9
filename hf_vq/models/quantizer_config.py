"""`QuantizerConfig`: the one place a model's quantizer settings live.

A model config stores it as its `quantizer` field, a JSON object in config.json holding the quantizer's type
and every option of that type except the two the model decides (`dim`, `channel_first`):

    "quantizer": {"type": "vq", "codebook_size": 1024, "commitment_weight": 5.0, "beta": 0.995, "sync_nu": 0.01,
                  "affine": "learnable", "affine_lr_scale": 10.0, ...}
    "quantizer": {"type": "residual", "codebook_size": 64, "num_levels": 4, "quantizer_dropout": false, ...}
    "quantizer": {"type": "group", "codebook_size": 64, "num_groups": 4, ...}

`type` names an entry of `hf_vq.quantization.registry` ("vq" when absent: configs saved before types existed);
its option dataclasses give the valid keys and their defaults, so a new option or type is a config option
without touching this file. Every option is written out, defaults included, so a checkpoint keeps its
behaviour when a library default changes. An unknown key raises a `ValueError` naming it and listing the valid
ones (or the type it belongs to); values are checked by the type's own validation, which allocates nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from ..quantization.registry import DEFAULT_TYPE, MODEL_DECIDED, QUANTIZER_TYPES, build_quantizer, quantizer_type

TYPE_KEY = "type"


class QuantizerConfig(dict):
    """Validated quantizer settings: `type` plus its keyword arguments; a plain `dict` subclass, so it serialises
    as-is.

    Args:
        settings: a mapping of quantizer options (e.g. the `quantizer` object of a config.json); its `type`
            (default "vq") chooses the quantizer.
        defaults: model-level defaults applied below `settings` (e.g. the paper's Table 6 values); those that
            are not options of the chosen type are left out.
        **kwargs: more options, applied above `settings`.

    Options missing from all three take the type's own defaults, so a `QuantizerConfig` is always complete:
    given to a model config it sets every option, while a plain dict sets only the options it names (the rest
    take the model's defaults). Items read as attributes too:
    `config.quantizer.codebook_size == config.quantizer["codebook_size"]`.
    """

    def __init__(
        self, settings: Mapping[str, Any] | None = None, /, *, defaults: Mapping[str, Any] | None = None, **kwargs
    ):
        super().__init__()
        given = {**dict(settings or {}), **kwargs}
        kind = given.pop(TYPE_KEY, None) or DEFAULT_TYPE
        spec = quantizer_type(kind)
        super().__setitem__(TYPE_KEY, kind)
        for key in given:
            self._check_key(key)
        full = {TYPE_KEY: kind, **spec.defaults()}
        full.update({k: v for k, v in (defaults or {}).items() if k in full and k != TYPE_KEY})
        full.update(given)
        if "codebook_size" in full and full["codebook_size"] is None:  # implicit for codebook-free types
            raise ValueError("quantizer.codebook_size is required (the number of codes K)")
        if full.get("codebook_parametrization") == "simvq":  # what the layer resolves it to, so config.json tells it
            full.update(affine="learnable", affine_covariance="full")
        super().update(full)

    @staticmethod
    def valid_keys(type_name: str | None = None) -> list[str]:
        """The keys of a `quantizer` object of type `type_name` (default "vq")."""
        return sorted([TYPE_KEY, *quantizer_type(type_name).option_names()])

    @property
    def options(self) -> dict[str, Any]:
        """The quantizer's keyword arguments (everything but `type`)."""
        return {k: v for k, v in self.items() if k != TYPE_KEY}

    def _check_key(self, key: str, value: Any = None) -> None:
        kind = self[TYPE_KEY]
        if key in MODEL_DECIDED:
            raise ValueError(
                f"quantizer.{key} is set by the model (dim from its hidden width, channel_first from its layout); "
                f"remove it from the `quantizer` settings"
            )
        if key == TYPE_KEY and value != kind:
            raise ValueError(f"quantizer.type is {kind!r}; to change it assign a new dict to the config's `quantizer`")
        if key != TYPE_KEY and key not in self.valid_keys(kind):
            owners = sorted(name for name in QUANTIZER_TYPES if key in QUANTIZER_TYPES[name].option_names())
            hint = (f"it is an option of quantizer.type {' / '.join(map(repr, owners))}" if owners
                    else f"valid options: {', '.join(self.valid_keys(kind))}")
            raise ValueError(f"Unknown quantizer option {key!r} (config field `quantizer.{key}`) for quantizer.type "
                             f"{kind!r}; {hint}")

    def __setitem__(self, key: str, value: Any) -> None:
        self._check_key(key, value)
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

    def build(self, dim: int, channel_first: bool) -> nn.Module:
        """A fresh quantizer of `type`: e.g. `VectorQuantizer(dim, channel_first=..., **options)`."""
        return build_quantizer(self[TYPE_KEY], dim, channel_first, **self.options)

    def validate(self, dim: int, channel_first: bool) -> None:
        """Raise `ValueError` (naming the `quantizer.*` field) if the quantizer cannot be built."""
        try:
            quantizer_type(self[TYPE_KEY]).check(dim, channel_first, self.options)
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
