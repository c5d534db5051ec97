"""``python -m llmaos_tui``."""

from llmaos_tui.cli import main

raise SystemExit(main())
