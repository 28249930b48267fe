"""External assets for what the lakehouse reads but does not produce.

Declaring the landing zone folders, the point-of-sale topic and the operational database as assets makes the lineage
graph start where the data enters: Dagster never materializes them, Bronze depends on them.
"""

from __future__ import annotations

import dagster as dg

from retail_assets.lib.orchestration.factories import OWNERS
from retail_assets.lib.registry.tables import (
    BRONZE_ORDERS_CHANGES,
    CAPTURED_TABLES,
    DATABASE_SCHEMA,
    KAFKA_TOPIC,
    LANDING_SOURCES,
    POS_EVENT_FIELDS,
)

GROUP = "sources"


def raw_schema(fields) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(f, "string") for f in fields])


def landing_folder(source: str) -> dg.AssetSpec:
    bronze = LANDING_SOURCES[source]
    fields = [c.name for c in bronze.columns if not c.name.startswith("_")]
    return dg.AssetSpec(
        key=["landing", source],
        group_name=GROUP,
        description=(
            f"Landing zone folder `{source}/`: {bronze.landing.formats} files dropped by upstream systems, "
            f"one folder per arrival day (`{source}/YYYY-MM-DD/`).\n\n**Grain:** {bronze.grain}."
        ),
        kinds={"file"},
        owners=OWNERS,
        tags={"layer": "source", "domain": "retail"},
        metadata={"dagster/column_schema": raw_schema(fields), "path": f"<landing root>/{source}/<YYYY-MM-DD>/"},
    )


def pos_topic() -> dg.AssetSpec:
    return dg.AssetSpec(
        key=["kafka", KAFKA_TOPIC.replace(".", "_")],
        group_name=GROUP,
        description=(
            f"Kafka topic `{KAFKA_TOPIC}`: one JSON event per point-of-sale transaction, lines nested; "
            "producers may add optional fields.\n\n**Grain:** one message per transaction."
        ),
        kinds={"kafka"},
        owners=OWNERS,
        tags={"layer": "source", "domain": "retail"},
        metadata={"dagster/column_schema": raw_schema(POS_EVENT_FIELDS), "topic": KAFKA_TOPIC},
    )


def orders_database() -> dg.AssetSpec:
    return dg.AssetSpec(
        key=["postgres", f"{DATABASE_SCHEMA}_changes"],
        group_name=GROUP,
        description=(
            f"The operational database's change table `{DATABASE_SCHEMA}.changes` (PostgreSQL): row triggers on "
            f"{', '.join(f'`{DATABASE_SCHEMA}.{t}`' for t in CAPTURED_TABLES)} record every insert, update and delete "
            "of the web shop and the CRM in one order (`change_id`).\n\n**Grain:** one row per change record."
        ),
        kinds={"postgres"},
        owners=OWNERS,
        tags={"layer": "source", "domain": "retail"},
        metadata={
            "dagster/column_schema": dg.TableSchema(
                columns=[
                    dg.TableColumn(c.name, c.type) for c in BRONZE_ORDERS_CHANGES.columns if not c.name.startswith("_")
                ]
            ),
            "table": f"{DATABASE_SCHEMA}.changes",
        },
    )


LANDING_ZONE: dict[str, dg.AssetSpec] = {source: landing_folder(source) for source in LANDING_SOURCES}
POS_TOPIC = pos_topic()
ORDERS_DATABASE = orders_database()

source_assets = [*LANDING_ZONE.values(), POS_TOPIC, ORDERS_DATABASE]
