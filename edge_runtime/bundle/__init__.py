"""Bundles: the manifest, the writer and the safe reader of ``.edgebundle`` files."""
