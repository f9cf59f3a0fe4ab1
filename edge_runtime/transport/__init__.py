"""Transports between the device and the outside world (MQTT)."""
