"""run --check names what would stop the HTTP server: the token file, the TLS files."""

from __future__ import annotations

import pytest

from edge_runtime.daemon.config import parse_config
from edge_runtime.daemon.preflight import check_run
from edge_runtime.errors import ConfigError
from tests.serving.conftest import DIGITS


def config(tmp_path, **http):
    return parse_config(
        {
            "device_id": "pi-test",
            "state_dir": str(tmp_path / "state"),
            "model": {"path": str(DIGITS)},
            "http": {"enabled": True, **http},
        }
    )


def test_check_names_an_unreadable_token_and_tls_files_that_do_not_load(tmp_path):
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    cfg = config(
        tmp_path,
        listen="0.0.0.0:8501",
        token_file=str(tmp_path / "missing-token"),
        tls_cert=str(bad),
        tls_key=str(bad),
    )
    with pytest.raises(ConfigError) as info:
        check_run(cfg, lambda path: object())
    text = str(info.value)
    assert "http.token_file: cannot read" in text and "http.tls_cert/tls_key" in text


def test_check_passes_with_a_token(tmp_path):
    token = tmp_path / "token"
    token.write_text("abc\n")
    assert check_run(config(tmp_path, token_file=str(token)), lambda path: object()) == []
