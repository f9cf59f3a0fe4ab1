"""Performance suite: the daemon against the interpreter's own limit and a hand-written script."""
