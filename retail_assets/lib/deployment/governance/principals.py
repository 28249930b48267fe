"""Who is granted what: one set of principals per deployment environment.

Groups are account groups named after the environment, so a branch deployment (`pr_<n>`) never
shares a principal with `prod`:

- `{env}_analysts` — query Gold;
- `{env}_data_engineers` — read every layer (they debug quarantine and lineage) and see Gold's
  personal data unmasked;
- `{env}_store_managers` — see the store aggregates of their own region only: a manager belongs
  to this group and to `{env}_store_managers_<region>` (region lower-cased, non-alphanumerics as
  `_`), which the row filter checks;
- the pipeline — the service principal the job clusters run as, referenced by its application
  id (`RETAIL_DATABRICKS_PIPELINE_PRINCIPAL`). Unset, grants go to the account group
  `{env}_retail_pipeline`, which must then hold that service principal.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from retail_assets.lib import settings

PIPELINE_PRINCIPAL_ENV = "RETAIL_DATABRICKS_PIPELINE_PRINCIPAL"

_NAME = re.compile(r"^[A-Za-z0-9_]+$")


def checked(name: str, what: str) -> str:
    """A schema, catalog or group name safe to put in SQL unquoted-in-quotes: letters, digits, `_`."""
    if not _NAME.match(name or ""):
        raise ValueError(f"{what} name must be letters, digits and underscores, got {name!r}")
    return name.lower()


def application_id(value: str) -> str | None:
    """`value` as a canonical application id (UUID), or None when it is not one."""
    try:
        return str(uuid.UUID(value.strip()))
    except (ValueError, AttributeError):
        return None


@dataclass(frozen=True)
class Principals:
    env: str
    analysts: str
    data_engineers: str
    store_managers: str
    pipeline: str
    # True: `pipeline` is a service principal's application id; False: an account group.
    pipeline_is_application: bool

    @classmethod
    def for_env(cls, env: str, pipeline: str | None = None) -> Principals:
        """The principals of one environment; `pipeline` (an application id, or an account group
        name) defaults to `RETAIL_DATABRICKS_PIPELINE_PRINCIPAL`, then to `{env}_retail_pipeline`."""
        env = checked(env, "environment")
        configured = (pipeline if pipeline is not None else settings.env(PIPELINE_PRINCIPAL_ENV, "")).strip()
        app_id = application_id(configured) if configured else None
        if configured and app_id is None:
            checked(configured, f"{PIPELINE_PRINCIPAL_ENV} (an application id or an account group)")
        return cls(
            env=env,
            analysts=f"{env}_analysts",
            data_engineers=f"{env}_data_engineers",
            store_managers=f"{env}_store_managers",
            pipeline=app_id or (configured.lower() if configured else f"{env}_retail_pipeline"),
            pipeline_is_application=app_id is not None,
        )

    @property
    def pipeline_note(self) -> str:
        if self.pipeline_is_application:
            return f"pipeline = service principal {self.pipeline}"
        return f"pipeline = account group {self.pipeline} ({PIPELINE_PRINCIPAL_ENV} unset or not an application id: that group must hold the clusters' service principal)"

    def pipeline_predicate(self) -> str:
        """SQL that is true when the pipeline itself runs the query. A service principal's
        `current_user()` is its application id; a group is checked by membership."""
        if self.pipeline_is_application:
            return f"current_user() = '{self.pipeline}'"
        return f"is_account_group_member('{self.pipeline}')"

    def unrestricted_predicate(self, *, analysts: bool = False) -> str:
        """SQL that is true for whoever sees Gold's data unmasked / unfiltered: the data engineers
        and the pipeline (its checks scan and reconcile whole tables, and a partition overwrite
        must see every row it replaces), optionally the analysts."""
        terms = [f"is_account_group_member('{self.data_engineers}')"]
        if analysts:
            terms.append(f"is_account_group_member('{self.analysts}')")
        terms.append(self.pipeline_predicate())
        return " OR ".join(terms)
