"""``edge-fleet``: keys, trust files, signing, publishing and fleet status."""
