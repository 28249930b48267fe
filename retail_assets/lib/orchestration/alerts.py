"""Alerts: what failed, said in one message, to Slack and by e-mail.

`Alerts` is the resource the alert sensors (`defs/operations/alerts.py`) and the freshness
sensor send through. Each channel is on when its configuration is present (`alerts_resource`
reads the `RETAIL_ALERT_*` environment; secrets through `dg.EnvVar`), so locally both are off
until configured. A message names the run, the job, the assets and partitions, the failing
checks with their figures, and links to the run in the UI.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import dagster as dg
from dagster_slack import SlackResource
from pydantic import Field
from slack_sdk import WebClient

from retail_assets.lib import settings

UI_URL_ENV = "RETAIL_UI_URL"


@dataclass(frozen=True)
class Alert:
    """One message: `subject` is its first line, `lines` the rest, `links` where to look."""

    subject: str
    lines: Sequence[str]
    links: Sequence[tuple[str, str]] = field(default_factory=tuple)

    def text(self) -> str:
        return "\n".join([*self.lines, *(f"{name}: {url}" for name, url in self.links)])

    def slack_text(self) -> str:
        return "\n".join([f"*{self.subject}*", *self.lines, *(f"<{url}|{name}>" for name, url in self.links)])


class SlackChannel(SlackResource):
    """dagster-slack's resource, posting to one channel; `api_url` is Slack's Web API unless a
    proxy (or a test's stand-in) serves it elsewhere."""

    channel: str = Field(description="Channel the alerts are posted to, e.g. #retail-data.")
    api_url: str = Field(default="https://slack.com/api/", description="Base URL of Slack's Web API.")

    def get_client(self) -> WebClient:
        return WebClient(self.token, base_url=self.api_url.rstrip("/") + "/")

    def send(self, alert: Alert) -> None:
        self.get_client().chat_postMessage(channel=self.channel, text=alert.slack_text())


class EmailChannel(dg.ConfigurableResource):
    """SMTP delivery: `security` is `starttls` (port 587), `ssl` (465) or `none` (a relay on a
    trusted network)."""

    host: str
    port: int = 587
    security: str = "starttls"
    user: str | None = None
    password: str | None = None
    sender: str
    recipients: list[str]
    timeout_s: float = 20.0

    def send(self, alert: Alert) -> None:
        message = EmailMessage()
        message["Subject"] = alert.subject
        message["From"] = self.sender
        message["To"] = ", ".join(self.recipients)
        message.set_content(alert.text())
        if self.security == "ssl":
            client = smtplib.SMTP_SSL(
                self.host, self.port, timeout=self.timeout_s, context=ssl.create_default_context()
            )
        else:
            client = smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)
        with client:
            if self.security == "starttls":
                client.starttls(context=ssl.create_default_context())
            if self.user:
                client.login(self.user, self.password or "")
            client.send_message(message)


class Alerts(dg.ConfigurableResource):
    """Where alerts go, and which warnings are worth one.

    `warn_share`: a failed warn-level check whose figures give a share of rows (flagged of all)
    alerts only at or above it; a warn check that failed against a threshold of its own (a reject
    rate), or gives no share, always alerts."""

    slack: SlackChannel | None = None
    email: EmailChannel | None = None
    ui_url: str = "http://127.0.0.1:3000"
    warn_share: float = 0.01

    @property
    def enabled(self) -> bool:
        return self.slack is not None or self.email is not None

    def run_url(self, run_id: str) -> str:
        return f"{self.ui_url.rstrip('/')}/runs/{run_id}"

    def asset_url(self, asset_key: dg.AssetKey, view: str | None = None) -> str:
        url = f"{self.ui_url.rstrip('/')}/assets/{'/'.join(asset_key.path)}"
        return url + (f"?view={view}" if view else "")

    def send(self, alert: Alert, log: Any = None) -> list[str]:
        """Deliver `alert` on every channel; the channels it went out on. A channel that fails
        raises after the others were tried, so the sensor's tick fails and says why."""
        sent, errors = [], []
        for name, channel in (("slack", self.slack), ("email", self.email)):
            if channel is None:
                continue
            try:
                channel.send(alert)
                sent.append(name)
            except Exception as exc:  # noqa: BLE001 - the other channel still gets the alert; raised below
                errors.append(f"{name}: {type(exc).__name__}: {exc}")
        if log is not None and sent:
            log.info(f"alert sent ({', '.join(sent)}): {alert.subject}")
        if errors:
            raise RuntimeError(f"alert {alert.subject!r} not delivered: " + "; ".join(errors))
        return sent


def alerts_resource() -> Alerts:
    """The alert channels from the environment: Slack when `RETAIL_ALERT_SLACK_TOKEN` and
    `RETAIL_ALERT_SLACK_CHANNEL` are set, e-mail when `RETAIL_ALERT_SMTP_HOST` and
    `RETAIL_ALERT_EMAIL_TO` are (comma-separated addresses). Tokens and passwords are read as
    `dg.EnvVar`s, never written into the definitions."""
    env = settings.env
    slack = None
    if env("RETAIL_ALERT_SLACK_TOKEN", "") and env("RETAIL_ALERT_SLACK_CHANNEL", ""):
        slack = SlackChannel(
            token=dg.EnvVar("RETAIL_ALERT_SLACK_TOKEN"),
            channel=env("RETAIL_ALERT_SLACK_CHANNEL", ""),
            api_url=env("RETAIL_ALERT_SLACK_API_URL", "https://slack.com/api/"),
        )
    email = None
    recipients = [a.strip() for a in env("RETAIL_ALERT_EMAIL_TO", "").split(",") if a.strip()]
    if env("RETAIL_ALERT_SMTP_HOST", "") and recipients:
        email = EmailChannel(
            host=env("RETAIL_ALERT_SMTP_HOST", ""),
            port=int(env("RETAIL_ALERT_SMTP_PORT", "587")),
            security=env("RETAIL_ALERT_SMTP_SECURITY", "starttls"),
            user=env("RETAIL_ALERT_SMTP_USER", "") or None,
            password=dg.EnvVar("RETAIL_ALERT_SMTP_PASSWORD") if env("RETAIL_ALERT_SMTP_PASSWORD", "") else None,
            sender=env("RETAIL_ALERT_EMAIL_FROM", "retail-assets@localhost"),
            recipients=recipients,
        )
    return Alerts(
        slack=slack,
        email=email,
        ui_url=env(UI_URL_ENV, "http://127.0.0.1:3000"),
        warn_share=float(env("RETAIL_ALERT_WARN_SHARE", "0.01")),
    )
