"""The persistent priority request queue: store (SQLite), scheduler (pure), supervisor, queue."""
