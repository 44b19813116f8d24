import sys

from thermosgd.cli import main

sys.exit(main())
