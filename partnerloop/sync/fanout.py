"""The fan-out job: copies a published domain event to every subscriber.

Subscribers (outgoing webhooks now; CRM connectors later) are asked at
delivery time who wants an event, so an endpoint added after an event was
published does not receive it, and one removed meanwhile does not either.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from partnerloop.core.crypto import FieldCipher
from partnerloop.sync import service
from partnerloop.sync.models import OutboxMessage


@dataclass(frozen=True)
class Destination:
    kind: str  # an OutboxMessage.destination_kind with a deliverer in the registry
    id: str


# Who wants this event? (session, program id, topic) -> destinations
Subscriber = Callable[[Session, str, str], Sequence[Destination]]


def make_fanout(cipher: FieldCipher, subscribers: Sequence[Subscriber]) -> Callable[..., None]:
    def fan_out(
        session: Session, message: OutboxMessage, payload: dict[str, Any], now: datetime
    ) -> None:
        program_id = payload["program_id"]
        for subscriber in subscribers:
            for destination in subscriber(session, program_id, message.topic):
                # Keyed by the event's own message id: re-running the fan-out after a
                # crash queues nothing twice.
                service.enqueue(
                    session,
                    cipher,
                    destination_kind=destination.kind,
                    destination_id=destination.id,
                    topic=message.topic,
                    payload={**payload, "id": message.id},
                    idempotency_key=message.id,
                    program_id=program_id,
                    now=now,
                    occurred_at=message.created_at,
                )

    return fan_out
