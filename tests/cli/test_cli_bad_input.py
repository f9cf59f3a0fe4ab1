"""``edge-runtime predict`` on bad input: one clear line on stderr, non-zero exit, no traceback."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from tests.cli.cli_models import edgetpu_like
from tests.conftest import IMAGES, MODELS, assert_one_line_error

pytestmark = pytest.mark.backend

DIGITS = MODELS / "digits_int8.tflite"
PHOTO = IMAGES / "chelsea.jpg"


@pytest.fixture
def jpeg_bytes() -> bytes:
    return PHOTO.read_bytes()


def _write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def test_corrupt_image(edge_runtime_cli, tmp_path: Path, jpeg_bytes: bytes) -> None:
    data = bytearray(jpeg_bytes)
    data[600:1600] = bytes(1000)  # zeros over the entropy-coded data
    bad = _write(tmp_path, "corrupt.jpg", bytes(data))
    assert_one_line_error(
        edge_runtime_cli("predict", "--model", DIGITS, bad), "corrupt.jpg", "corrupt"
    )


def test_unidentifiable_header(edge_runtime_cli, tmp_path: Path, jpeg_bytes: bytes) -> None:
    bad = _write(tmp_path, "header.jpg", jpeg_bytes[:2] + bytes(64) + jpeg_bytes[66:])
    assert_one_line_error(
        edge_runtime_cli("predict", "--model", DIGITS, bad), "header.jpg", "not an image"
    )


def test_truncated_image(edge_runtime_cli, tmp_path: Path, jpeg_bytes: bytes) -> None:
    bad = _write(tmp_path, "truncated.jpg", jpeg_bytes[: len(jpeg_bytes) // 3])
    assert_one_line_error(
        edge_runtime_cli("predict", "--model", DIGITS, bad), "truncated.jpg", "truncated"
    )


def test_text_file(edge_runtime_cli, tmp_path: Path) -> None:
    bad = _write(tmp_path, "notes.jpg", b"this is a shopping list, not a photo\n" * 20)
    assert_one_line_error(
        edge_runtime_cli("predict", "--model", DIGITS, bad), "notes.jpg", "not an image"
    )


def test_empty_file(edge_runtime_cli, tmp_path: Path) -> None:
    bad = _write(tmp_path, "empty.png", b"")
    assert_one_line_error(edge_runtime_cli("predict", "--model", DIGITS, bad), "empty.png", "empty")


def test_fifty_megapixel_image_is_refused_before_decoding(edge_runtime_cli, tmp_path: Path) -> None:
    # 8660 x 5774 = 50.0 MP; a flat PNG of that size is only ~150 KB on disk.
    out = io.BytesIO()
    Image.new("L", (8660, 5774), 0).save(out, format="PNG")
    big = _write(tmp_path, "huge.png", out.getvalue())
    done = edge_runtime_cli("predict", "--model", DIGITS, big)
    assert_one_line_error(done, "huge.png", "50.0 megapixels", "limit")


def test_model_file_that_is_not_a_model(edge_runtime_cli, tmp_path: Path) -> None:
    fake = _write(tmp_path, "model.tflite", b"PK\x03\x04 not a flatbuffer at all" * 40)
    assert_one_line_error(
        edge_runtime_cli("predict", "--model", fake, PHOTO), "model.tflite", "neither"
    )


def test_model_file_with_tflite_identifier_but_garbage(edge_runtime_cli, tmp_path: Path) -> None:
    fake = _write(tmp_path, "broken.tflite", b"\x10\x00\x00\x00TFL3" + b"\xff" * 300)
    assert_one_line_error(edge_runtime_cli("predict", "--model", fake, PHOTO), "broken.tflite")


def test_truncated_model(edge_runtime_cli, tmp_path: Path) -> None:
    data = DIGITS.read_bytes()
    cut = _write(tmp_path, "cut.tflite", data[: len(data) // 2])
    assert_one_line_error(edge_runtime_cli("predict", "--model", cut, PHOTO), "cut.tflite")


def test_missing_model_and_missing_image(edge_runtime_cli, tmp_path: Path) -> None:
    assert_one_line_error(
        edge_runtime_cli("predict", "--model", tmp_path / "nope.tflite", PHOTO), "not found"
    )
    assert_one_line_error(
        edge_runtime_cli("predict", "--model", DIGITS, tmp_path / "nope.jpg"),
        "nope.jpg",
        "no such file",
    )


@pytest.mark.parametrize("count", [9, 12])
def test_wrong_labels_length(edge_runtime_cli, tmp_path: Path, count: int) -> None:
    labels = _write(tmp_path, "labels.txt", "".join(f"class{i}\n" for i in range(count)).encode())
    line = assert_one_line_error(
        edge_runtime_cli("predict", "--model", DIGITS, "--labels", labels, IMAGES / "digit_3.png"),
        "labels",
    )
    assert str(count) in line and "10" in line


def test_one_extra_background_label_is_accepted(edge_runtime_cli, tmp_path: Path) -> None:
    names = ["background"] + [f"digit {i}" for i in range(10)]
    labels = _write(tmp_path, "labels.txt", "\n".join(names).encode())
    done = edge_runtime_cli(
        "predict", "--model", DIGITS, "--labels", labels, IMAGES / "digit_3.png"
    )
    assert done.returncode == 0, done.stderr
    assert "digit 3" in done.stdout.splitlines()[2]  # under the heading and the header row


def test_bad_flag_values(edge_runtime_cli) -> None:
    for args in (["--threads", "0"], ["--std", "0"], ["--mean", "nan"], ["--top-k", "-1"]):
        done = edge_runtime_cli("predict", "--model", DIGITS, *args, IMAGES / "digit_3.png")
        assert done.returncode != 0 and "Traceback" not in done.stderr, (args, done.stderr)


def test_edgetpu_model_on_the_cpu_says_why(edge_runtime_cli, tmp_path: Path) -> None:
    compiled = edgetpu_like(tmp_path)
    assert_one_line_error(
        edge_runtime_cli(
            "predict", "--delegate", "cpu", "--model", compiled, IMAGES / "squares.png"
        ),
        "compiled for the Edge TPU",
    )


def test_edgetpu_model_without_the_library(edge_runtime_cli, tmp_path: Path) -> None:
    compiled = edgetpu_like(tmp_path)
    for mode in ("auto", "edgetpu"):
        assert_one_line_error(
            edge_runtime_cli(
                "predict", "--delegate", mode, "--model", compiled, IMAGES / "squares.png"
            ),
            "libedgetpu",
        )


def test_edgetpu_delegate_with_an_uncompiled_model(edge_runtime_cli) -> None:
    assert_one_line_error(
        edge_runtime_cli(
            "predict", "--delegate", "edgetpu", "--model", DIGITS, IMAGES / "digit_3.png"
        ),
        "edgetpu",
    )


def test_a_good_image_after_a_bad_one_is_not_reached_but_nothing_crashes(
    edge_runtime_cli, tmp_path: Path
) -> None:
    bad = _write(tmp_path, "bad.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    done = edge_runtime_cli("predict", "--model", DIGITS, IMAGES / "digit_1.png", bad)
    assert done.returncode != 0
    assert done.stdout.splitlines()[0].startswith(str(IMAGES / "digit_1.png"))
    assert_one_line_error(done, "bad.png")
