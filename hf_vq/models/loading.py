"""Checkpoint checks that name the config field at fault, weight init that respects loaded tensors, and
loaded CPU weights copied out of the memory-mapped file into aligned memory (bit-identical outputs).

transformers reports a codebook whose shape disagrees with the config as a generic size mismatch
("consider `ignore_mismatched_sizes=True`"), and silently ignores quantizer tensors of another affine mode
(a warning-level UNEXPECTED/MISSING report; the model then runs with a fresh affine). `from_pretrained`
here turns both into a `ValueError` naming `quantizer.codebook_size` / `quantizer.affine` (and the like),
reading shapes from the safetensors header, without loading any tensor.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import struct
from collections.abc import Iterator
from typing import Any

import torch

from ..quantization.base import model_quantizers
from ..quantization.layer import VectorQuantizer

# A member of a residual/grouped quantizer in a state-dict key: `quantizer.levels.2.codebook_signal`.
_MEMBER = re.compile(r"^quantizer\.(levels|groups)\.(\d+)\.")
_MEMBER_FIELD = {"levels": "num_levels", "groups": "num_groups"}


def _members(keys) -> dict[str, set[int]]:
    """{"levels" or "groups": the member indices} found in state-dict `keys`."""
    found: dict[str, set[int]] = {}
    for match in filter(None, map(_MEMBER.match, keys)):
        found.setdefault(match.group(1), set()).add(int(match.group(2)))
    return found


def _member_count_message(kind: str, saved: int, configured: int) -> str:
    field = _MEMBER_FIELD[kind]
    return (f"The checkpoint's quantizer has {saved} {kind}, but the config sets quantizer.{field}={configured}: load "
            f"it with quantizer.{field}={saved} (e.g. from_pretrained(..., quantizer={{**config.quantizer, "
            f"'{field}': {saved}}})).")


def safetensors_header(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON header of a .safetensors file: {name: {"dtype", "shape", "data_offsets"}, "__metadata__": ...}."""
    with open(path, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(size))


def checkpoint_shapes(pretrained_model_name_or_path, **hub_kwargs) -> dict[str, list[int]] | None:
    """{tensor name: shape} of a (possibly sharded) safetensors checkpoint, or None if there is none."""
    from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME, cached_file

    def locate(filename):
        return cached_file(pretrained_model_name_or_path, filename, _raise_exceptions_for_missing_entries=False,
                           _raise_exceptions_for_connection_errors=False, **hub_kwargs)

    files = []
    if (single := locate(SAFE_WEIGHTS_NAME)) is not None:
        files = [single]
    elif (index := locate(SAFE_WEIGHTS_INDEX_NAME)) is not None:
        with open(index, encoding="utf-8") as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
        files = [locate(shard) for shard in shards]
    if not files or any(f is None for f in files):
        return None
    shapes = {}
    for file in files:
        shapes.update({k: v["shape"] for k, v in safetensors_header(file).items() if k != "__metadata__"})
    return shapes


@contextlib.contextmanager
def quantizer_dtype() -> Iterator[None]:
    """Build the model's quantizer inside this block: in fp32 when torch's default dtype is fp16 or bf16.

    `PreTrainedModel._from_config(config, dtype=torch.float16)` builds the model under a half-precision default
    dtype; the models' `_keep_in_fp32_modules_strict = ["quantizer"]` promises an fp32 quantizer (codes gathered at
    full precision, A.1), which only `from_pretrained` enforces, so it is built in fp32 here, as transformers' own
    strict-fp32 modules hard-code their dtype. Other default dtypes (fp32, fp64) are left alone.
    """
    default = torch.get_default_dtype()
    if default not in (torch.float16, torch.bfloat16):
        yield
        return
    torch.set_default_dtype(torch.float32)
    try:
        yield
    finally:
        torch.set_default_dtype(default)


def init_quantizer_weights(module: VectorQuantizer) -> None:
    """`_init_weights` for a `VectorQuantizer`: `reset_parameters()` unless from_pretrained loaded its state.

    from_pretrained builds the model on the meta device, loads the checkpoint (flagging each loaded tensor
    `_is_hf_initialized`) and then calls `_init_weights` on every module still holding an unloaded tensor,
    which for the quantizer is always the case: its non-persistent `_step_hits` buffer is never in a
    checkpoint and comes back uninitialised. `reset_parameters` writes in place, bypassing transformers'
    guarded init functions, so it must only run when nothing of the quantizer was loaded.
    """
    loaded = any(getattr(t, "_is_hf_initialized", False) for t in module.state_dict(keep_vars=True).values())
    if not loaded:
        module.reset_parameters()
    with torch.no_grad():
        module._step_hits.zero_()  # per-step scratch, never saved


def align_cpu_tensors(model: torch.nn.Module, alignment: int = 64) -> None:
    """Copy CPU parameters and buffers that are not `alignment`-byte aligned into fresh (aligned) memory.

    transformers maps a safetensors file into memory and hands out views of it, aligned only to their
    offsets in the file. oneDNN/MKL convolution and GEMM kernels round differently on such memory than on
    the allocator's 64-byte-aligned tensors the model was saved from, so a reloaded model could differ from
    the saved one in the last bit (measured: 7 of 54 tiny VAE configs, up to 6e-7) and flip a near-tie code.
    One copy of the weights restores bit-identical outputs; tensors on accelerators are already copies.
    """
    with torch.no_grad():
        for module in model.modules():
            for name, param in module._parameters.items():
                if param is not None and param.device.type == "cpu" and param.data_ptr() % alignment:
                    param.data = param.data.clone()
            for name, buffer in module._buffers.items():
                if buffer is not None and buffer.device.type == "cpu" and buffer.data_ptr() % alignment:
                    module._buffers[name] = buffer.clone()


class QuantizerCheckpointMixin:
    """`PreTrainedModel` mixin: `from_pretrained` errors that name the `quantizer.*` field at fault.

    Subclasses set `_quantizer_dim_field`, the config attribute that sets the quantizer's `dim`.
    """

    _quantizer_dim_field = "hidden_size"

    @staticmethod
    def _quantizer_prefixes(model) -> list[str]:
        return [f"{name}." for name, m in model.named_modules() if m in model_quantizers(model)]

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        output_loading_info = kwargs.pop("output_loading_info", False)
        try:
            model, info = super().from_pretrained(
                pretrained_model_name_or_path, *model_args, output_loading_info=True, **kwargs
            )
        except RuntimeError as error:
            if not kwargs.get("ignore_mismatched_sizes", False):
                try:
                    problem = cls._quantizer_shape_problem(pretrained_model_name_or_path, kwargs)
                except Exception:  # the diagnosis must never hide transformers' own error
                    problem = None
                if problem:
                    raise ValueError(problem) from error
            raise
        cls._raise_for_quantizer_keys(model, info)
        align_cpu_tensors(model)
        return (model, info) if output_loading_info else model

    @classmethod
    def _quantizer_shape_problem(cls, path, kwargs: dict) -> str | None:
        """A message naming the `quantizer.*` (or dim) field if the checkpoint's quantizer shapes differ."""
        hub_keys = ("cache_dir", "revision", "subfolder", "token")
        hub_kwargs = {k: kwargs[k] for k in hub_keys if kwargs.get(k) is not None}
        shapes = checkpoint_shapes(path, **hub_kwargs)
        if not shapes:
            return None
        config = kwargs.get("config")
        if not isinstance(config, cls.config_class):
            not_config = ("config", "dtype", "torch_dtype", "device_map")
            config_kwargs = {k: v for k, v in kwargs.items() if k not in not_config}
            config, _ = cls.config_class.from_pretrained(
                config if isinstance(config, (str, os.PathLike)) else path, return_unused_kwargs=True, **config_kwargs
            )
        settings, dim = config.quantizer, getattr(config, cls._quantizer_dim_field)
        for kind, indices in _members(shapes).items():
            if len(indices) != settings.get(_MEMBER_FIELD[kind]):
                return _member_count_message(kind, len(indices), settings.get(_MEMBER_FIELD[kind]))
        dim //= settings.get("num_groups", 1) if settings.get("type") == "group" else 1  # each group's codes
        for key, shape in shapes.items():
            plain = _MEMBER.sub("quantizer.", key)  # a level's or group's codebook is checked as the quantizer's
            if plain.endswith("quantizer.codebook_signal"):
                if shape[0] != settings["codebook_size"]:
                    return (
                        f"The checkpoint at {path} has a codebook of {shape[0]} codes ({key}: {shape}), but the "
                        f"config sets quantizer.codebook_size={settings['codebook_size']}. Load it with "
                        f"quantizer.codebook_size={shape[0]} (e.g. from_pretrained(..., quantizer="
                        f"{{**config.quantizer, 'codebook_size': {shape[0]}}})), or pass ignore_mismatched_sizes=True "
                        "to start from a fresh codebook."
                    )
                if shape[1] != dim:
                    return (
                        f"The checkpoint at {path} has {shape[1]}-dimensional codes ({key}: {shape}), but the config "
                        f"sets {cls._quantizer_dim_field}={dim}, the quantizer's dim."
                    )
            if plain.endswith(("quantizer.affine.scale", "quantizer.affine.ze_mean")) and shape[0] != settings["affine_groups"]:
                return (
                    f"The checkpoint at {path} has {shape[0]} affine groups ({key}: {shape}), but the config sets "
                    f"quantizer.affine_groups={settings['affine_groups']}."
                )
        return None

    @classmethod
    def _raise_for_quantizer_keys(cls, model, info: dict) -> None:
        prefixes = tuple(cls._quantizer_prefixes(model))
        if not prefixes:
            return
        missing = {k for k in info.get("missing_keys", ()) if k.startswith(prefixes)}
        unexpected = {k for k in info.get("unexpected_keys", ()) if k.startswith(prefixes)}
        if not unexpected and missing == {k for k in model.state_dict() if k.startswith(prefixes)}:
            return  # a checkpoint without a quantizer (e.g. a plain ViT): the codebook starts fresh
        cls._raise_for_member_count(model, missing, unexpected)
        affine = sorted(k for k in missing | unexpected if ".affine." in k)
        if affine:
            raise ValueError(
                f"The checkpoint's quantizer was trained with another affine mode than the config's quantizer.affine="
                f"{model.config.quantizer['affine']!r}: missing {sorted(missing)}, unexpected {sorted(unexpected)}. "
                "Set quantizer.affine to the checkpoint's mode."
            )

    @staticmethod
    def _raise_for_member_count(model, missing: set[str], unexpected: set[str]) -> None:
        """ValueError naming quantizer.num_levels / num_groups when the checkpoint has another number of them."""
        keys = set(model.state_dict())
        configured, extra = _members(keys), _members(unexpected)
        loaded = _members(keys - missing)  # a member is in the checkpoint when any of its tensors loaded
        if set(loaded) | set(extra) != set(configured):
            raise ValueError(
                f"The checkpoint's quantizer is not of the config's quantizer.type={model.config.quantizer['type']!r}: "
                f"missing {sorted(missing)[:4]}..., unexpected {sorted(unexpected)[:4]}... Set quantizer.type (and its "
                "options) as the checkpoint's config.json has them."
            )
        for kind, indices in configured.items():
            saved = loaded.get(kind, set()) | extra.get(kind, set())
            if saved != indices:
                raise ValueError(_member_count_message(kind, len(saved), len(indices)))
