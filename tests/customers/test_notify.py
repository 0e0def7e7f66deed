"""The default notifier: the message goes to the outbox; the log shows a code only in development."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text
from structlog.testing import capture_logs

from smartbank.platform.db import Database
from smartbank.platform.notify import Channel, Message, OutboxNotifier, mask_recipient


def _message(recipient: str) -> Message:
    return Message(
        channel=Channel.SMS,
        recipient=recipient,
        template="customers.verification_code",
        params={"purpose": "registration"},
        secret_params={"code": "493817"},
    )


async def _send(db: Database, env: str, recipient: str) -> tuple[uuid.UUID, list[dict[str, object]]]:
    with capture_logs() as logs:
        async with db.transaction() as conn:
            message_id = await OutboxNotifier(env).send(conn, _message(recipient))
    return message_id, [entry for entry in logs if entry["event"] == "notify.sent"]


async def test_message_is_written_to_the_outbox_with_its_code_for_delivery(db: Database) -> None:
    recipient = f"+86139{uuid.uuid4().int % 10**8:08d}"
    message_id, _ = await _send(db, "production", recipient)
    async with db.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT topic, payload FROM platform.outbox WHERE event_id = :id"), {"id": message_id}
            )
        ).one()
    assert tuple(row) == (
        "notifications.requested",
        {
            "channel": "sms",
            "recipient": recipient,
            "template": "customers.verification_code",
            "params": {"purpose": "registration", "code": "493817"},
        },
    )


@pytest.mark.parametrize("env", ["production", "test"])
async def test_log_line_has_masked_recipient_and_no_code_outside_development(db: Database, env: str) -> None:
    message_id, logs = await _send(db, env, "+8613912345678")
    assert logs == [
        {
            "event": "notify.sent",
            "log_level": "info",
            "message_id": str(message_id),
            "channel": "sms",
            "recipient": "+86139****5678",
            "template": "customers.verification_code",
        }
    ]
    assert "493817" not in repr(logs)


async def test_log_line_shows_the_code_in_development(db: Database) -> None:
    _, logs = await _send(db, "development", "+8613912345678")
    assert len(logs) == 1
    assert logs[0]["dev_secret_params"] == {"code": "493817"}
    assert logs[0]["recipient"] == "+86139****5678"


def test_recipients_are_masked_in_logs() -> None:
    assert mask_recipient("alice@example.com") == "a***@example.com"
    assert mask_recipient("+447911123456") == "+44791***3456"
    assert mask_recipient("1234") == "****"


async def test_oversized_messages_are_refused_before_writing(db: Database) -> None:
    async with db.transaction() as conn:
        with pytest.raises(ValueError, match="at most 500"):
            await OutboxNotifier("test").send(
                conn, Message(Channel.EMAIL, "a@example.com", "t", params={"x": "y" * 501})
            )
