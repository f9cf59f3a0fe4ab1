"""The device daemon: ``edge-runtime run --config FILE``."""
