"""``python -m llmaos_agent`` and the zipapp entry point."""

from llmaos_agent.cli import main

raise SystemExit(main())
