import os
import sys

try:  # a Ctrl-C while the command line loads is one line too, as it is once main() runs
    from ovq.cli import entry
except KeyboardInterrupt:
    sys.stderr.write("ovq: interrupted\n")
    sys.stderr.flush()
    os._exit(130)

entry()
