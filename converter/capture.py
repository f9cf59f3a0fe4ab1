"""Keep library chatter off the command's stdout and stderr.

TensorFlow, Keras and the quantizer print to file descriptors 1 and 2 from native code
and from Python (``Saved artifact at ...``, progress bars, XNNPACK notices). The
converter's stdout must stay the report (JSON with ``--json``) and its stderr our own
progress and one-line errors, so those writes are captured at the descriptor level and
handed back; the caller logs them at debug level or keeps them for an error message.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def captured_output() -> Iterator[list[str]]:
    """Redirect fds 1 and 2 (and ``sys.stdout``/``sys.stderr``) to a temporary file.

    Yields a list that, after the block, holds the captured text as one string.
    """
    sink: list[str] = []
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 1)
        os.dup2(capture.fileno(), 2)
        try:
            yield sink
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            capture.seek(0)
            sink.append(capture.read().decode("utf-8", errors="replace"))
