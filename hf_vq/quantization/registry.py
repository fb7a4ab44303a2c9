"""Quantizer types by name, so a model config chooses its quantizer: `"vq"` (`VectorQuantizer`), `"residual"`
(`ResidualVectorQuantizer`), `"group"` (`GroupedVectorQuantizer`); `register_quantizer_type` adds more.

A type is a class built as `cls(dim, codebook_size, channel_first=..., **options)` and the dataclasses whose
fields are its options (all but `dim` and `channel_first`); `check(dim, channel_first, options)` validates
them the way the constructor does, without allocating anything.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from .grouped import GroupedVectorQuantizer, GroupOptions
from .layer import VectorQuantizer
from .options import QuantizerOptions, _require
from .residual import ResidualOptions, ResidualVectorQuantizer

# Set by the model from its own shape; never an option of a config's `quantizer` object.
MODEL_DECIDED = ("dim", "channel_first")
DEFAULT_TYPE = "vq"


@dataclass(frozen=True)
class QuantizerType:
    """A registered quantizer type: its class, its options' dataclasses and their check."""

    cls: type[nn.Module]
    option_classes: tuple[type, ...]
    check: Callable[[int, bool, dict[str, Any]], None]

    def option_names(self) -> list[str]:
        """Every option, `codebook_size` included, in the dataclasses' order."""
        names = [f.name for c in self.option_classes for f in dataclasses.fields(c)]
        return [n for n in dict.fromkeys(names) if n not in MODEL_DECIDED]

    def defaults(self) -> dict[str, Any]:
        """{option: default} (`codebook_size`: None, it has none)."""
        out = {name: None for name in self.option_names()}
        for c in self.option_classes:
            out.update({f.name: f.default for f in dataclasses.fields(c)
                        if f.default is not dataclasses.MISSING and f.name not in MODEL_DECIDED})
        return out


def _check_vq(dim: int, channel_first: bool, options: dict[str, Any]) -> None:
    # the layer's own checks, without its allocation
    unknown = sorted(set(options) - set(QuantizerOptions.names()))
    _require(not unknown, f"Unknown VectorQuantizer option(s) {unknown}", TypeError)
    QuantizerOptions(dim, channel_first=channel_first, **options)


QUANTIZER_TYPES: dict[str, QuantizerType] = {
    "vq": QuantizerType(VectorQuantizer, (QuantizerOptions,), _check_vq),
    "residual": QuantizerType(ResidualVectorQuantizer, (QuantizerOptions, ResidualOptions),
                              lambda dim, cf, options: ResidualVectorQuantizer.check_options(dim, channel_first=cf, **options)),
    "group": QuantizerType(GroupedVectorQuantizer, (QuantizerOptions, GroupOptions),
                           lambda dim, cf, options: GroupedVectorQuantizer.check_options(dim, channel_first=cf, **options)),
}


def register_quantizer_type(name: str, cls: type[nn.Module], option_classes: tuple[type, ...],
                            check: Callable[[int, bool, dict[str, Any]], None]) -> None:
    """Make `name` a valid `quantizer.type` (e.g. "fsq"); `check(dim, channel_first, options)` must raise
    TypeError/ValueError for options `cls` would refuse, before allocating anything."""
    QUANTIZER_TYPES[name] = QuantizerType(cls, tuple(option_classes), check)


def quantizer_type(name: str | None) -> QuantizerType:
    """The registered type `name` (None: "vq"); ValueError naming the valid ones otherwise."""
    name = DEFAULT_TYPE if name is None else name
    _require(name in QUANTIZER_TYPES,
             f"quantizer.type must be one of {sorted(QUANTIZER_TYPES)}, got {name!r}")
    return QUANTIZER_TYPES[name]


def build_quantizer(type_name: str | None, dim: int, channel_first: bool, **options) -> nn.Module:
    """A fresh quantizer of the registered type: `cls(dim, channel_first=channel_first, **options)`."""
    return quantizer_type(type_name).cls(dim=dim, channel_first=channel_first, **options)
