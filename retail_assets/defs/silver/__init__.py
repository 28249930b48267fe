"""Silver layer definitions."""
