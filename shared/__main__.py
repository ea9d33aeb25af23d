"""``python -m shared`` is ``mlreactor``."""

from shared.ops.cli import main

raise SystemExit(main())
