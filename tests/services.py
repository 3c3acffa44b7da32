"""Real services for the pipeline tests, all on 127.0.0.1 and free ports.

- :class:`RtspServer`: GStreamer's gst-rtsp-server (Debian packages, via ``/usr/bin/python3 tests/rtsp_server.py``)
  serving an MP4 file as ``rtsp://127.0.0.1:PORT/live``; ``kill()``/``start()`` is a real stream drop and
  return, ``pause()``/``resume()`` (SIGSTOP/SIGCONT) a real stall.
- :class:`Mosquitto`: Debian's MQTT broker, anonymous or with a password file, plain or TLS (:func:`make_tls_files`:
  a CA and a server certificate made with openssl).
- :class:`MjpegServer`: a small HTTP server (in this process) streaming JPEG frames of a video as
  ``multipart/x-mixed-replace``, the way IP cameras serve MJPEG.

Each ``available()`` says why a service cannot run here, so tests skip with that reason.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.server
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Self

import cv2

TESTS = Path(__file__).resolve().parent
SYSTEM_PYTHON = "/usr/bin/python3"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
        time.sleep(0.05)
    return False


class RtspServer:
    """gst-rtsp-server in a subprocess of Debian's Python 3."""

    def __init__(self, video: Path, port: int | None = None, *, login: tuple[str, str] | None = None) -> None:
        self.video = Path(video)
        self.port = port or free_port()
        self.url = f"rtsp://127.0.0.1:{self.port}/live"  # without the login, which clients add
        self.login = login  # (user, password) the server asks for, basic authentication
        self.proc: subprocess.Popen[str] | None = None

    @staticmethod
    def available() -> str | None:
        """None when the server can run here, else why not."""
        if not Path(SYSTEM_PYTHON).exists():
            return f"{SYSTEM_PYTHON} not found (the RTSP server needs Debian's python3-gi)"
        check = subprocess.run(
            [SYSTEM_PYTHON, "-c", ("import gi; gi.require_version('GstRtspServer', '1.0'); "
                                   "from gi.repository import GstRtspServer")],
            capture_output=True, text=True, timeout=30, check=False,
        )
        if check.returncode != 0:
            return ("gst-rtsp-server for python3-gi is not installed "
                    "(apt-get install python3-gi gir1.2-gst-rtsp-server-1.0)")
        return None

    def start(self, timeout: float = 15.0) -> None:
        self.proc = subprocess.Popen(
            [SYSTEM_PYTHON, str(TESTS / "rtsp_server.py"), "--port", str(self.port), "--video", str(self.video),
             *(["--user", self.login[0], "--password", self.login[1]] if self.login else [])],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        line = self.proc.stdout.readline()
        if line.strip() != "READY" or not wait_port(self.port, timeout):
            err = self.proc.stderr.read() if self.proc.poll() is not None else ""
            self.kill()
            raise RuntimeError(f"RTSP server did not start on port {self.port}: {line.strip()} {err.strip()}")

    def kill(self) -> None:
        """SIGKILL: the server vanishes as a crashed camera would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def pause(self) -> None:
        """SIGSTOP: connections stay open but no packet flows (a stall)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


@dataclasses.dataclass(frozen=True)
class TlsFiles:
    ca: Path  # the CA's certificate
    cert: Path  # a certificate signed by that CA for 127.0.0.1
    key: Path


def make_tls_files(folder: Path, name: str = "ca") -> TlsFiles:
    """A fresh CA and a server certificate it signed for 127.0.0.1 (openssl, as a user would make them)."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (folder / f"{name}{s}" for s in ("-ca.key", "-ca.pem", ".key", ".csr", ".pem"))
    ext = folder / f"{name}.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=ovq test {name}",
            "-keyout", str(ca_key), "-out", str(ca))
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(csr))
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
            "-days", "2", "-extfile", str(ext), "-out", str(cert))
    return TlsFiles(ca=ca, cert=cert, key=key)


class Mosquitto:
    """Debian's mosquitto broker on 127.0.0.1; ``users`` = {name: password} turns anonymous access off."""

    def __init__(self, workdir: Path, *, port: int | None = None, users: dict[str, str] | None = None,
                 tls: TlsFiles | None = None) -> None:
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.users = users
        self.tls = tls
        self.url = f"{'mqtts' if tls else 'mqtt'}://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> str | None:
        if not shutil.which("mosquitto"):
            return "mosquitto is not installed (apt-get install mosquitto)"
        return None

    def _config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        lines = [f"listener {self.port} 127.0.0.1"]
        if os.geteuid() == 0:  # as root the broker would switch to user 'mosquitto', who cannot read pytest's tmp
            lines.append("user root")
        if self.tls:
            lines += [f"cafile {self.tls.ca}", f"certfile {self.tls.cert}", f"keyfile {self.tls.key}"]
        if self.users:
            pwfile = self.workdir / "passwd"
            pwfile.write_text("")
            for name, password in self.users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(pwfile), name, password], check=True, capture_output=True)
            os.chmod(pwfile, 0o600)
            lines += ["allow_anonymous false", f"password_file {pwfile}"]
        else:
            lines.append("allow_anonymous true")
        conf = self.workdir / f"mosquitto-{self.port}.conf"
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def start(self) -> None:
        conf = self._config()
        self.proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if not wait_port(self.port, 10):
            self.stop()
            raise RuntimeError(f"mosquitto did not start on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class MjpegServer:
    """HTTP MJPEG stream of a video's frames at ``fps`` (looping), ``http://127.0.0.1:PORT/stream.mjpg``."""

    def __init__(self, video: Path, *, fps: float = 10.0, max_frames: int = 200) -> None:
        cap = cv2.VideoCapture(str(video))
        self.jpegs: list[bytes] = []
        while len(self.jpegs) < max_frames:
            ok, frame = cap.read()
            if not ok:
                break
            self.jpegs.append(cv2.imencode(".jpg", frame)[1].tobytes())
        cap.release()
        self.fps = fps
        self._stop = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] != "/stream.mjpg":  # a query (?user=&pwd=) as cameras take
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                i = 0
                try:
                    while not server._stop.is_set():
                        jpg = server.jpegs[i % len(server.jpegs)]
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n")
                        self.wfile.write(f"Content-Length: {len(jpg)}\r\n\r\n".encode())
                        self.wfile.write(jpg + b"\r\n")
                        i += 1
                        time.sleep(1.0 / server.fps)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/stream.mjpg"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
