"""Device telemetry: pure statistics and the collectors that read the system."""
