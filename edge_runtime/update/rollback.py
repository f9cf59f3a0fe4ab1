"""A rollback order's way in on the device: its signatures, address and expiry checked
(``trust.orders``), its target compared with the previous version, and its nonce used.

The nonces of the orders a device carried out are kept until each order expires, so that
a signed order seen again (replayed from the broker, or after a restart) is refused.

``rollback-nonces.json`` in the state folder (``{nonce: expires}``, replaced atomically,
0600) is written before the order is carried out. A record that exists but cannot be
read fails closed: every order is refused until it is fixed, rather than forgetting
what was carried out. At most ``limit`` unexpired orders are remembered; beyond them new
orders are refused (orders live at most a week, see ``trust.orders``).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from edge_runtime.bundle.atomic import atomic_writer
from edge_runtime.bundle.canonical import format_utc, parse_utc
from edge_runtime.errors import BundleError, ConfigError
from edge_runtime.trust.orders import OrderRefused, RollbackOrder, verify_order
from edge_runtime.trust.trustfile import load_trust

NONCES_FILE = "rollback-nonces.json"
MAX_RECORD_BYTES = 1024 * 1024


class UsedNonces:
    def __init__(self, state_dir: Path, limit: int = 1000) -> None:
        self.path = Path(state_dir) / NONCES_FILE
        self.limit = limit

    def _load(self) -> dict[str, datetime]:
        try:
            with open(self.path, "rb") as handle:
                doc = json.loads(handle.read(MAX_RECORD_BYTES + 1))
            if not isinstance(doc, dict):
                raise ValueError("not an object")
            return {str(k): parse_utc(v, "expires") for k, v in doc.items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, BundleError) as exc:
            raise OrderRefused(
                "rollback_bad_order",
                f"the record of carried-out orders {self.path} cannot be read ({exc}); "
                "orders are refused until it is fixed",
            ) from exc

    def use(self, order: RollbackOrder, now: datetime) -> None:
        """Record ``order``'s nonce (durably) before it is carried out.

        Raises:
            OrderRefused: ``rollback_replayed`` when it was used before; or the record
                is unreadable, unwritable or full.
        """
        used = {n: t for n, t in self._load().items() if t > now}
        if order.nonce in used:
            raise OrderRefused(
                "rollback_replayed",
                f"the order with nonce {order.nonce[:8]}... was carried out before; refused",
            )
        if len(used) >= self.limit:
            raise OrderRefused(
                "rollback_bad_order",
                f"{len(used)} unexpired orders are remembered already; refused until some expire",
            )
        used[order.nonce] = order.expires
        try:
            with atomic_writer(self.path, mode=0o600) as handle:
                doc = {n: format_utc(t) for n, t in used.items()}
                handle.write(json.dumps(doc, sort_keys=True).encode())
        except OSError as exc:
            raise OrderRefused(
                "rollback_bad_order", f"cannot record the order in {self.path}: {exc}"
            ) from exc


def accept_order(
    payload: bytes,
    *,
    trust: Path | None,
    device_id: str,
    previous: str | None,
    nonces: UsedNonces,
) -> RollbackOrder:
    """Check a rollback order against the trust file and this device, and use its nonce.
    ``previous``: the version a rollback would go back to (None: unknown).

    Raises:
        OrderRefused: why the order is not carried out.
    """
    if trust is None:
        raise OrderRefused(
            "rollback_signature", "this device has no trust file ([update] trust); refused"
        )
    try:
        trust_file = load_trust(trust)
    except ConfigError as exc:
        raise OrderRefused("rollback_signature", f"{exc}; refused") from exc
    now = datetime.now(timezone.utc)
    order = verify_order(payload, trust_file, device_id=device_id, now=now)
    nonces.use(order, now)  # first: a replayed order is refused as such, whatever it asks
    if order.version is not None and order.version != previous:
        raise OrderRefused(
            "rollback_target",
            f"the order asks for {order.version}; the previous version here is "
            f"{previous or 'unknown'}; refused",
        )
    return order
