"""Process assembly: settings -> engine, sessions, cipher, worker registry.

Every process (serve, worker, CLI commands, tests) builds one Runtime and
passes it down; nothing below this reads settings or opens engines itself.
The worker's set of jobs is listed here, in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import httpx
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from partnerloop.analytics import recent
from partnerloop.commissions import service as commissions
from partnerloop.core.clock import utcnow
from partnerloop.core.crypto import FieldCipher
from partnerloop.core.db import make_engine, make_sessionmaker
from partnerloop.core.faults import Faults
from partnerloop.core.mail import mailer_from_url
from partnerloop.core.settings import Settings, load_old_secret_keys, load_secret_key
from partnerloop.integrations import (
    crm_to_shop,
    mail_outbox,
    notices,
    outbound,
    scheduled,
    weekly_report,
)
from partnerloop.integrations import inbound as shop_inbound
from partnerloop.integrations.postback import handler as postback
from partnerloop.integrations.registry import (
    CRM_CONNECTORS,
    CRM_WEBHOOKS,
    POLLING_CRMS,
    SHOPS,
    WRITING_SHOPS,
)
from partnerloop.integrations.webhooks.connector import KIND as WEBHOOK_KIND
from partnerloop.sync.fanout import Subscriber, make_fanout
from partnerloop.sync.pacing import NO_PACING, Pacer
from partnerloop.sync.service import FANOUT_KIND
from partnerloop.sync.worker import BackgroundTask, Batched, PeriodicTask, Registry, Worker

APPROVE_DUE_EVERY_SECONDS = 30.0
# How often the worker checks whether a program's weekly report is due (it queues
# each program's report once per ISO week, from Monday 06:00 UTC).
WEEKLY_REPORT_CHECK_SECONDS = 300.0
# How often the worker looks for connectors whose scheduled pull is due.
PULL_CHECK_EVERY_SECONDS = 60.0
# Customers per CRM call at most: HubSpot's batch limit (Salesforce takes 200, Pipedrive
# one at a time). In practice a batch is what one worker pass claims (Worker batch_size).
CRM_BATCH_SIZE = 100


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    cipher: FieldCipher
    faults: Faults
    subscribers: list[Subscriber] = field(default_factory=list)

    def registry(self, *, clock: Callable[[], datetime] = utcnow) -> Registry:
        cipher = self.cipher

        def approve_due(session: Session, now: datetime) -> int:
            return commissions.approve_due(session, cipher, now=now)

        def queue_weekly_reports(session: Session, now: datetime) -> int:
            return weekly_report.enqueue_due(session, cipher, now=now)

        # The report e-mail's words and templates belong to the web layer (its
        # translation catalogue); imported here, when a worker is assembled.
        from partnerloop.web.admin.report_mail import make_renderer

        def pull_shops(now: datetime) -> int:
            return scheduled.pull_due(
                self.sessions,
                cipher,
                SHOPS,
                client_factory=lambda: httpx.Client(timeout=60.0),
                now=now,
            )

        def poll_crms(now: datetime) -> int:
            return crm_to_shop.poll_due(
                self.sessions,
                cipher,
                POLLING_CRMS,
                WRITING_SHOPS,
                client_factory=lambda: httpx.Client(timeout=60.0),
                now=now,
            )

        return Registry(
            inbound={
                postback.KIND: postback.make_handler(cipher),
                shop_inbound.KIND: shop_inbound.make_handler(cipher, SHOPS),
                crm_to_shop.INBOUND_KIND: crm_to_shop.make_handler(
                    cipher, CRM_WEBHOOKS, WRITING_SHOPS
                ),
            },
            local={
                FANOUT_KIND: make_fanout(
                    cipher,
                    [*self.subscribers, notices.make_subscriber(self.settings.notify_emails)],
                )
            },
            remote={
                WEBHOOK_KIND: outbound.make_deliverer(
                    self.sessions,
                    cipher,
                    client_factory=lambda: httpx.Client(
                        timeout=self.settings.webhook_timeout_seconds
                    ),
                    disable_after=self.settings.webhook_disable_after,
                    clock=clock,
                ),
                notices.KIND: notices.make_deliverer(
                    mailer_from_url(self.settings.mail_url, data_dir=self.settings.data_dir),
                    sender=self.settings.mail_from,
                    recipients=self.settings.notify_emails,
                    public_url=self.settings.public_url,
                ),
                mail_outbox.KIND: mail_outbox.make_deliverer(
                    mailer_from_url(self.settings.mail_url, data_dir=self.settings.data_dir),
                    default_sender=self.settings.mail_from,
                ),
                weekly_report.KIND: weekly_report.make_deliverer(
                    self.sessions,
                    cipher,
                    mailer_from_url(self.settings.mail_url, data_dir=self.settings.data_dir),
                    sender=self.settings.mail_from,
                    notify_emails=self.settings.notify_emails,
                    render=make_renderer(self.settings.public_url),
                    clock=clock,
                ),
                crm_to_shop.DESTINATION_KIND: crm_to_shop.make_deliverer(
                    self.sessions,
                    cipher,
                    WRITING_SHOPS,
                    client_factory=lambda: httpx.Client(timeout=30.0),
                    clock=clock,
                ),
            },
            batched={
                crm.kind: Batched(
                    outbound.make_crm_deliverer(
                        self.sessions,
                        cipher,
                        crm,
                        client_factory=lambda: httpx.Client(timeout=30.0),
                        clock=clock,
                    ),
                    size=CRM_BATCH_SIZE,
                )
                for crm in CRM_CONNECTORS
            },
            periodic=[
                PeriodicTask("approve_due_commissions", APPROVE_DUE_EVERY_SECONDS, approve_due),
                PeriodicTask("weekly_reports", WEEKLY_REPORT_CHECK_SECONDS, queue_weekly_reports),
                PeriodicTask("roll_recent_window", recent.ROLL_CHECK_SECONDS, recent.roll_due),
            ],
            background=[
                BackgroundTask("pull_shops", PULL_CHECK_EVERY_SECONDS, pull_shops),
                BackgroundTask("poll_crm_changes", PULL_CHECK_EVERY_SECONDS, poll_crms),
            ],
        )

    def make_worker(
        self,
        *,
        registry: Registry | None = None,
        clock: Callable[[], datetime] = utcnow,
        pacer: Pacer = NO_PACING,
    ) -> Worker:
        """A worker; tests pass a clock to move time (retries, Retry-After); serve
        passes a pacer to its in-process worker (sync/pacing.py)."""
        return Worker(
            session_factory=self.sessions,
            cipher=self.cipher,
            registry=registry or self.registry(clock=clock),
            max_attempts=self.settings.worker_max_attempts,
            lease_seconds=self.settings.worker_lease_seconds,
            poll_seconds=self.settings.worker_poll_seconds,
            faults=self.faults,
            # One local job per transaction. Groups of jobs (Worker._run_together)
            # lost a partial refund now and then when two workers on PostgreSQL
            # worked on one order during a CRM outage (`partnerloop simulate`
            # crm-outage, tests/simulator); off until that race is understood.
            together=1,
            clock=clock,
            pacer=pacer,
        )

    def close(self) -> None:
        self.engine.dispose()


def build_runtime(settings: Settings) -> Runtime:
    engine = make_engine(settings.database_url)
    cipher = FieldCipher(load_secret_key(settings), load_old_secret_keys(settings))
    return Runtime(
        settings=settings,
        engine=engine,
        sessions=make_sessionmaker(engine),
        cipher=cipher,
        faults=Faults(settings.faults),
        subscribers=[outbound.subscriber],
    )
