"""The dispatcher: delivers the outbox (models/outbox.py), at least once.

Each round claims due notifications with a conditional update (one dispatcher wins
a row; a claim is a lease, so a dispatcher that dies mid-delivery only delays it),
delivers them, and records the outcome: delivered, or tried again later with
exponential backoff, until the row's give-up time. It runs inside the server
(`PAYQL_DISPATCH_IN_SERVER`) and as `payql dispatch` for a separate worker; any
number of them may run at once.

Customers' emails go over SMTP (aiosmtplib, `PAYQL_SMTP_URL`) or, in development
without one, into a mailbox folder as .eml files. Merchants' webhooks are POSTed
signed the Stripe way (`Payql-Signature: t=…,v1=…`, HMAC-SHA256 over "t.body" with
the endpoint's own secret).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
from tortoise.expressions import F, Q

from gateways import signing
from models.notifications import leaks, render_email, retry_delay, webhook_body
from models.tables import Notification, WebhookEndpoint, WebhookEvent
from models.targets import TargetRefused, check_target, pinned

log = logging.getLogger("payql.notifications")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Undeliverable(Exception):
    """This notification can never be delivered: given up at once, not retried."""


class Mailer(Protocol):
    async def send(self, message: EmailMessage) -> None: ...


class SmtpMailer:
    """SMTP from a URL: smtp://user:password@host:587 (STARTTLS when the server offers
    it; ?starttls=required insists), smtps://host:465 (TLS from the start)."""

    def __init__(self, url: str, timeout: float = 30) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("PAYQL_SMTP_URL is smtp://[user:password@]host[:port] or smtps://…")
        options = parse_qs(parts.query)
        self.hostname = parts.hostname
        self.tls = parts.scheme == "smtps"
        self.port = parts.port or (465 if self.tls else 587)
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        # With a password, STARTTLS is required (one stripped off the server's answer
        # would send it in the clear); without, used when offered.
        required = options.get("starttls") == ["required"] or self.username is not None
        self.start_tls: bool | None = None if self.tls else (True if required else None)
        if options.get("starttls") == ["off"]:
            self.start_tls = False
        self.timeout = timeout

    def __repr__(self) -> str:  # never the password
        return f"SmtpMailer({self.hostname}:{self.port})"

    async def send(self, message: EmailMessage) -> None:
        import aiosmtplib

        await aiosmtplib.send(
            message,
            hostname=self.hostname,
            port=self.port,
            username=self.username,
            password=self.password,
            use_tls=self.tls,
            start_tls=self.start_tls,
            timeout=self.timeout,
        )


class MailboxMailer:
    """Development without an SMTP server: each message as an .eml file."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def send(self, message: EmailMessage) -> None:
        name = str(message["Message-ID"]).strip("<>").split("@")[0]
        path = self.folder / f"{name}.eml"

        def write() -> None:
            self.folder.mkdir(parents=True, exist_ok=True)
            path.write_bytes(bytes(message))

        await asyncio.to_thread(write)
        log.info("mail to %s written to %s", message["To"], path)


@dataclass
class Dispatcher:
    mailer: Mailer | None
    mail_from: str = "payql <payments@localhost>"
    allow_private: bool = True
    retry_base: float = 30.0
    retry_cap: float = 6 * 3600.0
    lease: timedelta = timedelta(minutes=2)
    batch: int = 20
    webhook_timeout: float = 10.0
    clock: Callable[[], datetime] = utcnow
    # How long delivered and given-up notifications and gateways' webhook events are
    # kept (None: for ever); pruned this many rows at a time, at most every prune_every.
    retention: timedelta | None = timedelta(days=30)
    prune_batch: int = 500
    prune_every: timedelta = timedelta(hours=1)
    http: httpx.AsyncClient = field(init=False)
    _pruned_at: datetime | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        # No redirects: a 3xx is a failed delivery, never a trip to another address.
        # No environment proxies or .netrc credentials either.
        self.http = httpx.AsyncClient(
            timeout=self.webhook_timeout, follow_redirects=False, trust_env=False
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def run(self, every: float, wake: asyncio.Event) -> None:
        """Deliver what is due, then wait `every` seconds or until woken (a commit
        that wrote notifications), for ever."""
        while True:
            wake.clear()
            try:
                done = await self.run_once()
                if self._pruned_at is None or self.clock() - self._pruned_at >= self.prune_every:
                    await self.prune()
            except Exception:  # the database away, say: the next round tries again
                log.exception("the notification round failed")
                done = 0
            if done >= self.batch:
                continue  # more may be due now
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), every)

    async def run_once(self) -> int:
        """One round: claim what is due, deliver it, record it. Returns how many."""
        claimed = await self._claim()
        await asyncio.gather(*(self._deliver(n, claim) for n, claim in claimed))
        return len(claimed)

    async def prune(self, batches: int = 20) -> int:
        """Delete what is past the retention: delivered and given-up notifications,
        and gateways' webhook events, `prune_batch` rows at a time (no long lock, no
        huge transaction), at most `batches` of each now; the rest at the next prune.
        Pending deliveries are never pruned. Returns how many rows went."""
        self._pruned_at = self.clock()
        if self.retention is None:
            return 0
        before = self.clock() - self.retention
        gone = 0
        for model, old in (
            (Notification, Q(status__in=("delivered", "failed"), created_at__lt=before)),
            (WebhookEvent, Q(received_at__lt=before)),
        ):
            for _ in range(batches):
                ids = await model.filter(old).limit(self.prune_batch).values_list("id", flat=True)
                if ids:
                    gone += await model.filter(old, id__in=ids).delete()
                if len(ids) < self.prune_batch:
                    break
        if gone:
            log.info("pruned %d notifications and webhook events older than %s", gone, before)
        return gone

    async def drain(self, rounds: int = 1000) -> int:
        """Rounds until nothing is due (`payql dispatch --once`, tests)."""
        total = 0
        for _ in range(rounds):
            done = await self.run_once()
            total += done
            if not done:
                break
        return total

    async def _claim(self) -> list[tuple[Notification, str]]:
        now = self.clock()
        free = Q(claimed_until=None) | Q(claimed_until__lt=now)
        due = (
            await Notification.filter(free, status="pending", next_attempt_at__lte=now)
            .order_by("next_attempt_at", "id")
            .limit(self.batch)
            .values_list("id", flat=True)
        )
        claimed = []
        for notification_id in due:
            claim = secrets.token_hex(8)
            # Conditional: of two dispatchers that saw this row free, one updates it.
            won = await Notification.filter(
                free, id=notification_id, status="pending", next_attempt_at__lte=now
            ).update(claim=claim, claimed_until=now + self.lease, attempts=F("attempts") + 1)
            if won == 1:
                claimed.append((await Notification.get(id=notification_id), claim))
        return claimed

    async def _deliver(self, notification: Notification, claim: str) -> None:
        try:
            # Done well within the lease, or abandoned (and tried again later): no other
            # dispatcher ever takes it over while this one is still sending it.
            async with asyncio.timeout(self.lease.total_seconds() / 2):
                if notification.channel == "email":
                    await self._email(notification)
                elif notification.channel == "webhook":
                    await self._webhook(notification)
                else:
                    raise Undeliverable(f"unknown channel {notification.channel!r}")
        except TimeoutError:
            await self._retry(notification, claim, "the delivery took too long")
        except Undeliverable as exc:
            log.error("notification %s given up: %s", notification.id, exc)
            await self._record(notification, claim, status="failed", last_error=str(exc))
        except Exception as exc:
            await self._retry(notification, claim, _describe(exc))
        else:
            await self._record(
                notification, claim, status="delivered", delivered_at=self.clock(), last_error=None
            )

    async def _record(self, notification: Notification, claim: str, **values: object) -> None:
        kept = await Notification.filter(id=notification.id, claim=claim).update(
            claim=None, claimed_until=None, **values
        )
        if kept != 1:  # the lease ran out and another dispatcher took it over
            log.warning("notification %s was taken over before it was recorded", notification.id)

    async def _retry(self, notification: Notification, claim: str, error: str) -> None:
        now = self.clock()
        if now >= notification.give_up_at:
            log.error(
                "notification %s (%s to %s) given up after %d attempts: %s",
                notification.id,
                notification.event_type,
                notification.channel,
                notification.attempts,
                error,
            )
            await self._record(notification, claim, status="failed", last_error=error[:500])
            return
        delay = retry_delay(notification.attempts, self.retry_base, self.retry_cap)
        delay *= random.uniform(0.8, 1.2)  # not every failed delivery back at the same moment
        log.warning(
            "notification %s not delivered (attempt %d): %s; again in %.0f s",
            notification.id,
            notification.attempts,
            error,
            delay,
        )
        await self._record(
            notification,
            claim,
            last_error=error[:500],
            next_attempt_at=min(now + timedelta(seconds=delay), notification.give_up_at),
        )

    # -- the channels ---------------------------------------------------------------------

    async def _email(self, notification: Notification) -> None:
        if self.mailer is None:
            raise Undeliverable("no mail is configured (PAYQL_SMTP_URL)")
        try:
            email = render_email(notification.event_type, notification.payload)
        except (KeyError, ValueError, TypeError) as exc:  # no retry will mend it
            raise Undeliverable(f"the message cannot be made: {exc!r}") from None
        leaked = leaks("\n".join((email.subject, email.text, email.html)))
        if leaked:
            log.error("ALERT: notification %s held %s: not sent", notification.id, leaked)
            raise Undeliverable(f"the message held {leaked}")
        message = EmailMessage()
        message["From"] = self.mail_from
        message["Subject"] = email.subject
        message["Date"] = formatdate(usegmt=True)
        domain = parseaddr(self.mail_from)[1].rpartition("@")[2] or "payql"
        message["Message-ID"] = f"<{notification.id}@{domain}>"
        message["X-Payql-Event-Id"] = notification.event_id
        try:
            message["To"] = email.to
            message.set_content(email.text)
            message.add_alternative(email.html, subtype="html")
        except ValueError as exc:  # a header that cannot be (a line break in an address)
            raise Undeliverable(f"the message cannot be made: {exc}") from None
        await self.mailer.send(message)

    async def _webhook(self, notification: Notification) -> None:
        endpoint = await WebhookEndpoint.get_or_none(id=notification.endpoint_id)
        if endpoint is None or not endpoint.active:
            raise Undeliverable("the endpoint was deleted")
        try:
            target = pinned(endpoint.url, await check_target(endpoint.url, self.allow_private))
        except TargetRefused as exc:
            raise Undeliverable(str(exc)) from None
        rolled = []  # the secret before a roll, while it still signs beside the new one
        until = endpoint.previous_secret_expires_at
        if endpoint.previous_secret and until is not None and until > self.clock():
            rolled.append(endpoint.previous_secret)
        event = notification.payload["body"]
        body = webhook_body(event["id"], event["type"], event["created"], event["data"])
        leaked = leaks(body.decode())
        if leaked:
            log.error("ALERT: notification %s held %s: not sent", notification.id, leaked)
            raise Undeliverable(f"the event held {leaked}")
        # Streamed and never read: a receiver's answer is its status, not its body.
        async with self.http.stream(
            "POST",
            target.url,  # the address checked, with the endpoint's name as its Host
            content=body,
            extensions=target.extensions,
            headers={
                **target.headers,
                "Content-Type": "application/json",
                "User-Agent": "payql-webhooks/1",
                "Payql-Signature": signing.sign(body, endpoint.secret, also=rolled),
                "Payql-Event-Id": event["id"],
                "Payql-Event-Type": event["type"],
                "Payql-Delivery-Id": notification.id,
            },
        ) as response:
            status = response.status_code
        if not 200 <= status < 300:
            raise DeliveryFailed(f"the endpoint answered HTTP {status}")


class DeliveryFailed(Exception):
    pass


def _describe(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.HTTPError):
        text = f"{type(exc).__name__}: {text}" if str(exc) else type(exc).__name__
    return text[:500]
