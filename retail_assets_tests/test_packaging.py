"""The wheel a Databricks cluster and the Dagster+ code server install, built for real.

What a cluster's runtime provides (pyspark, Delta) and what only one machine uses (delta-rs, the
webserver, the browser driver) stay out of its required dependencies; the `local` extra has them;
every commit builds another version, which carries the commit and names the wheel.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from importlib.metadata import version

import pytest
from packaging.utils import canonicalize_name
from packaging.version import Version

from retail_assets.lib.engine import jvm
from retail_assets.lib.settings import project_root
from retail_assets.lib.version import code_version, commit_of, wheel_filename
from retail_assets_tests.wheel import build_wheel, copy_tree, requirements, source_files, wheel_files, wheel_metadata

# Provided by the Databricks Runtime: installing them from PyPI would replace the runtime's own.
RUNTIME_PROVIDED = {"pyspark", "delta-spark"}
# Used on one machine only: the delta-rs engine, the UI and its GraphQL client, dg, test and bench tools.
LOCAL_ONLY = {
    "deltalake",
    "dagster-webserver",
    "dagster-graphql",
    "dagster-dg-cli",
    "playwright",
    "pytest",
    "psutil",
}
# What a step on a cluster and the code server import (lib/deployment/cluster.py, lib/sources/kafka.py,
# lib/sources/database.py, lib/transforms/ingest.py,
# lib/deployment/workspace.py, the asset metadata's markdown previews, the command line, the KPI report's
# charts, the alerts' Slack client).
CLUSTER_AND_CODE_SERVER = {
    "dagster",
    "dagster-databricks",
    "dagster-pyspark",
    "confluent-kafka",
    "psycopg",
    "orjson",
    "databricks-sdk",
    "pyarrow",
    "pandas",
    "tabulate",
    "click",
    "rich",
    "matplotlib",
    "dagster-slack",
}
# One build takes a few seconds; far more means pip went to the network (build isolation).
BUILD_BUDGET_S = 60


def git(*args: str, cwd=None) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd or project_root(), capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    started = time.monotonic()
    built = build_wheel(tmp_path_factory.mktemp("wheel"))
    elapsed = time.monotonic() - started
    assert elapsed < BUILD_BUDGET_S, f"building the wheel took {elapsed:.0f} s"
    return built


@pytest.fixture(scope="module")
def metadata(wheel):
    return wheel_metadata(wheel)


def test_required_dependencies_are_what_a_cluster_and_the_code_server_need(metadata):
    required = set(requirements(metadata))
    assert not required & RUNTIME_PROVIDED, (
        f"the wheel would install {required & RUNTIME_PROVIDED} over the Databricks Runtime's own"
    )
    assert not required & LOCAL_ONLY, f"local-only packages are required: {required & LOCAL_ONLY}"
    assert CLUSTER_AND_CODE_SERVER <= required, f"missing: {CLUSTER_AND_CODE_SERVER - required}"


def test_local_extra_is_the_local_environment(metadata):
    local = requirements(metadata, "local")
    assert {"pyspark", "delta-spark", "deltalake", "dagster-webserver", "dagster-graphql"} <= set(local)
    # pinned to exactly the Spark and Delta whose jars lib/engine/jvm.py fetches
    assert "connect" in local["pyspark"].extras
    assert list(local["pyspark"].specifier.filter(["4.1.1", jvm.SPARK_VERSION, "4.2.1", "4.3.0"])) == [
        jvm.SPARK_VERSION
    ]
    assert list(local["delta-spark"].specifier.filter(["4.3.0", jvm.DELTA_VERSION, "4.4.1", "4.5.0"])) == [
        jvm.DELTA_VERSION
    ]


@pytest.mark.parametrize("extra", ["dev", "bench"])
def test_extras_that_run_locally_include_local(metadata, extra):
    self_reference = requirements(metadata, extra).get(canonicalize_name(metadata["Name"]))
    assert self_reference is not None and self_reference.extras == {"local"}


def test_version_carries_the_commit_and_names_the_wheel(wheel, metadata):
    built = metadata["Version"]
    head = git("rev-parse", "HEAD")
    changed = git("status", "--porcelain", "--untracked-files=no")
    tags = git("tag", "--points-at", "HEAD").split()
    if tags and not changed:  # a release: the tag's version, which names one commit too
        assert built in {str(Version(t.removeprefix("v"))) for t in tags}
    else:
        assert commit_of(built) and head.startswith(commit_of(built)), f"{built} does not name HEAD {head}"
        assert (".d" in built.partition("+")[2]) == bool(changed), (
            f"{built}: uncommitted changes must show in the version"
        )
    assert wheel.name == wheel_filename(built)


def test_wheel_holds_the_package_and_not_the_tests(wheel):
    files = wheel_files(wheel)
    assert "retail_assets/definitions.py" in files and "retail_assets/lib/version.py" in files
    assert not [f for f in files if f.startswith("retail_assets_tests/")]
    packaged = {f for f in files if f.startswith("retail_assets/") and f.endswith(".py")}
    on_disk = {f for f in source_files(project_root()) if f.startswith("retail_assets/") and f.endswith(".py")}
    assert packaged == on_disk


def test_each_commit_builds_another_version(tmp_path):
    repo = tmp_path / "repo"
    copy_tree(project_root(), repo)
    shutil.rmtree(repo / ".git")
    git("init", "--quiet", cwd=repo)
    commit = ("-c", "user.name=ci", "-c", "user.email=ci@example.invalid", "commit", "--quiet")
    git("add", "-A", cwd=repo)
    git(*commit, "-m", "first", cwd=repo)
    first = wheel_metadata(build_wheel(tmp_path / "first", source=repo))["Version"]
    git(*commit, "--allow-empty", "-m", "second", cwd=repo)
    second = wheel_metadata(build_wheel(tmp_path / "second", source=repo))["Version"]
    assert first != second and Version(second) > Version(first)
    assert git("rev-parse", "HEAD", cwd=repo).startswith(commit_of(second))
    assert git("rev-parse", "HEAD~1", cwd=repo).startswith(commit_of(first))


def test_a_tree_without_git_builds_the_fallback_version(tmp_path):
    tree = tmp_path / "tree"
    copy_tree(project_root(), tree)
    shutil.rmtree(tree / ".git")
    built = wheel_metadata(build_wheel(tmp_path / "dist", source=tree))["Version"]
    assert built == "0.0" and commit_of(built) is None


def test_code_version_is_the_installed_distribution():
    assert code_version() == version("retail-assets")
    assert wheel_filename("0.1.dev3+gabc1234.d20261202") == "retail_assets-0.1.dev3+gabc1234.d20261202-py3-none-any.whl"
    assert commit_of("0.1.dev3+gabc1234.d20261202") == "abc1234"
    assert commit_of("0.1.dev3+gabc1234") == "abc1234"
    assert commit_of("1.2.0") is None and commit_of("0.0") is None
