"""Datasets returning the batch dict of docs/ARCHITECTURE.md: ``synthetic`` (default) and ``nocs``."""
