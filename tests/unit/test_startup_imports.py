"""What the daemon loads before it serves: every command module is imported to build the
parser, so a heavy import at the top of one of them lands in every process, the daemon
included. The signature library (cryptography, about 9 MiB resident) waits for the first
update; TensorFlow is never loaded on a device."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT

PROBE = """
import json, sys
from edge_runtime.cli.main import COMMANDS, build_parser
build_parser("edge-runtime", "", COMMANDS, "edge_runtime.cli")
import edge_runtime.cli.run, edge_runtime.daemon.app, edge_runtime.update.service
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def test_the_daemon_starts_without_the_signature_library_or_tensorflow() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stdout))
    assert "edge_runtime" in loaded and "PIL" in loaded  # the probe did import the daemon
    assert "cryptography" not in loaded
    assert "tensorflow" not in loaded
