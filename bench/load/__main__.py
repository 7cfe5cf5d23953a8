"""``python -m bench.load``."""

from .cli import main

raise SystemExit(main())
