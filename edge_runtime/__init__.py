"""Edge runtime: int8 TFLite inference on Raspberry Pi devices, driven over MQTT."""

__version__ = "0.1.0"
