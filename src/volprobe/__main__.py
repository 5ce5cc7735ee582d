import sys

from volprobe.cli import main

sys.exit(main())
