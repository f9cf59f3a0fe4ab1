"""A real mosquitto broker for tests, on 127.0.0.1 free ports.

    with Mosquitto(tmp_path) as broker:                 # plain listener
        broker.port
    tls = make_tls(tmp_path / "pki")                    # CA, server cert, client cert
    with Mosquitto(tmp_path, tls=tls) as broker:        # + TLS listener needing a client cert
        broker.tls_port
    with Mosquitto(tmp_path, users={"dev": "pw"}, acl=ACL) as broker:   # password + ACL

``stop()`` / ``start()`` (or ``restart()``) keep the same ports and, with persistence on
(the default), the sessions and queued QoS 1 messages, so a test can cut the broker
mid-stream. ``kill()`` stops it without saving.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import pwd
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

MOSQUITTO = "mosquitto"
MOSQUITTO_PASSWD = "mosquitto_passwd"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing accepts connections on 127.0.0.1:{port} after {timeout}s")


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    now = dt.datetime.now(dt.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def make_tls(folder: Path, client_name: str = "device") -> TlsFiles:
    """A throwaway CA, a server certificate for 127.0.0.1/localhost and a client certificate."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("test-ca", ca_key, None, ca_key, ca=True)
    files = TlsFiles(
        folder / "ca.crt",
        folder / "server.crt",
        folder / "server.key",
        folder / "client.crt",
        folder / "client.key",
    )
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for cert_path, key_path, subject, server in (
        (files.server_cert, files.server_key, "127.0.0.1", True),
        (files.client_cert, files.client_key, client_name, False),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        cert_path.write_bytes(
            _cert(subject, key, ca, ca_key, server=server).public_bytes(serialization.Encoding.PEM)
        )
        key_path.write_bytes(_key_pem(key))
        key_path.chmod(0o600)
    return files


class Mosquitto:
    """One mosquitto process with fixed ports across restarts."""

    def __init__(
        self,
        workdir: Path,
        *,
        tls: TlsFiles | None = None,
        users: dict[str, str] | None = None,
        acl: str | None = None,
        persistence: bool = True,
    ) -> None:
        self.workdir = Path(workdir) / f"mosquitto-{free_port()}"
        self.workdir.mkdir(parents=True)
        self.port = free_port()
        self.tls_port = free_port() if tls else None
        self.tls = tls
        self.log_file = self.workdir / "mosquitto.log"
        self._proc: subprocess.Popen | None = None  # type: ignore[type-arg]
        lines = [
            "per_listener_settings true",
            # stay the current user (as root, mosquitto would switch to "mosquitto" and
            # lose access to the test's private temp folders)
            f"user {pwd.getpwuid(os.geteuid()).pw_name}",
            f"log_dest file {self.log_file}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            f"persistence {'true' if persistence else 'false'}",
            f"persistence_location {self.workdir}/",
            "autosave_interval 1",
            "max_queued_messages 100000",
            "set_tcp_nodelay true",
            f"listener {self.port} 127.0.0.1",
        ]
        if users:
            pw = self.workdir / "passwd"
            pw.write_text("")
            for user, password in users.items():
                subprocess.run(
                    [MOSQUITTO_PASSWD, "-b", str(pw), user, password],
                    check=True,
                    capture_output=True,
                    timeout=30,
                )
            lines += ["allow_anonymous false", f"password_file {pw}"]
            if acl is not None:
                (self.workdir / "acl").write_text(acl)
                lines.append(f"acl_file {self.workdir / 'acl'}")
        else:
            lines.append("allow_anonymous true")
        if tls:
            lines += [
                f"listener {self.tls_port} 127.0.0.1",
                f"cafile {tls.ca}",
                f"certfile {tls.server_cert}",
                f"keyfile {tls.server_key}",
                "require_certificate true",
                "use_identity_as_username true",
                "allow_anonymous false",
            ]
        self.config_file = self.workdir / "mosquitto.conf"
        self.config_file.write_text("\n".join(lines) + "\n")

    def start(self, timeout: float = 10.0) -> Mosquitto:
        if self._proc is not None and self._proc.poll() is None:
            return self
        with open(self.workdir / "stderr.log", "ab") as err:
            self._proc = subprocess.Popen(
                [MOSQUITTO, "-c", str(self.config_file)], stdout=subprocess.DEVNULL, stderr=err
            )
        try:
            wait_port(self.port, timeout)
            if self.tls_port:
                wait_port(self.tls_port, timeout)
        except TimeoutError:
            self.kill()
            raise RuntimeError(f"mosquitto did not start; log:\n{self.log()}") from None
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (mosquitto saves its persistence file) and wait."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        self._proc = None

    def kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(5)
            self._proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The running broker's process id (for its CPU time in /proc), or None."""
        return self._proc.pid if self.running and self._proc is not None else None

    def log(self) -> str:
        text = ""
        for f in (self.workdir / "stderr.log", self.log_file):
            if f.exists():
                text += f.read_text(errors="replace")
        return text

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
