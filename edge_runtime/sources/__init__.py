"""Camera and stream sources: the daemon reads frames itself (``[[sources]]``)."""
