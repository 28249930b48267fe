"""The files that deploy the project: dagster_cloud.yaml, the GitHub workflows, the Dockerfile.

dagster_cloud.yaml is checked with Dagster+'s own validator (dagster-cloud-cli, the code the
deploy workflow's `ci check` runs); its location must load the real `defs` with exactly the
environment it declares; the workflows must test on every push and pull request and deploy with
the official Dagster+ actions; the image must install the project without its `local` extra.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import subprocess
import sys
import tomllib

import pytest
import typer
import yaml
from dagster_cloud_cli.commands.ci import app as ci_app
from dagster_cloud_cli.commands.ci.checks import check_dagster_cloud_yaml
from dagster_cloud_cli.config.models import Location, load_dagster_cloud_yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from retail_assets.lib.settings import ENV_VAR, Environment, project_root
from retail_assets.tooling.cli import cli

ROOT = project_root()
CLOUD_YAML = ROOT / "dagster_cloud.yaml"
WORKFLOWS = ROOT / ".github" / "workflows"
DOCKERFILE = ROOT / "Dockerfile"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
LOCATION = "retail_assets"
# Environment variables named in a deployment file: the project's own and the platforms'.
VAR_NAME = re.compile(r"\b(?:RETAIL|DATABRICKS|DAGSTER)_[A-Z0-9_]+\b")
# Read by Databricks' unified client authentication (databricks-sdk, the databricks CLI) and by
# Dagster / Dagster+ themselves, though the project never names them.
PLATFORM_VARS = {
    "DATABRICKS_HOST",
    "DATABRICKS_CLIENT_ID",
    "DATABRICKS_CLIENT_SECRET",
    "DATABRICKS_TOKEN",
    "DATABRICKS_CONFIG_PROFILE",
    "DAGSTER_HOME",
    "DAGSTER_CLOUD_API_TOKEN",
    "DAGSTER_CLOUD_ORGANIZATION",
    "DAGSTER_CLOUD_DEPLOYMENT_NAME",
    "DAGSTER_CLOUD_IS_BRANCH_DEPLOYMENT",
    "DAGSTER_CLOUD_PULL_REQUEST_ID",
    "DAGSTER_CLOUD_GIT_BRANCH",
    "DAGSTER_CLOUD_GIT_SHA",
    "DAGSTER_CLOUD_URL",
    "DAGSTER_BUILD_STATEDIR",
    "DAGSTER_PROJECT_DIR",
    "DAGSTER_CLOUD_YAML_PATH",
}
SECRET_MARKERS = ("SECRET", "TOKEN", "PASSWORD")
RUNTIME_OR_LOCAL_ONLY = {
    "pyspark",
    "delta-spark",
    "deltalake",
    "dagster-webserver",
    "dagster-graphql",
    "dagster-dg-cli",
    "playwright",
}
# The official Dagster+ GitHub actions.
CLOUD_ACTION = "dagster-io/dagster-cloud-action/"


def env_vars_the_project_reads() -> set[str]:
    """Every RETAIL_/DATABRICKS_/DAGSTER_ name that appears as a string in the package's code."""
    names = set()
    for path in (ROOT / "retail_assets").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and VAR_NAME.fullmatch(node.value):
                names.add(node.value)
    return names


@pytest.fixture(scope="module")
def location() -> Location:
    (found,) = [
        loc for loc in load_dagster_cloud_yaml(CLOUD_YAML.read_text()).locations if loc.location_name == LOCATION
    ]
    return found


def declared_env(location: Location) -> list[str]:
    """The `env_vars` entries of every container context (k8s, ecs, docker) of the location."""
    return [item for context in (location.container_context or {}).values() for item in context.get("env_vars", [])]


def load_workflow(name: str) -> dict:
    workflow = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the key `on` as the boolean true.
    workflow["on"] = workflow.pop(True, workflow.get("on"))
    return workflow


def steps(workflow: dict) -> list[dict]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def uses(workflow: dict, prefix: str) -> list[dict]:
    return [step for step in steps(workflow) if step.get("uses", "").startswith(prefix)]


def run_commands(workflow: dict) -> list[list[str]]:
    return [
        shlex.split(line, comments=True)
        for step in steps(workflow)
        for line in step.get("run", "").splitlines()
        if line.strip()
    ]


# ---- dagster_cloud.yaml ---------------------------------------------------------------------


def test_dagster_cloud_yaml_passes_dagster_plus_validation():
    result = check_dagster_cloud_yaml(CLOUD_YAML)
    assert not result.errors, result.errors


def test_location_loads_the_real_defs_with_the_environment_it_declares(location):
    assert location.code_source.module_name == "retail_assets.definitions"
    assert location.attribute == "defs"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETAIL_")}
    env.update(item.split("=", 1) for item in declared_env(location))
    env.update({"DAGSTER_CLOUD_IS_BRANCH_DEPLOYMENT": "1", "DAGSTER_CLOUD_PULL_REQUEST_ID": "7"})
    program = (
        "import importlib, dagster as dg\n"
        f"defs = getattr(importlib.import_module({location.code_source.module_name!r}), {location.attribute!r})\n"
        "assert isinstance(defs, dg.Definitions), type(defs)\n"
        "graph = defs.resolve_asset_graph()\n"
        "from retail_assets.lib.settings import deployment_env, get_environment\n"
        "print(get_environment().value, deployment_env(), len(graph.get_all_asset_keys()))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-4000:]
    environment, deployment, assets = done.stdout.split()[-3:]
    assert (environment, deployment) == (Environment.DATABRICKS.value, "pr_7") and int(assets) > 10


def test_env_vars_are_constants_the_project_reads(location):
    declared = declared_env(location)
    assert declared, "the location sets RETAIL_ENV"
    values = dict(item.partition("=")[::2] for item in declared)
    # A name without a value is copied from the agent's own environment: the same for prod and
    # every branch deployment, and a location whose agent lacks it fails to load.
    assert all("=" in item for item in declared), f"pass-through variables: {[i for i in declared if '=' not in i]}"
    assert not [n for n in values if any(m in n for m in SECRET_MARKERS)], "secrets are Dagster+ environment variables"
    assert Environment(values[ENV_VAR]) is Environment.DATABRICKS
    # Every variable the file names, its comments included, is one something actually reads.
    known = env_vars_the_project_reads() | PLATFORM_VARS
    unknown = set(VAR_NAME.findall(CLOUD_YAML.read_text())) - known
    assert not unknown, f"dagster_cloud.yaml names variables nothing reads: {unknown}"


def test_project_reads_the_variables_the_checks_rely_on():
    # the scan above finds real reads (it would pass vacuously on an empty set)
    assert {
        "RETAIL_ENV",
        "RETAIL_UC_CATALOG",
        "RETAIL_DEPLOYMENT_ENV",
        "RETAIL_KAFKA_BOOTSTRAP",
    } <= env_vars_the_project_reads()


# ---- workflows ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(WORKFLOWS.glob("*.y*ml")), ids=lambda p: p.name)
def test_every_workflow_is_well_formed(path):
    workflow = load_workflow(path.name)
    assert workflow["on"] and workflow["jobs"], path
    for name, job in workflow["jobs"].items():
        assert job.get("runs-on") and job.get("steps"), f"{path.name}: job {name}"
        for step in job["steps"]:
            assert ("uses" in step) != ("run" in step), f"{path.name}: {step}"
            if "uses" in step:
                ref = step["uses"].partition("@")[2]
                assert ref and ref not in ("main", "master", "latest"), f"{path.name}: {step['uses']} is not pinned"
    text = path.read_text()
    assert "DATABRICKS_TOKEN" not in text, "no personal access token: OAuth M2M (DATABRICKS_CLIENT_ID/SECRET)"
    unknown = set(VAR_NAME.findall(text)) - env_vars_the_project_reads() - PLATFORM_VARS
    assert not unknown, f"{path.name} names variables nothing reads: {unknown}"


def test_ci_runs_the_suite_on_every_push_and_pull_request():
    workflow = load_workflow("ci.yml")
    assert {"push", "pull_request"} <= set(workflow["on"])
    assert [".ci/run"] in run_commands(workflow)
    (python,) = uses(workflow, "actions/setup-python@")
    assert str(python["with"]["python-version"]) == "3.11"
    assert SpecifierSet(PYPROJECT["project"]["requires-python"]).contains("3.11")
    (java,) = uses(workflow, "actions/setup-java@")
    assert str(java["with"]["java-version"]) == "17"
    assert python["with"].get("cache") == "pip"
    (jvm_cache,) = uses(workflow, "actions/cache@")
    assert ".cache/jvm" in jvm_cache["with"]["path"]
    (checkout,) = uses(workflow, "actions/checkout@")
    assert checkout["with"]["fetch-depth"] == 0, "the version and the packaging test need the history"


def test_deploy_uses_the_official_dagster_plus_actions_for_pull_requests_and_main():
    workflow = load_workflow("deploy.yml")
    triggers = workflow["on"]
    assert "closed" in triggers["pull_request"]["types"], "closing a pull request closes its branch deployment"
    assert "main" in triggers["push"]["branches"]
    cloud_steps = uses(workflow, CLOUD_ACTION)
    actions = {step["uses"].removeprefix(CLOUD_ACTION).partition("@")[0] for step in cloud_steps}
    assert {"actions/utils/prerun", "actions/utils/dagster-cloud-cli"} <= actions
    commands = [step["with"]["command"].split()[:2] for step in cloud_steps if "command" in step.get("with", {})]
    for command in (["ci", "check"], ["ci", "init"], ["ci", "set-build-output"], ["ci", "deploy"]):
        assert command in commands, f"missing `dagster-cloud {' '.join(command)}`"
    # one release of the actions, the one of the Dagster the project pins
    pins = {step["uses"].partition("@")[2] for step in cloud_steps}
    dagster_minor = Requirement(
        next(r for r in PYPROJECT["project"]["dependencies"] if r.startswith("dagster>"))
    ).specifier
    assert len(pins) == 1 and dagster_minor.contains(pins.pop().removeprefix("v")), (
        "the actions' release is the pinned Dagster's"
    )
    # every `dagster-cloud ci …` command and option exists in the CLI those actions run
    ci = typer.main.get_command(ci_app)
    for step in cloud_steps:
        if "command" not in step.get("with", {}):
            continue
        group, name, *args = shlex.split(step["with"]["command"].partition(">>")[0])
        assert group == "ci" and name in ci.commands, step["with"]["command"]
        options = {o for p in ci.commands[name].params for o in p.opts}
        assert {a.partition("=")[0] for a in args if a.startswith("--")} <= options, step["with"]["command"]
    secrets = re.findall(r"secrets\.([A-Z_]+)", (WORKFLOWS / "deploy.yml").read_text())
    assert {"DAGSTER_CLOUD_API_TOKEN", "DATABRICKS_HOST", "DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET"} <= set(
        secrets
    )


def test_deploy_uploads_the_wheel_it_deploys_before_deploying():
    workflow = load_workflow("deploy.yml")
    order = [step.get("run", "") + step.get("with", {}).get("command", "") for step in steps(workflow)]
    built = next(i for i, s in enumerate(order) if "pip wheel" in s)
    uploaded = next(i for i, s in enumerate(order) if "retail-assets provision" in s)
    deployed = next(i for i, s in enumerate(order) if s.startswith("ci deploy"))
    assert built < uploaded < deployed
    (provision,) = [argv for argv in run_commands(workflow) if argv[:2] == ["retail-assets", "provision"]]
    options = {o for p in cli.commands["provision"].params for o in p.opts}
    assert {"--env", "--catalog", "--upload-wheel"} <= set(provision) and {
        a for a in provision if a.startswith("--")
    } <= options
    (image,) = uses(workflow, "docker/build-push-action@")
    assert image["with"]["file"] == "Dockerfile" and image["with"]["push"] is True


# ---- the code server image ------------------------------------------------------------------


def test_image_installs_the_wheel_without_the_local_extra(location):
    # Hybrid builds the location's image from its build directory: the Dockerfile there.
    assert location.build and (ROOT / location.build.directory / "Dockerfile") == DOCKERFILE
    instructions = [
        line.strip()
        for line in DOCKERFILE.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    text = "\n".join(instructions)
    assert "pip install" in text and "retail_assets-*-py3-none-any.whl" in text
    assert "[code-server]" in text and "[local" not in text and "[dev" not in text and "-e ." not in text
    code_server = {Requirement(r).name for r in PYPROJECT["project"]["optional-dependencies"]["code-server"]}
    assert "dagster-cloud" in code_server and not code_server & (RUNTIME_OR_LOCAL_ONLY - {"pyspark"})
    (python,) = re.findall(r"^ARG PYTHON_VERSION=(\S+)$", DOCKERFILE.read_text(), flags=re.M)
    assert SpecifierSet(PYPROJECT["project"]["requires-python"]).contains(f"{python}.0")
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ignored[0] == "*" and all(line.startswith("!dist/") for line in ignored[1:]), (
        "only dist/'s wheel enters the context"
    )
