"""External assets for what the lakehouse reads but does not produce.

Declaring the landing zone folders and the point-of-sale topic as assets makes the lineage
graph start where the data enters: Dagster never materializes them, Bronze depends on them.
"""

from __future__ import annotations

import dagster as dg

from retail_assets.lib.orchestration.factories import OWNERS
from retail_assets.lib.registry.tables import KAFKA_TOPIC, LANDING_SOURCES, POS_EVENT_FIELDS

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


LANDING_ZONE: dict[str, dg.AssetSpec] = {source: landing_folder(source) for source in LANDING_SOURCES}
POS_TOPIC = pos_topic()

source_assets = [*LANDING_ZONE.values(), POS_TOPIC]
