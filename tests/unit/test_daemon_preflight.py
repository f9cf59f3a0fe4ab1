"""``run --check`` checks what ``run`` needs: the model loads, state_dir is a writable
folder, the trust file parses, the TLS files load; one line per problem, exit 1."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import MODELS

MODEL = MODELS / "digits_int8.tflite"


def config(folder: Path, *, model: Path = MODEL, state: str = "state", extra: str = "") -> Path:
    path = folder / "config.toml"
    path.write_text(
        f'device_id = "pi-01"\nstate_dir = "{folder / state}"\n[model]\npath = "{model}"\n{extra}'
    )
    return path


def problems(done) -> list[str]:  # type: ignore[no-untyped-def]
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert "the config is valid, but run would fail:" in lines[0]
    return lines[1:]


def test_a_config_run_can_start_with_is_ok(tmp_path, edge_runtime_cli):
    done = edge_runtime_cli("run", "--config", config(tmp_path), "--check")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(": ok")
    assert not (tmp_path / "state").exists()  # checked, not made


@pytest.mark.parametrize(
    ("setup", "line"),
    [
        (lambda d: config(d, model=d / "missing.tflite"), "model.path: model file not found"),
        (lambda d: config(d, model=d / "notes.txt"), "model.path: "),
        (lambda d: config(d, state="file"), "state_dir: "),
        (
            lambda d: config(d, extra=f'[update]\ntrust = "{d / "trust.json"}"\n'),
            "update.trust: trust file not found",
        ),
        (
            lambda d: config(d, extra=f'[mqtt]\ntls_ca = "{d / "notes.txt"}"\n'),
            "mqtt.tls_ca: cannot load",
        ),
    ],
    ids=["missing-model", "not-a-model", "state-dir-is-a-file", "missing-trust", "junk-ca"],
)
def test_what_run_would_refuse_is_one_line_each(tmp_path, edge_runtime_cli, setup, line):
    (tmp_path / "notes.txt").write_text("not a model, not a certificate\n")
    (tmp_path / "file").write_text("a regular file where the state folder should be\n")
    done = edge_runtime_cli("run", "--config", setup(tmp_path), "--check")
    lines = problems(done)
    assert len(lines) == 1 and lines[0].startswith(line), lines
    if line == "state_dir: ":
        assert "is not a folder" in lines[0]


def test_every_problem_at_once(tmp_path, edge_runtime_cli):
    (tmp_path / "state").write_text("")
    (tmp_path / "trust.json").write_text("{not json")
    path = config(
        tmp_path,
        model=tmp_path / "trust.json",
        extra=f'[update]\ntrust = "{tmp_path / "trust.json"}"\n',
    )
    lines = problems(edge_runtime_cli("run", "--config", path, "--check"))
    assert [line.split(":")[0] for line in lines] == ["state_dir", "model.path", "update.trust"]
