"""The JVM artifacts the project runs locally, declared once and fetched at set-up (SPEC §9).

Two classpaths come from Maven Central:
- `spark`: Delta Lake's Spark jar, Spark's Kafka batch source and the PostgreSQL JDBC driver, added to every local Spark
  session (`lib/engine/spark.py`, `tooling/spark_server.py`). Jars the pyspark wheel already ships (Scala,
  Hadoop, Jackson …) are left out: Spark provides them, and a second copy would shadow its own.
- `kafka`: the Apache Kafka broker and its dependencies, run in a JVM of its own (`tooling/broker.py`).

`python -m retail_assets.lib.engine.jvm fetch` resolves them with Maven into a project-local cache
(`.cache/jvm`, or `RETAIL_JVM_CACHE`): the README's set-up and `.ci/run` call it. A run only
reads the cache; it never downloads. A bundle counts as fetched once its manifest names the same
coordinates as this module and every jar it lists is present, so a second set-up downloads
nothing, and a changed pin is fetched again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

# pyspark and delta-spark are pinned to these versions in pyproject.toml; the jars must match.
SPARK_VERSION = "4.2.0"
SPARK_MINOR = ".".join(SPARK_VERSION.split(".")[:2])
SCALA_BINARY = "2.13"
DELTA_VERSION = "4.4.0"
KAFKA_VERSION = "4.4.0"
LOG4J_VERSION = "2.25.5"  # the log4j-core kafka_2.13 depends on
POSTGRESQL_JDBC_VERSION = "42.7.14"

FETCH_COMMAND = "python -m retail_assets.lib.engine.jvm fetch"
CACHE_ENV = "RETAIL_JVM_CACHE"


@dataclass(frozen=True)
class Artifact:
    group: str
    artifact: str
    version: str
    bundle: str
    purpose: str

    @property
    def coordinates(self) -> str:
        return f"{self.group}:{self.artifact}:{self.version}"


ARTIFACTS: tuple[Artifact, ...] = (
    Artifact(
        "io.delta",
        f"delta-spark_{SPARK_MINOR}_{SCALA_BINARY}",
        DELTA_VERSION,
        "spark",
        "Delta Lake for Spark: the delta_spark engine",
    ),
    Artifact(
        "org.apache.spark", f"spark-sql-kafka-0-10_{SCALA_BINARY}", SPARK_VERSION, "spark", "Spark's Kafka batch source"
    ),
    Artifact(
        "org.postgresql",
        "postgresql",
        POSTGRESQL_JDBC_VERSION,
        "spark",
        "the PostgreSQL JDBC driver: Spark's JDBC source reads the operational database",
    ),
    Artifact(
        "org.apache.kafka", f"kafka_{SCALA_BINARY}", KAFKA_VERSION, "kafka", "the local Apache Kafka broker (KRaft)"
    ),
    # Kafka logs through SLF4J; without a binding a broker that fails to start says nothing.
    Artifact(
        "org.apache.logging.log4j",
        "log4j-slf4j-impl",
        LOG4J_VERSION,
        "kafka",
        "the broker's log output (SLF4J to Log4j 2, as Kafka's release ships)",
    ),
)
BUNDLES = ("spark", "kafka")


class MissingJvmArtifacts(RuntimeError):
    """A declared artifact is not in the local cache (and a run never downloads it)."""


def cache_root() -> Path:
    from retail_assets.lib.settings import project_root  # noqa: PLC0415

    return Path(os.environ.get(CACHE_ENV) or project_root() / ".cache" / "jvm").resolve()


def declared(bundle: str) -> tuple[Artifact, ...]:
    if bundle not in BUNDLES:
        raise ValueError(f"unknown JVM bundle {bundle!r}; one of {BUNDLES}")
    return tuple(a for a in ARTIFACTS if a.bundle == bundle)


def _digest(bundle: str) -> str:
    return hashlib.sha256("\n".join(a.coordinates for a in declared(bundle)).encode()).hexdigest()[:16]


def _manifest_path(bundle: str, root: Path) -> Path:
    return root / bundle / "manifest.json"


def classpath(bundle: str, *, root: Path | None = None) -> list[Path]:
    """The jars of a fetched bundle; `MissingJvmArtifacts` names what is missing and how to fetch it."""
    root = root or cache_root()
    manifest = _manifest_path(bundle, root)
    wanted = ", ".join(a.coordinates for a in declared(bundle))
    try:
        recorded = json.loads(manifest.read_text())
    except (OSError, ValueError):
        raise MissingJvmArtifacts(
            f"{wanted} not fetched into {root / bundle}; run `{FETCH_COMMAND}` once (needs Maven and Maven Central)"
        ) from None
    if recorded.get("digest") != _digest(bundle):
        raise MissingJvmArtifacts(
            f"{root / bundle} holds {', '.join(recorded.get('coordinates', [])) or 'other artifacts'}, not the declared {wanted}; run `{FETCH_COMMAND}`"
        )
    jars = [root / bundle / name for name in recorded["jars"]]
    absent = [j.name for j in jars if not j.is_file()]
    if absent:
        raise MissingJvmArtifacts(
            f"{len(absent)} jar(s) of {wanted} missing from {root / bundle} ({', '.join(absent[:3])}); run `{FETCH_COMMAND}`"
        )
    return jars


def is_fetched(bundle: str, *, root: Path | None = None) -> bool:
    try:
        classpath(bundle, root=root)
    except MissingJvmArtifacts:
        return False
    return True


def _pom(bundle: str) -> str:
    deps = "\n".join(
        f"    <dependency><groupId>{a.group}</groupId><artifactId>{a.artifact}</artifactId><version>{a.version}</version></dependency>"
        for a in declared(bundle)
    )
    return (
        '<project xmlns="http://maven.apache.org/POM/4.0.0">\n  <modelVersion>4.0.0</modelVersion>\n'
        f"  <groupId>retail-assets</groupId><artifactId>jvm-{bundle}</artifactId><version>1</version><packaging>pom</packaging>\n"
        f"  <dependencies>\n{deps}\n  </dependencies>\n</project>\n"
    )


def spark_provided_artifacts() -> set[str]:
    """Artifact ids of the jars inside the installed pyspark wheel (`scala-library-2.13.17.jar` → `scala-library`)."""
    import pyspark  # noqa: PLC0415

    jars = Path(pyspark.__file__).parent / "jars"
    return {_artifact_id(p.name) for p in jars.glob("*.jar")}


def _artifact_id(jar_name: str) -> str:
    stem = jar_name.removesuffix(".jar")
    parts = stem.split("-")
    # The artifact id is everything before the version, the first part shaped `<n>.<n>…`
    # (`spark-sql-kafka-0-10_2.13-4.2.0`: neither `0` nor `10_2.13` is a version).
    for i, part in enumerate(parts):
        if i and re.match(r"\d+\.\d", part):
            return "-".join(parts[:i])
    return stem


def fetch(bundle: str, *, root: Path | None = None, maven: str = "mvn", log=print) -> list[Path]:
    """Resolve the bundle with Maven into the cache (a no-op when it is already there)."""
    root = root or cache_root()
    if is_fetched(bundle, root=root):
        return classpath(bundle, root=root)
    if shutil.which(maven) is None:
        raise MissingJvmArtifacts(
            f"Maven (`{maven}`) is not installed, so {', '.join(a.coordinates for a in declared(bundle))} cannot be fetched; install it (Debian: apt-get install maven), then run `{FETCH_COMMAND}`"
        )
    target = root / bundle
    staging = root / f".{bundle}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    log(f"fetching {', '.join(a.coordinates for a in declared(bundle))} from Maven Central into {target}")
    with tempfile.TemporaryDirectory() as work:
        (Path(work) / "pom.xml").write_text(_pom(bundle))
        command = [
            maven, "-B", "-q", "-f", str(Path(work) / "pom.xml"),
            f"-Dmaven.repo.local={root / 'm2'}",
            "dependency:copy-dependencies", f"-DoutputDirectory={staging}", "-DincludeScope=runtime",
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise MissingJvmArtifacts(
            f"Maven could not fetch {', '.join(a.coordinates for a in declared(bundle))}:\n{tail}"
        )
    jars = sorted(p.name for p in staging.glob("*.jar"))
    if bundle == "spark":
        provided = spark_provided_artifacts()
        for name in jars:
            if _artifact_id(name) in provided:
                (staging / name).unlink()
        jars = sorted(p.name for p in staging.glob("*.jar"))
    manifest = {"digest": _digest(bundle), "coordinates": [a.coordinates for a in declared(bundle)], "jars": jars}
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=1))
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return classpath(bundle, root=root)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m retail_assets.lib.engine.jvm", description="Fetch or list the project's JVM artifacts."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "fetch", help="resolve every declared artifact into the cache (nothing is downloaded when it is already there)"
    )
    sub.add_parser("list", help="print the declared coordinates and whether each bundle is fetched")
    args = parser.parse_args(argv)
    if args.command == "list":
        for a in ARTIFACTS:
            print(f"{a.coordinates:60} {a.bundle:6} {'fetched' if is_fetched(a.bundle) else 'missing'}  {a.purpose}")
        return 0
    try:
        for bundle in BUNDLES:
            jars = fetch(bundle)
            print(f"{bundle}: {len(jars)} jars in {cache_root() / bundle}")
    except MissingJvmArtifacts as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
