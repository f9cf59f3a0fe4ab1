"""The real console scripts: ``edge-fleet keygen|trust|sign|verify`` and ``edge-runtime verify``.

Each runs as its own process, as an operator would run it: exit codes, one-line errors,
the private key file's mode, and no private key material in any output.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import bundle_factory as bf
import pytest

from edge_runtime.trust.keys import key_id, load_public_key, load_signing_key
from edge_runtime.trust.signing import sign_bundle

BIN = Path(sys.executable).parent
OUTPUTS: list[str] = []  # every stdout/stderr, checked for private key material at the end
KEY_FILES: list[Path] = []  # every private key the commands made


def run(tool: str, *args: object, cwd: Path) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    done = subprocess.run(
        [str(BIN / tool), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        check=False,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    OUTPUTS.append(done.stdout + done.stderr)
    KEY_FILES.extend(p for p in cwd.rglob("*.key") if p not in KEY_FILES)
    return done


def ok(done: subprocess.CompletedProcess) -> str:  # type: ignore[type-arg]
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr}"
    assert done.stderr == ""
    return done.stdout


def one_line_error(done: subprocess.CompletedProcess, *fragments: str) -> str:  # type: ignore[type-arg]
    assert done.returncode == 1, (
        f"expected exit 1, got {done.returncode}: {done.stdout} {done.stderr}"
    )
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    return lines[0]


def private_material(path: Path) -> list[str]:
    body = [line for line in path.read_text().splitlines() if not line.startswith("-----")]
    assert body
    return body


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Keys A and B, a v1 trust file with A, and a bundle fresh by the real clock."""
    root = tmp_path_factory.mktemp("fleet")
    for name in ("a", "b"):
        ok(run("edge-fleet", "keygen", "--out", "keys", "--name", name, cwd=root))
    ok(run("edge-fleet", "trust", "init", "--out", "trust.json", "--key", "keys/a.pub", cwd=root))
    bf.make_bundle(root / "digits.edgebundle", **bf.real_clock_times())
    signed = bf.make_bundle(root / "signed.edgebundle", **bf.real_clock_times())
    sign_bundle(signed, load_signing_key(root / "keys" / "a.key"))
    return root


def test_keygen_writes_0600_key_and_prints_its_id(tmp_path: Path) -> None:
    out = ok(run("edge-fleet", "keygen", "--out", "k", cwd=tmp_path))
    private, public = tmp_path / "k" / "signing.key", tmp_path / "k" / "signing.pub"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert f"key id:      {key_id(load_public_key(public))}" in out
    for secret in private_material(private):
        assert secret not in out


def test_keygen_refuses_to_overwrite(tmp_path: Path) -> None:
    ok(run("edge-fleet", "keygen", "--out", "k", cwd=tmp_path))
    before = (tmp_path / "k" / "signing.key").read_bytes()
    one_line_error(run("edge-fleet", "keygen", "--out", "k", cwd=tmp_path), "exists already")
    assert (tmp_path / "k" / "signing.key").read_bytes() == before


def test_sign_and_verify_show_signers_and_contents(fleet: Path) -> None:
    keyid_a = key_id(load_public_key(fleet / "keys" / "a.pub"))
    out = ok(run("edge-fleet", "sign", "digits.edgebundle", "--key", "keys/a.key", cwd=fleet))
    assert keyid_a in out and "1 signature(s) now" in out
    one_line_error(
        run("edge-fleet", "sign", "digits.edgebundle", "--key", "keys/a.key", cwd=fleet),
        "already signed",
    )

    out = ok(run("edge-fleet", "verify", "digits.edgebundle", "--trust", "trust.json", cwd=fleet))
    assert "bundle:     digits 1.2.0" in out
    assert f"  {keyid_a}" in out
    assert "compatible: rpi4, rpi5" in out
    assert f"model.tflite  {len(bf.MODEL):>10} bytes" in out and "labels.txt" in out
    assert "expires:" in out

    info = json.loads(
        ok(
            run(
                "edge-fleet",
                "verify",
                "digits.edgebundle",
                "--trust",
                "trust.json",
                "--json",
                cwd=fleet,
            )
        )
    )
    assert info["signed_by"] == [keyid_a] and info["files"]["model.tflite"]["size"] == len(bf.MODEL)


def test_verify_refuses_unsigned_and_tampered_bundles(fleet: Path, tmp_path: Path) -> None:
    unsigned = bf.make_bundle(tmp_path / "unsigned.edgebundle", **bf.real_clock_times())
    one_line_error(
        run("edge-fleet", "verify", unsigned, "--trust", fleet / "trust.json", cwd=fleet),
        "bundle signatures refused",
        "0 valid",
    )
    signed = tmp_path / "tampered.edgebundle"
    data = (fleet / "signed.edgebundle").read_bytes()
    at = data.index(bf.MODEL) + 10
    signed.write_bytes(data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :])
    one_line_error(
        run("edge-fleet", "verify", signed, "--trust", fleet / "trust.json", cwd=fleet),
        "sha256",
        "altered",
    )


def test_verify_says_an_unsigned_bundle_carries_no_signature(fleet: Path, tmp_path: Path) -> None:
    unsigned = bf.make_bundle(tmp_path / "unsigned.edgebundle", **bf.real_clock_times())
    one_line_error(
        run("edge-fleet", "verify", unsigned, "--trust", fleet / "trust.json", cwd=fleet),
        "0 valid signature(s) from trusted keys, 1 required",
        "carries no signature at all",
        f"edge-fleet sign {unsigned} --key KEY",
    )
    ok(run("edge-fleet", "keygen", "--out", "other", cwd=tmp_path))
    ok(run("edge-fleet", "sign", unsigned, "--key", "other/signing.key", cwd=tmp_path))
    line = one_line_error(
        run("edge-fleet", "verify", unsigned, "--trust", fleet / "trust.json", cwd=fleet),
        "1 by untrusted keys ignored",
    )
    assert "no signature" not in line and "edge-fleet sign" not in line


def test_trust_show_says_what_each_mark_means(fleet: Path, tmp_path: Path) -> None:
    keyid_a = key_id(load_public_key(fleet / "keys" / "a.pub"))
    keyid_b = key_id(load_public_key(fleet / "keys" / "b.pub"))
    v1 = ok(run("edge-fleet", "trust", "show", "trust.json", cwd=fleet)).splitlines()
    assert v1[0] == "trust.json: trust file v1, threshold 1, expires never"
    assert v1[1] == "  keys (a bundle needs valid signatures from 1 of them):"
    assert v1[2] == f"    {keyid_a}  has not signed this file"
    assert "v1 is placed on devices when provisioned" in v1[3] and len(v1) == 4
    v2_args = ("trust", "add-key", fleet / "trust.json", "--key", fleet / "keys" / "b.pub")
    signers = ("--sign-key", fleet / "keys" / "a.key", "--sign-key", fleet / "keys" / "b.key")
    ok(run("edge-fleet", *v2_args, *signers, "--out", "v2.json", cwd=tmp_path))
    v2 = ok(run("edge-fleet", "trust", "show", "v2.json", cwd=tmp_path)).splitlines()
    assert sorted(v2[2:4]) == sorted(f"    {k}  signed this trust file" for k in (keyid_a, keyid_b))
    assert "devices holding v1 take v2 only when a threshold of v1's keys" in v2[4]
    assert not any(line.rstrip().endswith(" -") for line in v1 + v2)


def test_trust_rotation_commands(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        ok(run("edge-fleet", "keygen", "--out", "keys", "--name", name, cwd=tmp_path))
    ok(
        run(
            "edge-fleet",
            "trust",
            "init",
            "--out",
            "trust.json",
            "--key",
            "keys/a.pub",
            cwd=tmp_path,
        )
    )
    one_line_error(
        run(
            "edge-fleet",
            "trust",
            "init",
            "--out",
            "trust.json",
            "--key",
            "keys/b.pub",
            cwd=tmp_path,
        ),
        "exists already",
    )
    v1 = (tmp_path / "trust.json").read_bytes()
    # Signed by an outsider only: refused, file unchanged.
    one_line_error(
        run(
            "edge-fleet",
            "trust",
            "add-key",
            "trust.json",
            "--key",
            "keys/b.pub",
            "--sign-key",
            "keys/c.key",
            cwd=tmp_path,
        ),
        "keys of installed v1",
    )
    assert (tmp_path / "trust.json").read_bytes() == v1
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
            cwd=tmp_path,
        )
    )
    keyid_a = key_id(load_public_key(tmp_path / "keys" / "a.pub"))
    ok(
        run(
            "edge-fleet",
            "trust",
            "remove-key",
            "trust.json",
            "--key",
            keyid_a[:12],
            "--sign-key",
            "keys/b.key",
            cwd=tmp_path,
        )
    )
    info = json.loads(ok(run("edge-fleet", "trust", "show", "trust.json", "--json", cwd=tmp_path)))
    keyid_b = key_id(load_public_key(tmp_path / "keys" / "b.pub"))
    assert (
        info["version"] == 3 and info["keys"] == [keyid_b] and info["self_signed_by"] == [keyid_b]
    )
    one_line_error(
        run(
            "edge-fleet",
            "trust",
            "remove-key",
            "trust.json",
            "--key",
            "keys/b.pub",
            "--sign-key",
            "keys/b.key",
            cwd=tmp_path,
        ),
        "no keys",
    )


def test_private_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    ok(run("edge-fleet", "keygen", "--out", "k", cwd=tmp_path))
    (tmp_path / "k" / "signing.key").chmod(0o644)
    bundle = bf.make_bundle(tmp_path / "b.edgebundle", **bf.real_clock_times())
    before = bundle.read_bytes()
    one_line_error(
        run("edge-fleet", "sign", bundle, "--key", "k/signing.key", cwd=tmp_path), "chmod 600"
    )
    assert bundle.read_bytes() == before


def test_edge_runtime_verify(fleet: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "d.edgebundle"
    bundle.write_bytes((fleet / "signed.edgebundle").read_bytes())
    out = ok(
        run(
            "edge-runtime",
            "verify",
            bundle,
            "--trust",
            fleet / "trust.json",
            "--device-class",
            "rpi4",
            cwd=tmp_path,
        )
    )
    assert "nothing was installed" in out and "digits 1.2.0" in out
    one_line_error(
        run(
            "edge-runtime",
            "verify",
            bundle,
            "--trust",
            fleet / "trust.json",
            "--device-class",
            "rpi3",
            cwd=tmp_path,
        ),
        "not for this device class 'rpi3'",
    )
    state = tmp_path / "state"
    state.mkdir()
    (state / "versions_seen.json").write_text('{"highest_seen":{"digits":"1.2.0"}}\n')
    one_line_error(
        run(
            "edge-runtime",
            "verify",
            bundle,
            "--trust",
            fleet / "trust.json",
            "--state-dir",
            state,
            cwd=tmp_path,
        ),
        "same version",
    )
    assert (state / "versions_seen.json").read_text() == '{"highest_seen":{"digits":"1.2.0"}}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.edgebundle", "state"]
    one_line_error(
        run("edge-runtime", "verify", bundle, "--trust", tmp_path / "none.json", cwd=tmp_path),
        "trust file not found",
    )


def test_trust_rotation_with_keys_held_by_different_people(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        ok(run("edge-fleet", "keygen", "--out", "keys", "--name", name, cwd=tmp_path))
    keys = ["--key", "keys/a.pub", "--key", "keys/b.pub"]
    ok(
        run(
            "edge-fleet",
            "trust",
            "init",
            "--out",
            "trust.json",
            *keys,
            "--threshold",
            "2",
            cwd=tmp_path,
        )
    )
    v1 = (tmp_path / "trust.json").read_bytes()
    add = ["trust", "add-key", "trust.json", "--key", "keys/c.pub", "--sign-key", "keys/a.key"]
    one_line_error(run("edge-fleet", *add, cwd=tmp_path), "1 valid signature(s)", "2 required")
    out = ok(run("edge-fleet", *add, "--incomplete", "--out", "v2.json", cwd=tmp_path))
    assert "not yet accepted by devices" in out
    assert (tmp_path / "trust.json").read_bytes() == v1
    out = ok(
        run(
            "edge-fleet",
            "trust",
            "sign",
            "v2.json",
            "--previous",
            "trust.json",
            "--sign-key",
            "keys/b.key",
            cwd=tmp_path,
        )
    )
    assert "ready: devices holding trust.json accept v2" in out
    info = json.loads(ok(run("edge-fleet", "trust", "show", "v2.json", "--json", cwd=tmp_path)))
    assert info["version"] == 2 and info["threshold"] == 2 and len(info["self_signed_by"]) == 2


def test_no_private_key_material_in_any_output(fleet: Path, tmp_path: Path) -> None:
    """Checks every command run in this module (this test runs last), plus a flow of its own
    with --debug, so it holds when run alone too."""
    bundle = bf.make_bundle(tmp_path / "x.edgebundle", **bf.real_clock_times())
    ok(run("edge-fleet", "--debug", "keygen", "--out", "k", cwd=tmp_path))
    ok(run("edge-fleet", "--debug", "sign", bundle, "--key", "k/signing.key", cwd=tmp_path))
    (tmp_path / "k" / "signing.key").chmod(0o640)
    run("edge-fleet", "--debug", "sign", bundle, "--key", "k/signing.key", cwd=tmp_path)
    secrets = [s for path in KEY_FILES for s in private_material(path)]
    assert len(OUTPUTS) >= 3 and KEY_FILES
    for output in OUTPUTS:
        for secret in secrets:
            assert secret not in output


def test_rollback_orders_are_signed_and_checked_before_anything_is_sent(fleet: Path) -> None:
    """No broker is reachable on port 1: every refusal here comes before connecting."""
    base = ("edge-fleet", "rollback", "--host", "127.0.0.1", "--port", 1, "--device", "pi-01")
    unsigned = run(*base, cwd=fleet)
    assert unsigned.returncode != 0 and "--key" in unsigned.stderr
    one_line_error(
        run(*base, "--key", "keys/a.key", "--expires", "yesterday", cwd=fleet), "--expires"
    )
    one_line_error(
        run(*base, "--key", "keys/a.key", "--expires", "2020-01-01T00:00:00Z", cwd=fleet),
        "expired already",
    )
    one_line_error(
        run(*base, "--key", "keys/b.key", "--trust", "trust.json", cwd=fleet),
        "rollback order refused",
        "0 valid signature",
    )
    unreachable = run(*base, "--key", "keys/a.key", "--trust", "trust.json", cwd=fleet)
    assert unreachable.returncode == 1 and "cannot reach the broker" in unreachable.stderr
