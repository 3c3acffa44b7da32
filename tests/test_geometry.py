import numpy as np
import pytest

from ovq.core.geometry import box_iou, forward_boxes, letterbox, nms, scale_boxes, stretch


@pytest.mark.parametrize("shape", [(480, 640), (640, 480), (333, 517), (416, 416), (100, 1000)])
@pytest.mark.parametrize("size", [(416, 416), (320, 544)])
@pytest.mark.parametrize("center", [True, False])
def test_letterbox_inverse_maps_boxes_back(shape, size, center):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, shape + (3,), dtype=np.uint8)
    out, info = letterbox(image, size, pad_value=114, center=center)
    assert out.shape == size + (3,)
    h, w = shape
    boxes = np.array([[0, 0, w, h], [w * 0.1, h * 0.2, w * 0.5, h * 0.9]], np.float32)
    there = forward_boxes(boxes, info)
    # the whole image lands inside the input, touching two opposite sides
    assert there[0, 0] >= 0 and there[0, 2] <= size[1] + 1e-3 and there[0, 3] <= size[0] + 1e-3
    back = scale_boxes(there, info)
    np.testing.assert_allclose(back, boxes, atol=1e-3)


def test_letterbox_pad_placement_and_value():
    image = np.full((100, 200, 3), 7, np.uint8)
    out, info = letterbox(image, (200, 200), pad_value=114, center=True)
    assert (info.pad_x, info.pad_y) == (0.0, 50.0)
    assert (out[:50] == 114).all() and (out[150:] == 114).all() and (out[50:150] == 7).all()
    out, info = letterbox(image, (200, 200), pad_value=0, center=False)
    assert (info.pad_x, info.pad_y) == (0.0, 0.0)
    assert (out[:100] == 7).all() and (out[100:] == 0).all()


def test_stretch_inverse():
    image = np.zeros((300, 500, 3), np.uint8)
    out, info = stretch(image, (352, 352))
    assert out.shape == (352, 352, 3)
    boxes = np.array([[10, 20, 400, 290]], np.float32)
    np.testing.assert_allclose(scale_boxes(forward_boxes(boxes, info), info), boxes, atol=1e-3)


def test_scale_boxes_clips_to_image():
    _, info = letterbox(np.zeros((100, 200, 3), np.uint8), (200, 200))
    back = scale_boxes(np.array([[-10, 0, 250, 210]], np.float32), info)
    assert back[0, 0] == 0 and back[0, 2] == 200 and back[0, 1] == 0 and back[0, 3] == 100


def test_box_iou_known_values():
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], np.float32)
    np.testing.assert_allclose(box_iou(a, b)[0], [1.0, 50 / 150, 0.0], atol=1e-6)


def _greedy_reference(boxes, scores, classes, thr):
    order = list(np.argsort(-scores, kind="stable"))
    keep = []
    while order:
        i = order.pop(0)
        keep.append(i)
        order = [j for j in order if classes[j] != classes[i] or box_iou(boxes[i], boxes[j])[0, 0] <= thr]
    return keep


@pytest.mark.parametrize("seed", range(5))
def test_nms_matches_plain_greedy_reference(seed):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 100, (60, 2))
    wh = rng.uniform(5, 40, (60, 2))
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    scores = rng.uniform(0, 1, 60).astype(np.float32)
    classes = rng.integers(0, 3, 60)
    got = nms(boxes, scores, classes, iou_threshold=0.45)
    assert list(got) == _greedy_reference(boxes, scores, classes, 0.45)


def test_nms_is_class_aware_and_respects_max_det():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], np.float32)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    assert list(nms(boxes, scores, np.array([0, 1, 0]), iou_threshold=0.5)) == [0, 1]
    assert list(nms(boxes, scores, None, iou_threshold=0.5)) == [0]
    assert list(nms(boxes, scores, np.array([0, 1, 2]), iou_threshold=0.5, max_det=2)) == [0, 1]
    assert nms(np.zeros((0, 4)), np.zeros(0)).shape == (0,)


def test_scale_boxes_is_the_inverse_mapping_in_float32_per_coordinate():
    """The vectorized mapping gives, bit for bit, each coordinate's (v - pad) / scale in float32, clipped."""
    rng = np.random.default_rng(7)
    boxes = rng.uniform(-50, 700, (64, 4)).astype(np.float32)
    _, info = letterbox(np.zeros((433, 769, 3), np.uint8), (416, 416))
    got = scale_boxes(boxes, info)
    want = boxes.copy()
    for col, pad, scale, limit in ((0, info.pad_x, info.scale_x, info.orig_w), (1, info.pad_y, info.scale_y, info.orig_h),
                                   (2, info.pad_x, info.scale_x, info.orig_w), (3, info.pad_y, info.scale_y, info.orig_h)):
        want[:, col] = np.minimum(np.maximum((boxes[:, col] - np.float32(pad)) / np.float32(scale), 0), limit)
    assert got.dtype == np.float32 and np.array_equal(got, want)
    assert np.array_equal(scale_boxes(boxes, info, clip=False)[:, 1],
                          (boxes[:, 1] - np.float32(info.pad_y)) / np.float32(info.scale_y))
    assert np.shares_memory(scale_boxes(boxes, info), boxes) is False
