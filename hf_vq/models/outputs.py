"""Deprecated names of model output fields, kept readable for one release."""

from __future__ import annotations

import warnings

_warned: set[str] = set()


def _warn_renamed_once(old: str, new: str) -> None:
    if old not in _warned:
        _warned.add(old)
        warnings.warn(
            f"The model output field `{old}` is renamed `{new}`; `{old}` is a deprecated alias that will be removed "
            "in the next release",
            FutureWarning,
            stacklevel=3,
        )


class DeprecatedCodebookUsage:
    """Model-output mixin: `codebook_usage`, a read-only alias of `active_codes` that warns once per process."""

    @property
    def codebook_usage(self):
        _warn_renamed_once("codebook_usage", "active_codes")
        return self.active_codes
