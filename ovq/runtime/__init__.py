"""OpenVINO underneath: devices, compiling with the right settings, timing compiled models."""
