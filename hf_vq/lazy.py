"""Lazy package attributes, so that `import hf_vq` and the command line's `--help` load neither torch nor
transformers: a package's exported names are imported on first use, as transformers' `_LazyModule` does."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from collections.abc import Mapping


class LazyPackage(types.ModuleType):
    """A package whose `_lazy_exports` (name → module relative to the package) are imported on first use. Its
    submodules resolve as attributes as after an eager import, and an export that shares a submodule's name
    (hf_vq.training's `evaluate`) stays the export when that submodule is imported (which would rebind it)."""

    _lazy_exports: dict[str, str]

    def __getattr__(self, name: str):
        exports = self.__dict__.get("_lazy_exports", {})
        if name in exports:
            value = getattr(importlib.import_module(exports[name], self.__name__), name)
        elif not name.startswith("_") and importlib.util.find_spec(f"{self.__name__}.{name}") is not None:
            value = importlib.import_module(f".{name}", self.__name__)
        else:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        types.ModuleType.__setattr__(self, name, value)
        return value

    def __setattr__(self, name: str, value) -> None:
        if not (name in self.__dict__.get("_lazy_exports", {}) and isinstance(value, types.ModuleType)):
            super().__setattr__(name, value)

    def __dir__(self) -> list[str]:
        return sorted({*self.__dict__, *self.__dict__.get("_lazy_exports", {})})


def make_lazy(package: str, exports: Mapping[str, str]) -> None:
    """Turn the (importing) package `package` into a LazyPackage with `exports`: name → module, e.g. ".models"."""
    module = sys.modules[package]
    module._lazy_exports = dict(exports)
    module.__class__ = LazyPackage
