"""What `ResidualVectorQuantizer` and `GroupedVectorQuantizer` share: quantizers made of several
`VectorQuantizer`s (the members: levels or groups), each with its own codebook, so every option of the paper
(affine, ν, alternation, LRU, k-means, DDP sync) works per member and every helper that looks for
`VectorQuantizer` modules (AlternatingOptimizer, `end_step`, metrics) finds the members.

The members' options: the composite's own keyword arguments that are `VectorQuantizer` options, shared by
every member, then the member's entry of a per-member list (`level_options` / `group_options`) on top.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .layer import QuantizerOutput, VectorQuantizer
from .options import QuantizerOptions, _require

# Set by the composite itself for every member.
MEMBER_DECIDED = ("dim", "codebook_size", "channel_first")


@dataclass
class MultiCodebookOutput(QuantizerOutput):
    """`QuantizerOutput` of a quantizer with several codebooks (residual levels or groups).

    `indices` has a trailing axis over the codebooks; `perplexity` and `active_codes` are the means over
    the codebooks of the per-codebook values below.

    Attributes:
        codebook_commitment: (M,) fp32, each member's L_cmt on its own input (residual: the error left after
            level m; groups: the group's slice).
        codebook_perplexity: (M,) fp32, 2^H of each member's code histogram.
        codebook_active_codes: (M,) fp32, each member's fraction of its K codes used in the batch.
    """

    codebook_commitment: torch.Tensor | None = None
    codebook_perplexity: torch.Tensor | None = None
    codebook_active_codes: torch.Tensor | None = None


class MultiCodebookQuantizer(nn.Module):
    """Base of the quantizers made of several `VectorQuantizer` members (`members()`, in index order)."""

    def members(self) -> list[VectorQuantizer]:
        raise NotImplementedError

    def codebook_parameters(self) -> list[nn.Parameter]:
        return [p for member in self.members() for p in member.codebook_parameters()]

    @torch.no_grad()
    def fold_affine(self) -> "MultiCodebookQuantizer":
        """Bake each member's affine into plain codes (`VectorQuantizer.fold_affine`). Returns self."""
        for member in self.members():
            member.fold_affine()
        return self


def model_quantizers(module: nn.Module) -> list[nn.Module]:
    """The quantizers a model calls: each `MultiCodebookQuantizer`, and each `VectorQuantizer` outside one
    (`find_quantizers` lists the members instead)."""
    found, inside = [], set()
    for m in module.modules():
        if id(m) not in inside and isinstance(m, (MultiCodebookQuantizer, VectorQuantizer)):
            found.append(m)
            inside.update(id(sub) for sub in m.modules())
    return found


def split_options(options: Mapping[str, Any], own: type) -> tuple[dict[str, Any], dict[str, Any]]:
    """({option of the dataclass `own`: value}, {every other option: value})."""
    names = {f.name for f in dataclasses.fields(own)}
    return ({k: v for k, v in options.items() if k in names}, {k: v for k, v in options.items() if k not in names})


def member_settings(dim: int, codebook_size: int, channel_first: bool, shared: Mapping[str, Any],
                    overrides: Sequence[Mapping[str, Any]] | None, count: int, field: str, owner: str) -> list[dict]:
    """Keyword arguments of each of the `count` member `VectorQuantizer`s: `shared`, then the member's entry
    of `overrides` (the option named `field`); each set is checked by `QuantizerOptions`, which allocates
    nothing. Raises TypeError/ValueError naming the option at fault."""
    valid = [n for n in QuantizerOptions.names() if n not in MEMBER_DECIDED]
    unknown = sorted(set(shared) - set(valid))
    _require(not unknown, f"Unknown {owner} option(s) {unknown}; valid: {', '.join(sorted(valid))}", TypeError)
    if overrides is None:
        overrides = [{}] * count
    _require(isinstance(overrides, Sequence) and not isinstance(overrides, str) and len(overrides) == count,
             f"{field} must be None or a list of {count} dicts (one per member, {{}} for none), got {overrides!r}")
    settings = []
    for i, override in enumerate(overrides):
        _require(isinstance(override, Mapping), f"{field}[{i}] must be a dict of options, got {override!r}", TypeError)
        fixed = sorted(set(override) & set(MEMBER_DECIDED))
        _require(not fixed, f"{field}[{i}] sets {fixed}, which the {owner} sets for every member; remove them")
        unknown = sorted(set(override) - set(valid))
        _require(not unknown, f"{field}[{i}] has unknown option(s) {unknown}; valid: {', '.join(sorted(valid))}", TypeError)
        merged = {**shared, **override}
        try:
            QuantizerOptions(dim, codebook_size, channel_first=channel_first, **merged)
        except (TypeError, ValueError) as error:
            raise type(error)(f"{field}[{i}]: {error}" if override else str(error)) from None
        settings.append(merged)
    return settings


def check_count(name: str, value: Any) -> None:
    """TypeError/ValueError unless `value` is an int >= 1."""
    _require(isinstance(value, int) and not isinstance(value, bool), f"{name} must be an int, got {value!r}", TypeError)
    _require(value >= 1, f"{name} must be >= 1, got {value}")


def combine(quantized: torch.Tensor, indices: torch.Tensor, loss: torch.Tensor, commitment: torch.Tensor,
            members: Sequence[QuantizerOutput]) -> MultiCodebookOutput:
    """The composite's output: its own quantized/indices/loss/commitment and the members' statistics."""
    perplexity = torch.stack([o.perplexity for o in members])
    active = torch.stack([o.active_codes for o in members])
    return MultiCodebookOutput(quantized, indices, loss, commitment, perplexity.mean(), active.mean(),
                               codebook_commitment=torch.stack([o.commitment for o in members]),
                               codebook_perplexity=perplexity, codebook_active_codes=active)
