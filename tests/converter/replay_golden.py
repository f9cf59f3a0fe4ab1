"""Device-side replay of a bundle's golden vectors, run in a fresh process.

    python replay_golden.py BUNDLE [IMAGE.png ...]

Loads the bundle with the runtime's engine (manifest input spec, outputs), runs every
golden input and prints JSON: the backend, the largest difference from the host's
outputs per output tensor, and, for each IMAGE given (the images behind the first golden
inputs, in order), whether the device's preprocessing reproduces the golden input.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np

from edge_runtime.inference.engine import Engine


def main() -> int:
    bundle = Path(sys.argv[1])
    engine = Engine.load(bundle, delegate="cpu")
    assert engine.source.golden is not None, "bundle has no golden vectors"
    golden = np.load(io.BytesIO(engine.source.golden))
    inputs = golden["inputs"]
    diffs = []
    for k in range(len(engine.layout.tensors)):
        expected = golden[f"output_{k}"]
        worst = 0
        for i in range(len(inputs)):
            got = engine.run([inputs[i : i + 1]])[k]
            worst = max(
                worst,
                int(
                    np.max(
                        np.abs(
                            got.reshape(expected[i].shape).astype(np.int64)
                            - expected[i].astype(np.int64)
                        )
                    )
                ),
            )
        diffs.append(worst)
    same_inputs = []
    for i, image in enumerate(sys.argv[2:]):
        prepared = engine.prepare(Path(image).read_bytes())
        same_inputs.append(bool(np.array_equal(prepared.tensor[0], inputs[i])))
    print(
        json.dumps(
            {
                "backend": engine.backend,
                "golden": len(inputs),
                "max_diff": diffs,
                "input_dtype": str(inputs.dtype),
                "same_inputs": same_inputs,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
