"""The script a good engineer writes in an afternoon, as the stronger peer: paho reads
requests, one thread decodes them, one thread invokes the model and publishes the answer,
with small queues in between, so that decoding the next image overlaps the invoke of
this one. The decode asks libjpeg for the smallest power-of-two reduction that still
covers the model's input (``Image.draft``: a 1920x1080 frame for a 224x224 model is
decoded at 480x270, several times cheaper), resizes (centre crop when the model was
trained that way) and quantizes through one 256-entry lookup table. The input tensor
is written in place; answers carry the request's correlation data or id back.

    python -m benchmarks.peer --port P --model model.tflite --topic bench/peer/infer
        [--threads 1] [--mean 127.5 --std 127.5] [--resize crop]
"""

from __future__ import annotations

import base64
import io
import json
import math
import queue
import threading
from typing import Any

import numpy as np
from PIL import Image

from benchmarks.baseline import connect, options, or_exit, reply_properties, serve

try:
    from ai_edge_litert.interpreter import Interpreter
except ImportError:
    from tflite_runtime.interpreter import Interpreter

#: Requests read off MQTT but not decoded yet, and images decoded but not invoked yet.
INTAKE, DECODED = 16, 2


def lookup_table(mean: np.ndarray, std: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """Pixel value (0..255) and channel -> the model's input value, as one table."""
    channels = int(detail["shape"][-1])
    values = (np.arange(256, dtype=np.float32)[:, None] - mean) / std
    values = np.broadcast_to(values, (256, channels))
    scale, zero = detail["quantization"]
    dtype = np.dtype(detail["dtype"])
    if not scale:  # a float input
        return np.asarray(values, dtype=dtype)
    info = np.iinfo(dtype)
    return np.asarray(np.clip(np.round(values / scale + zero), info.min, info.max), dtype=dtype)


def decoder(width: int, height: int, gray: bool, crop: bool, table: np.ndarray) -> Any:
    """JPEG (or any Pillow image) bytes -> the model's input array."""
    mode = "L" if gray else "RGB"
    channel = np.arange(table.shape[1])

    def decode(data: bytes) -> np.ndarray:
        file = Image.open(io.BytesIO(data))
        src_w, src_h = file.size
        scale = max(width / src_w, height / src_h) if crop else 1.0
        need = (math.ceil(src_w * scale), math.ceil(src_h * scale)) if crop else (width, height)
        file.draft(mode, need)
        image = file.convert(mode)
        box = None
        if crop:  # the centre part of the (drafted) image with the model's aspect ratio
            w, h = image.size
            s = max(width / w, height / h)
            cw, ch = width / s, height / s
            box = ((w - cw) / 2, (h - ch) / 2, (w + cw) / 2, (h + ch) / 2)
        image = image.resize((width, height), Image.Resampling.BILINEAR, box=box)
        pixels = np.asarray(image).reshape(height, width, -1)
        out: np.ndarray = table[pixels, channel]
        return out

    return decode


def main() -> None:
    ap = options(__doc__)
    ap.add_argument("--resize", choices=("stretch", "crop"), default="stretch")
    args = ap.parse_args()

    interpreter = Interpreter(model_path=args.model, num_threads=args.threads)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    _, height, width, channels = inp["shape"]
    decode = decoder(
        width, height, channels == 1, args.resize == "crop", lookup_table(args.mean, args.std, inp)
    )
    reply = args.topic.rsplit("/", 1)[0] + "/predictions"
    intake: queue.Queue[tuple[bytes, bytes | None]] = queue.Queue(INTAKE)
    decoded: queue.Queue[tuple[np.ndarray, str, bytes | None]] = queue.Queue(DECODED)

    def on_message(client, userdata, msg):  # type: ignore[no-untyped-def]
        intake.put((msg.payload, getattr(msg.properties, "CorrelationData", None)))

    def decode_loop() -> None:
        while True:
            payload, correlation = intake.get()
            if correlation:  # raw JPEG bytes
                key, data = "", payload
            else:
                request = json.loads(payload)
                key, data = str(request["id"]), base64.b64decode(request["image_b64"])
            decoded.put((decode(data), key, correlation))

    def invoke_loop() -> None:
        tensor = interpreter.tensor(inp["index"])
        while True:
            pixels, key, correlation = decoded.get()
            tensor()[0] = pixels
            interpreter.invoke()
            scores = interpreter.get_tensor(out["index"])[0]
            best = int(np.argmax(scores))
            client.publish(
                reply,
                json.dumps({"id": key, "top": best, "score": float(scores[best])}),
                qos=1,
                properties=reply_properties(correlation),
            )

    client = connect(args.port, args.topic, on_message)
    for body, name in ((decode_loop, "decode"), (invoke_loop, "invoke")):
        threading.Thread(target=or_exit(body), name=name, daemon=True).start()
    serve(client)


if __name__ == "__main__":
    main()
