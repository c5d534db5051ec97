"""Collectors: each reads one part of the host and returns protocol Structs."""
