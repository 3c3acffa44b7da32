"""Video: sources, reader threads, the async multi-stream pipeline, sinks, tracking, stats."""
