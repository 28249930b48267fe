"""One resource mapping per environment, with identical keys."""

from __future__ import annotations

from typing import Any

import dagster as dg

from retail_assets.lib import settings
from retail_assets.lib.resources import KafkaResource, LakehouseResource
from retail_assets.lib.settings import Environment


def local_resources() -> dict[str, Any]:
    root = settings.local_data_root()
    return {
        "lakehouse": LakehouseResource(
            root=str(root / "lakehouse"),
            landing_root=str(root / "landing"),
            lateness_days=settings.lateness_days(),
            landing_stable_seconds=float(settings.env("RETAIL_LANDING_STABLE_SECONDS", "0")),
        ),
        "kafka": KafkaResource(
            bootstrap_servers=settings.env("RETAIL_KAFKA_BOOTSTRAP", "127.0.0.1:19092"),
            security_protocol=settings.env("RETAIL_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT"),
            sasl_mechanism=settings.env("RETAIL_KAFKA_SASL_MECHANISM", "") or None,
            sasl_username=dg.EnvVar("RETAIL_KAFKA_SASL_USERNAME") if settings.env("RETAIL_KAFKA_SASL_USERNAME", "") else None,
            sasl_password=dg.EnvVar("RETAIL_KAFKA_SASL_PASSWORD") if settings.env("RETAIL_KAFKA_SASL_PASSWORD", "") else None,
        ),
    }


def resources_for(environment: Environment) -> dict[str, Any]:
    if environment is Environment.LOCAL:
        return local_resources()
    raise NotImplementedError(f"the {environment.value} environment is not configured in this version")
