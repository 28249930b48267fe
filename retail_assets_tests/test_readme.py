"""Every shell command the README shows, run as a new user would, with short presets in
temporary folders: exit status and a key line of output.

The README's commands are read from its ```bash blocks; each is matched to a runner below by its
program and subcommand, so a command added to the README without a way to run it here fails
`test_every_readme_command_is_run_here`. Set-up commands (a virtualenv, `pip`, `.ci/run`) are
what CI itself runs on a fresh clone; `databricks` CLI commands need a workspace.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from retail_assets.lib.settings import project_root
from retail_assets.tooling.broker import free_port

README = project_root() / "README.md"
BIN = Path(sys.executable).parent
# What CI runs on a fresh clone before anything else (`.ci/run`), and what needs a workspace.
NOT_RUN_HERE = {
    "python3 -m": "the virtualenv set-up, which .ci/run performs on a fresh clone",
    "pip install": "installing the project, which .ci/run performs",
    ".ci/run": "the test command itself",
    "databricks secrets": "needs a Databricks workspace",
}


def readme_commands() -> list[list[str]]:
    """Each command of the README's bash blocks as words: continuations joined, comments and
    `VAR=value` prefixes dropped, `.venv/bin/` stripped, `a && b` split."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            while words:
                argv = words[: words.index("&&")] if "&&" in words else words
                words = words[len(argv) + 1 :]
                while argv and re.match(r"^[A-Z_]+=", argv[0]):
                    argv = argv[1:]
                if argv:
                    argv[0] = argv[0].removeprefix(".venv/bin/")
                    commands.append(argv)
    return commands


def key(argv: list[str]) -> str:
    """Program and subcommand: `retail-assets demo`, `dg launch`, `dagster asset`."""
    words = [w for w in argv if not w.startswith("-")]
    if argv[0] == "python" and argv[1:3] == ["-m", "retail_assets.lib.engine.jvm"]:
        return f"jvm {argv[3]}"
    return " ".join(words[:2]) if len(words) > 1 else argv[0]


def run(argv: list[str], env: dict[str, str], *, timeout: float = 600) -> subprocess.CompletedProcess:
    program = str(BIN / argv[0]) if (BIN / argv[0]).exists() else argv[0]
    done = subprocess.run(
        [program, *argv[1:]], cwd=project_root(), env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, (
        f"{shlex.join(argv)} exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    )
    return done


def replace_option(argv: list[str], option: str, value: str) -> list[str]:
    """`argv` with `option`'s value set (added when absent)."""
    out, skip = [], False
    for _i, word in enumerate(argv):
        if skip:
            skip = False
            continue
        if word == option:
            skip = True
            continue
        out.append(word)
    return [*out, option, value]


class Workspace:
    """A data root the README's commands share: the demo's week, then the UI and the CLIs on it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data_root = root / "data"
        self.env = {
            **os.environ,
            "RETAIL_DATA_ROOT": str(self.data_root),
            "DAGSTER_HOME": str(self.data_root / "dagster_home"),
            "RETAIL_SENSORS_DEFAULT": "stopped",
        }
        self.demo_days: list[str] = []


@pytest.fixture(scope="module")
def workspace() -> Iterator[Workspace]:
    # Not under pytest's temporary folders (mode 0700, reset by any pytest session starting):
    # PostgreSQL, started by `demo`, `ui` and `database` under the data root, runs as the
    # `postgres` user when the tests run as root, and must reach its folder.
    root = Path(tempfile.mkdtemp(prefix="retail-readme-"))
    root.chmod(0o711)
    try:
        yield Workspace(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def in_background(
    argv: list[str], env: dict[str, str], log: Path, ready: str, timeout: float = 240, *, sigint_ignored: bool = False
) -> subprocess.Popen:
    """Start a long-running command; wait until its output shows `ready`. `sigint_ignored`:
    started as a script's background job is, with SIGINT ignored (Ctrl-C must still stop it)."""
    program = str(BIN / argv[0]) if (BIN / argv[0]).exists() else argv[0]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [program, *argv[1:]],
            cwd=project_root(),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # as from a terminal (Ctrl-C delivered) whatever this process inherited, or as a
            # script's background job
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN if sigint_ignored else signal.SIG_DFL),
        )
    deadline = time.monotonic() + timeout
    while ready not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            stop(process)
            raise AssertionError(
                f"{shlex.join(argv)} never showed {ready!r}:\n{log.read_text(errors='replace')[-3000:]}"
            )
        time.sleep(0.5)
    return process


def stop(process: subprocess.Popen) -> int | None:
    """Ctrl-C, then the whole process group if it lingers; returns the command's own exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
    code = process.poll()
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=30)
    return code


# ---- runners: one per README command key, in the order a newcomer meets them ---------------


def run_demo(argv, ws: Workspace) -> None:
    argv = replace_option(replace_option(argv, "--data-root", str(ws.data_root)), "--days", "1")
    done = run([*argv, "--force"], ws.env)
    assert re.search(r"\d+ runs, 0 with failures", done.stdout), done.stdout[-2000:]
    ws.demo_days = sorted(set(re.findall(r"ingest_pos_stream\s+(\d{4}-\d{2}-\d{2})", done.stdout)))
    assert (ws.data_root / "lakehouse" / "gold" / "fact_sales" / "_delta_log").is_dir()
    # the KPI report rendered with Gold, its newest page named
    newest = re.search(r"KPI report \(\d+ business days\), the newest: (\S+)", done.stdout)
    assert newest and Path(newest.group(1)).is_file(), done.stdout[-2000:]


def run_ui(argv, ws: Workspace) -> None:
    port = str(free_port())
    rest = argv[argv.index("--") + 1 :] if "--" in argv else []
    rest = replace_option(replace_option(rest, "-h", "127.0.0.1"), "-p", port)
    head = argv[: argv.index("--")] if "--" in argv else argv
    head = replace_option(replace_option(head, "--data-root", str(ws.data_root)), "--kafka-port", str(free_port()))
    head = replace_option(head, "--database-port", str(free_port()))
    process = in_background(
        [*head, "--", *rest], ws.env, ws.root / "ui.log", "Serving dagster-webserver on", sigint_ignored=True
    )
    assert stop(process) == 0, (ws.root / "ui.log").read_text()[-3000:]


def run_dagster_dev(argv, ws: Workspace) -> None:
    process = in_background(
        [*argv, "-h", "127.0.0.1", "-p", str(free_port())],
        ws.env,
        ws.root / "dagster_dev.log",
        "Serving dagster-webserver on",
    )
    stop(process)


def run_materialize(argv, ws: Workspace) -> None:
    done = run(replace_option(argv, "--partition", ws.demo_days[-1]), ws.env)
    assert "RUN_SUCCESS" in done.stdout + done.stderr


def run_backfill(argv, ws: Workspace) -> None:
    argv = replace_option(replace_option(argv, "--from", ws.demo_days[0]), "--to", ws.demo_days[-1])
    done = run(argv, ws.env)
    assert "Launching runs for backfill" in done.stdout + done.stderr or "Backfill" in done.stdout + done.stderr, (
        done.stdout[-2000:]
    )


def run_dg(argv, ws: Workspace) -> None:
    sub = argv[1]
    if sub == "dev":
        process = in_background(
            [*argv, "--port", str(free_port())], ws.env, ws.root / "dg_dev.log", "Serving dagster-webserver on"
        )
        stop(process)
        return
    if sub == "launch":
        argv = replace_option(argv, "--partition", ws.demo_days[-1])
    done = run(argv, {**ws.env, "VIRTUAL_ENV": str(BIN.parent)})
    text = done.stdout + done.stderr
    expected = {"list": "gold/fact_sales", "check": "All definitions loaded successfully", "launch": "RUN_SUCCESS"}[sub]
    assert expected in text, text[-2000:]


def run_generate(argv, ws: Workspace) -> None:
    done = run(replace_option(replace_option(argv, "--out", str(ws.root / "generated")), "--days", "1"), ws.env)
    assert "generated seed=" in done.stdout
    assert (ws.root / "generated" / "manifest.json").exists()


def run_broker_and_produce(argv, ws: Workspace) -> None:
    port = str(free_port())
    broker = in_background(
        ["retail-assets", "broker", "--port", port, "--data-root", str(ws.root / "live")],
        ws.env,
        ws.root / "broker.log",
        "Ctrl-C stops it",
        sigint_ignored=True,
    )
    try:
        produce = replace_option(replace_option(argv, "--bootstrap", f"127.0.0.1:{port}"), "--rate", "0")
        produce = replace_option(replace_option(produce, "--stores", "1"), "--transactions-per-store", "3")
        done = run(replace_option(produce, "--data-root", str(ws.root / "live")), ws.env)
        assert re.search(r"sending \d+ events to 127\.0\.0\.1", done.stdout) and "batch   1:" in done.stdout
    finally:
        assert stop(broker) == 0


def run_broker(argv, ws: Workspace) -> None:
    port = str(free_port())
    argv = replace_option(replace_option(argv, "--port", port), "--data-root", str(ws.root / "broker-only"))
    process = in_background(
        argv, ws.env, ws.root / "broker-only.log", f"broker on 127.0.0.1:{port}", sigint_ignored=True
    )
    assert stop(process) == 0


def run_database(argv, ws: Workspace) -> None:
    """The seeded week is in the database the printed variables name, as the project connects."""
    argv = replace_option(replace_option(argv, "--port", str(free_port())), "--data-root", str(ws.root / "db"))
    log = ws.root / "database.log"
    process = in_background(argv, ws.env, log, "Ctrl-C stops it", sigint_ignored=True)
    try:
        text = log.read_text()
        assert re.search(r"seeded \d+ days from .*: \d+ change records", text), text
        url = re.search(r"export RETAIL_DB_JDBC_URL=jdbc:postgresql://(\S+)", text).group(1)
        password = re.search(r"export RETAIL_DB_PASSWORD=(\S+)", text).group(1)
        with psycopg.connect(f"postgresql://retail:{password}@{url}") as conn:
            ops = {op for (op,) in conn.execute("SELECT DISTINCT op FROM orders.changes")}
        assert ops == {"I", "U", "D"}
    finally:
        assert stop(process) == 0


def run_latency(argv, ws: Workspace) -> None:
    argv = replace_option(replace_option(replace_option(argv, "--batches", "1"), "--events", "2"), "--interval", "1")
    done = run(replace_option(argv, "--out", str(ws.root / "latency.json")), ws.env, timeout=900)
    assert '"latency_batches_seen": 1' in done.stdout


def run_bench(argv, ws: Workspace) -> None:
    argv = [w for w in argv if not w.startswith("[")]  # the README's optional-argument brackets
    argv = replace_option(replace_option(argv, "--size", "tiny"), "--engine", "delta_rs")
    argv = replace_option(argv, "--days", "1")
    argv = replace_option(
        replace_option(argv, "--out", str(ws.root / "bench.json")), "--work-dir", str(ws.root / "bench")
    )
    # the UI backfill path is tests/tooling/test_bench.py's (`pytest -m bench`)
    done = run([*argv, "--skip-latency", "--skip-sensor", "--skip-backfill"], ws.env, timeout=900)
    assert "wrote " in done.stdout and (ws.root / "bench.json").exists()


def run_sql(argv, ws: Workspace) -> None:
    """On the demo's lakehouse: a statement given with -e prints its rows; the interactive shell,
    given `.tables` and a statement on its input, lists Gold and answers."""
    if "-e" in argv:
        done = run(argv, ws.env)
        assert len(done.stdout.strip().splitlines()) >= 2, done.stdout  # a header and rows
        return
    program = str(BIN / argv[0])
    done = subprocess.run(
        [program, *argv[1:]],
        cwd=project_root(),
        env=ws.env,
        input=".tables\nSELECT count(*) AS lines FROM gold.fact_sales;\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and "fact_sales" in done.stdout and "lines" in done.stdout, done.stdout + done.stderr


def run_grants(argv, ws: Workspace) -> None:
    done = run(argv, ws.env)
    assert "GRANT " in done.stdout


def run_provision(argv, ws: Workspace) -> None:
    assert "--dry-run" in argv, "only a dry run connects to nothing; the emulator tests provision for real"
    done = run(argv, ws.env)
    for step in ("schema", "volume", "GRANT ", "SET MASK", "SET ROW FILTER", "SHARE"):
        assert step in done.stdout, step


def run_jvm(argv, ws: Workspace) -> None:
    done = run(argv, ws.env)
    assert ".cache/jvm" in done.stdout + done.stderr or "fetched" in done.stdout + done.stderr


def run_ruff(argv, ws: Workspace) -> None:
    # `ruff format` as a check: the test never rewrites the checkout (formatted, it would not change)
    done = run([*argv, "--check"] if argv[1] == "format" else argv, ws.env)
    assert "All checks passed!" in done.stdout or "already formatted" in done.stdout, done.stdout


RUNNERS: dict[str, Callable[[list[str], Workspace], None]] = {
    "retail-assets demo": run_demo,
    "retail-assets ui": run_ui,
    "dagster dev": run_dagster_dev,
    "dagster asset": run_materialize,
    "dagster job": run_backfill,
    "dg dev": run_dg,
    "dg list": run_dg,
    "dg check": run_dg,
    "dg launch": run_dg,
    "retail-assets generate": run_generate,
    "retail-assets broker": run_broker,
    "retail-assets database": run_database,
    "retail-assets produce": run_broker_and_produce,
    "retail-assets latency": run_latency,
    "retail-assets bench": run_bench,
    "retail-assets sql": run_sql,
    "retail-assets grants": run_grants,
    "retail-assets provision": run_provision,
    "jvm fetch": run_jvm,
    "jvm list": run_jvm,
    "ruff check": run_ruff,
    "ruff format": run_ruff,
}


def test_every_readme_command_is_run_here():
    unknown = [
        shlex.join(argv)
        for argv in readme_commands()
        if key(argv) not in RUNNERS and not any(shlex.join(argv).startswith(p) for p in NOT_RUN_HERE)
    ]
    assert not unknown, f"README commands this test does not run: {unknown}"


@pytest.mark.slow
def test_readme_commands_work(workspace):
    """In the README's order, the demo first: the commands after it use its data root."""
    commands = [argv for argv in readme_commands() if key(argv) in RUNNERS]
    # a command the README shows twice (in set-up and again where it is explained) runs once
    commands = [argv for i, argv in enumerate(commands) if argv not in commands[:i]]
    commands.sort(key=lambda argv: key(argv) != "retail-assets demo")
    assert commands and key(commands[0]) == "retail-assets demo"
    for argv in commands:
        RUNNERS[key(argv)](argv, workspace)
