"""Multi-step operations on hosts, each journaled and audited: container moves (and, as
they arrive, reprioritising and migrations). Headless: nothing here imports Textual."""
