"""Dagster resources: configuration the assets receive, and the engine built from it."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import dagster as dg
from pydantic import Field, PrivateAttr

from retail_assets.lib.deployment.workspace import DatabricksWorkspaceResource
from retail_assets.lib.engine import DeltaSparkEngine, LakehouseEngine
from retail_assets.lib.orchestration.sensing import LakehouseView, LocalView, WorkspaceView
from retail_assets.lib.registry.tables import KAFKA_TOPIC
from retail_assets.lib.sources import database as database_lib
from retail_assets.lib.sources import kafka as kafka_lib
from retail_assets.lib.sources import spark_kafka
from retail_assets.lib.sources.kafka import MessageColumns, OffsetRange


class LakehouseResource(dg.ConfigurableResource):
    """Where the lakehouse lives and how records are judged.

    `create_engine` is the one place an environment's storage technology is chosen; the assets
    only ever see the `LakehouseEngine` interface.
    """

    root: str = Field(description="Root folder (local) under which `<layer>/<table>` Delta tables live.")
    landing_root: str = Field(description="Root of the landing zone (`sales/`, `customers/`, …).")
    lateness_days: int = Field(default=2, description="Lateness window L in days (SPEC §4).")
    landing_stable_seconds: float = Field(
        default=0.0, description="A landing file counts only once unmodified for this long (0 = immediately)."
    )
    max_reject_rate: float = Field(
        default=0.10, description="Share of quarantined records above which the reject-rate check fails."
    )
    inferred_wait_days: int = Field(
        default=7,
        description="Days an inferred dimension member may wait for its master record before its check warns.",
    )
    table_engine: Literal["delta_rs", "delta_spark"] = Field(
        default="delta_rs",
        description="Who writes the Delta tables under `root`: delta-rs via Arrow, or Delta Lake's Spark jar (the engine Databricks uses) through Spark's catalog.",
    )
    deployment_env: str = Field(
        default="dev", description="The `{env}` of the `{env}_{layer}` schemas the delta_spark engine names tables in."
    )

    _engine: LakehouseEngine | None = PrivateAttr(default=None)

    def create_engine(self) -> LakehouseEngine:
        if self.table_engine == "delta_spark":
            return DeltaSparkEngine.local(self.root, self.deployment_env)
        from retail_assets.lib.engine.local import DeltaRsEngine  # noqa: PLC0415 - delta-rs is local only

        return DeltaRsEngine(self.root)

    @property
    def engine(self) -> LakehouseEngine:
        if self._engine is None:
            self._engine = self.create_engine()
        return self._engine

    @property
    def landing_path(self) -> Path:
        return Path(self.landing_root)

    def view(self, workspace: DatabricksWorkspaceResource | None = None) -> LakehouseView:
        """What the sensors read: the landing folder on disk and Bronze through the engine."""
        return LocalView(self.engine, self.landing_root)


class DatabricksLakehouseResource(LakehouseResource):
    """The lakehouse in Unity Catalog: `{catalog}.{env}_{layer}.{table}` through delta-spark.

    Managed tables by default; with `root`, external tables at `<root>/<layer>/<table>` on a
    filesystem the cluster mounts (the Databricks emulator of the tests keeps them on its disk).
    """

    root: str = Field(
        default="", description="Folder of external tables (`<layer>/<table>`); empty: Unity Catalog managed tables."
    )
    catalog: str = Field(description="Unity Catalog catalog holding the `{env}_{layer}` schemas.")
    deployment_env: str = Field(description="Deployment environment name: the `{env}` of `{env}_{layer}` schemas.")
    inferred_wait_days: int = Field(
        default=7,
        description="Days an inferred dimension member may wait for its master record before its check warns.",
    )
    table_engine: Literal["delta_spark"] = Field(default="delta_spark")

    def create_engine(self) -> LakehouseEngine:
        return DeltaSparkEngine(self.catalog, self.deployment_env, root=self.root or None)

    def view(self, workspace: DatabricksWorkspaceResource | None = None) -> LakehouseView:
        """The sensors run in the code server, which reaches the workspace only through its APIs:
        the landing volume through the Files API, Bronze through a SQL warehouse."""
        if workspace is None:
            raise ValueError("the databricks environment's sensors need the `databricks` workspace resource")
        return WorkspaceView(workspace, self.landing_root, self.catalog, self.deployment_env)


class KafkaResource(dg.ConfigurableResource):
    """Connection settings of the point-of-sale topic; secrets come from `dg.EnvVar`.

    Works unchanged against the local loopback broker and a managed cluster such as
    Confluent Cloud (`security_protocol="SASL_SSL"`, `sasl_mechanism="PLAIN"`).
    """

    bootstrap_servers: str = Field(description="Comma-separated host:port list.")
    topic: str = Field(default=KAFKA_TOPIC)
    security_protocol: str = Field(default="PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.")
    sasl_mechanism: str | None = Field(default=None, description="PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 …")
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_ca_location: str | None = None
    request_timeout_s: float = Field(default=10.0, description="Bound on every metadata/watermark call.")
    read_timeout_s: float = Field(default=120.0, description="Bound on reading one run's offset ranges.")
    reader: Literal["confluent", "spark"] = Field(
        default="confluent",
        description="How offset ranges are read: a confluent-kafka consumer, or Spark's Kafka batch source (the default on Databricks).",
    )
    shaded_prefix: str = Field(
        default="",
        description="Package prefix of the Kafka client inside the cluster's Spark (`kafkashaded.` on Databricks runtimes, none for Apache Spark); used in SASL JAAS configs.",
    )

    def read_ranges(
        self, ranges: Sequence[OffsetRange], *, known_watermarks: Mapping[int, tuple[int, int]] | None = None
    ) -> Iterator[MessageColumns]:
        """Every message of the ranges exactly once, in batches of message columns, read by a
        confluent-kafka consumer here (`reader="confluent"`)."""
        return kafka_lib.read_ranges(
            self.client_config(),
            self.topic,
            list(ranges),
            timeout=self.read_timeout_s,
            known_watermarks=known_watermarks,
        )

    def parse_on_spark(
        self,
        spark: Any,
        ranges: Sequence[OffsetRange],
        parse: Callable[[Iterator[MessageColumns]], Iterator[Any]],
        schema: str,
        *,
        known_watermarks: Mapping[int, tuple[int, int]] | None = None,
    ) -> Any:
        """`parse(batches)` over every message of the ranges exactly once, on Spark's executors
        through its Kafka batch source (`reader="spark"`): a lazy DataFrame of `schema` rows.
        Ranges the broker no longer holds fail here, before Spark is asked."""

        kafka_lib.check_retained(
            self.client_config(),
            self.topic,
            kafka_lib.merge_ranges(list(ranges)),
            self.request_timeout_s,
            known_watermarks,
        )
        return spark_kafka.parse_ranges(
            spark, self.client_config(), self.topic, ranges, parse, schema, shaded_prefix=self.shaded_prefix
        )

    def client_config(self) -> dict[str, object]:
        config: dict[str, object] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
            "socket.timeout.ms": int(self.request_timeout_s * 1000),
            # Bounded reconnects so an unreachable broker fails fast instead of hanging a tick.
            "reconnect.backoff.max.ms": 1000,
        }
        if self.sasl_mechanism:
            config["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username is not None:
            config["sasl.username"] = self.sasl_username
        if self.sasl_password is not None:
            config["sasl.password"] = self.sasl_password
        if self.ssl_ca_location:
            config["ssl.ca.location"] = self.ssl_ca_location
        return config


class NotConfigured(RuntimeError):
    """No operational database is configured for this deployment."""


class DatabaseResource(dg.ConfigurableResource):
    """The operational database (PostgreSQL) Bronze reads changes from; secrets from `dg.EnvVar`.

    One JDBC URL serves both readers: Spark's JDBC source reads the rows (locally with the driver
    from `lib/engine/jvm.py`, on Databricks with the runtime's), psycopg runs the fence and the
    sensor's look at the newest change. An empty `jdbc_url` means the deployment has no database:
    the asset fails saying so and the sensor skips.
    """

    jdbc_url: str = Field(default="", description="jdbc:postgresql://host:port/database; empty: no database.")
    user: str = Field(default="", description="Role that reads and locks the change table.")
    password: str = Field(default="", description="Its password.")
    source_schema: str = Field(default="orders", description="Schema of the business tables and `changes`.")
    fetch_size: int = Field(default=10_000, description="Rows per round trip of the JDBC read.")
    max_partitions: int = Field(default=4, description="Parallel JDBC reads of a large change range.")
    connect_timeout_s: float = Field(default=10.0, description="Bound on opening a connection.")
    read_timeout_s: float = Field(default=600.0, description="Bound on one run's read of its change range.")
    lock_timeout_s: float = Field(
        default=30.0, description="How long the fence waits for transactions still writing changes."
    )

    @property
    def configured(self) -> bool:
        return bool(self.jdbc_url.strip())

    @property
    def where(self) -> str:
        """The database as the messages name it (no credentials, no parameters)."""
        return self.jdbc_url.split("?")[0] or "no database (RETAIL_DB_JDBC_URL is not set)"

    def require(self) -> None:
        if not self.configured:
            raise NotConfigured(
                "no operational database is configured: set RETAIL_DB_JDBC_URL (jdbc:postgresql://host:port/database), "
                "RETAIL_DB_USER and RETAIL_DB_PASSWORD, then run this asset again"
            )

    def connect(self, *, statement_timeout_s: float | None = None):
        """A psycopg connection (a context manager) whose failures say what they are."""
        self.require()
        return database_lib.connect(
            self.jdbc_url,
            self.user,
            self.password,
            timeout_s=self.connect_timeout_s,
            statement_timeout_s=statement_timeout_s,
        )

    def source_max(self, *, timeout_s: float | None = None) -> int:
        """The highest committed change_id, read cheaply (no lock)."""
        with self.connect(statement_timeout_s=timeout_s or self.connect_timeout_s) as conn:
            return database_lib.source_max(conn, self.source_schema)

    def load_changes(self, spark: Any, changes: database_lib.ChangeRange) -> Any:
        """The changes of `changes` through Spark's JDBC source, lazily."""
        options = database_lib.jdbc_options(
            self.jdbc_url,
            self.user,
            self.password,
            self.source_schema,
            changes,
            fetch_size=self.fetch_size,
            connect_timeout_s=self.connect_timeout_s,
            read_timeout_s=self.read_timeout_s,
            max_partitions=self.max_partitions,
        )
        return database_lib.load_changes(spark, options)
