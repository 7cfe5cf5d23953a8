"""``python -m cluster.cli``: the ``trunkstore`` command."""

import sys

from cluster.cli import main

sys.exit(main())
