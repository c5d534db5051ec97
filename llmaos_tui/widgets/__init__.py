"""Widgets: they draw state handed to them and post intentions; no I/O of their own."""
