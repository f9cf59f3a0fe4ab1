"""Signed rollback orders: what lets an operator move a device back to its previous model,
and what broker credentials alone no longer can.

An order on ``<prefix>/<id>/model/rollback`` is::

    {"order": {"type": "edge-runtime/rollback-order", "device": "pi-01",
               "version": "1.0.0" | null, "expires": "2026-01-31T12:15:00Z",
               "nonce": "<32 hex digits>"},
     "signatures": [{"keyid": ..., "sig": ...}]}

The signatures are Ed25519 over the canonical bytes of ``order`` (as for a bundle
manifest), by at least the trust file's ``threshold`` of its keys. ``version`` null means
"the previous version, whichever it is". The pure check here runs, in order: the
signatures and the trust file's own expiry, then the order's content (only read once it
is signed), the device it names, and its expiry (at most ``MAX_LIFETIME`` ahead). Replay
of a signed order is the device's to stop: it remembers each nonce until the order
expires (``edge_runtime.update.orders``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from edge_runtime.bundle.canonical import canonical_bytes, format_utc, loads_strict, parse_utc
from edge_runtime.bundle.signatures import parse_signature_list, signatures_json
from edge_runtime.errors import BundleError, SignatureError, UpdateError
from edge_runtime.trust.keys import SigningKey
from edge_runtime.trust.tally import require_threshold
from edge_runtime.trust.trustfile import TrustFile

ORDER_TYPE = "edge-runtime/rollback-order"
#: Longest an order may stay valid (bounds how long a device must remember its nonce).
MAX_LIFETIME = timedelta(days=7)
MAX_ORDER_BYTES = 64 * 1024
NONCE_RE = re.compile(r"^[0-9a-f]{32}$")
_FIELDS = {"type", "device", "version", "expires", "nonce"}


class OrderRefused(UpdateError):
    """A rollback order the device does not carry out; ``reason`` says why:
    ``rollback_unsigned``, ``rollback_signature``, ``rollback_expired``,
    ``rollback_misaddressed``, ``rollback_replayed``, ``rollback_target`` or
    ``rollback_bad_order``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class RollbackOrder:
    device: str
    version: str | None  # None: the previous version
    expires: datetime
    nonce: str


def order_document(order: RollbackOrder) -> dict[str, Any]:
    """The signed part of an order."""
    return {
        "type": ORDER_TYPE,
        "device": order.device,
        "version": order.version,
        "expires": format_utc(order.expires),
        "nonce": order.nonce,
    }


def sign_order(order: RollbackOrder, keys: Iterable[SigningKey]) -> dict[str, Any]:
    """The order as sent: its document and a signature by each key."""
    signed = order_document(order)
    data = canonical_bytes(signed)
    return {"order": signed, "signatures": signatures_json(key.sign(data) for key in keys)}


UNSIGNED = (
    "unsigned rollback orders are no longer accepted: broker credentials alone must not "
    "move a model; send one signed by the trust file's keys (edge-fleet rollback --key)"
)


def verify_order(
    payload: bytes, trust: TrustFile, *, device_id: str, now: datetime
) -> RollbackOrder:
    """Check a rollback order (not its nonce: see the module docstring).

    Raises:
        OrderRefused: the first check that failed, by ``reason``.
    """
    if len(payload) > MAX_ORDER_BYTES:
        raise OrderRefused("rollback_bad_order", f"order of over {MAX_ORDER_BYTES} bytes")
    try:
        doc = loads_strict(payload, "rollback order")
    except BundleError as exc:
        raise OrderRefused("rollback_unsigned", f"{UNSIGNED} ({exc})") from exc
    if not isinstance(doc, dict) or "order" not in doc or not doc.get("signatures"):
        raise OrderRefused("rollback_unsigned", UNSIGNED)
    signed = doc["order"]
    try:
        if set(doc) != {"order", "signatures"} or not isinstance(signed, dict):
            raise BundleError('an order is {"order": {...}, "signatures": [...]}')
        signatures = parse_signature_list(doc["signatures"])
        data = canonical_bytes(signed)
    except BundleError as exc:
        raise OrderRefused("rollback_bad_order", f"rollback order refused: {exc}") from exc
    try:
        require_threshold(data, signatures, trust.keys, trust.threshold, "rollback order")
    except SignatureError as exc:
        raise OrderRefused("rollback_signature", str(exc)) from exc
    if trust.expires is not None and trust.expires <= now:
        raise OrderRefused(
            "rollback_expired", f"trust file v{trust.version} expired; install a newer one"
        )
    order = _parse(signed)
    if order.device != device_id:
        raise OrderRefused(
            "rollback_misaddressed",
            f"the order is for device {order.device!r}, not this one ({device_id!r}); refused",
        )
    if order.expires <= now:
        raise OrderRefused(
            "rollback_expired",
            f"the order expired at {format_utc(order.expires)} (now {format_utc(now)}); refused",
        )
    if order.expires > now + MAX_LIFETIME:
        raise OrderRefused(
            "rollback_bad_order",
            f"the order is valid until {format_utc(order.expires)}, more than "
            f"{MAX_LIFETIME.days} days ahead; refused",
        )
    return order


def _parse(signed: Mapping[str, Any]) -> RollbackOrder:
    if set(signed) != _FIELDS or signed["type"] != ORDER_TYPE:
        raise OrderRefused(
            "rollback_bad_order", f"a signed order holds exactly {sorted(_FIELDS)} of {ORDER_TYPE}"
        )
    device, version, nonce = signed["device"], signed["version"], signed["nonce"]
    if not isinstance(device, str) or not (version is None or isinstance(version, str)):
        raise OrderRefused(
            "rollback_bad_order", "order device must be a string, version a string or null"
        )
    if not isinstance(nonce, str) or not NONCE_RE.match(nonce):
        raise OrderRefused("rollback_bad_order", "order nonce must be 32 hex digits")
    try:
        expires = parse_utc(signed["expires"], "order expires")
    except BundleError as exc:
        raise OrderRefused("rollback_bad_order", str(exc)) from exc
    return RollbackOrder(device, version, expires, nonce)
