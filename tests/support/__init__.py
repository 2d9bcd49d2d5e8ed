"""Shared test helpers (validators that run the backends' own parsers)."""
