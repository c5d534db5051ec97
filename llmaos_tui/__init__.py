"""llmaos-tui: one terminal console for a fleet of hosts running LLM workloads."""

__version__ = "0.1.0"
