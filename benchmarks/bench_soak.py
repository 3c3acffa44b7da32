"""Does a long `ovq run` hold its memory, files and threads? A soak run with every kind of churn a deployment sees.

One `ovq run` process, as a service runs it, for ``--minutes``:

- stream ``cam``: a real RTSP camera (gst-rtsp-server serving the shared person video in real time). The file's end
  is a stream end every ~140 s, and the server is killed and restarted every ``--drop-every`` seconds: reconnects.
- stream ``belt``: ``synth://conveyor`` at 15 fps.
- sinks: ``--out`` cut into 30 s segments (keep 3), ``--jsonl`` rotated every minute (keep 3), ``--mqtt`` to a real
  mosquitto broker, and the live view (``--serve``) with a viewer that watches the MJPEG stream for 5 s every 20 s
  and a scraper reading ``/metrics`` every 10 s.

Every 5 s it samples the process (and its children): resident memory (VmRSS), open file descriptors, threads and CPU
time. After the warm-up (the first quarter, at least 2 minutes) it fits a line to the memory and reports its slope in
MB per hour, over all of the rest and over its second half (a leak keeps its slope; a plateau flattens), and how far descriptors and threads went above their level at the end of the warm-up. At the end the
run is stopped with SIGINT, as Ctrl-C or ``systemctl stop`` would, and must exit 0 with its summary written.

    python benchmarks/bench_soak.py [--model yolox_nano] [--minutes 20] [--drop-every 90] [--trace] [--json out.json]

``--trace`` runs ovq under tracemalloc (slower) and lists the Python allocations that grew most between the end of
the warm-up and the end: where a growing RSS comes from, when it comes from Python.

Needs the shared assets, Debian's python3-gi with gst-rtsp-server and mosquitto (as the tests do). Records the CPU
model and the inference precision; other load on the machine changes the CPU time, not what is measured here.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.services import Mosquitto, RtspServer, free_port, wait_port

ASSETS = ROOT.parent / "shared" / "assets"
MODELS = {"yolox_nano": "models/yolox_nano/yolox_nano.onnx", "fastestdet": "models/fastestdet/FastestDet.onnx"}
VIDEO = ASSETS / "videos" / "one-by-one-person-detection.mp4"


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def sample(pid: int) -> dict[str, float]:
    """Memory, descriptors, threads and CPU seconds of ``pid`` (children's CPU not included: ovq runs none)."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return {
        "t": time.monotonic(),
        "rss_mb": int(status["VmRSS"].split()[0]) / 1024,
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "threads": int(status["Threads"]),
        "cpu_s": (int(fields[11]) + int(fields[12])) / tick,
    }


def slope_per_hour(ts: list[float], ys: list[float]) -> float:
    """Least-squares slope of ``ys`` over ``ts`` (seconds), per hour."""
    mt, my = statistics.fmean(ts), statistics.fmean(ys)
    den = sum((t - mt) ** 2 for t in ts)
    return 0.0 if den == 0 else 3600.0 * sum((t - mt) * (y - my) for t, y in zip(ts, ys, strict=True)) / den


def viewer(port: int, stop: threading.Event, counts: dict[str, int]) -> None:
    """Watch the MJPEG stream for 5 s every 20 s, and read /metrics every 10 s: viewers come and go."""
    next_view = time.monotonic() + 20
    while not stop.wait(10):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/metrics")
            conn.getresponse().read()
            conn.close()
            counts["metrics"] += 1
            if time.monotonic() >= next_view:
                next_view = time.monotonic() + 20
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("GET", "/stream/cam.mjpg")
                response = conn.getresponse()
                end = time.monotonic() + 5
                while time.monotonic() < end and response.read(65536):
                    pass
                conn.close()  # gone mid-stream, as a closed browser tab
                counts["views"] += 1
        except OSError:
            counts["errors"] += 1


# ovq run under tracemalloc: SIGUSR1 writes a snapshot to the next path in argv[1], argv[2:] are ovq's arguments
TRACED = """
import signal, sys, tracemalloc
tracemalloc.start(12)
paths = iter(sys.argv[1].split(","))
signal.signal(signal.SIGUSR1, lambda *_: tracemalloc.take_snapshot().dump(next(paths)))
from ovq.cli import main
sys.exit(main(sys.argv[2:]))
"""


def grown(before: Path, after: Path, top: int = 15) -> list[str]:
    """The allocation sites that grew most from snapshot ``before`` to ``after``, as text lines."""
    import tracemalloc

    diff = tracemalloc.Snapshot.load(str(after)).compare_to(tracemalloc.Snapshot.load(str(before)), "traceback")
    lines = []
    for stat in diff[:top]:
        frames = [f"{f.filename.split('site-packages/')[-1]}:{f.lineno}" for f in stat.traceback[-4:]]
        lines.append(f"{stat.size_diff / 1e6:+.2f} MB ({stat.count_diff:+d} blocks) at " + " <- ".join(reversed(frames)))
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="yolox_nano")
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--drop-every", type=float, default=90.0, help="seconds between RTSP server kills")
    parser.add_argument("--trace", action="store_true", help="run ovq under tracemalloc and list what grew")
    parser.add_argument("--json", type=Path, help="write the samples and the verdict here")
    args = parser.parse_args()
    for need in (ASSETS / MODELS[args.model], VIDEO):
        if not need.is_file():
            print(f"{need}: not found (the shared assets)", file=sys.stderr)
            return 2
    for why in (RtspServer.available(), Mosquitto.available()):
        if why:
            print(why, file=sys.stderr)
            return 2
    work = Path(tempfile.mkdtemp(prefix="ovq-soak-"))
    rtsp = RtspServer(VIDEO)
    broker = Mosquitto(work / "mqtt")
    rtsp.start()
    broker.start()
    web = free_port()
    snaps = [work / "warm.snap", work / "end.snap"]
    runner = [sys.executable, "-c", TRACED, ",".join(map(str, snaps))] if args.trace else [sys.executable, "-m", "ovq"]
    cmd = [
        *runner, "run", str(ASSETS / MODELS[args.model]), "--device", "CPU", "-q",
        "--source", rtsp.url, "--name", "cam", "--source", "synth://conveyor?fps=15", "--name", "belt",
        "--track", "--out", str(work / "video.mp4"), "--segment", "30s", "--keep", "3",
        "--jsonl", str(work / "frames.jsonl"), "--jsonl-rotate", "1m", "--jsonl-keep", "3",
        "--mqtt", broker.url, "--serve", f"127.0.0.1:{web}", "--summary-json", str(work / "summary.json"),
        "--retry-max-delay", "2",
    ]
    log = (work / "ovq.log").open("w")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    stop = threading.Event()
    counts = {"metrics": 0, "views": 0, "errors": 0}
    samples: list[dict[str, float]] = []
    drops = 0
    try:
        if not wait_port(web, 120):
            print(f"ovq run did not open its live view; see {work / 'ovq.log'}", file=sys.stderr)
            return 1
        threading.Thread(target=viewer, args=(web, stop, counts), daemon=True).start()
        t0 = time.monotonic()
        next_drop = t0 + args.drop_every
        warm_s = max(120.0, args.minutes * 15)
        traced = 0
        while time.monotonic() - t0 < args.minutes * 60 and proc.poll() is None:
            samples.append(sample(proc.pid))
            if args.trace and traced == 0 and time.monotonic() - t0 >= warm_s:
                proc.send_signal(signal.SIGUSR1)
                traced = 1
            if time.monotonic() >= next_drop:
                rtsp.kill()
                time.sleep(5)
                rtsp.start()
                drops += 1
                next_drop = time.monotonic() + args.drop_every
            time.sleep(5)
            if len(samples) % 24 == 0:
                s = samples[-1]
                print(f"{(s['t'] - t0) / 60:5.1f} min: RSS {s['rss_mb']:.1f} MB, {s['fds']} fds, "
                      f"{s['threads']} threads, {drops} drops", flush=True)
    finally:
        stop.set()
        if args.trace and traced == 1 and proc.poll() is None:
            proc.send_signal(signal.SIGUSR1)
            time.sleep(20)  # a snapshot of a large heap takes a while
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        rc = proc.wait(60)
        log.close()
        rtsp.kill()
        broker.stop()
    warm = [s for s in samples if s["t"] - samples[0]["t"] >= max(120.0, args.minutes * 15)]
    if args.trace and all(p.exists() for p in snaps):
        print("Python allocations that grew most after the warm-up:")
        print("\n".join(grown(*snaps)))
    if len(warm) < 3:
        print(f"ovq run ended early (exit {rc}); see {work / 'ovq.log'}", file=sys.stderr)
        return 1
    ts = [s["t"] for s in warm]
    summary = json.loads((work / "summary.json").read_text()) if (work / "summary.json").exists() else None
    verdict = {
        "cpu": cpu_model(),
        "model": args.model,
        "inference_precision": summary.get("inference_precision") if summary else None,
        "minutes": round((samples[-1]["t"] - samples[0]["t"]) / 60, 1),
        "exit_code": rc,
        "summary_written": summary is not None,
        "rtsp_kills": drops,
        "viewer": counts,
        "rss_mb_start_end": [round(warm[0]["rss_mb"], 1), round(warm[-1]["rss_mb"], 1)],
        "rss_mb_per_hour": round(slope_per_hour(ts, [s["rss_mb"] for s in warm]), 2),
        # a plateau after the warm-up (allocator arenas filling) against a leak, which keeps its slope to the end
        "rss_mb_per_hour_last_half": round(slope_per_hour(ts[len(ts) // 2:],
                                                          [s["rss_mb"] for s in warm[len(warm) // 2:]]), 2),
        "fds_start_max_end": [warm[0]["fds"], max(s["fds"] for s in warm), warm[-1]["fds"]],
        "threads_start_max_end": [warm[0]["threads"], max(s["threads"] for s in warm), warm[-1]["threads"]],
        "cpu_percent": round(100 * (warm[-1]["cpu_s"] - warm[0]["cpu_s"]) / (ts[-1] - ts[0]), 1),
        "streams": {k: {f: v.get(f) for f in ("frames", "dropped", "reconnects", "errors")}
                    for k, v in (summary or {}).get("streams", {}).items()},
        "workdir": str(work),
    }
    print(json.dumps(verdict, indent=2))
    if args.json:
        args.json.write_text(json.dumps({"verdict": verdict, "samples": samples}, indent=1))
    return 0 if rc == 0 and summary is not None else 1


if __name__ == "__main__":
    sys.exit(main())
