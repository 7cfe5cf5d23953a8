"""``python -m cluster.tracker``: see :mod:`cluster.tracker.process`."""

import signal
import sys

# A stop signal while the modules load is noted here and honoured as soon as they have loaded (the
# server then exits quietly, code 0, before opening anything).  The handler only notes it: an exception
# raised from a handler lands in whatever code runs at that moment, and one landing in a finaliser or a
# weakref callback would be printed and dropped, the signal lost.  SIGINT first, so that once SIGTERM
# shows as caught in /proc, both are.
stop_requested: list[int] = []
for _signum in (signal.SIGINT, signal.SIGTERM):
    signal.signal(_signum, lambda signum, frame: stop_requested.append(signum))

from .process import main  # noqa: E402 - after the handlers

sys.exit(main(early_stop=stop_requested))
