"""``python -m relengine`` runs the CLI."""

from .cli import main

raise SystemExit(main())
