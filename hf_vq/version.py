"""The installed release, written into every file that describes a model or a run (config.json's
`hf_vq_version`, training_config.yaml, checkpoint markers), so that a file from a newer release is recognised."""

from packaging.version import InvalidVersion, Version

__version__ = "0.2.0"


def written_by_newer_release(version: str, field: str = "hf_vq_version") -> bool:
    """True when `version` (a file's `field`) is newer than the installed release; ValueError if it is no version."""
    try:
        return Version(str(version)) > Version(__version__)
    except InvalidVersion:
        raise ValueError(f"{field}: {version!r} is not a version number (e.g. {__version__!r})") from None
