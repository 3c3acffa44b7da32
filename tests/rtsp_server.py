"""A real RTSP server for the pipeline tests: GStreamer's gst-rtsp-server serving one H.264 MP4 file.

Run with Debian's own Python 3 (the one python3-gi binds to), not the project's interpreter::

    /usr/bin/python3 tests/rtsp_server.py --port 8554 --video VIDEO.mp4 [--mount /live] [--user U --password P]

It serves ``rtsp://127.0.0.1:PORT/live`` (loopback only), prints ``READY`` on stdout once it listens and runs
until killed. Killing the process is a real stream drop for the clients; starting it again brings the
stream back. The media is shared between clients and played in real time, as a camera would.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--video", required=True, help="an MP4 file holding H.264 video")
    parser.add_argument("--mount", default="/live")
    parser.add_argument("--user", help="with --password: clients must log in (basic authentication), as cameras ask")
    parser.add_argument("--password")
    args = parser.parse_args()
    video = Path(args.video).resolve()
    if not video.is_file():
        print(f"{video}: no such file", file=sys.stderr)
        return 2

    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    location = str(video).replace('"', '\\"')
    factory.set_launch(f'( filesrc location="{location}" ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 )')
    factory.set_shared(True)
    if args.user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "viewer")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password or ""), token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        for what in ("media.factory.access", "media.factory.construct"):
            permissions.add_permission_for_role("viewer", what, True)
        factory.set_permissions(permissions)
    server.get_mount_points().add_factory(args.mount, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr)
        return 1
    loop = GLib.MainLoop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    print("READY", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
