"""Gold layer definitions."""
