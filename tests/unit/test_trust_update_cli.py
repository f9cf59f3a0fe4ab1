"""``edge-runtime trust-update``: a device takes a rotated trust file only under the rule.

The operator rotates from key A to key B with ``edge-fleet trust`` on the host; the
device installs each new version with ``edge-runtime trust-update``, then verifies
bundles signed by B and refuses ones signed by A. Refused files leave the installed
one byte for byte unchanged.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.conftest import MODELS
from tests.unit.test_fleet_cli import ok, run
from tests.unit.test_fleet_cli import one_line_error as refused


def test_device_follows_a_key_rotation(tmp_path: Path) -> None:
    host, device = tmp_path / "host", tmp_path / "device"
    host.mkdir()
    device.mkdir()
    for name in ("a", "b", "outsider"):
        ok(run("edge-fleet", "keygen", "--out", "keys", "--name", name, cwd=host))
    ok(run("edge-fleet", "trust", "init", "--out", "trust.json", "--key", "keys/a.pub", cwd=host))
    shutil.copy(host / "trust.json", device / "trust.json")  # flashed with v1: trusts A

    ok(
        run(
            "edge-fleet",
            "trust",
            "add-key",
            "trust.json",
            "--key",
            "keys/b.pub",
            "--sign-key",
            "keys/a.key",
            "--sign-key",
            "keys/b.key",
            "--out",
            "v2.json",
            cwd=host,
        )
    )
    ok(
        run(
            "edge-fleet",
            "trust",
            "remove-key",
            "v2.json",
            "--key",
            "keys/a.pub",
            "--sign-key",
            "keys/b.key",
            "--out",
            "v3.json",
            cwd=host,
        )
    )
    ok(
        run(
            "edge-fleet",
            "trust",
            "init",
            "--out",
            "forged.json",
            "--key",
            "keys/outsider.pub",
            "--sign-key",
            "keys/outsider.key",
            cwd=host,
        )
    )

    # v3 straight away: signed by B only, which v1 does not trust.
    before = (device / "trust.json").read_bytes()
    refused(
        run("edge-runtime", "trust-update", host / "v3.json", "--trust", "trust.json", cwd=device),
        "v1",
    )
    refused(
        run(
            "edge-runtime",
            "trust-update",
            host / "forged.json",
            "--trust",
            "trust.json",
            cwd=device,
        ),
        "not above",
    )
    assert (device / "trust.json").read_bytes() == before

    assert "v1 -> v2" in ok(
        run("edge-runtime", "trust-update", host / "v2.json", "--trust", "trust.json", cwd=device)
    )
    assert "v2 -> v3" in ok(
        run("edge-runtime", "trust-update", host / "v3.json", "--trust", "trust.json", cwd=device)
    )
    installed = (device / "trust.json").read_bytes()
    refused(
        run("edge-runtime", "trust-update", host / "v2.json", "--trust", "trust.json", cwd=device),
        "not above",
    )
    assert (device / "trust.json").read_bytes() == installed

    for signer in ("a", "b"):
        bundle = host / f"by-{signer}.edgebundle"
        shutil.copy(MODELS / "digits_v1.edgebundle", bundle)
        ok(run("edge-fleet", "sign", bundle, "--key", f"keys/{signer}.key", cwd=host))
    ok(run("edge-runtime", "verify", host / "by-b.edgebundle", "--trust", "trust.json", cwd=device))
    refused(
        run(
            "edge-runtime", "verify", host / "by-a.edgebundle", "--trust", "trust.json", cwd=device
        ),
        "signature",
    )
