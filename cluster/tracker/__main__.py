"""``python -m cluster.tracker``: see :mod:`cluster.tracker.main`."""

import sys

from .main import main

sys.exit(main())
