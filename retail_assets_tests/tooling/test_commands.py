"""The command line as a new user meets it: every command explains itself, and a command that
cannot run says why in one line before it touches anything."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import click
import pytest
from click._utils import UNSET

from retail_assets.tooling.cli import cli, main
from retail_assets.tooling.cli.preflight import java_major


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def snapshot(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else ["<absent>"]


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_every_command_explains_itself(capsys, name):
    code, out, _ = run(capsys, name, "--help")
    assert code == 0
    assert (
        f"Usage: retail-assets {name}" in out
        and "Examples:" in out
        and f"retail-assets {name}" in out.split("Examples:")[1]
    )
    command = cli.commands[name]
    undocumented = [p.name for p in command.params if isinstance(p, click.Option) and not p.help]
    assert not undocumented, f"options without help: {undocumented}"
    # every option that has a default or reads a variable says so
    for p in command.params:
        if isinstance(p, click.Option) and not p.is_flag and p.default not in (None, UNSET) and not p.multiple:
            assert p.show_default, f"{name} --{p.name} hides its default"
        if isinstance(p, click.Option) and p.envvar:
            assert p.show_envvar and f"env var: {p.envvar}" in " ".join(out.split())


def test_version_and_an_unknown_command(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.startswith("retail-assets, version ")
    code, _, err = run(capsys, "no-such-command")
    assert code == 2 and "No such command 'no-such-command'" in err


def test_java_versions_are_read():
    assert java_major('openjdk version "17.0.9" 2023-10-17') == 17
    assert java_major('java version "1.8.0_392"') == 8
    assert java_major('openjdk version "21" 2023-09-19') == 21
    assert java_major("no version here") is None


def one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture
def fake_java(tmp_path, monkeypatch):
    """A `java` on PATH that reports the version it is given."""

    def install(version: str) -> None:
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir(exist_ok=True)
        java = bin_dir / "java"
        java.write_text(f"#!/bin/sh\necho 'openjdk version \"{version}\" 2020-01-01' >&2\n")
        java.chmod(java.stat().st_mode | stat.S_IEXEC)
        monkeypatch.delenv("JAVA_HOME", raising=False)
        monkeypatch.setenv("PATH", str(bin_dir))

    return install


def test_preflight_failures_are_one_line_and_change_nothing(capsys, tmp_path, monkeypatch, fake_java):
    root = tmp_path / "data"
    monkeypatch.delenv("RETAIL_ENV", raising=False)

    monkeypatch.setenv("RETAIL_LATENESS_DAYS", "-1")
    code, _, err = run(capsys, "demo", "--data-root", str(root))
    assert code == 2 and "RETAIL_LATENESS_DAYS must be >= 0" in one_line_error(err)
    monkeypatch.delenv("RETAIL_LATENESS_DAYS")

    monkeypatch.setenv("RETAIL_ENV", "prod")
    code, _, err = run(capsys, "demo", "--data-root", str(root))
    assert code == 2 and "RETAIL_ENV='prod' is not a known environment" in one_line_error(err)
    monkeypatch.setenv("RETAIL_ENV", "databricks")
    code, _, err = run(capsys, "ui", "--data-root", str(root))
    assert code == 2 and "selects Databricks" in one_line_error(err)
    monkeypatch.delenv("RETAIL_ENV")

    afile = tmp_path / "a-file"
    afile.write_text("x")
    code, _, err = run(capsys, "demo", "--data-root", str(afile))
    assert code == 2 and f"Directory '{afile}' is a file" in err  # click's own check of the option
    code, _, err = run(capsys, "demo", "--data-root", str(afile / "below"))
    assert code == 2 and "is not a folder" in one_line_error(err)

    monkeypatch.setenv("RETAIL_JVM_CACHE", str(tmp_path / "empty-cache"))
    code, _, err = run(capsys, "broker", "--data-root", str(root))
    line = one_line_error(err)
    assert code == 2 and "JVM artifacts of kafka" in line and "python -m retail_assets.lib.engine.jvm fetch" in line
    monkeypatch.delenv("RETAIL_JVM_CACHE")

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        code, _, err = run(capsys, "broker", "--port", str(port), "--data-root", str(root))
        assert code == 2 and f"port {port} (Kafka broker) is already in use" in one_line_error(err)
    finally:
        busy.close()

    fake_java("11.0.2")
    code, _, err = run(capsys, "demo", "--data-root", str(root))
    assert code == 2 and "is Java 11; Java 17+ is needed" in one_line_error(err)
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    code, _, err = run(capsys, "broker", "--data-root", str(root))
    assert code == 2 and "`java` is not on PATH" in one_line_error(err)

    assert snapshot(root) == ["<absent>"] and sorted(os.listdir(tmp_path)) == ["a-file", "bin"]


def test_demo_never_replaces_an_existing_data_root_unasked(capsys, tmp_path):
    root = tmp_path / "data"
    (root / "lakehouse" / "silver").mkdir(parents=True)
    (root / "manifest.json").write_text("{}")
    before = snapshot(root)
    code, _, err = run(capsys, "demo", "--data-root", str(root))
    line = one_line_error(err)
    assert code == 2 and "already holds lakehouse, manifest.json: pass --force" in line
    assert snapshot(root) == before


def test_generate_writes_a_tiny_week_and_keeps_what_is_there(capsys, tmp_path):
    out = tmp_path / "gen"
    code, stdout, _ = run(capsys, "generate", "--out", str(out), "--preset", "tiny", "--days", "1", "--defects")
    assert code == 0 and "generated seed=7" in stdout and "defects=on" in stdout
    assert (out / "manifest.json").exists() and (out / "kafka" / "pos_transactions.jsonl").exists()
    before = snapshot(out)
    code, _, err = run(capsys, "generate", "--out", str(out), "--preset", "tiny", "--days", "1")
    assert code == 2 and "pass --force" in one_line_error(err)
    assert snapshot(out) == before
    code, _, err = run(capsys, "generate", "--out", str(out), "--kafka-share", "2")
    assert code == 2 and "--kafka-share" in err


def test_progress_shows_runs_steps_and_time_live_and_plain_lines_elsewhere(capsys):
    from types import SimpleNamespace

    import dagster as dg

    from retail_assets.tooling.cli.progress import Progress, step_counter

    with Progress("demo", live=False, total=3) as progress:
        progress.status("build_gold 2026-11-01…2026-11-07", steps=(0, 4))
        listen = step_counter(progress, 4)
        for kind in (
            dg.DagsterEventType.STEP_START,
            dg.DagsterEventType.STEP_SUCCESS,
            dg.DagsterEventType.STEP_FAILURE,
        ):
            listen(SimpleNamespace(dagster_event=SimpleNamespace(event_type=kind)))
        listen(SimpleNamespace(dagster_event=None))  # a plain log line
        shown = progress._render().plain
        progress.advance()
        progress.line("  ok   build_gold")
    assert (
        "0/3 runs" in shown and "build_gold 2026-11-01…2026-11-07" in shown and "steps 2/4" in shown and "0:00" in shown
    )
    assert "1/3 runs" in progress._render().plain
    # not a terminal: only the permanent lines, nothing of the live status
    assert capsys.readouterr().out == "  ok   build_gold\n"


def test_a_command_missing_its_extra_says_how_to_install_it(capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "psutil" else real(name, *a))
    code, _, err = run(capsys, "bench", "--size", "tiny")
    assert code == 2 and "needs psutil" in one_line_error(err) and "pip install -e '.[bench]'" in err
