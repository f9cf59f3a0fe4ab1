"""The script people write by hand, as the baseline: a paho callback that decodes the
image with Pillow, resizes it, quantizes, invokes and publishes, one request at a time.
Requests are raw JPEG bytes (the answer carries the MQTT 5 correlation data back) or
JSON ``{"id", "image_b64"}``.

    python benchmarks/baseline.py --port P --model model.tflite --topic edge/base/infer
        [--mean 127.5 --std 127.5]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import signal
import threading
import traceback
from typing import Any, Callable

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from PIL import Image

try:
    from ai_edge_litert.interpreter import Interpreter
except ImportError:
    from tflite_runtime.interpreter import Interpreter


def _numbers(text: str) -> np.ndarray:
    return np.array([float(v) for v in text.split(",")], dtype=np.float32)


def options(description: str | None) -> argparse.ArgumentParser:
    """The arguments this script and the peer script take alike."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--threads", type=int, default=2)
    # one number, or one per channel separated by commas
    ap.add_argument("--mean", type=_numbers, default=np.float32(127.5))
    ap.add_argument("--std", type=_numbers, default=np.float32(127.5))
    return ap


def or_exit(body: Callable[..., None]) -> Callable[..., None]:
    """``body`` that ends the process on an exception, so that the run waiting for
    answers sees it end instead of waiting out its timeout."""

    def run(*args: Any) -> None:
        try:
            body(*args)
        except Exception:
            traceback.print_exc()
            os._exit(1)

    return run


def connect(port: int, topic: str, on_message: Callable[..., None]) -> mqtt.Client:
    """A client on 127.0.0.1:``port`` that will subscribe ``on_message`` to ``topic``
    (QoS 1) once ``serve`` runs its loop."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_message = or_exit(on_message)
    client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
    client.connect("127.0.0.1", port)
    return client


def serve(client: mqtt.Client) -> None:
    """Run the client's loop, print ``ready`` and serve until SIGTERM."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    client.loop_start()
    print("ready", flush=True)
    stop.wait()
    client.loop_stop()


def reply_properties(correlation: bytes | None) -> Properties | None:
    """An answer's MQTT 5 properties: the request's correlation data back, if it had any."""
    if not correlation:
        return None
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.CorrelationData = correlation
    return props


def main() -> None:
    args = options(__doc__).parse_args()

    interpreter = Interpreter(model_path=args.model, num_threads=args.threads)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    _, height, width, channels = inp["shape"]
    scale, zero = inp["quantization"]
    reply = args.topic.rsplit("/", 1)[0] + "/predictions"

    def on_message(client, userdata, msg):  # type: ignore[no-untyped-def]
        correlation = getattr(msg.properties, "CorrelationData", None)
        if correlation:  # raw JPEG bytes
            request, data = {"id": ""}, msg.payload
        else:
            request = json.loads(msg.payload)
            data = base64.b64decode(request["image_b64"])
        image = Image.open(io.BytesIO(data)).convert("L" if channels == 1 else "RGB")
        image = image.resize((width, height))
        pixels = np.asarray(image, dtype=np.float32).reshape(height, width, channels)
        values = (pixels - args.mean) / args.std
        q = np.clip(np.round(values / scale + zero), -128, 127).astype(inp["dtype"])
        interpreter.set_tensor(inp["index"], q[np.newaxis])
        interpreter.invoke()
        scores = interpreter.get_tensor(out["index"])[0]
        best = int(np.argmax(scores))
        client.publish(
            reply,
            json.dumps({"id": request["id"], "top": best}),
            qos=1,
            properties=reply_properties(correlation),
        )

    serve(connect(args.port, args.topic, on_message))


if __name__ == "__main__":
    main()
