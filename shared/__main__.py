"""``python -m shared`` is ``mlreactor``."""

from shared.cli import main

raise SystemExit(main())
