"""Optional Home Assistant MQTT discovery for the telemetry sensors (pure)."""

from __future__ import annotations

import json

#: object id -> (name, template over the telemetry JSON, unit, device class)
SENSORS: dict[str, tuple[str, str, str | None, str | None]] = {
    "cpu": ("CPU", "{{ value_json.cpu_percent }}", "%", None),
    "memory": ("Memory", "{{ value_json.memory.system_percent }}", "%", None),
    "temperature": ("SoC temperature", "{{ value_json.temperature_c }}", "°C", "temperature"),
    "fps": ("Inference rate", "{{ value_json.inference.fps }}", "fps", None),
    "latency_p50": ("Latency p50", "{{ value_json.inference.latency_ms.p50 }}", "ms", "duration"),
    "inferences": ("Inferences", "{{ value_json.inference.count }}", None, None),
    "errors": ("Request errors", "{{ value_json.inference.errors }}", None, None),
    "queue": ("Queue depth", "{{ value_json.queue.depth }}", None, None),
    "disk_free": ("Disk free", "{{ value_json.disk_free_bytes }}", "B", "data_size"),
}


def discovery_messages(
    *, discovery_prefix: str, device_id: str, telemetry_topic: str, status_topic: str, model: str
) -> list[tuple[str, bytes]]:
    """(topic, payload) pairs to publish retained; one config message per sensor."""
    device = {
        "identifiers": [f"edge-runtime-{device_id}"],
        "name": device_id,
        "manufacturer": "edge-runtime",
        "model": model,
    }
    out = []
    for object_id, (name, template, unit, device_class) in SENSORS.items():
        config: dict[str, object] = {
            "name": name,
            "unique_id": f"edge-runtime-{device_id}-{object_id}",
            "state_topic": telemetry_topic,
            "value_template": template,
            "availability_topic": status_topic,
            "payload_available": "online",
            "payload_not_available": "offline",
            "device": device,
        }
        if unit is not None:
            config["unit_of_measurement"] = unit
        if device_class is not None:
            config["device_class"] = device_class
        topic = f"{discovery_prefix}/sensor/{device_id}/{object_id}/config"
        out.append((topic, json.dumps(config, sort_keys=True).encode("utf-8")))
    return out
