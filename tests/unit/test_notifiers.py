"""Notification formats: every payload carries the rule, the state, the object, the value and the
dashboard link; DingTalk and Feishu signatures match vectors computed with openssl
(`printf '1700000000000\\nSECtest123' | openssl dgst -sha256 -hmac SECtest123 -binary | base64`,
and for Feishu the key "1700000000\\nSECtest123" over an empty message); delivery over a real
HTTP server and a real SMTP server (aiosmtpd) on loopback, and the egress check at send time."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from dockyard.alerts.notifiers import (
    DeliveryError,
    Notification,
    Target,
    deliver,
    dingtalk_sign,
    email_message,
    feishu_sign,
    payload,
)
from dockyard.model.alerts import NotifierSpec

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from loopback_peers import Mailbox, Receiver  # noqa: E402

DINGTALK_VECTOR = "w3RMHXzixTMdzr8OHJUmVLS4IoPJVdu+Ut1LE48MePE="
FEISHU_VECTOR = "eHRRCyLH7Z4IJQSJlfwertHZThRUYVu2hTUH02xPXYU="
LINK = "http://dash.example/#/projects/acme/shop/apps/web/metrics"


def note(state: str = "firing") -> Notification:
    return Notification(rule="hot-cpu", project="acme/shop", app="web", state=state, subject="cpu", value=93.25,
                        threshold=80.0, op=">", unit="%", starts_at="2026-11-27T10:00:00Z",
                        ends_at="2026-11-27T10:05:00Z" if state == "resolved" else None, url=LINK,
                        summary="web is hot")


def spec(**kw) -> NotifierSpec:  # noqa: ANN003
    return NotifierSpec.model_validate(kw)


def text_of(body: object) -> str:
    return json.dumps(body, ensure_ascii=False)


def assert_carries_everything(text: str, state: str = "firing") -> None:
    for fact in ("hot-cpu", state, "acme/shop", "web", "93.2", LINK):
        assert fact.lower() in text.lower(), (fact, text)


def test_signatures_match_openssl_vectors() -> None:
    assert dingtalk_sign("SECtest123", 1700000000000) == DINGTALK_VECTOR
    assert feishu_sign("SECtest123", 1700000000) == FEISHU_VECTOR


def test_webhook_json() -> None:
    url, body = payload(spec(type="webhook", url="https://hooks.example/x"), note("resolved"), 0)
    assert url == "https://hooks.example/x"
    assert body["version"] == "1" and body["status"] == "resolved" and body["rule"] == "hot-cpu"
    assert body["project"] == "acme/shop" and body["app"] == "web" and body["subject"] == "cpu"
    assert body["value"] == 93.25 and body["threshold"] == 80.0 and body["op"] == ">"
    assert body["startsAt"] == "2026-11-27T10:00:00Z" and body["endsAt"] == "2026-11-27T10:05:00Z"
    assert body["dashboardURL"] == LINK and body["summary"] == "web is hot"


def test_dingtalk_markdown_and_signed_url() -> None:
    url, body = payload(spec(type="dingtalk", url="https://oapi.dingtalk.com/robot/send?access_token=T",
                             secret="SECtest123"), note(), 1700000000.0)
    assert body["msgtype"] == "markdown" and body["markdown"]["title"].startswith("[FIRING] hot-cpu")
    assert_carries_everything(body["markdown"]["text"])
    q = parse_qs(urlsplit(url).query)
    assert q["access_token"] == ["T"] and q["timestamp"] == ["1700000000000"] and q["sign"] == [DINGTALK_VECTOR]
    unsigned, _ = payload(spec(type="dingtalk", url="https://oapi.dingtalk.com/robot/send?access_token=T"), note(), 0)
    assert "sign=" not in unsigned


def test_wecom_markdown() -> None:
    _, body = payload(spec(type="wecom", url="https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=K"), note(), 0)
    assert body["msgtype"] == "markdown"
    assert_carries_everything(body["markdown"]["content"])


def test_feishu_text_signed_in_body() -> None:
    _, body = payload(spec(type="feishu", url="https://open.feishu.cn/open-apis/bot/v2/hook/H", secret="SECtest123"),
                      note(), 1700000000.9)
    assert body["msg_type"] == "text" and body["timestamp"] == "1700000000" and body["sign"] == FEISHU_VECTOR
    assert_carries_everything(body["content"]["text"])


def test_slack_text_and_blocks() -> None:
    _, body = payload(spec(type="slack", url="https://hooks.slack.com/services/A/B/C"), note(), 0)
    assert body["text"].startswith("[FIRING] hot-cpu") and body["blocks"][0]["type"] == "header"
    assert_carries_everything(text_of(body))


def test_email_plain_text_with_link() -> None:
    msg = email_message(spec(type="email", to=["ops@example.com"], smtp={"host": "mail", "from": "dy@example.com"}),
                        note())
    assert msg["Subject"].startswith("[FIRING] hot-cpu") and msg["To"] == "ops@example.com"
    assert_carries_everything(msg["Subject"] + msg.get_content())


# --- delivery on loopback ------------------------------------------------------------------

def test_webhook_delivery_and_answer() -> None:
    r = Receiver()
    try:
        answer = deliver(Target("hook", spec(type="webhook", url=r.url), allow_private=True), note())
        assert answer.startswith("HTTP 200") and r.bodies()[0]["rule"] == "hot-cpu"
    finally:
        r.close()


def test_errors_carry_the_destinations_answer() -> None:
    r = Receiver(status=500, reply={"error": "down for maintenance"})
    try:
        with pytest.raises(DeliveryError, match="HTTP 500.*maintenance"):
            deliver(Target("hook", spec(type="webhook", url=r.url), allow_private=True), note())
    finally:
        r.close()
    robot = Receiver(reply={"errcode": 310000, "errmsg": "sign not match"})
    try:
        with pytest.raises(DeliveryError, match="310000 sign not match"):
            deliver(Target("ding", spec(type="dingtalk", url=robot.url, secret="s"), allow_private=True), note())
    finally:
        robot.close()


def test_a_url_http_refuses_is_an_error_without_the_urls_secrets() -> None:
    """Delivery errors land in the rule's status, which viewers read; a notifier's URL (its token)
    is for maintainers only. Admission refuses such URLs now; this is one stored before."""
    bad = NotifierSpec.model_construct(type="dingtalk", url="https://oapi.dingtalk.com/robot/send?access_token=t0ken ",
                                       secret=None, to=[], smtp=None, headers={})
    with pytest.raises(DeliveryError) as e:
        deliver(Target("ding", bad, allow_private=True), note(), resolve=lambda host, port: ["127.0.0.1"])
    assert "t0ken" not in str(e.value) and "spec.url" in str(e.value)


def test_private_destination_needs_the_admin_mark_at_send_time() -> None:
    r = Receiver()
    try:
        with pytest.raises(DeliveryError, match="egress policy.*loopback"):
            deliver(Target("hook", spec(type="webhook", url=r.url), allow_private=False), note())
        assert r.bodies() == []
        # a public name that now resolves to the metadata address is refused even with the mark
        with pytest.raises(DeliveryError, match="link-local"):
            deliver(Target("hook", spec(type="webhook", url="http://hooks.example/x"), allow_private=True), note(),
                    resolve=lambda host, port: ["169.254.169.254"])
    finally:
        r.close()


def test_email_reaches_an_smtp_server() -> None:
    box = Mailbox()
    try:
        s = spec(type="email", to=["ops@example.com"],
                 smtp={"host": "127.0.0.1", "port": box.port, "from": "dy@example.com", "starttls": False})
        answer = deliver(Target("mail", s, allow_private=True), note())
        assert "accepted" in answer
        sender, rcpts, content = box.messages[0]
        assert sender == "dy@example.com" and rcpts == ["ops@example.com"]
        assert_carries_everything(content.decode())
    finally:
        box.close()


def test_connections_go_to_the_checked_address() -> None:
    """The names below do not resolve at all: delivery works only because the sender connects to
    the address the egress check returned (no second resolution that DNS could answer otherwise)."""
    r = Receiver()
    box = Mailbox()
    loopback = lambda host, port: ["127.0.0.1"]  # noqa: E731
    try:
        url = r.url.replace("127.0.0.1", "hooks.invalid")
        assert deliver(Target("hook", spec(type="webhook", url=url), allow_private=True), note(),
                       resolve=loopback).startswith("HTTP 200")
        s = spec(type="email", to=["ops@example.com"],
                 smtp={"host": "mail.invalid", "port": box.port, "from": "dy@example.com", "starttls": False})
        assert "accepted" in deliver(Target("mail", s, allow_private=True), note(), resolve=loopback)
        assert len(r.bodies()) == 1 and len(box.messages) == 1
    finally:
        r.close()
        box.close()
