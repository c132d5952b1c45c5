"""`python -m chidori` is the `chidori` command."""

from chidori.cli import main

raise SystemExit(main())
