"""Kafka plumbing: client configuration and per-partition offset tracking."""
