"""Dagster definitions, one package per lakehouse layer. Autoloaded by `definitions.py`."""
