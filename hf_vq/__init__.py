"""hf_vq: vector-quantized networks that don't collapse (Huh et al., ICML 2023), for the Hugging Face stack.

`import hf_vq` is light: the names below are imported on first use (`hf_vq.lazy`), so the command line
(`python -m hf_vq.train vqvae --help`) starts without torch. The VQ-ViT and VQ-VAE models are registered with
transformers' Auto classes when `hf_vq.models` is imported (touching any model class does it) and, after
`import hf_vq`, as soon as transformers' Auto classes are imported (or at once when they already are), so
`import hf_vq; AutoModel.from_pretrained(folder)` works as with an eager import.
"""

from __future__ import annotations

import importlib
import importlib.abc
import sys
from typing import TYPE_CHECKING

from .lazy import make_lazy
from .version import __version__ as __version__

if TYPE_CHECKING:
    from .models import (
        QuantizerConfig,
        VQImageProcessor,
        VQVAEConfig,
        VQVAEModel,
        VQViTConfig,
        VQViTForImageClassification,
        VQViTModel,
    )
    from .quantization import (
        AlternatingOptimizer,
        FiniteScalarQuantizer,
        GroupedVectorQuantizer,
        LookupFreeQuantizer,
        QuantizerOutput,
        ResidualVectorQuantizer,
        VectorQuantizer,
        end_step,
    )

__all__ = [
    "AlternatingOptimizer", "FiniteScalarQuantizer", "GroupedVectorQuantizer", "LookupFreeQuantizer",
    "QuantizerConfig",
    "QuantizerOutput", "ResidualVectorQuantizer", "VQImageProcessor", "VQVAEConfig", "VQVAEModel", "VQViTConfig",
    "VQViTForImageClassification", "VQViTModel", "VectorQuantizer", "end_step",
]
make_lazy(__name__, {
    **dict.fromkeys(("QuantizerConfig", "VQImageProcessor", "VQVAEConfig", "VQVAEModel", "VQViTConfig",
                     "VQViTForImageClassification", "VQViTModel"), ".models"),
    **dict.fromkeys(("AlternatingOptimizer", "FiniteScalarQuantizer", "GroupedVectorQuantizer", "LookupFreeQuantizer",
                     "QuantizerOutput", "ResidualVectorQuantizer", "VectorQuantizer", "end_step"), ".quantization"),
})


# ---------------------------------------------------------------------------------------------------- Auto classes
# transformers' modules that resolve a model_type to a class; hf_vq registers its models once all are usable.
_AUTO_MODULES = tuple(f"transformers.models.auto.{name}"
                      for name in ("configuration_auto", "modeling_auto", "image_processing_auto"))


def _importing(name: str) -> bool:
    module = sys.modules.get(name)
    return module is not None and getattr(getattr(module, "__spec__", None), "_initializing", False)


def _register_when_ready(finished: str | None = None) -> None:
    """Register the models unless one of transformers' Auto modules is still being executed (registering then
    would import it half-done); the last one to finish calls this again."""
    if any(_importing(name) for name in _AUTO_MODULES if name != finished):
        return
    if _AutoClassesHook.instance in sys.meta_path:
        sys.meta_path.remove(_AutoClassesHook.instance)
    importlib.import_module(".models", __name__)  # its import registers the models


class _AutoClassesHook(importlib.abc.MetaPathFinder):
    """Runs `_register_when_ready` right after one of `_AUTO_MODULES` is executed (a post-import hook)."""

    instance: _AutoClassesHook | None = None

    def find_spec(self, fullname, path, target=None):
        if fullname not in _AUTO_MODULES:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
                execute = spec.loader.exec_module

                def exec_module(module, execute=execute):
                    execute(module)
                    _register_when_ready(finished=fullname)

                spec.loader.exec_module = exec_module  # this spec's own loader instance
                return spec
            if spec is not None:
                return spec
        return None


_AutoClassesHook.instance = _AutoClassesHook()
sys.meta_path.insert(0, _AutoClassesHook.instance)
if any(name in sys.modules for name in _AUTO_MODULES):  # transformers' Auto classes are in use already
    _register_when_ready()
