"""``edge-fleet trust init|add-key|remove-key|sign|show``: the trust file devices hold.

``init`` makes version 1 (the root of trust placed on devices when provisioned).
``add-key`` and ``remove-key`` write version N+1, signed with every ``--sign-key``; they
refuse to write a file that devices would refuse, i.e. one not signed by a threshold of
the current keys and by a threshold of its own keys (so rotating A out for B is
``add-key --key B.pub --sign-key A.key``, then ``remove-key --key A.pub --sign-key B.key``,
or one step with both signing). When the signing keys are held by different people,
``--incomplete --out NEW`` writes the new version anyway and each holder adds theirs
with ``trust sign NEW --previous TRUST --sign-key KEY``.
"""

from __future__ import annotations

import argparse
import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

from edge_runtime.bundle.manifest import format_utc, parse_utc
from edge_runtime.cli.common import positive_int
from edge_runtime.errors import BundleError, ConfigError, UpdateError
from edge_runtime.trust.keys import key_id, load_public_key, load_signing_key, short_id
from edge_runtime.trust.tally import tally
from edge_runtime.trust.trustfile import (
    TrustFile,
    load_trust,
    make_trust,
    save_trust,
    sign_trust,
    verify_trust_update,
)

_HEX = re.compile(r"^[0-9a-f]{8,64}$")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("trust", help="create and rotate the trust file devices hold")
    tsub = p.add_subparsers(dest="trust_command", metavar="ACTION", required=True)

    init = tsub.add_parser("init", help="make a version 1 trust file")
    init.add_argument(
        "--out", type=Path, required=True, help="trust file to write (must not exist)"
    )
    init.add_argument(
        "--key", type=Path, action="append", required=True, help="public key file (repeat)"
    )
    init.add_argument(
        "--threshold", type=positive_int, default=1, help="signatures a bundle needs (default 1)"
    )
    _expiry_arguments(init)
    init.add_argument(
        "--sign-key", type=Path, action="append", default=[], help="private key to sign it with"
    )
    init.set_defaults(handler=run_init)

    add = tsub.add_parser("add-key", help="write version N+1 with more keys")
    add.add_argument("trust", type=Path, metavar="TRUST")
    add.add_argument(
        "--key", type=Path, action="append", required=True, help="public key file to add (repeat)"
    )
    _update_arguments(add)
    add.set_defaults(handler=run_add)

    rm = tsub.add_parser("remove-key", help="write version N+1 without some keys")
    rm.add_argument("trust", type=Path, metavar="TRUST")
    rm.add_argument(
        "--key", action="append", required=True, help="public key file or key id to remove (repeat)"
    )
    _update_arguments(rm)
    rm.set_defaults(handler=run_remove)

    sign = tsub.add_parser("sign", help="add signatures to a trust file (for thresholds over 1)")
    sign.add_argument("trust", type=Path, metavar="TRUST")
    sign.add_argument("--sign-key", type=Path, action="append", required=True, help="private key")
    sign.add_argument(
        "--previous",
        type=Path,
        default=None,
        help="the version devices hold now: say if it is ready",
    )
    sign.set_defaults(handler=run_sign)

    show = tsub.add_parser("show", help="print a trust file's keys, threshold and signatures")
    show.add_argument("trust", type=Path, metavar="TRUST")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=run_show)


def _expiry_arguments(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--expires", default=None, help="UTC time like 2027-01-01T00:00:00Z (default: none)"
    )
    group.add_argument(
        "--expires-days", type=positive_int, default=None, help="expire this many days from now"
    )


def _update_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--sign-key",
        type=Path,
        action="append",
        required=True,
        help="private key to sign the new version with (repeat; current and new keys)",
    )
    p.add_argument(
        "--threshold", type=positive_int, default=None, help="new threshold (default: unchanged)"
    )
    _expiry_arguments(p)
    p.add_argument("--out", type=Path, default=None, help="write here instead of replacing TRUST")
    p.add_argument(
        "--incomplete",
        action="store_true",
        help="write to --out even if more signatures are needed (others add them with "
        "'trust sign OUT --previous TRUST')",
    )


def _expiry(args: argparse.Namespace, current: TrustFile | None = None) -> datetime | None:
    if args.expires is not None:
        try:
            return parse_utc(args.expires, "--expires")
        except BundleError as exc:
            raise ConfigError(str(exc)) from exc
    if args.expires_days is not None:
        return datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=args.expires_days)
    return current.expires if current is not None else None


def _threshold(args: argparse.Namespace, default: int, nkeys: int) -> int:
    threshold = args.threshold if args.threshold is not None else min(default, nkeys)
    if threshold > nkeys:
        raise ConfigError(
            f"--threshold {threshold} is more than the {nkeys} key(s) in the trust file"
        )
    return threshold


def run_init(args: argparse.Namespace) -> int:
    if args.out.exists():
        raise ConfigError(
            f"{args.out} exists already; refusing to replace a root of trust "
            "(use add-key/remove-key)"
        )
    keys = [load_public_key(p) for p in args.key]
    trust = make_trust(keys, _threshold(args, args.threshold, len(set(keys))), 1, _expiry(args))
    trust = sign_trust(trust, [load_signing_key(p) for p in args.sign_key])
    save_trust(args.out, trust)
    print(f"wrote {args.out}: trust file v1, threshold {trust.threshold}, {len(trust.keys)} key(s)")
    for keyid in trust.keys:
        print(f"  {keyid}")
    return 0


def _write_update(args: argparse.Namespace, current: TrustFile, keys: dict[str, bytes]) -> int:
    if not keys:
        raise ConfigError("that would leave the trust file with no keys; refused")
    new = make_trust(
        keys.values(),
        _threshold(args, current.threshold, len(keys)),
        current.version + 1,
        _expiry(args, current),
    )
    new = sign_trust(new, [load_signing_key(p) for p in args.sign_key])
    if args.incomplete and (args.out is None or args.out.resolve() == args.trust.resolve()):
        raise ConfigError("--incomplete needs --out NEW (the current trust file stays as it is)")
    out = args.out or args.trust
    problem = _rule_problem(current, new)
    if problem is not None and not args.incomplete:
        raise problem
    save_trust(out, new)
    print(
        f"wrote {out}: trust file v{new.version}, threshold {new.threshold}, {len(new.keys)} key(s)"
    )
    for keyid in new.keys:
        print(f"  {keyid}")
    if problem is not None:
        print(
            f"not yet accepted by devices: {problem}; add signatures with: "
            f"edge-fleet trust sign {out} --previous {args.trust} --sign-key KEY"
        )
    return 0


def _rule_problem(current: TrustFile, new: TrustFile) -> UpdateError | None:
    """None when devices holding ``current`` would accept ``new``; else why not."""
    try:
        verify_trust_update(current, new, now=datetime.now(timezone.utc))
    except UpdateError as exc:
        return exc
    return None


def run_sign(args: argparse.Namespace) -> int:
    trust = load_trust(args.trust)
    signed = sign_trust(trust, [load_signing_key(p) for p in args.sign_key])
    added = len(signed.signatures) - len(trust.signatures)
    save_trust(args.trust, signed)
    total = len(signed.signatures)
    print(f"added {added} signature(s) to {args.trust} (v{signed.version}); {total} now")
    if args.previous is not None:
        problem = _rule_problem(load_trust(args.previous), signed)
        if problem is not None:
            print(f"not yet accepted by devices holding {args.previous}: {problem}")
        else:
            print(f"ready: devices holding {args.previous} accept v{signed.version}")
    return 0


def run_add(args: argparse.Namespace) -> int:
    current = load_trust(args.trust)
    keys = dict(current.keys)
    for path in args.key:
        raw = load_public_key(path)
        keys[key_id(raw)] = raw
    return _write_update(args, current, keys)


def _resolve(spec: str, current: TrustFile) -> str:
    if _HEX.match(spec) and not Path(spec).exists():
        matches = [k for k in current.keys if k.startswith(spec)]
        if len(matches) != 1:
            raise ConfigError(
                f"key id {spec!r} matches {len(matches)} keys in the trust file; give more digits"
            )
        return matches[0]
    raw = load_public_key(spec)
    for keyid, public in current.keys.items():
        if public == raw:
            return keyid
    raise ConfigError(f"{spec} is not a key in the trust file")


def run_remove(args: argparse.Namespace) -> int:
    current = load_trust(args.trust)
    keys = dict(current.keys)
    for spec in args.key:
        keys.pop(_resolve(spec, current), None)
    return _write_update(args, current, keys)


def _signing_rule(version: int) -> str:
    """What the "signed" marks mean for this version, in one sentence."""
    if version == 1:
        return (
            "v1 is placed on devices when provisioned, so its own signatures are optional; "
            "each later version needs a threshold of the previous version's keys and of its own"
        )
    return (
        f"devices holding v{version - 1} take v{version} only when a threshold of "
        f"v{version - 1}'s keys and a threshold of these keys signed it"
    )


def run_show(args: argparse.Namespace) -> int:
    trust = load_trust(args.trust)
    result = tally(trust.signed_bytes, trust.signatures, trust.keys)
    info = {
        "version": trust.version,
        "threshold": trust.threshold,
        "expires": format_utc(trust.expires) if trust.expires else None,
        "keys": list(trust.keys),
        "self_signed_by": list(result.valid),
        "other_signatures": [s.keyid for s in trust.signatures if s.keyid not in result.valid],
    }
    if args.json:
        print(json.dumps(info))
        return 0
    print(
        f"{args.trust}: trust file v{trust.version}, threshold {trust.threshold}, "
        f"expires {info['expires'] or 'never'}"
    )
    print(f"  keys (a bundle needs valid signatures from {trust.threshold} of them):")
    for keyid in trust.keys:
        mark = "signed this trust file" if keyid in result.valid else "has not signed this file"
        print(f"    {keyid}  {mark}")
    print(f"  ({_signing_rule(trust.version)})")
    others: list[str] = info["other_signatures"]  # type: ignore[assignment]
    if others:
        print(
            f"  also signed by {len(others)} key(s) not in this version: "
            f"{', '.join(map(short_id, others))}"
        )
    return 0
