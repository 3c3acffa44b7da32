"""The live view's ``/metrics``: per-stream counters and gauges in Prometheus text format (prometheus-client).

A registry of our own per render (never prometheus-client's process-wide default one), filled from the same
per-stream records ``/stats.json`` serves, so the two never disagree.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def render(streams: list[dict[str, Any]], viewers: int) -> tuple[bytes, str]:
    """The metrics text and its content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(streams, viewers))
    return generate_latest(registry), CONTENT_TYPE_LATEST


class _Collector:
    def __init__(self, streams: list[dict[str, Any]], viewers: int) -> None:
        self.streams = streams
        self.viewers = viewers

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        per_stream = (
            (CounterMetricFamily, "frames", "ovq_frames", "Frames delivered to the sinks"),
            (CounterMetricFamily, "dropped", "ovq_dropped_frames", "Live frames replaced by a newer one before inference"),
            (CounterMetricFamily, "reconnects", "ovq_reconnects", "Reconnections of the source"),
            (CounterMetricFamily, "errors", "ovq_inference_errors", "Frames whose inference failed"),
            (GaugeMetricFamily, "fps", "ovq_fps", "Results per second over the last seconds"),
            (GaugeMetricFamily, "latency_p50_ms", "ovq_latency_p50_ms",
             "Capture-to-result latency, median of the last seconds"),
            (GaugeMetricFamily, "latency_p95_ms", "ovq_latency_p95_ms",
             "Capture-to-result latency, 95th percentile of the last seconds"),
            (GaugeMetricFamily, "last_result_age_s", "ovq_last_result_age_seconds",
             "Seconds since the stream's newest result"),
        )
        for family, key, name, doc in per_stream:
            metric = family(name, doc, labels=["stream"])
            for s in self.streams:
                if s.get(key) is not None:  # no latency before a stream's first result
                    metric.add_metric([s["name"]], s[key])
            yield metric
        up = GaugeMetricFamily("ovq_stream_up", "1 while the stream delivers frames (or finished), 0 while it starts, "
                               "connects, reconnects or stalls", labels=["stream"])
        in_frame = GaugeMetricFamily("ovq_detections_in_frame",
                                     "Detections in the newest frame, none while the stream is down",
                                     labels=["stream", "class"])
        total = CounterMetricFamily("ovq_detections", "Detections since the start", labels=["stream", "class"])
        for s in self.streams:
            up.add_metric([s["name"]], 1.0 if s["state"] in ("live", "finished") else 0.0)
            for cls, n in s["detections"].items():
                in_frame.add_metric([s["name"], cls], n)
            for cls, n in s["detections_total"].items():
                total.add_metric([s["name"], cls], n)
        yield up
        yield in_frame
        yield total
        yield GaugeMetricFamily("ovq_live_viewers", "MJPEG viewers connected", value=self.viewers)
