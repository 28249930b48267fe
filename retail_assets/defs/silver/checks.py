"""Silver checks: keys, schema and value rules (blocking: Gold must not build on bad rows)."""

from __future__ import annotations

from retail_assets.lib.orchestration.factories import build_table_checks, standard_checks
from retail_assets.lib.registry.tables import TABLES, Layer

silver_checks = [build_table_checks(spec, standard_checks(spec)) for spec in TABLES if spec.layer is Layer.SILVER]
