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
