"""Trust: Ed25519 keys, the trust file and the pure bundle verifier."""
