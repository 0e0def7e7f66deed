"""Messages to people (text messages, e-mail), sent through a :class:`Notifier`.

The default :class:`OutboxNotifier` writes each message to the outbox (topic
``notifications.requested``) in the caller's transaction, so a message goes out only if the use case
that asked for it commits; a delivery consumer (SMS gateway, mail relay) picks it up from there.
It logs that a message was sent, with the recipient masked. Secret parameters (one-time codes) are
part of the message but appear in the log only in development, where no gateway is configured and
the log is how a developer reads the code; never in production, and never in an audit row.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from smartbank.platform.logging import get_logger
from smartbank.platform.outbox import write_event

log = get_logger(__name__)

TOPIC: Final = "notifications.requested"
MAX_RECIPIENT_CHARS: Final = 254
MAX_PARAMS: Final = 16
MAX_PARAM_CHARS: Final = 500


class Channel(StrEnum):
    SMS = "sms"
    EMAIL = "email"


@dataclass(frozen=True, slots=True)
class Message:
    channel: Channel
    #: E.164 phone number for SMS, address for e-mail.
    recipient: str
    #: Which text to send, e.g. ``customers.verification_code``; the delivery side renders it.
    template: str
    params: Mapping[str, str] = field(default_factory=dict)
    #: Delivered with the message but kept out of logs (outside development) and audit rows.
    secret_params: Mapping[str, str] = field(default_factory=dict)

    def validate(self) -> None:
        if not 1 <= len(self.recipient) <= MAX_RECIPIENT_CHARS:
            raise ValueError("message recipient must be 1..254 characters")
        if len(self.params) + len(self.secret_params) > MAX_PARAMS:
            raise ValueError(f"a message takes at most {MAX_PARAMS} parameters")
        for value in (*self.params.values(), *self.secret_params.values()):
            if len(value) > MAX_PARAM_CHARS:
                raise ValueError(f"message parameters are at most {MAX_PARAM_CHARS} characters")


class Notifier(Protocol):
    async def send(self, conn: AsyncConnection, message: Message) -> uuid.UUID:
        """Queue ``message`` inside the caller's transaction; returns the message id."""
        ...


def mask_recipient(recipient: str) -> str:
    """``+8613912345678`` → ``+86139****5678``; ``alice@example.com`` → ``a***@example.com``."""
    if "@" in recipient:
        local, _, domain = recipient.rpartition("@")
        return f"{local[:1]}***@{domain}"
    if len(recipient) <= 8:
        return "*" * len(recipient)
    prefix = 6 if len(recipient) > 11 else 3
    return recipient[:prefix] + "*" * (len(recipient) - prefix - 4) + recipient[-4:]


class OutboxNotifier:
    """Writes messages to the outbox for a delivery consumer; logs each one."""

    def __init__(self, env: str) -> None:
        self._env = env

    async def send(self, conn: AsyncConnection, message: Message) -> uuid.UUID:
        message.validate()
        payload = {
            "channel": message.channel.value,
            "recipient": message.recipient,
            "template": message.template,
            "params": {**message.params, **message.secret_params},
        }
        event_id = await write_event(conn, TOPIC, payload)
        fields: dict[str, object] = {
            "message_id": str(event_id),
            "channel": message.channel.value,
            "recipient": mask_recipient(message.recipient),
            "template": message.template,
        }
        if self._env == "development" and message.secret_params:
            # The log redacts keys named like secrets ("code", "token"): a distinct key lets a
            # developer without an SMS gateway read the code. Only ever in development.
            fields["dev_secret_params"] = dict(message.secret_params)
        log.info("notify.sent", **fields)
        return event_id
