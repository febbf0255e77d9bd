"""Notification formats and their delivery: a generic JSON webhook, email over SMTP, and the
robot-webhook formats of DingTalk, WeCom (企业微信), Feishu/Lark and Slack.

`payload()` is pure (tests check every format without a network); `deliver()` re-checks the
destination against the egress policy at send time (a name may resolve elsewhere than when it was
written) and connects to the address it checked, never follows redirects (a redirect could lead
to a forbidden address), and turns every failure into a DeliveryError whose message is the
destination's answer or the reason."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import smtplib
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any
from urllib.parse import quote_plus, urlsplit

from dockyard.model.alerts import NotifierSpec, format_value
from dockyard.policy.egress import EgressRefused, Resolver, check_host, check_url, open_pinned_http, system_resolve

PAYLOAD_VERSION = "1"
HTTP_SCHEMES = frozenset({"http", "https"})
HTTP_TIMEOUT = 5.0
SMTP_TIMEOUT = 10.0


class DeliveryError(Exception):
    """A notification did not reach its destination; the message says why."""


@dataclass
class Notification:
    """What every format carries: the rule, the state, the object, the value, a dashboard link."""

    rule: str
    project: str
    app: str | None
    state: str  # "firing" | "resolved"
    subject: str  # the metric or condition: "cpu", "notReady", "quota cpu"
    value: float | None
    threshold: float | None
    op: str | None
    unit: str
    starts_at: str
    ends_at: str | None
    url: str
    summary: str
    test: bool = False

    def headline(self) -> str:
        """One line: `[FIRING] hot-cpu: acme/shop app web cpu 93.2% > 80%`."""
        target = f"{self.project} app {self.app}" if self.app else self.project
        return f"[{self.state.upper()}] {self.rule}: {target} {self.condition_text()}"

    def condition_text(self) -> str:
        value = "-" if self.value is None else format_value(self.value, self.unit)
        if self.threshold is None or self.op is None:
            return f"{self.subject} (value {value})"
        return f"{self.subject} {value} {self.op} {format_value(self.threshold, self.unit)}"

    def lines(self) -> list[str]:
        """The body of the text formats, one fact a line."""
        out = [self.summary, f"Rule: {self.rule}", f"State: {self.state}", f"Project: {self.project}"]
        if self.app:
            out.append(f"App: {self.app}")
        out.append(f"Condition: {self.condition_text()}")
        out.append(f"Since: {self.starts_at}" + (f" until {self.ends_at}" if self.ends_at else ""))
        out.append(f"Dashboard: {self.url}")
        return out


# --- formats -------------------------------------------------------------------------------

def webhook_body(n: Notification) -> dict[str, Any]:
    return {"version": PAYLOAD_VERSION, "status": n.state, "rule": n.rule, "project": n.project, "app": n.app,
            "subject": n.subject, "value": n.value, "op": n.op, "threshold": n.threshold, "unit": n.unit,
            "startsAt": n.starts_at, "endsAt": n.ends_at, "dashboardURL": n.url, "summary": n.summary,
            "test": n.test}


def markdown(n: Notification) -> str:
    facts = n.lines()
    return "\n".join([f"### {n.headline()}", "", *[f"- {x}" for x in facts[1:-1]], "",
                      f"[Open in Dockyard]({n.url})"])


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk robot signature: base64 of HMAC-SHA256 over "timestamp\\nsecret", keyed by the secret."""
    mac = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


def feishu_sign(secret: str, timestamp_s: int) -> str:
    """Feishu/Lark bot signature: base64 of HMAC-SHA256 over nothing, keyed by "timestamp\\nsecret"."""
    mac = hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


def payload(spec: NotifierSpec, n: Notification, now: float) -> tuple[str, dict[str, Any]]:
    """(URL to POST to, JSON body) for an HTTP notifier type at time `now` (signatures are timed)."""
    url = spec.url or ""
    if spec.type == "webhook":
        return url, webhook_body(n)
    if spec.type == "dingtalk":
        body = {"msgtype": "markdown", "markdown": {"title": n.headline(), "text": markdown(n)}}
        if spec.secret:
            ts = int(now * 1000)
            sep = "&" if "?" in url else "?"
            url = f"{url}{sep}timestamp={ts}&sign={quote_plus(dingtalk_sign(spec.secret, ts))}"
        return url, body
    if spec.type == "wecom":
        return url, {"msgtype": "markdown", "markdown": {"content": markdown(n)}}
    if spec.type == "feishu":
        body: dict[str, Any] = {"msg_type": "text", "content": {"text": "\n".join([n.headline(), *n.lines()[1:]])}}
        if spec.secret:
            ts = int(now)
            body.update(timestamp=str(ts), sign=feishu_sign(spec.secret, ts))
        return url, body
    if spec.type == "slack":
        return url, {"text": n.headline(), "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": n.headline()[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(f"• {x}" for x in n.lines()[1:-1])}},
            {"type": "section", "text": {"type": "mrkdwn", "text": f"<{n.url}|Open in Dockyard>"}}]}
    raise ValueError(f"{spec.type} is not an HTTP notifier")


def email_message(spec: NotifierSpec, n: Notification) -> EmailMessage:
    assert spec.smtp is not None
    msg = EmailMessage()
    msg["Subject"] = n.headline()
    msg["From"] = spec.smtp.from_
    msg["To"] = ", ".join(spec.to)
    msg.set_content("\n".join(n.lines()) + "\n")
    return msg


# --- delivery ------------------------------------------------------------------------------

# what the chat robots answer with HTTP 200 when they refuse a message
_ROBOT_ERRORS = {"dingtalk": ("errcode", "errmsg"), "wecom": ("errcode", "errmsg"), "feishu": ("code", "msg")}


@dataclass
class Target:
    """A notifier ready to send: its spec, whether an admin allowed private destinations for it,
    and how to read its SMTP password (from a project Secret, only when sending)."""

    name: str
    spec: NotifierSpec
    allow_private: bool
    password: Callable[[], str | None] = lambda: None


def deliver(target: Target, n: Notification, *, resolve: Resolver = system_resolve,
            clock: Callable[[], float] = time.time) -> str:
    """Send `n` through `target`; the destination's answer, or DeliveryError."""
    try:
        if target.spec.type == "email":
            return _send_email(target, n, resolve)
        return _post(target, n, resolve, clock())
    except EgressRefused as e:
        raise DeliveryError(f"destination refused by the egress policy: {e}") from None


def _post(target: Target, n: Notification, resolve: Resolver, now: float) -> str:
    spec = target.spec
    url, body = payload(spec, n, now)
    dest = check_url(url, schemes=HTTP_SCHEMES, allow_private=target.allow_private, resolve=resolve)
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = {"User-Agent": "dockyard-alerts", **spec.headers, "Content-Type": "application/json"}
    # the connection goes to the address just checked, never to a second resolution of the name
    conn = open_pinned_http(parts.scheme.lower(), dest, HTTP_TIMEOUT)
    try:
        conn.request("POST", path, body=json.dumps(body).encode(), headers=headers)
        r = conn.getresponse()
        text = r.read(64 * 1024).decode("utf-8", "replace").strip()
    except http.client.InvalidURL:
        # its message quotes the path and query, often a token; errors go to the rule's status, which
        # viewers read while the URL is for maintainers
        raise DeliveryError("spec.url holds a space or control character; fix the notifier's URL") from None
    except (OSError, http.client.HTTPException) as e:
        raise DeliveryError(f"{type(e).__name__}: {e or 'no answer'}") from None
    finally:
        conn.close()
    answer = f"HTTP {r.status}: {text[:300]}"
    if not 200 <= r.status < 300:
        raise DeliveryError(answer)
    code_key, msg_key = _ROBOT_ERRORS.get(spec.type, (None, None))
    if code_key:
        try:
            reply = json.loads(text)
        except ValueError:
            reply = {}
        if isinstance(reply, dict) and reply.get(code_key) not in (None, 0):
            raise DeliveryError(f"{spec.type} refused the message: {reply.get(code_key)} {reply.get(msg_key, '')}")
    return answer


def _pinned_smtp(base: type[smtplib.SMTP], address: str) -> type[smtplib.SMTP]:
    """`base` connecting to the checked `address`; the host name stays what TLS verifies."""

    class Pinned(base):  # type: ignore[misc, valid-type]
        def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
            sock = socket.create_connection((address, port), timeout)
            if isinstance(self, smtplib.SMTP_SSL):
                return self.context.wrap_socket(sock, server_hostname=host)
            return sock

    return Pinned


def _send_email(target: Target, n: Notification, resolve: Resolver) -> str:
    spec = target.spec
    smtp = spec.smtp
    assert smtp is not None
    dest = check_host(smtp.host, smtp.port, scheme="smtp", allow_private=target.allow_private, resolve=resolve)
    msg = email_message(spec, n)
    try:
        implicit_tls = smtp.port == 465
        cls = _pinned_smtp(smtplib.SMTP_SSL if implicit_tls else smtplib.SMTP, dest.addresses[0])
        with cls(smtp.host, smtp.port, timeout=SMTP_TIMEOUT) as client:
            if smtp.starttls and not implicit_tls:
                client.starttls(context=ssl.create_default_context())
            if smtp.username:
                client.login(smtp.username, target.password() or "")
            refused = client.send_message(msg)
    except (smtplib.SMTPException, OSError) as e:
        raise DeliveryError(f"SMTP {smtp.host}:{smtp.port}: {e}") from None
    if refused:
        raise DeliveryError(f"SMTP {smtp.host}:{smtp.port} refused {', '.join(sorted(refused))}")
    return f"SMTP {smtp.host}:{smtp.port} accepted the message for {', '.join(spec.to)}"
