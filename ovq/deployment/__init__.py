"""Pipelines as YAML, building them, and bundling them for a machine that runs them for months."""
