"""`QuantizerOptions`: every setting of a `VectorQuantizer`, its default and its valid range, checked once.

The layer validates its keyword arguments here, and model configs (`hf_vq.models.QuantizerConfig`) read
the option names and defaults from these fields, so a new option is one field below. The meaning of each
option is documented on `VectorQuantizer`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal, get_args

Distance = Literal["euclidean", "cosine"]
CodebookUpdate = Literal["gradient", "ema"]
Affine = Literal["learnable", "ema"]
AffineCovariance = Literal["diagonal", "full"]
CodebookParametrization = Literal["direct", "simvq"]


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _require(condition: bool, message: str, error: type[Exception] = ValueError) -> None:
    if not condition:
        raise error(message)


@dataclass
class QuantizerOptions:
    """Validated `VectorQuantizer` settings (see its docstring for what each one means)."""

    dim: int
    codebook_size: int
    channel_first: bool = False
    distance: Distance = "euclidean"
    beta: float = 0.95
    commitment_weight: float = 5.0
    codebook_update: CodebookUpdate = "gradient"
    ema_decay: float = 0.99
    affine: Affine | None = None
    affine_covariance: AffineCovariance = "diagonal"
    affine_lr_scale: float = 1.0
    affine_momentum: float = 0.1
    affine_groups: int = 1
    sync_nu: float = 0.0
    replace_after: int = 0
    replace_noise: float = 0.01
    kmeans_init: bool = False
    kmeans_iters: int = 10
    stochastic_temperature: float | None = None
    chunk_size: int | None = None
    half_precision_search: bool = True
    check_finite: bool = True
    step_on_forward: bool = True
    rotation_trick: bool = False
    codebook_parametrization: CodebookParametrization = "direct"

    def __post_init__(self) -> None:
        for name in ("dim", "codebook_size"):
            value = getattr(self, name)
            _require(_is_int(value), f"{name} must be an int, got {type(value).__name__}", TypeError)
            _require(value >= 1, f"{name} must be >= 1, got {value}")
        for name, choices in (("distance", Distance), ("codebook_update", CodebookUpdate),
                              ("affine_covariance", AffineCovariance),
                              ("codebook_parametrization", CodebookParametrization)):
            _require(getattr(self, name) in get_args(choices),
                     f"{name} must be one of {get_args(choices)}, got {getattr(self, name)!r}")
        _require(self.affine is None or self.affine in get_args(Affine),
                 f"affine must be one of {(None, *get_args(Affine))}, got {self.affine!r}")
        for name in ("beta", "commitment_weight", "ema_decay", "affine_lr_scale", "affine_momentum", "sync_nu",
                     "replace_noise"):
            value = getattr(self, name)
            _require(_is_number(value), f"{name} must be a number, got {type(value).__name__}", TypeError)
            _require(math.isfinite(value), f"{name} must be finite, got {value}")
            setattr(self, name, float(value))
        _require(0.0 <= self.beta <= 1.0, f"beta must be in [0, 1] (eqs 8-9), got {self.beta}")
        _require(self.commitment_weight >= 0, f"commitment_weight (alpha) must be >= 0, got {self.commitment_weight}")
        _require(0.0 <= self.ema_decay < 1.0, f"ema_decay must be in [0, 1), got {self.ema_decay}")
        _require(
            not (self.codebook_update == "ema" and self.affine is not None),
            f"codebook_update='ema' sets the codes directly in embedding space, so affine={self.affine!r} has "
            "nothing to learn: use codebook_update='gradient' with an affine, or affine=None with 'ema'",
        )
        _require(self.affine_lr_scale > 0, f"affine_lr_scale must be > 0, got {self.affine_lr_scale}")
        _require(0.0 < self.affine_momentum <= 1.0, f"affine_momentum must be in (0, 1], got {self.affine_momentum}")
        _require(_is_int(self.affine_groups), f"affine_groups must be an int, got {type(self.affine_groups).__name__}",
                 TypeError)
        _require(self.affine_groups >= 1 and self.codebook_size % self.affine_groups == 0,
                 f"affine_groups must be >= 1 and divide codebook_size={self.codebook_size}, got {self.affine_groups}")
        _require(self.sync_nu >= 0, f"sync_nu must be >= 0, got {self.sync_nu}")
        _require(_is_int(self.replace_after),
                 f"replace_after must be an int (steps), got {type(self.replace_after).__name__}", TypeError)
        _require(self.replace_after >= 0,
                 f"replace_after must be >= 0 (0 disables LRU replacement), got {self.replace_after}")
        _require(self.replace_noise >= 0, f"replace_noise must be >= 0, got {self.replace_noise}")
        for name in ("kmeans_init", "rotation_trick"):
            _require(isinstance(getattr(self, name), bool),
                     f"{name} must be a bool, got {type(getattr(self, name)).__name__}", TypeError)
        if self.codebook_parametrization == "simvq":
            self._resolve_simvq()
        _require(_is_int(self.kmeans_iters) and self.kmeans_iters >= 0,
                 f"kmeans_iters must be an int >= 0, got {self.kmeans_iters!r}")
        tau = self.stochastic_temperature
        _require(tau is None or (_is_number(tau) and tau > 0),
                 f"stochastic_temperature must be None or a number > 0, got {self.stochastic_temperature!r}")
        _require(self.chunk_size is None or (_is_int(self.chunk_size) and self.chunk_size >= 1),
                 f"chunk_size must be None or an int >= 1, got {self.chunk_size!r}")

    def _resolve_simvq(self) -> None:
        """SimVQ's codebook c = W·c_signal + b is the full learnable affine over a frozen c_signal: set
        affine="learnable", affine_covariance="full". The covariance is overridden, not checked: model configs
        always carry the default "diagonal" (and the paper's affine="learnable"), which cannot be told apart
        from an explicit choice. An "ema" affine or codebook contradicts SimVQ and raises."""
        _require(self.codebook_update == "gradient",
                 "codebook_parametrization='simvq' learns its linear map by gradient: use codebook_update='gradient'")
        _require(self.affine in (None, "learnable"),
                 "codebook_parametrization='simvq' is the learnable full affine over a frozen basis; "
                 f"affine={self.affine!r} contradicts it: leave affine unset (or 'learnable')")
        self.affine, self.affine_covariance = "learnable", "full"

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """{option: default} for every option that has one (all but `dim` and `codebook_size`)."""
        return {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]
