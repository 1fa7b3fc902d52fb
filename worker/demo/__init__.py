"""Bundled synthetic sample notes for the demo (used when no public corpus is available)."""
