"""Inference: the interpreter backend, Edge TPU delegate, pre- and post-processing."""
