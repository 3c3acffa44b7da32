"""How good and how fast: COCO mAP, predictions on images, throughput and latency."""
