"""``python -m genserve``: the ``genserve`` command."""

from genserve.cli import main

raise SystemExit(main())
