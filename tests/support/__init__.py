"""Shared test helpers: a real mosquitto broker, an MQTT test client, the daemon process."""
