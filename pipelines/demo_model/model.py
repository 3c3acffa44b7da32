"""A small anchor-free detector for the conveyor demo (ovq's own, not derived from Ultralytics code).

Backbone: plain Conv-BN-ReLU stages with residual bottlenecks, strides 8 / 16 / 32.
Neck: a top-down FPN followed by a bottom-up path (PAN), 64 channels at every level.
Head: per level one 3x3 Conv-BN-ReLU, then 1x1 convolutions to 4 box distances (left, top, right,
bottom; softplus, in units of the level's stride) and ``num_classes`` class logits.

``forward`` returns raw per-anchor outputs for training. :meth:`Detector.export_head` switches the model to
the layout of Ultralytics YOLOv8's one-to-many head, ``[B, 4 + num_classes, N]``: box centre x, y, width,
height in input pixels, then sigmoided class scores; that is what ``torch.onnx.export`` should see.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

STRIDES = (8, 16, 32)


class ConvBN(nn.Module):
    def __init__(self, c_in: int, c_out: int, k: int = 3, stride: int = 1, act: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False)
        self.bn: nn.Module = nn.BatchNorm2d(c_out)
        self.act: nn.Module = nn.ReLU(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))

    def fuse(self) -> None:
        """Fold the batch norm into the convolution (for export)."""
        if not isinstance(self.bn, nn.BatchNorm2d):
            return
        bn = self.bn
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        fused = nn.Conv2d(
            self.conv.in_channels, self.conv.out_channels, self.conv.kernel_size, self.conv.stride,
            self.conv.padding, groups=self.conv.groups, bias=True,
        )
        fused.weight.data = self.conv.weight.data * scale[:, None, None, None]
        fused.bias.data = bn.bias.data - bn.running_mean * scale
        self.conv = fused
        self.bn = nn.Identity()


class Bottleneck(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.reduce = ConvBN(c, c // 2, 1)
        self.conv = ConvBN(c // 2, c, 3, act=False)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.conv(self.reduce(x)))


def _stage(c_in: int, c_out: int, blocks: int) -> nn.Sequential:
    return nn.Sequential(ConvBN(c_in, c_out, 3, 2), *[Bottleneck(c_out) for _ in range(blocks)])


class Detector(nn.Module):
    def __init__(self, num_classes: int = 5, *, widths: tuple[int, ...] = (16, 32, 64, 96, 128), neck: int = 64,
                 prior: float = 0.01) -> None:
        super().__init__()
        self.num_classes = num_classes
        w0, w1, w2, w3, w4 = widths
        self.stem = ConvBN(3, w0, 3, 2)  # /2
        self.s4 = _stage(w0, w1, 1)  # /4
        self.s8 = _stage(w1, w2, 2)  # /8
        self.s16 = _stage(w2, w3, 2)  # /16
        self.s32 = _stage(w3, w4, 1)  # /32
        self.lat8 = ConvBN(w2, neck, 1)
        self.lat16 = ConvBN(w3, neck, 1)
        self.lat32 = ConvBN(w4, neck, 1)
        self.td8 = ConvBN(neck, neck, 3)
        self.td16 = ConvBN(neck, neck, 3)
        self.down8 = ConvBN(neck, neck, 3, 2)
        self.down16 = ConvBN(neck, neck, 3, 2)
        self.bu16 = ConvBN(neck, neck, 3)
        self.bu32 = ConvBN(neck, neck, 3)
        self.head_convs = nn.ModuleList([ConvBN(neck, neck, 3) for _ in STRIDES])
        self.box_out = nn.ModuleList([nn.Conv2d(neck, 4, 1) for _ in STRIDES])
        self.cls_out = nn.ModuleList([nn.Conv2d(neck, num_classes, 1) for _ in STRIDES])
        bias = -torch.log(torch.tensor((1.0 - prior) / prior))
        for conv in self.cls_out:
            nn.init.constant_(conv.bias, float(bias))
        for conv in self.box_out:
            nn.init.constant_(conv.bias, 1.0)
        self._export = False

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.s4(self.stem(x))
        c8 = self.s8(x)
        c16 = self.s16(c8)
        c32 = self.s32(c16)
        p32 = self.lat32(c32)
        p16 = self.td16(self.lat16(c16) + F.interpolate(p32, scale_factor=2.0, mode="nearest"))
        p8 = self.td8(self.lat8(c8) + F.interpolate(p16, scale_factor=2.0, mode="nearest"))
        n16 = self.bu16(p16 + self.down8(p8))
        n32 = self.bu32(p32 + self.down16(n16))
        return [p8, n16, n32]

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training: ``(ltrb (B, N, 4) in pixels, class logits (B, N, C), anchors (N, 3) = x, y, stride)``."""
        boxes, logits, anchors = [], [], []
        for i, (feat, stride) in enumerate(zip(self.features(x), STRIDES, strict=True)):
            h = self.head_convs[i](feat)
            _, _, fh, fw = h.shape
            boxes.append((F.softplus(self.box_out[i](h)) * stride).flatten(2))
            logits.append(self.cls_out[i](h).flatten(2))
            anchors.append(_anchors(int(fh), int(fw), stride, h.device))
        ltrb = torch.cat(boxes, 2)  # (B, 4, N)
        cls = torch.cat(logits, 2)  # (B, C, N)
        points = torch.cat(anchors, 0)  # (N, 3)
        if self._export:
            xy = points[:, :2].T.unsqueeze(0)  # (1, 2, N)
            lt, rb = ltrb[:, :2], ltrb[:, 2:]
            centre = xy + (rb - lt) / 2
            size = lt + rb
            return torch.cat([centre, size, torch.sigmoid(cls)], 1)
        return ltrb.transpose(1, 2), cls.transpose(1, 2), points

    def export_head(self) -> Detector:
        """Fuse batch norms and switch to the YOLOv8 output layout; returns ``self`` in eval mode."""
        for m in self.modules():
            if isinstance(m, ConvBN):
                m.fuse()
        self._export = True
        return self.eval()


def _anchors(h: int, w: int, stride: int, device: torch.device) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    xy = torch.stack([xs, ys], -1).reshape(-1, 2).float() * stride + stride / 2
    return torch.cat([xy, torch.full((h * w, 1), float(stride), device=device)], 1)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
