"""The Databricks deployment (SPEC §6, §12): what the `databricks` environment adds to the asset
code, which is the same everywhere.

- `cluster`: the clusters Spark steps run on (runtime, access mode, reuse) and what reaches them;
- `launcher`: dagster-databricks' step launcher, staging through a Unity Catalog volume;
- `workspace`: the workspace's REST APIs as the code server reaches them (Files API, SQL
  warehouse, Unity Catalog) — the sensors and provisioning use nothing else;
- `provisioning`: one environment set up idempotently, branch deployments included;
- `governance`: grants, column masks, row filter and the partner share, generated from the
  table registry per environment.
"""
