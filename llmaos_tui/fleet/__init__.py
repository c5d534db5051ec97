"""The console's headless core: links to agents, sessions, host and fleet state.

Nothing here imports Textual: the UI and the CLI subcommands are both built on it.
"""
