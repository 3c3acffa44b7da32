"""Random-init detectors score every candidate alike; these helpers spread their scores (torch, tests only).

A random-init YOLO's class branch ends in a bias of log(prior), and its features fade through dozens of
default-initialised layers, so every cell gets the same score: NMS order is then a coin toss and no reference
comparison means anything. ``spread_scores`` re-initialises every convolution (He normal: the signal keeps its
size), boosts the last layers that make scores, and sets their biases so that about ``share`` of the cells of a
calibration image score above ``target`` (per channel), the rest below.
"""

from __future__ import annotations

import math

import torch


def he_init(model: torch.nn.Module, seed: int) -> torch.Generator:
    """He-normal weights for every trainable convolution (fixed ones, like YOLOv8's DFL, keep theirs)."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d) and m.weight.requires_grad:
            fan_in = m.weight[0].numel()
            m.weight.data = torch.randn(m.weight.shape, generator=gen) * math.sqrt(2.0 / fan_in)
    return gen


@torch.no_grad()
def spread_scores(layers, run, gen: torch.Generator, *, channels=None, share: float = 0.02, target: float = 0.5,
                  spread: float = 3.0) -> None:
    """``layers``: the Conv2d/Linear layers whose outputs become score logits; ``run()``: one forward pass on a
    calibration image; ``channels(layer)``: which output channels are score logits (default: all).

    Each score channel's weights are scaled so its logits vary by ``spread`` (standard deviation) over the
    calibration image, and its bias set so that ``share`` of them land above ``target`` once sigmoided.
    """
    for layer in layers:
        layer.weight.data = torch.randn(layer.weight.shape, generator=gen) * math.sqrt(2.0 / layer.weight[0].numel())
        layer.bias.data.zero_()
    seen: dict[int, torch.Tensor] = {}
    hooks = [layer.register_forward_hook(lambda m, i, o, k=k: seen.__setitem__(k, o.detach()))
             for k, layer in enumerate(layers)]
    try:
        run()
    finally:
        for h in hooks:
            h.remove()
    logit = math.log(target / (1 - target))
    for k, layer in enumerate(layers):
        out = seen[k]
        per_channel = out.transpose(0, 1).reshape(out.shape[1], -1) if out.dim() == 4 else out.reshape(
            -1, out.shape[-1]).T
        for c in channels(layer) if channels else range(per_channel.shape[0]):
            scale = spread / max(float(per_channel[c].std()), 1e-12)
            layer.weight.data[c] *= scale
            layer.bias.data[c] = logit - scale * torch.quantile(per_channel[c], 1 - share)
