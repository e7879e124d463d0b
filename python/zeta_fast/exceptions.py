"""The exceptions zeta_fast raises.

Every error about a bad value subclasses ``ValueError`` as well as
:class:`ZetaError`, so both ``except ValueError`` and ``except ZetaError``
catch it. Wrong types raise the built-in ``TypeError``. The native core raises
these same classes.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "InvalidInputError",
    "NoCandidatesError",
    "SnapshotError",
    "SnapshotWarning",
    "UnsupportedRequestError",
    "ZetaError",
]


class ZetaError(Exception):
    """Base class of every error zeta_fast raises on purpose."""


class ConfigError(ZetaError, ValueError):
    """A configuration value is out of range, not finite, or unknown."""


class InvalidInputError(ZetaError, ValueError):
    """A per-candidate input is out of range, not finite, or mis-shaped."""


class NoCandidatesError(ZetaError, ValueError):
    """A decision was asked for over no candidates."""


class UnsupportedRequestError(ZetaError, ValueError):
    """No model here (or not the model named) serves a kind of request this
    one is: images or audio to text-only models, tools, a JSON schema, or a
    route such as the Responses or Messages API, declared in the
    configuration (``models[].unsupported``) or learned from refusals."""


class SnapshotError(ZetaError, ValueError):
    """A persisted snapshot is unusable (truncated, corrupted, another version
    or window shape) and no previous good one exists, or the file is in use."""


class SnapshotWarning(UserWarning):
    """The newest snapshot was unusable and the previous one was restored."""
