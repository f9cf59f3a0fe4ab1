"""Downloads that resume: a connection cut mid-body is resumed with a Range request, a
server that ignores ranges starts the download over, what a failed download received is
kept and resumed by the next call, and a cut that brings nothing new ends the download."""

from __future__ import annotations

import hashlib
import os
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_runtime.errors import IntegrityError
from edge_runtime.update.download_errors import (
    DownloadError,
    DownloadTimeout,
    LocalFileRefused,
    TruncatedDownload,
)
from edge_runtime.update.fetch import fetch
from tests.support.http import FileServer
from tests.support.mosquitto import make_tls

DATA = os.urandom(300_000)
SHA = hashlib.sha256(DATA).hexdigest()


class Served:
    """DATA behind a FileServer; ``url`` names it."""

    def __init__(self, root: Path, **kw: object) -> None:
        (root / "bundle").write_bytes(DATA)
        self.server = FileServer(root, **kw)  # type: ignore[arg-type]
        self.url = self.server.url("bundle")
        self.requests = self.server.requests


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator:
    servers: list[Served] = []

    def make(**kw: object) -> Served:
        folder = tmp_path / f"www{len(servers)}"
        folder.mkdir()
        servers.append(Served(folder, **kw))
        return servers[-1]

    yield make
    for s in servers:
        s.server.close()


def get(url: str, dest: Path, **kw: object) -> Path:
    args: dict = {"size": len(DATA), "sha256": SHA, "max_bytes": 10**7, "timeout": 5.0}
    args.update(kw)
    return fetch(url, dest, **args)


def test_a_cut_connection_is_resumed_with_a_range_request(server_factory, tmp_path) -> None:
    server = server_factory(cuts=3, cut_after=70_000)
    seen: list[int] = []
    out = get(server.url, tmp_path / "b.part", progress=lambda done, total: seen.append(done))
    assert out.read_bytes() == DATA
    assert server.requests == [None, "bytes=70000-", "bytes=140000-", "bytes=210000-"]
    assert seen == sorted(seen) and seen[-1] == len(DATA)


def test_a_server_without_ranges_sends_it_all_again(server_factory, tmp_path) -> None:
    server = server_factory(cuts=1, cut_after=100_000, ranges=False)
    assert get(server.url, tmp_path / "b.part").read_bytes() == DATA
    assert server.requests == [None, "bytes=100000-", None]


def test_a_server_that_cuts_at_the_same_place_ends_the_download(server_factory, tmp_path) -> None:
    server = server_factory(cuts=10, cut_after=100_000, ranges=False)
    with pytest.raises(TruncatedDownload, match="stopped after 100000 of 300000 bytes"):
        get(server.url, tmp_path / "b.part")
    assert len(server.requests) == 3  # first, a range (ignored), from the start again


def test_what_a_failed_download_received_is_resumed_next_time(server_factory, tmp_path) -> None:
    dest = tmp_path / "b.part"
    dest.write_bytes(DATA[:123_456])  # left by a download a restart interrupted
    server = server_factory(cuts=0, cut_after=0)
    assert get(server.url, dest).read_bytes() == DATA
    assert server.requests == ["bytes=123456-"]


def test_a_partial_file_with_other_bytes_fails_the_hash(server_factory, tmp_path) -> None:
    dest = tmp_path / "b.part"
    dest.write_bytes(b"\0" * 1000)
    server = server_factory(cuts=0, cut_after=0)
    with pytest.raises(IntegrityError, match="sha256 differs"):
        get(server.url, dest)


def test_file_urls_below_a_root_are_copied_afresh_and_private(tmp_path) -> None:
    src = tmp_path / "bundles" / "bundle"
    src.parent.mkdir()
    src.write_bytes(DATA)
    dest = tmp_path / "b.part"
    dest.write_bytes(b"x" * 5000)  # a local copy is not resumed
    assert get(src.as_uri(), dest, file_roots=[src.parent]).read_bytes() == DATA
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600


def test_http_partial_downloads_are_private(server_factory, tmp_path) -> None:
    server = server_factory(cuts=1, cut_after=70_000)
    assert stat.S_IMODE(get(server.url, tmp_path / "b.part").stat().st_mode) == 0o600


@pytest.fixture
def local(tmp_path: Path) -> dict[str, Path]:
    """A root holding the bundle, and a secret of the same size outside it."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "bundle").write_bytes(DATA)
    (outside / "secret").write_bytes(b"s" * len(DATA))
    return {"root": root, "secret": outside / "secret", "dest": tmp_path / "d" / "b.part"}


def refused(url: str, local: dict[str, Path], **kw: object) -> str:
    local["dest"].parent.mkdir(exist_ok=True)
    with pytest.raises((LocalFileRefused, IntegrityError)) as caught:
        get(url, local["dest"], **{"file_roots": [local["root"]], **kw})
    assert not local["dest"].exists()  # nothing of it copied
    return str(caught.value)


def test_file_urls_are_refused_when_no_root_is_configured(local) -> None:
    url = (local["root"] / "bundle").as_uri()
    assert "no [update] file_roots" in refused(url, local, file_roots=())


def test_file_url_outside_the_roots_is_refused(local) -> None:
    assert "outside the folders" in refused(local["secret"].as_uri(), local)
    dotted = f"file://{local['root']}/../outside/secret"
    assert "'..'" in refused(dotted, local)
    assert "no host" in refused(f"file://elsewhere{local['secret']}", local)


def test_a_link_out_of_the_root_is_not_followed(local) -> None:
    (local["root"] / "link").symlink_to(local["secret"])
    (local["root"] / "dir").symlink_to(local["secret"].parent, target_is_directory=True)
    assert "regular file" in refused((local["root"] / "link").as_uri(), local)
    assert "regular file" in refused((local["root"] / "dir" / "secret").as_uri(), local)


def test_a_fifo_is_refused_without_blocking(local) -> None:
    fifo = local["root"] / "fifo"
    os.mkfifo(fifo)
    outcome: list[str] = []
    worker = threading.Thread(target=lambda: outcome.append(refused(fifo.as_uri(), local)))
    worker.start()
    worker.join(30)
    if worker.is_alive():  # unblock it before failing
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(5)
        pytest.fail("reading a FIFO blocked the download")
    assert "regular file" in outcome[0]


def test_a_device_is_refused(local) -> None:
    assert "regular file" in refused("file:///dev/zero", local, file_roots=[Path("/dev")])


def test_a_local_file_of_another_size_or_hash_leaves_nothing_and_tells_no_size(local) -> None:
    odd = local["root"] / "odd"
    odd.write_bytes(b"o" * 12_345)
    message = refused(odd.as_uri(), local)
    assert "not the announced size" in message and "12345" not in message
    same = local["root"] / "same"
    same.write_bytes(b"z" * len(DATA))
    assert "sha256" in refused(same.as_uri(), local)


def test_a_server_that_never_answers_times_out(tmp_path) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    try:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/bundle"
        with pytest.raises(DownloadTimeout):
            get(url, tmp_path / "b.part", timeout=0.5)
    finally:
        silent.close()


def test_https_is_verified_against_the_configured_ca(server_factory, tmp_path) -> None:
    tls = make_tls(tmp_path / "tls")
    server = server_factory(cuts=1, cut_after=50_000, tls=tls)
    with pytest.raises(DownloadError, match="CERTIFICATE_VERIFY_FAILED"):
        get(server.url, tmp_path / "b.part")  # the system's CAs do not know this server
    assert get(server.url, tmp_path / "b.part", ca_file=tls.ca).read_bytes() == DATA
    other = make_tls(tmp_path / "other")
    with pytest.raises(DownloadError, match="CERTIFICATE_VERIFY_FAILED"):
        get(server.url, tmp_path / "c.part", ca_file=other.ca)
