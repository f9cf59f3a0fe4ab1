"""The daemon config: strict keys and ranges, every problem reported, secrets, paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_runtime.daemon.config import PASSWORD_ENV, load_config, parse_config
from edge_runtime.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy_scripts" / "config.example.toml"
MINIMAL = {"device_id": "pi-01", "state_dir": "/tmp/s", "model": {"path": "/m.tflite"}}


def problems(data: dict) -> list:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    lines = str(info.value).splitlines()
    assert lines[0] == "invalid config:"
    return lines[1:]


def test_documented_example_is_valid():
    config = load_config(EXAMPLE, environ={})
    assert config.device_id == "pi-01"
    assert config.mqtt.protocol == "5" and config.mqtt.port == 1883
    assert config.telemetry.interval == 10
    assert config.groups == ("line-3",)
    assert config.model.threads is None and config.requests.preprocess_workers is None  # auto


def test_minimal_config_takes_documented_defaults():
    config = parse_config(MINIMAL)
    assert config.mqtt.prefix == "edge"
    assert config.requests.queue_size == 64
    assert config.model.delegate == "auto" and config.model.threads is None
    assert config.prometheus.enabled is False and config.home_assistant.enabled is False


def test_every_problem_is_reported_once_naming_key_and_allowed_values():
    lines = problems(
        {
            "device_id": "has space",
            "state_dir": "/s",
            "extra": 1,
            "model": {"path": "/m", "delegate": "gpu", "threads": 0},
            "mqtt": {"port": 0, "protocol": "4", "keepalive": "x", "colour": "blue"},
            "telemetry": {"interval": 0},
            "requests": {"max_pixels": True},
        }
    )
    by_key = {line.split(":", 1)[0]: line for line in lines}
    assert len(lines) == len(by_key) == 10, lines
    assert "'auto', 'cpu', 'edgetpu'" in by_key["model.delegate"]
    assert "1 to 64" in by_key["model.threads"]
    assert "1 to 65535" in by_key["mqtt.port"]
    assert "'5', '3.1.1'" in by_key["mqtt.protocol"]
    assert "whole number" in by_key["mqtt.keepalive"]
    assert "unknown key" in by_key["mqtt.colour"] and "keepalive" in by_key["mqtt.colour"]
    assert "unknown key" in by_key["extra"]
    assert "0.2 to 86400" in by_key["telemetry.interval"]
    assert "requests.max_pixels" in by_key and "device_id" in by_key


def test_missing_required_keys():
    lines = problems({"model": {}})
    assert {line.split(":")[0] for line in lines} == {"device_id", "state_dir", "model.path"}


def test_protocol_may_be_written_as_a_number():
    assert parse_config({**MINIMAL, "mqtt": {"protocol": 5}}).mqtt.protocol == "5"


def test_tls_cert_needs_key_and_ca():
    lines = problems({**MINIMAL, "mqtt": {"tls_cert": "c.pem"}})
    assert any(line.startswith("mqtt.tls_cert, mqtt.tls_key") for line in lines)
    assert any(line.startswith("mqtt.tls_ca") for line in lines)


def test_optional_features_are_off_unless_asked():
    config = parse_config({**MINIMAL, "prometheus": {"enabled": True, "port": 9200}})
    assert config.prometheus.enabled and config.prometheus.port == 9200
    assert not config.home_assistant.enabled
    lines = problems({**MINIMAL, "home_assistant": {"enabled": "yes"}})
    assert lines == ["home_assistant.enabled: expected true or false, found 'yes'"]


def test_sections_must_be_tables():
    assert problems({**MINIMAL, "mqtt": 3})[0].startswith("mqtt: expected a table")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


BASE = 'device_id = "d"\nstate_dir = "state"\n[model]\npath = "m.tflite"\n'


def test_relative_paths_are_relative_to_the_config_file(tmp_path):
    config = load_config(write(tmp_path, BASE), environ={})
    assert config.state_dir == tmp_path / "state"
    assert config.model.path == tmp_path / "m.tflite"


def test_password_from_file_and_environment(tmp_path):
    (tmp_path / "pw").write_text("from-file\n")
    path = write(tmp_path, BASE + '[mqtt]\nusername = "u"\npassword_file = "pw"\n')
    assert load_config(path, environ={}).mqtt.password == "from-file"
    assert load_config(path, environ={PASSWORD_ENV: "from-env"}).mqtt.password == "from-env"
    assert "from-file" not in repr(load_config(path, environ={}))


def test_unreadable_password_file_is_a_config_error(tmp_path):
    path = write(tmp_path, BASE + '[mqtt]\npassword_file = "missing"\n')
    with pytest.raises(ConfigError, match="mqtt.password_file"):
        load_config(path, environ={})


def test_bad_toml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "device_id = \n"), environ={})
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "nope.toml", environ={})


def test_run_check_validates_the_example(edge_runtime_cli):
    """The example is a valid config; what it names lives on a device (the model there,
    a state folder only root may make), so here only those can fail."""
    done = edge_runtime_cli("run", "--config", EXAMPLE, "--check")
    if done.returncode == 0:
        assert done.stdout.strip().endswith(": ok")
        return
    lines = done.stderr.strip().splitlines()
    assert "the config is valid, but run would fail:" in lines[0], done.stderr
    assert all(line.startswith(("model.path: ", "state_dir: ")) for line in lines[1:]), lines


@pytest.mark.parametrize("reserved", ["groups", "bundles"])
def test_device_ids_that_overlap_fleet_topics_are_refused(reserved):
    lines = problems({**MINIMAL, "device_id": reserved})
    assert lines == [
        f"device_id: '{reserved}' is reserved (its topics are the fleet's "
        f"<prefix>/{reserved}/...); choose another"
    ]


def test_update_probation_settings_and_their_bounds():
    update = parse_config(
        {**MINIMAL, "update": {"probation_requests": 5, "health_max_latency_ms": 40}}
    ).update
    policy = update.health_policy()
    assert (policy.requests, policy.max_latency_ms, policy.latency_factor) == (5, 40.0, 4.0)
    assert policy.crash_starts == 3 and policy.max_error_rate == 0.1
    lines = problems(
        {**MINIMAL, "update": {"health_latency_factor": 0.5, "health_max_error_rate": 2}}
    )
    by_key = {line.split(":", 1)[0]: line for line in lines}
    assert "give 0 (off) or 1..1000" in by_key["update.health_latency_factor"]
    assert "0 to 1" in by_key["update.health_max_error_rate"]


def test_outbox_spill_after_default_and_bounds():
    assert parse_config(MINIMAL).outbox.spill_after == 1.0
    config = parse_config({**MINIMAL, "outbox": {"spill_after": 5}})
    assert config.outbox.spill_after == 5.0
    (line,) = problems({**MINIMAL, "outbox": {"spill_after": 0}})
    assert line.startswith("outbox.spill_after") and "0.05 to 3600" in line


def test_threads_and_preprocess_workers_take_auto_or_a_number():
    def parsed(model: dict, requests: dict):
        config = parse_config({**MINIMAL, "model": {"path": "/m", **model}, "requests": requests})
        return config.model.threads, config.requests.preprocess_workers

    assert parsed({}, {}) == (None, None)  # absent: auto
    assert parsed({"threads": "auto"}, {"preprocess_workers": "auto"}) == (None, None)
    assert parsed({"threads": 2}, {"preprocess_workers": 3}) == (2, 3)


def test_bad_threads_and_workers_name_auto_and_the_range():
    lines = problems(
        {
            **MINIMAL,
            "model": {"path": "/m", "threads": "fast"},
            "requests": {"preprocess_workers": 17},
        }
    )
    by_key = {line.split(":", 1)[0]: line for line in lines}
    assert by_key["model.threads"] == (
        "model.threads: expected \"auto\" or a whole number from 1 to 64, found 'fast'"
    )
    assert "1 to 16" in by_key["requests.preprocess_workers"]
    for bad in ("Auto", "", 1.5, True, [2]):
        (line,) = problems({**MINIMAL, "model": {"path": "/m", "threads": bad}})
        assert line.startswith("model.threads: expected") and "1 to 64" in line, line
