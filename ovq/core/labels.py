"""Well-known label sets."""

COCO80 = [
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed",
    "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
]

# torchvision's COCO detectors (SSD, SSDlite, RetinaNet, FCOS, Faster R-CNN) label with COCO's category ids 1..90,
# gaps included (0 is their background): the name of each id, 'N/A' where COCO has no category
# (torchvision's weights.meta["categories"][1:]), class id = category id - 1 as the torchvision family decodes
COCO_GAPS = (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)
COCO91 = [*COCO80]
for _gap in COCO_GAPS:
    COCO91.insert(_gap - 1, "N/A")

# what --labels takes by name
LABEL_SETS = {"coco80": COCO80, "coco91": COCO91}

# Open Model Zoo's one-class detectors, by the ``model_name`` their IRs keep in ``conversion_parameters``: their
# IRs name no classes, but each model's documentation does (one foreground class; label 0 is the background).
OMZ_ONE_CLASS = {
    **dict.fromkeys(
        ("person-detection-retail-0013", "person-detection-0200", "person-detection-0201", "person-detection-0202",
         "pedestrian-detection-adas-0002"), "person"),
    **dict.fromkeys(
        ("face-detection-adas-0001", "face-detection-retail-0004", "face-detection-retail-0005",
         "face-detection-0200", "face-detection-0202", "face-detection-0204"), "face"),
    **dict.fromkeys(
        ("vehicle-detection-adas-0002", "vehicle-detection-0200", "vehicle-detection-0201", "vehicle-detection-0202"),
        "vehicle"),
}
