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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--threads", type=int, default=2)
    # one number, or one per channel separated by commas
    ap.add_argument("--mean", type=_numbers, default=np.float32(127.5))
    ap.add_argument("--std", type=_numbers, default=np.float32(127.5))
    args = ap.parse_args()

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
        props = None
        if correlation:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.CorrelationData = correlation
        client.publish(
            reply, json.dumps({"id": request["id"], "top": best}), qos=1, properties=props
        )

    def on_message_or_exit(client, userdata, msg):  # type: ignore[no-untyped-def]
        try:
            on_message(client, userdata, msg)  # type: ignore[no-untyped-call]
        except Exception:  # the run waiting for answers sees the process end
            traceback.print_exc()
            os._exit(1)

    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_message = on_message_or_exit
    client.on_connect = lambda c, *a: c.subscribe(args.topic, qos=1)
    client.connect("127.0.0.1", args.port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    client.loop_start()
    print("ready", flush=True)
    stop.wait()
    client.loop_stop()


if __name__ == "__main__":
    main()
