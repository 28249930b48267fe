"""The code location: every layer's assets and checks, with the resources of the environment.

`RETAIL_ENV` picks the environment (`local` by default). Nothing here opens a connection: the
resources are configuration, and clients are built when a run first uses them.
"""

from __future__ import annotations

import warnings

import dagster as dg

import retail_assets.defs
from retail_assets.lib.orchestration.environments import resources_for
from retail_assets.lib.settings import Environment, get_environment, sensors_running_by_default

# Locally the steps of a run share its process and so one Spark JVM: starting a JVM per step
# costs more than the steps of a daily partition do. On Databricks the step launcher submits
# each step to a job cluster, and independent steps run side by side.
EXECUTORS = {Environment.LOCAL: dg.in_process_executor, Environment.DATABRICKS: dg.multiprocess_executor}

AUTOMATION_SENSOR = "downstream_automation"
AUTOMATION_INTERVAL_S = 15


def automation_sensor() -> dg.AutomationConditionSensorDefinition:
    """Evaluates every table's automation condition: once Bronze partitions land, the Silver,
    quarantine, dimension, fact and aggregate partitions that read them are requested, each run
    tagged with the evaluation that explains why it started."""
    return dg.AutomationConditionSensorDefinition(
        AUTOMATION_SENSOR,
        target=dg.AssetSelection.all(),
        minimum_interval_seconds=AUTOMATION_INTERVAL_S,
        default_status=dg.DefaultSensorStatus.RUNNING
        if sensors_running_by_default()
        else dg.DefaultSensorStatus.STOPPED,
        description="Materializes every table below Bronze when the partitions it reads were updated and their blocking checks passed.",
    )


def build_definitions() -> dg.Definitions:
    # Every module under defs/ holds plain definitions (no YAML components), so the package
    # loader gives the same Definitions as `load_defs` without building the JSON schema of every
    # installed component type for the UI's component catalog: ~0.7 s off every process that
    # loads the code location (webserver, daemon, each run worker, each sensor tick's server).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        layers = dg.load_definitions_from_package_module(retail_assets.defs)
    return dg.Definitions.merge(
        layers,
        dg.Definitions(
            sensors=[automation_sensor()],
            resources=resources_for(get_environment()),
            executor=EXECUTORS[get_environment()],
        ),
    )


defs = build_definitions()
