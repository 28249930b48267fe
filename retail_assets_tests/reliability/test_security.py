"""Security: secrets only through `dg.EnvVar` and never in a run's records, no raw PII in Gold,
no way out of the landing root, SASL_SSL for a managed Kafka, Unity Catalog grants as code."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest

from retail_assets.defs.bronze.assets import pos_transactions_compute
from retail_assets.lib.deployment.governance import grants
from retail_assets.lib.engine import DeltaRsEngine
from retail_assets.lib.orchestration.environments import kafka_resource, local_resources
from retail_assets.lib.orchestration.factories import build_table_asset
from retail_assets.lib.orchestration.resources import KafkaResource
from retail_assets.lib.registry.tables import (
    BRONZE_POS_TRANSACTIONS,
    BRONZE_SALES_FILES,
    KAFKA_TOPIC,
    SILVER_CUSTOMERS,
    TABLES,
    Layer,
)
from retail_assets.lib.sources import kafka as kafka_lib
from retail_assets.lib.sources.landing import scan_landing
from retail_assets.lib.transforms.gold import integrity
from retail_assets.tooling.broker import LocalBroker, ensure_topic, produce
from retail_assets.tooling.cli import main as cli_main
from retail_assets_tests.reliability import hostile
from retail_assets_tests.simulated_week import build_defs

pytestmark = pytest.mark.reliability

POS_KEY = dg.AssetKey(["bronze", "pos_transactions"])


# ---------------------------------------------------------------------------------------------
# Secrets
# ---------------------------------------------------------------------------------------------


def test_kafka_secrets_are_env_vars_in_every_environment(monkeypatch):
    monkeypatch.setenv("RETAIL_KAFKA_SASL_USERNAME", "svc-retail")
    monkeypatch.setenv("RETAIL_KAFKA_SASL_PASSWORD", "not-in-config")
    resource = kafka_resource()
    # the resource holds the variable's name, not its value; Dagster resolves it in the run
    assert isinstance(resource.sasl_password, dg.EnvVar) and resource.sasl_password == "RETAIL_KAFKA_SASL_PASSWORD"
    assert isinstance(resource.sasl_username, dg.EnvVar)
    assert "not-in-config" not in repr(resource)


def _everything_recorded(instance: dg.DagsterInstance, run_id: str) -> str:
    """The run, its job snapshot, every event of its log (materialization metadata included)."""
    run = instance.get_run_by_id(run_id)
    parts = [dg.serialize_value(run), json.dumps(run.run_config, default=str), json.dumps(run.tags)]
    parts.append(dg.serialize_value(instance.get_job_snapshot(run.job_snapshot_id)))
    parts += [dg.serialize_value(entry) for entry in instance.all_logs(run_id)]
    return "\n".join(parts)


def test_planted_token_never_reaches_event_log_or_metadata(tmp_path, monkeypatch, capfd):
    token = f"tok-{uuid.uuid4().hex}"
    used: list[dict] = []
    real_watermarks = kafka_lib.watermarks

    def watermarks(config, topic, **kw):
        used.append(dict(config))
        return real_watermarks(config, topic, **kw)

    monkeypatch.setattr(kafka_lib, "watermarks", watermarks)
    instance = dg.DagsterInstance.ephemeral()
    run_ids = []
    with LocalBroker() as broker:
        ensure_topic(broker.bootstrap_servers, KAFKA_TOPIC, partitions=1)
        produce(broker.bootstrap_servers, KAFKA_TOPIC, hostile.kafka_messages()[0][:5])
        # the loopback broker speaks PLAINTEXT, which ignores SASL credentials: the run still
        # resolves and hands the secret to the client, which is what must not leak
        defs = build_defs(
            tmp_path,
            broker.bootstrap_servers,
            monkeypatch,
            RETAIL_KAFKA_SASL_USERNAME="svc-retail",
            RETAIL_KAFKA_SASL_PASSWORD=token,
        )
        job = defs.resolve_implicit_global_asset_job_def()
        ok = job.execute_in_process(asset_selection=[POS_KEY], partition_key=hostile.D, instance=instance)
        assert ok.success and ok.get_asset_materialization_events()
        run_ids.append(ok.run_id)
    # and a failing run (the broker is gone): error messages and stack traces are recorded too;
    # the asset without its retry policy fails at once, through the same code
    unretried = build_table_asset(
        spec=BRONZE_POS_TRANSACTIONS, upstream=[], compute=pos_transactions_compute, resources=frozenset({"kafka"})
    )
    failed = dg.materialize(
        [unretried], resources=local_resources(), partition_key=hostile.D, instance=instance, raise_on_error=False
    )
    assert not failed.success
    run_ids.append(failed.run_id)

    assert used and all(c.get("sasl.password") == token for c in used), "the secret must reach the Kafka client"
    for run_id in run_ids:
        recorded = _everything_recorded(instance, run_id)
        assert token not in recorded
    out, err = capfd.readouterr()
    assert token not in out and token not in err


# ---------------------------------------------------------------------------------------------
# PII
# ---------------------------------------------------------------------------------------------


def test_no_gold_table_holds_raw_email_or_phone(hostile_lake):
    engine = hostile_lake.engine
    customers = engine.read_arrow(SILVER_CUSTOMERS, columns=["email", "phone"])
    emails = {e.strip().lower() for e in customers["email"].to_pylist() if e}
    phones = {"".join(ch for ch in p if ch.isdigit()) for p in customers["phone"].to_pylist() if p}
    assert emails == {"ada.lovelace@example.com", "alan.turing@example.org"} and len(phones) == 2
    gold = [t for t in TABLES if t.layer is Layer.GOLD]
    assert {"dim_customer", "fact_sales", "agg_customer_lifetime_value"} <= {t.name for t in gold}
    raw_phones = engine.read(SILVER_CUSTOMERS, columns=["phone"])
    for spec in gold:
        table = engine.read_arrow(spec)
        assert table.num_rows > 0, f"{spec.key} is empty: nothing was proven"
        for name in table.column_names:
            if not pa.types.is_string(table.schema.field(name).type):
                continue
            for value in set(table[name].to_pylist()) - {None}:
                lowered = value.strip().lower()
                assert not any(e in lowered for e in emails), f"{spec.key}.{name} holds a raw e-mail"
                digits = "".join(ch for ch in value if ch.isdigit())
                assert not any(p in digits for p in phones), f"{spec.key}.{name} holds a raw phone number"
        assert integrity.no_raw_pii(engine.read(spec), raw_phones).passed, spec.key
    # hashed and masked, not dropped: analysts can still join and recognise a customer
    dim = engine.read_arrow(next(t for t in gold if t.name == "dim_customer")).to_pylist()
    ada = [r for r in dim if r["customer_id"] == "C001"]
    assert ada and all(
        r["email_masked"].startswith("a***@") and r["email_hash"] and len(r["email_hash"]) == 64 for r in ada
    )
    assert all(r["phone_masked"].endswith("78") and set(r["phone_masked"][:-2]) == {"*"} for r in ada)


def test_raw_pii_check_fails_on_a_leaking_table(spark):
    leaking = spark.createDataFrame([("C001", "ada.lovelace@example.com")], "customer_id string, contact string")
    phones = spark.createDataFrame([("+33 6 12 34 56 78",)], "phone string")
    assert not integrity.no_raw_pii(leaking, phones).passed


# ---------------------------------------------------------------------------------------------
# Landing root
# ---------------------------------------------------------------------------------------------


def test_landing_names_cannot_escape_the_landing_root(tmp_path, monkeypatch):
    root = tmp_path / "landing"
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.csv"
    secret.write_text(hostile.SALES_HEADER + "\n" + hostile.sales_line("LEAK") + "\n")
    day = root / "sales" / hostile.D
    day.mkdir(parents=True)
    legit = day / "pos_ok.csv"
    legit.write_text(hostile.SALES_HEADER + "\n" + hostile.sales_line("OK-1") + "\n")
    (day / "link_to_secret.csv").symlink_to(secret)  # a file symlink
    (day / "linked_dir").symlink_to(outside, target_is_directory=True)  # a directory symlink
    (root / "sales" / "..hidden_parent.csv").write_text("x\n")  # `..` prefix: hidden
    for name in ("evil\n.csv", "bell\x07.csv", "esc\x1b[31m.csv", "del\x7f.csv", "nul\u0085.csv"):
        (day / name).write_text(hostile.SALES_HEADER + "\n" + hostile.sales_line("CTRL") + "\n")
    (day / "bad\udcff.csv".encode("utf-8", "surrogateescape").decode("utf-8", "surrogateescape")).write_bytes(b"x")

    found = scan_landing(root, "sales")
    assert [f.relative for f in found] == [f"sales/{hostile.D}/pos_ok.csv"]
    # a source name that is a path: relative escapes, absolute paths, the root itself as a link
    assert scan_landing(root, "../outside") == []
    assert scan_landing(root, str(outside)) == []
    (root / "customers").symlink_to(outside, target_is_directory=True)
    assert scan_landing(root, "customers") == []

    # end to end: Bronze holds only the legitimate file, every source path inside the root
    defs = build_defs(tmp_path, "127.0.0.1:9", monkeypatch)
    monkeypatch.setenv("RETAIL_DATA_ROOT", str(tmp_path))
    defs.resolve_implicit_global_asset_job_def().execute_in_process(
        asset_selection=[dg.AssetKey(["bronze", "sales_files"])],
        partition_key=hostile.D,
        instance=dg.DagsterInstance.ephemeral(),
    )
    held = DeltaRsEngine(tmp_path / "lakehouse").read_arrow(
        BRONZE_SALES_FILES, columns=["_source_file", "transaction_id"]
    )
    assert held["transaction_id"].to_pylist() == ["OK-1"]
    for name in held["_source_file"].to_pylist():
        assert ".." not in Path(name).parts and not os.path.isabs(name)
        assert (root / name).resolve().is_relative_to(root.resolve())


# ---------------------------------------------------------------------------------------------
# Kafka SASL_SSL
# ---------------------------------------------------------------------------------------------


def test_sasl_ssl_client_config_resolves_env_var_secrets(monkeypatch):
    token = f"pw-{uuid.uuid4().hex}"
    ca = "/etc/ssl/certs/ca-certificates.crt"
    monkeypatch.setenv("RETAIL_KAFKA_BOOTSTRAP", "pkc-abc.eu-west-1.aws.confluent.cloud:9092")
    monkeypatch.setenv("RETAIL_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("RETAIL_KAFKA_SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("RETAIL_KAFKA_SASL_USERNAME", "svc-retail")
    monkeypatch.setenv("RETAIL_KAFKA_SASL_PASSWORD", token)
    monkeypatch.setenv("RETAIL_KAFKA_SSL_CA_LOCATION", ca)
    seen: dict = {}

    @dg.asset
    def probe(kafka: KafkaResource) -> None:
        seen.update(kafka.client_config())

    assert dg.materialize([probe], resources={"kafka": kafka_resource()}).success
    assert seen["security.protocol"] == "SASL_SSL" and seen["sasl.mechanism"] == "PLAIN"
    assert seen["sasl.username"] == "svc-retail" and seen["sasl.password"] == token
    assert seen["bootstrap.servers"].endswith(":9092")
    if Path(ca).is_file():
        assert seen["ssl.ca.location"] == ca
    # librdkafka accepts the configuration as it is (no connection is made here)
    from confluent_kafka import Consumer

    Consumer({**seen, "group.id": "config-check"}).close()


def test_kafka_resource_without_sasl_sends_no_credentials():
    config = KafkaResource(bootstrap_servers="127.0.0.1:9092").client_config()
    assert config["security.protocol"] == "PLAINTEXT"
    assert not any(k.startswith("sasl.") for k in config)


# ---------------------------------------------------------------------------------------------
# Unity Catalog grants
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_analysts_read_gold_only(env):
    statements = grants.grants_for(env, "retail")
    schema = {layer: f"retail.{env}_{layer.value}" for layer in Layer}
    analysts = f"{env}_analysts"
    granted = [g for g in statements if g.principal == analysts and not g.revoke]
    # nothing on a schema or table of a layer holding PII
    for layer in grants.PII_LAYERS:
        assert not [g for g in granted if g.name == schema[layer] or g.name.startswith(schema[layer] + ".")], layer
        revoked = [g for g in statements if g.principal == analysts and g.revoke and g.name == schema[layer]]
        assert [g.privileges for g in revoked] == [("ALL PRIVILEGES",)]
    # SELECT on exactly the Gold tables of the registry
    gold = {t.catalog_name("retail", env) for t in TABLES if t.layer is Layer.GOLD}
    assert {g.name for g in granted if g.securable_type == "TABLE"} == gold
    assert all(g.privileges == ("SELECT",) for g in granted if g.securable_type == "TABLE")
    assert not any("MODIFY" in g.privileges for g in granted)


def test_engineers_read_and_pipeline_writes_every_layer():
    statements = grants.grants_for("prod", "retail")
    for layer in Layer:
        schema = f"retail.prod_{layer.value}"
        on_schema = {g.principal: set(g.privileges) for g in statements if g.name == schema and not g.revoke}
        assert on_schema["prod_data_engineers"] == {"USE SCHEMA", "SELECT"}
        assert {"CREATE TABLE", "MODIFY", "SELECT"} <= on_schema["prod_retail_pipeline"]
    # environments never share principals or schemas
    dev = {g.sql() for g in grants.grants_for("dev", "retail")}
    assert not [s for s in dev if "prod_" in s]


def test_grants_sql_and_cli(capsys):
    assert cli_main(["grants", "--env", "prod", "--catalog", "retail"]) == 0
    out = capsys.readouterr().out
    assert "GRANT SELECT ON TABLE `retail`.`prod_gold`.`fact_sales` TO `prod_analysts`;" in out
    assert "REVOKE ALL PRIVILEGES ON SCHEMA `retail`.`prod_silver` FROM `prod_analysts`;" in out
    assert not [
        line
        for line in out.splitlines()
        if "prod_analysts" in line and "GRANT" in line and ("_bronze" in line or "_silver" in line)
    ]
    for bad in ("prod; DROP TABLE x", "pr`od", ""):
        with pytest.raises(ValueError):
            grants.grants_for(bad, "retail")
    with pytest.raises(ValueError):
        grants.grants_for("prod", "retail`; --")
