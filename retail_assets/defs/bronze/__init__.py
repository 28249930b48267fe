"""Bronze layer definitions."""
