"""torchvision's detection models (SSD, SSDlite, RetinaNet, FCOS, Faster R-CNN): their own NMS inside, a list.

Exported, they output ``boxes [N, 4]``, ``scores [N]`` and ``labels [N]`` of data-dependent length N; ``ovq
convert`` pads them into one ``[1, K, 6]`` output (:mod:`ovq.model.detection_list`), which this family decodes.
Boxes are x1, y1, x2, y2 in the pixels of the image the model was given (its own transform resizes and maps
back), so ovq stretches frames to the exported input size and maps boxes back. Label 0 is torchvision's
background: class id = label - 1, so a model trained with ``num_classes=K+1`` gives ids 0..K-1 for ``--labels``'
K names. torchvision's COCO weights label with COCO's category ids (1..90, gaps included): ``--labels coco91``
names them (:data:`ovq.core.labels.COCO91`, 'N/A' in the gaps).
The input is RGB in [0, 1]; torchvision normalises inside the model.
"""

from __future__ import annotations

import numpy as np

from ovq.core.detections import Detections
from ovq.core.geometry import ResizeInfo
from ovq.model.decoders.base import DecodeParams, ModelFacts, SourcePreprocessing, finish
from ovq.model.detection_list import is_padded_list


class TorchvisionDecoder:
    family = "torchvision"
    expects = ("boxes [N, 4], scores [N], labels [N] of data-dependent length (torchvision's detection models), "
               "which ovq convert pads into one [1, K, 6] output")
    preprocessing = SourcePreprocessing(color="RGB", scale=(255.0, 255.0, 255.0), resize="stretch")
    default_iou = 0.5  # unused: the model ran its own NMS
    no_nms = "the model ran its own NMS inside its graph"

    def matches(self, facts: ModelFacts) -> bool | None:
        shape = facts.single_output
        if shape is None or len(shape) != 3 or shape[0] != 1 or shape[2] != 6:
            return False
        return is_padded_list(facts.graph, facts.output_names)  # None with neither (a served model)

    def num_classes(self, facts: ModelFacts) -> int | None:
        return None

    def decode(self, outputs: list[np.ndarray], resize: ResizeInfo, params: DecodeParams) -> Detections:
        rows = np.asarray(outputs[0])[0]  # (K, 6), zero-score padding at the end
        rows = rows[rows[:, 4] > 0]
        return finish(
            rows[:, :4].astype(np.float32),
            rows[:, 4].astype(np.float32),
            rows[:, 5].astype(np.int64) - 1,  # 0 is the background
            resize,
            params,
            run_nms=False,
        )
