"""``python -m cluster.storage``: see :mod:`cluster.storage.process`."""

import signal
import sys

# Nothing is open while the modules load: a stop signal then simply ends the process, quietly.
for _signum in (signal.SIGTERM, signal.SIGINT):
    signal.signal(_signum, lambda signum, frame: sys.exit(0))

from cluster.storage.process import main  # noqa: E402 - after the handlers

sys.exit(main())
