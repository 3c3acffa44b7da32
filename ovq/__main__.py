import sys

from ovq.cli import main

sys.exit(main())
