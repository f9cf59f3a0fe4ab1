"""HTTP against MQTT at saturation with the same image, and what drift monitoring costs.

.venv/bin/python -m benchmarks.serving [--bundle B] [--image 640x480|1920x1080|digit]
    [--count 300] [--rounds 3] [--clients 8] [--out serving.json]

One daemon serves both: requests over MQTT (the suite's lean publisher, raw image bytes
with MQTT 5 correlation data) and over HTTP (``POST /v1/predict``, ``clients`` keep-alive
connections each sending its next request as soon as its answer arrives), all requests
at once, first request to last answer; MQTT and HTTP bursts alternate so that both see
the machine in the same state, and the median round counts. Then the same with
``[monitoring] enabled = false``: the throughput monitoring costs. Last, ``observe``
alone in this process (the monitor's work on the inference worker per request,
window comparisons included), in microseconds.

Without ``--bundle`` the model is the digits classifier converted here by
``edge-convert`` (so its bundle carries a monitoring reference), with 8x8 PNG requests:
the model costs next to nothing, so the figures are the transports' own cost.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.inputs import ROOT, digit_png, photo_jpeg
from benchmarks.load import LoadDriver
from tests.support.daemon import DaemonProcess, daemon_config
from tests.support.mosquitto import Mosquitto, free_port

DEVICE = "bench"
TARGET = 0.10  # HTTP throughput within 10 % of MQTT's


def digits_bundle(folder: Path) -> Path:
    """The float digits model converted by edge-convert (with a monitoring reference)."""
    from PIL import Image

    models = ROOT / "tests" / "fixtures" / "models"
    calib = folder / "calibration"
    calib.mkdir(parents=True, exist_ok=True)
    with np.load(models / "digits_test.npz") as data:
        for i, img in enumerate(data["x"][:100]):
            Image.fromarray(img).save(calib / f"d{i:03d}.png")
    out = folder / "digits.edgebundle"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "converter.cli",
            str(models / "digits_float.tflite"),
            "--calibration",
            str(calib),
            "--out",
            str(out),
            "--name",
            "digits",
            "--version",
            "1.0.0",
            "--mean",
            "0",
            "--std",
            "255",
            "--labels",
            str(models / "digits_labels.txt"),
            "--validation",
            str(models / "digits_test.npz"),
        ],  # fmt: skip
        check=True,
        capture_output=True,
        timeout=600,
    )
    return out


def http_burst(port: int, image: bytes, count: int, clients: int) -> dict[str, Any]:
    """``count`` requests over ``clients`` keep-alive connections, as fast as answered."""
    numbers = itertools.count()
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    last = [0.0]

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"Content-Type": "application/octet-stream"}
        try:
            while next(numbers) < count:
                sent = time.monotonic()
                conn.request("POST", "/v1/predict", body=image, headers=headers)
                answer = conn.getresponse()
                answer.read()
                done = time.monotonic()
                with lock:
                    if answer.status == 200:
                        latencies.append((done - sent) * 1000)
                        last[0] = max(last[0], done)
                    else:
                        failures.append(str(answer.status))
        finally:
            conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    seconds = last[0] - start
    lat = np.array(latencies or [0.0])
    return {
        "sent": count,
        "answered": len(latencies),
        "failures": failures[:10],
        "seconds": round(seconds, 3),
        "throughput": round(len(latencies) / seconds, 2) if seconds > 0 else 0.0,
        "latency_ms": {
            p: round(float(np.percentile(lat, q)), 2)
            for p, q in (("p50", 50), ("p90", 90), ("p99", 99))
        },
    }


def serve(
    tmp: Path, broker: int, bundle: Path, image: bytes, *, monitoring: bool, count: int,
    rounds: int, clients: int,
) -> dict[str, Any]:  # fmt: skip
    """One daemon; ``rounds`` alternating MQTT and HTTP bursts; the median of each."""
    folder = Path(tempfile.mkdtemp(dir=tmp))
    port = free_port()
    config = daemon_config(
        folder,
        broker,
        device_id=DEVICE,
        model=bundle,
        telemetry=30.0,
        requests={"queue_size": 64, "max_payload_bytes": 16 * 2**20},
        http={"enabled": True, "listen": f"127.0.0.1:{port}", "workers": clients},
        monitoring={"enabled": monitoring},
    )
    with DaemonProcess(config) as daemon:
        if not daemon.wait_log("daemon ready", 60):
            raise RuntimeError(f"the daemon did not start:\n{daemon.log()[-2000:]}")
        driver = LoadDriver(broker, f"edge/{DEVICE}/infer", f"edge/{DEVICE}/predictions")
        try:
            driver.run(image, 20, None, 60, alive=daemon.alive)  # warm up both
            http_burst(port, image, 20, clients)
            mqtt_runs, http_runs = [], []
            for _ in range(rounds):
                mqtt_runs.append(driver.run(image, count, None, 600, alive=daemon.alive).__dict__)
                http_runs.append(http_burst(port, image, count, clients))
        finally:
            driver.close()
            daemon.terminate()
    return {"mqtt": _median(mqtt_runs), "http": _median(http_runs)}


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ordered = sorted(runs, key=lambda r: r["throughput"])
    return {**ordered[len(ordered) // 2], "rounds_per_s": [r["throughput"] for r in runs]}


def observe_cost(bundle: Path, image: bytes, n: int) -> dict[str, Any]:
    """Microseconds per ``DriftMonitor.observe`` on this model's input and answer."""
    from edge_runtime.daemon.config import MonitoringConfig
    from edge_runtime.inference.engine import Engine
    from edge_runtime.inference.serialize import prediction_to_dict
    from edge_runtime.telemetry.monitor import DriftMonitor

    engine = Engine.load(bundle, threads=1)
    try:
        prepared = engine.prepare(image)
        answer = prediction_to_dict(engine.infer(prepared))
        monitor = DriftMonitor(MonitoringConfig(), engine=lambda: engine, alert=lambda doc: None)
        has_reference = monitor.snapshot()["reference"]
        monitor.observe(prepared, answer)
        start = time.perf_counter()
        for _ in range(n):
            monitor.observe(prepared, answer)
        per = (time.perf_counter() - start) / n * 1e6
        infer_start = time.perf_counter()
        for _ in range(50):
            engine.infer(prepared)
        infer_us = (time.perf_counter() - infer_start) / 50 * 1e6
    finally:
        engine.close()
    return {
        "observe_us": round(per, 2),
        "infer_us": round(infer_us, 1),
        "reference": bool(monitor.snapshot()["reference"] or has_reference),
        "input_shape": list(prepared.tensor.shape),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.serving", description=__doc__)
    ap.add_argument("--bundle", type=Path, help="an image model's bundle (default: digits)")
    ap.add_argument("--image", choices=("digit", "640x480", "1920x1080"), default=None)
    ap.add_argument("--count", type=int, default=300, help="requests per burst")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients", type=int, default=8, help="HTTP connections at once")
    ap.add_argument("--out", type=Path, default=Path("serving-results.json"))
    args = ap.parse_args(argv)
    image_kind = args.image or ("1920x1080" if args.bundle else "digit")
    image = digit_png() if image_kind == "digit" else photo_jpeg(image_kind)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        bundle = args.bundle.resolve() if args.bundle else digits_bundle(tmp)
        results: dict[str, Any] = {"bundle": str(bundle), "image": image_kind, "count": args.count}
        with Mosquitto(tmp) as broker:
            for label, on in (("monitoring_on", True), ("monitoring_off", False)):
                results[label] = serve(
                    tmp, broker.port, bundle, image, monitoring=on, count=args.count,
                    rounds=args.rounds, clients=args.clients,
                )  # fmt: skip
        results["observe"] = observe_cost(bundle, image, 20000)
    report(results)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def report(r: dict[str, Any]) -> None:
    print(f"model {r['bundle']} ({r['image']} requests, bursts of {r['count']})")
    for label in ("monitoring_on", "monitoring_off"):
        run = r[label]
        for proto in ("mqtt", "http"):
            x = run[proto]
            lat = x["latency_ms"]
            rounds = ", ".join(f"{v:.0f}" for v in x["rounds_per_s"])
            print(
                f"  {label:15s} {proto:4s} {x['throughput']:8.1f}/s (rounds {rounds}); "
                f"latency p50 {lat['p50']:.1f} p90 {lat['p90']:.1f} p99 {lat['p99']:.1f} ms"
            )
    on = r["monitoring_on"]
    ratio = on["http"]["throughput"] / max(on["mqtt"]["throughput"], 1e-9)
    verdict = "PASS" if ratio >= 1 - TARGET else "FAIL"
    print(f"  HTTP / MQTT throughput: {ratio:.3f} (target >= {1 - TARGET:.2f}): {verdict}")
    cost = [
        1 - r["monitoring_on"][p]["throughput"] / max(r["monitoring_off"][p]["throughput"], 1e-9)
        for p in ("mqtt", "http")
    ]
    print(f"  throughput lost to monitoring: MQTT {cost[0]:+.1%}, HTTP {cost[1]:+.1%}")
    o = r["observe"]
    print(
        f"  observe: {o['observe_us']:.1f} us per request (input {o['input_shape']}, "
        f"reference {o['reference']}); infer alone {o['infer_us']:.0f} us"
    )
    spread = (
        statistics.pstdev(on["mqtt"]["rounds_per_s"]) if len(on["mqtt"]["rounds_per_s"]) > 1 else 0
    )
    print(f"  MQTT round-to-round spread (sd): {spread:.1f}/s")


if __name__ == "__main__":
    raise SystemExit(main())
