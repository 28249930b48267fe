"""What provisioning creates for an environment besides the tables: schemas and volumes.

Tables are created by the pipeline on first write (`lib/engine/delta_spark.py`); the schemas
they live in, and the volumes the code server and the clusters read and write, must exist
before: a branch deployment's first run installs its wheel from the artifacts volume.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from retail_assets.lib.deployment.governance.principals import checked
from retail_assets.lib.registry.tables import TABLES, Layer, TableSpec, catalog_schema


@dataclass(frozen=True)
class Volume:
    """A managed Unity Catalog volume in one layer's schema."""

    name: str
    layer: Layer
    comment: str
    # What the pipeline's clusters do with it; data engineers read every volume.
    pipeline_privileges: tuple[str, ...]

    def schema(self, env: str) -> str:
        return catalog_schema(self.layer, env)

    def full_name(self, catalog: str, env: str) -> str:
        return f"{catalog}.{self.schema(env)}.{self.name}"

    def path(self, catalog: str, env: str) -> str:
        """The volume's folder as clusters and the Files API see it."""
        return f"/Volumes/{catalog}/{self.schema(env)}/{self.name}"


LANDING = Volume(
    "landing",
    Layer.BRONZE,
    "Landing zone: POS exports and master-data change files, as the sources drop them.",
    ("READ VOLUME",),
)
# The clusters install the wheel from here, and the step launcher stages each step's files here.
ARTIFACTS = Volume(
    "artifacts",
    Layer.BRONZE,
    "The project wheel job clusters install, and the step launcher's staged steps.",
    ("READ VOLUME", "WRITE VOLUME"),
)
# The KPI report's pages and charts (`gold/kpi_report`), beside the Gold tables they show.
REPORTS = Volume(
    "reports",
    Layer.GOLD,
    "The KPI report: a static HTML page and PNG charts per business day (gold/kpi_report).",
    ("READ VOLUME", "WRITE VOLUME"),
)
VOLUMES = (LANDING, ARTIFACTS, REPORTS)


def layers(tables: Iterable[TableSpec] = TABLES) -> list[Layer]:
    """Layers holding at least one registered table, in pipeline order."""
    tables = list(tables)
    return [layer for layer in Layer if any(t.layer is layer for t in tables)]


def schema_full_name(catalog: str, layer: Layer, env: str) -> str:
    return f"{checked(catalog, 'catalog')}.{catalog_schema(layer, env)}"


def table_parts(spec: TableSpec, catalog: str, env: str) -> tuple[str, str, str]:
    catalog_part, schema, name = spec.catalog_name(catalog, env).split(".")
    return catalog_part, schema, name


def sql_string(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def quoted(*parts: str) -> str:
    """A multi-part name in backticks; parts are validated identifiers (`checked`)."""
    return ".".join(f"`{p}`" for p in parts)
