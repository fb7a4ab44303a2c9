"""Least-recently-used code replacement (§3 "Replacement policy", Table 1).

A code that no vector selected for `replace_after` consecutive training steps (the paper uses 20) is
replaced by a random current embedding vector plus small noise; codes in use are never touched.
"""

from __future__ import annotations

import weakref

import torch

from .distributed import all_gather_rows


def update_idle_steps(idle_steps: torch.Tensor, hits: torch.Tensor) -> None:
    """In place: codes hit this step restart at 0, the others age by one step. Both (K,) on one device."""
    idle_steps.add_(1).masked_fill_(hits > 0, 0)


@torch.no_grad()
def sample_replacements(
    z: torch.Tensor, count: int, *, noise_scale: float, generator: torch.Generator, local_generator: torch.Generator
) -> torch.Tensor | None:
    """`count` random rows of the current embeddings, pooled over all ranks, plus noise.

    z: (N, D) this rank's fp32 embeddings (N may be 0). `generator` must be seeded identically on every
    rank: the pick from the pooled candidates is then the same everywhere, with no broadcast from a rank
    whose batch might be empty. `local_generator` (per rank) picks this rank's candidates. Neither touches
    torch's global RNG. Returns (count, D), or None when no rank has any vector.
    """
    n_local = min(count, z.shape[0])
    local = z[torch.randint(z.shape[0], (n_local,), generator=local_generator).to(z.device)] if n_local else z[:0]
    pool = all_gather_rows(local.contiguous())
    if pool.shape[0] == 0:
        return None
    pick = torch.randint(pool.shape[0], (count,), generator=generator).to(pool.device)
    chosen = pool[pick]
    scale = pool.std(0, unbiased=False) if pool.shape[0] > 1 else pool.abs().mean(0)
    noise = torch.randn(chosen.shape, generator=generator).to(chosen)
    return chosen + noise_scale * scale.clamp_min(1e-6) * noise


class OptimizerStateResetter:
    """Zeroes the optimizer state rows of replaced codes, so stale momentum cannot drag a new code away.

    Holds weak references: attaching an optimizer never keeps it alive.
    """

    def __init__(self) -> None:
        self._optimizers: list[weakref.ref] = []

    def attach(self, optimizer: torch.optim.Optimizer) -> None:
        if not any(ref() is optimizer for ref in self._optimizers):
            self._optimizers.append(weakref.ref(optimizer))

    @torch.no_grad()
    def reset_rows(self, param: torch.Tensor, rows: torch.Tensor) -> None:
        """For every attached optimizer, zero each per-element state tensor of `param` at `rows`."""
        self._optimizers = [ref for ref in self._optimizers if ref() is not None]
        for ref in self._optimizers:
            state = ref().state.get(param)
            for value in (state or {}).values():
                if torch.is_tensor(value) and value.shape == param.shape:
                    value[rows] = 0
