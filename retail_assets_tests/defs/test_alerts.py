"""Alerts reach people: a failed run and a failed blocking check each send exactly one e-mail
(through a real SMTP server on loopback) and one Slack message (through a loopback HTTP server
answering as Slack's Web API), naming the run, the asset, the partition, the check with its
figures and a link to the run; warnings below the configured share stay quiet."""

from __future__ import annotations

import email
import email.policy
import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest
from aiosmtpd.controller import Controller

from retail_assets.defs.operations.alerts import check_failure_alerts, run_failure_alerts
from retail_assets.lib.orchestration.alerts import Alerts, EmailChannel, SlackChannel, alerts_resource
from retail_assets.tooling.broker import free_port

DAY = "2026-11-03"
partitions = dg.DailyPartitionsDefinition(start_date="2026-11-01")


class Inbox:
    """aiosmtpd's handler: every message the server accepted."""

    def __init__(self) -> None:
        self.messages: list[email.message.Message] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"


class SlackApi(BaseHTTPRequestHandler):
    posts: list[dict] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        if self.headers.get("Content-Type", "").startswith("application/json"):
            fields = json.loads(body)
        else:
            fields = {k: v[0] for k, v in urllib.parse.parse_qs(body).items()}
        self.posts.append({"path": self.path, "auth": self.headers.get("Authorization"), **fields})
        answer = json.dumps({"ok": True, "channel": fields.get("channel"), "ts": "1.0"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


@pytest.fixture
def channels():
    inbox = Inbox()
    smtp = Controller(inbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    SlackApi.posts = []
    slack = ThreadingHTTPServer(("127.0.0.1", 0), SlackApi)
    threading.Thread(target=slack.serve_forever, daemon=True).start()
    alerts = Alerts(
        slack=SlackChannel(
            token="xoxb-test", channel="#retail-data", api_url=f"http://127.0.0.1:{slack.server_port}/api/"
        ),
        email=EmailChannel(
            host="127.0.0.1",
            port=smtp.port,
            security="none",
            sender="retail-assets@example.com",
            recipients=["data-team@example.com"],
        ),
        ui_url="http://dagster.example:3000",
        warn_share=0.05,
    )
    try:
        yield alerts, inbox.messages, SlackApi.posts
    finally:
        slack.shutdown()
        smtp.stop()


@dg.asset(key=["silver", "sales_lines"], partitions_def=partitions)
def broken_sales_lines():
    raise ValueError("column 'quantity' has type string, expected int")


@dg.asset(key=["gold", "fact_sales"], partitions_def=partitions)
def fact_sales():
    return None


@dg.asset_check(asset=fact_sales, blocking=True)
def conserves_silver_lines():
    return dg.AssetCheckResult(
        passed=False,
        description="12 of 1,000 Silver lines are missing from the fact",
        metadata={"silver_lines": 1000, "fact_lines": 988, "partition": DAY},
    )


@dg.asset_check(asset=fact_sales)
def quality_warnings():
    return dg.AssetCheckResult(
        passed=False,
        severity=dg.AssetCheckSeverity.WARN,
        description="3 of 1000 rows kept with warnings",
        metadata={"rows": 1000, "flagged_rows": 3},
    )


def tick(sensor: dg.SensorDefinition, instance: dg.DagsterInstance, alerts: Alerts, cursor: str | None):
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources={"alerts": alerts}) as context:
        sensor(context)
        return context.cursor


def test_a_failed_run_sends_one_email_and_one_slack_message(channels):
    alerts, mails, posts = channels
    with dg.instance_for_test() as instance:
        run_cursor = tick(run_failure_alerts, instance, alerts, None)
        check_cursor = tick(check_failure_alerts, instance, alerts, None)
        result = dg.materialize([broken_sales_lines], partition_key=DAY, instance=instance, raise_on_error=False)
        assert not result.success
        for _ in range(2):  # a second tick sends nothing more
            run_cursor = tick(run_failure_alerts, instance, alerts, run_cursor)
            check_cursor = tick(check_failure_alerts, instance, alerts, check_cursor)
    run_id = result.run_id
    assert len(mails) == 1 and len(posts) == 1
    mail, post = mails[0], posts[0]
    assert mail["Subject"].startswith("retail-assets: run failed:") and DAY in mail["Subject"]
    assert mail["To"] == "data-team@example.com"
    body = mail.get_content()
    for named in (run_id, "silver/sales_lines", DAY, "ValueError: column 'quantity' has type string, expected int"):
        assert named in body and named in post["text"], named
    assert (
        f"http://dagster.example:3000/runs/{run_id}" in body
        and f"http://dagster.example:3000/runs/{run_id}" in post["text"]
    )
    assert post["path"] == "/api/chat.postMessage" and post["channel"] == "#retail-data"
    assert post["auth"] == "Bearer xoxb-test"


def test_a_failed_blocking_check_sends_one_message_naming_the_check_and_its_figures(channels):
    alerts, mails, posts = channels
    with dg.instance_for_test() as instance:
        run_cursor = tick(run_failure_alerts, instance, alerts, None)
        check_cursor = tick(check_failure_alerts, instance, alerts, None)
        result = dg.materialize(
            [fact_sales, conserves_silver_lines, quality_warnings],
            partition_key=DAY,
            instance=instance,
            raise_on_error=False,
        )
        assert not result.success  # a failed blocking check fails its step
        for _ in range(2):
            run_cursor = tick(run_failure_alerts, instance, alerts, run_cursor)
            check_cursor = tick(check_failure_alerts, instance, alerts, check_cursor)
    # one message per channel: the check alert; the run alert leaves a check failure to it
    assert len(mails) == 1 and len(posts) == 1
    body, text = mails[0].get_content(), posts[0]["text"]
    assert "check failed: gold/fact_sales conserves_silver_lines" in mails[0]["Subject"]
    for named in (
        "gold/fact_sales · conserves_silver_lines (blocking) failed on 2026-11-03",
        "12 of 1,000 Silver lines are missing from the fact",
        "silver_lines=1000",
        "fact_lines=988",
        f"http://dagster.example:3000/runs/{result.run_id}",
        "http://dagster.example:3000/assets/gold/fact_sales?view=checks",
    ):
        assert named in body, named
        assert named.split(" · ")[-1] in text, named
    # 3 flagged rows of 1,000 is below the 5% share: that warning is not worth a message
    assert "quality_warnings" not in body


def test_a_warning_past_its_share_alerts(channels):
    alerts, mails, posts = channels
    alerts = Alerts(slack=alerts.slack, email=alerts.email, ui_url=alerts.ui_url, warn_share=0.001)
    with dg.instance_for_test() as instance:
        cursor = tick(check_failure_alerts, instance, alerts, None)
        assert dg.materialize([fact_sales, quality_warnings], partition_key=DAY, instance=instance).success
        tick(check_failure_alerts, instance, alerts, cursor)
    assert len(mails) == 1 and "quality_warnings (warn) failed" in mails[0].get_content()
    assert "flagged_rows=3" in posts[0]["text"]


def test_history_is_not_replayed_and_nothing_is_sent_without_failures(channels):
    alerts, mails, posts = channels
    with dg.instance_for_test() as instance:
        dg.materialize([broken_sales_lines], partition_key=DAY, instance=instance, raise_on_error=False)
        cursor = tick(run_failure_alerts, instance, alerts, None)  # first tick: starts after that failure
        assert dg.materialize([fact_sales], partition_key=DAY, instance=instance).success
        tick(run_failure_alerts, instance, alerts, cursor)
        tick(check_failure_alerts, instance, alerts, tick(check_failure_alerts, instance, alerts, None))
    assert mails == [] and posts == []


def test_channels_come_from_the_environment_and_are_off_by_default(monkeypatch):
    for name in ("RETAIL_ALERT_SLACK_TOKEN", "RETAIL_ALERT_SMTP_HOST", "RETAIL_ALERT_EMAIL_TO"):
        monkeypatch.delenv(name, raising=False)
    assert not alerts_resource().enabled
    assert run_failure_alerts.default_status is dg.DefaultSensorStatus.STOPPED
    monkeypatch.setenv("RETAIL_ALERT_SLACK_TOKEN", "xoxb-secret")
    monkeypatch.setenv("RETAIL_ALERT_SLACK_CHANNEL", "#retail-data")
    monkeypatch.setenv("RETAIL_ALERT_SMTP_HOST", "smtp.example.com")
    monkeypatch.setenv("RETAIL_ALERT_EMAIL_TO", "a@example.com, b@example.com")
    monkeypatch.setenv("RETAIL_ALERT_SMTP_PASSWORD", "hunter2")
    configured = alerts_resource()
    assert configured.enabled and configured.email.recipients == ["a@example.com", "b@example.com"]
    # secrets stay environment variables in the definitions, resolved only when a sensor runs
    assert isinstance(configured.slack.token, dg.EnvVar) and isinstance(configured.email.password, dg.EnvVar)
