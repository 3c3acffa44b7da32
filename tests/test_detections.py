import numpy as np
import pytest
from conftest import make_dets

from ovq.core.detections import Detections


def test_mask_and_index_return_detections():
    d = make_dets([[0, 0, 1, 1], [1, 1, 2, 2], [2, 2, 3, 3]], scores=[0.1, 0.6, 0.9], classes=[0, 1, 2])
    high = d[d.confidence > 0.5]
    assert isinstance(high, Detections) and len(high) == 2
    assert list(high.class_id) == [1, 2]
    one = d[1]
    assert len(one) == 1 and one.xyxy.shape == (1, 4)


def test_shapes_are_checked_with_clear_messages():
    with pytest.raises(ValueError, match=r"xyxy must have shape \(N, 4\)"):
        Detections(xyxy=np.zeros((3, 3)), confidence=np.zeros(3), class_id=np.zeros(3))
    with pytest.raises(ValueError, match=r"confidence must have shape \(2,\)"):
        Detections(xyxy=np.zeros((2, 4)), confidence=np.zeros(3), class_id=np.zeros(2))
    with pytest.raises(ValueError, match="tracker_id"):
        Detections(xyxy=np.zeros((2, 4)), confidence=np.zeros(2), class_id=np.zeros(2), tracker_id=np.zeros(1))


def test_empty_and_records():
    assert len(Detections.empty()) == 0
    d = make_dets([[1, 2, 3, 4]], scores=[0.5], classes=[1], tracker_id=np.array([7]))
    rec = d.to_records(["a", "b"])
    assert rec == [{"class_id": 1, "label": "b", "confidence": 0.5, "xyxy": [1.0, 2.0, 3.0, 4.0], "tracker_id": 7}]


def test_boxes_far_beyond_the_frame_or_not_finite_are_drawn_not_raised():
    """A plug-in decoder that does not clip gave a box at 1e30 (OverflowError) or NaN (ValueError): the video sink's
    or the live view's thread ended on it."""
    from ovq.core.drawing import annotate

    frame = np.zeros((40, 60, 3), np.uint8)
    d = make_dets([[5, 5, 1e30, 20], [-np.inf, 2, 30, np.inf], [np.nan, 1, 2, 3], [10, 10, 20, 20]],
                  scores=[0.9, 0.8, 0.7, 0.6], classes=[0, 1, 0, 1])
    out = annotate(frame, d, ["a", "b"])
    assert out.shape == frame.shape and out[10:21, 10].any()  # the ordinary box is there too
    assert not frame.any()  # drawn on a copy
