"""One exception tree for the whole project, split by where a failure comes from.

Every error the command line or the daemon reports to a person is an ``EdgeError``:
its message says what was expected, what was found and, where it helps, what to do.
Library errors are translated at the boundary with ``raise ... from``.
"""

from __future__ import annotations


class EdgeError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigError(EdgeError):
    """A configuration file or command-line value is missing, unknown or out of range."""


class ModelError(EdgeError):
    """A model file cannot be read, is not a TFLite model, or cannot run here."""


class BackendError(ModelError):
    """No interpreter library is installed, or it failed to start."""


class DelegateError(ModelError):
    """The Edge TPU delegate was asked for and cannot be used."""


class InputError(EdgeError):
    """A request or input file is not a usable image or tensor."""


class LabelsError(EdgeError):
    """A labels file does not match the model."""


class TransportError(EdgeError):
    """The MQTT connection or a publish failed."""


class StorageError(EdgeError):
    """The state folder cannot take a write now (full, or failing); worth another try
    once space returns."""


class BundleError(EdgeError):
    """A bundle is malformed: bad tar, bad manifest, missing or extra files."""


class UpdateError(EdgeError):
    """A model update was refused; ``reason`` is a short machine-readable code."""

    reason = "update_failed"


class SignatureError(UpdateError):
    """Signatures do not meet the trust threshold."""

    reason = "signature"


class IntegrityError(UpdateError):
    """A file's hash or size differs from the manifest."""

    reason = "integrity"


class SizeLimitError(UpdateError):
    """A download, bundle or member exceeds its size cap."""

    reason = "size"


class ExpiredError(UpdateError):
    """The manifest's ``expires`` time has passed (freeze attack)."""

    reason = "expired"


class RollbackError(UpdateError):
    """The bundle's version is not above the installed one (rollback attack)."""

    reason = "rollback"


class CompatibilityError(UpdateError):
    """The bundle does not name this device class."""

    reason = "incompatible"


class ValidationError(UpdateError):
    """The candidate model failed its golden vectors, latency bound or health gate."""

    reason = "validation"


class BusyError(UpdateError):
    """The device was too busy to validate a bundle in time; worth another try."""

    reason = "busy"
