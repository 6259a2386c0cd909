"""`python -m model_monitor`: the model-monitor command, for an environment whose scripts are not on PATH."""

import sys

from .cli import main

sys.exit(main())
