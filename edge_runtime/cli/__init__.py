"""The ``edge-runtime`` command line."""
