"""`python -m dam_cli` is `dam`."""

from dam_cli.main import main

raise SystemExit(main())
