"""Images and labelled datasets (YOLO, COCO JSON, folders), and generated scenes."""
