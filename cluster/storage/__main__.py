"""``python -m cluster.storage``: see :mod:`cluster.storage.main`."""

import sys

from cluster.storage.main import main

sys.exit(main())
