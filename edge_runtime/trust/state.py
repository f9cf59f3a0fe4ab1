"""The device's memory of the highest bundle version it has seen, per model name.

Kept apart from what is installed, so removing or reinstalling a model cannot reopen the
door to an older (replayed) bundle. Stored as ``STATE_DIR/versions_seen.json``
(``{"highest_seen": {"digits": "1.3.0"}}``), replaced atomically, and only ever raised.
A record that exists but cannot be read fails closed: every update is refused until it
is fixed, rather than forgetting what was seen.
"""

from __future__ import annotations

from pathlib import Path

from edge_runtime.bundle.atomic import PathLike, atomic_write_bytes
from edge_runtime.bundle.manifest import NAME_RE, canonical_bytes, loads_strict
from edge_runtime.bundle.semver import SemVer, VersionLike, as_semver
from edge_runtime.errors import BundleError, RollbackError

STATE_FILE = "versions_seen.json"
MAX_STATE_BYTES = 1024 * 1024


def state_path(state_dir: PathLike) -> Path:
    return Path(state_dir) / STATE_FILE


def load_highest_seen(state_dir: PathLike) -> dict[str, SemVer]:
    """Model name -> highest version seen; empty when there is no record yet.

    Raises:
        RollbackError: the record exists but cannot be read or is malformed (fail closed).
    """
    path = state_path(state_dir)
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_STATE_BYTES + 1)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise RollbackError(
            f"cannot read the version record {path}: {exc}; refusing updates until fixed"
        ) from exc
    try:
        if len(data) > MAX_STATE_BYTES:
            raise BundleError(f"larger than {MAX_STATE_BYTES} bytes")
        obj = loads_strict(data, str(path))
        if (
            not isinstance(obj, dict)
            or set(obj) != {"highest_seen"}
            or not isinstance(obj["highest_seen"], dict)
        ):
            raise BundleError('expected {"highest_seen": {name: version}}')
        out = {}
        for name, version in obj["highest_seen"].items():
            if not NAME_RE.match(name):
                raise BundleError(f"bad model name {name!r}")
            out[name] = SemVer.parse(version)
        return out
    except BundleError as exc:
        raise RollbackError(
            f"version record {path} is malformed ({exc}); refusing updates until fixed"
        ) from exc


def highest_seen_for(state_dir: PathLike | None, name: str) -> SemVer | None:
    if state_dir is None:
        return None
    return load_highest_seen(state_dir).get(name)


def record_seen(state_dir: PathLike, name: str, version: VersionLike) -> bool:
    """Raise the record for ``name`` to ``version``; never lowers it. True if it changed.

    Raises:
        RollbackError: the existing record is unreadable.
        OSError: the state folder is not writable.
    """
    seen = load_highest_seen(state_dir)
    new = as_semver(version)
    old = seen.get(name)
    if old is not None and new <= old:
        return False
    seen[name] = new
    body = {"highest_seen": {k: str(v) for k, v in sorted(seen.items())}}
    Path(state_dir).mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(state_path(state_dir), canonical_bytes(body) + b"\n", mode=0o644)
    return True
