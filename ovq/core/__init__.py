"""The one data type and what every stage shares: Detections, boxes, model metadata, errors, files."""
