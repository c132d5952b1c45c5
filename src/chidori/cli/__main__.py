"""``python -m chidori.cli``."""

from chidori.cli import main

raise SystemExit(main())
