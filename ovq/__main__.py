import sys

try:  # a Ctrl-C while the command line loads is one line too, as it is once main() runs
    from ovq.cli import main
except KeyboardInterrupt:
    sys.stderr.write("ovq: interrupted\n")
    sys.exit(130)

sys.exit(main())
