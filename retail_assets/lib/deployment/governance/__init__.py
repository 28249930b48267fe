"""Unity Catalog governance as code, per deployment environment, generated from the table registry.

- `principals` — who: analysts, data engineers, store managers (account groups named after the
  environment) and the pipeline's service principal (by application id);
- `securables` — what provisioning creates besides tables: the `{env}_{layer}` schemas and the
  landing and artifacts volumes;
- `grants` — who may do what on each of them (analysts read Gold only);
- `policies` — column masks on the personal data that remains in Gold and a row filter that
  shows store managers their own region;
- `sharing` — the Delta Sharing share of Gold aggregates for partners and its recipients.

Each module generates the SQL a reviewer reads (`retail-assets grants`, `retail-assets provision
--dry-run`); `steps` applies the same declarations through the workspace's REST APIs and its
SQL warehouse, each checking before it changes, and `retail_assets.lib.deployment.provisioning` orders them
into one environment's plan.
"""
