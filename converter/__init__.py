"""Host side: convert float models to int8 bundles, and the fleet tools."""
