"""The JVM artifacts: declared once, read from the project-local cache, never fetched at run time."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from retail_assets.lib.engine import jvm


def test_every_declared_artifact_is_pinned_to_the_pinned_spark_and_delta():
    import delta
    import pyspark

    coordinates = {a.artifact: a.version for a in jvm.ARTIFACTS}
    # the Delta jar for the installed pyspark's minor, at the PyPI delta-spark's version
    assert pyspark.__version__ == jvm.SPARK_VERSION
    minor = ".".join(pyspark.__version__.split(".")[:2])
    assert coordinates[f"delta-spark_{minor}_2.13"] == jvm.DELTA_VERSION
    from importlib.metadata import version

    assert version("delta-spark") == jvm.DELTA_VERSION and delta is not None
    assert coordinates["spark-sql-kafka-0-10_2.13"] == pyspark.__version__


def test_a_missing_cache_names_the_artifacts_and_the_fetch_command(tmp_path):
    with pytest.raises(jvm.MissingJvmArtifacts) as missing:
        jvm.classpath("spark", root=tmp_path)
    message = str(missing.value)
    assert "io.delta:delta-spark_" in message and "spark-sql-kafka" in message
    assert jvm.FETCH_COMMAND in message


def test_a_cache_of_other_pins_or_with_a_jar_gone_is_not_used(tmp_path):
    fetched = jvm.classpath("kafka")  # fetched at set-up
    shutil.copytree(fetched[0].parent, tmp_path / "kafka")
    assert jvm.classpath("kafka", root=tmp_path)
    (fetched_copy := tmp_path / "kafka" / fetched[0].name).unlink()
    with pytest.raises(jvm.MissingJvmArtifacts, match=fetched_copy.name):
        jvm.classpath("kafka", root=tmp_path)
    manifest = tmp_path / "kafka" / "manifest.json"
    recorded = json.loads(manifest.read_text())
    manifest.write_text(
        json.dumps({**recorded, "digest": "older", "coordinates": ["org.apache.kafka:kafka_2.13:3.9.0"]})
    )
    with pytest.raises(jvm.MissingJvmArtifacts, match="not the declared org.apache.kafka:kafka_2.13"):
        jvm.classpath("kafka", root=tmp_path)


def test_fetching_again_downloads_nothing(monkeypatch):
    before = jvm.classpath("spark")

    def refuse(*args, **kwargs):
        raise AssertionError(f"a fetched bundle ran {args[0]!r}")

    monkeypatch.setattr(subprocess, "run", refuse)
    assert jvm.fetch("spark") == before


def test_without_maven_the_error_says_what_to_install(tmp_path):
    with pytest.raises(jvm.MissingJvmArtifacts, match="apt-get install maven") as missing:
        jvm.fetch("kafka", root=tmp_path, maven="no-such-mvn")
    assert "org.apache.kafka:kafka_2.13" in str(missing.value)


def test_sparks_classpath_leaves_out_what_the_pyspark_wheel_ships():
    provided = jvm.spark_provided_artifacts()
    assert {"scala-library", "spark-core_2.13"} <= provided
    names = [jvm._artifact_id(p.name) for p in jvm.classpath("spark")]
    assert "delta-spark_4.2_2.13" in names and "spark-sql-kafka-0-10_2.13" in names
    assert not set(names) & provided


@pytest.mark.parametrize(
    ("jar", "artifact"),
    [
        ("scala-library-2.13.17.jar", "scala-library"),
        ("delta-spark_4.2_2.13-4.4.0.jar", "delta-spark_4.2_2.13"),
        ("kafka_2.13-4.4.0.jar", "kafka_2.13"),
        ("HdrHistogram-2.2.2.jar", "HdrHistogram"),
    ],
)
def test_artifact_ids_are_read_from_jar_names(jar, artifact):
    assert jvm._artifact_id(jar) == artifact
