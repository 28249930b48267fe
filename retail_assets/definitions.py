"""The code location: every layer's assets and checks, with the resources of the environment.

`RETAIL_ENV` picks the environment (`local` by default). Nothing here opens a connection: the
resources are configuration, and clients are built when a run first uses them.
"""

from __future__ import annotations

import dagster as dg

import retail_assets.defs
from retail_assets.lib.environments import resources_for
from retail_assets.lib.settings import get_environment


def build_definitions() -> dg.Definitions:
    layers = dg.components.load_defs(retail_assets.defs)
    return dg.Definitions.merge(layers, dg.Definitions(resources=resources_for(get_environment())))


defs = build_definitions()
