"""ALERT_WEBHOOK_URL: each new alert POSTed as JSON with a Slack-compatible `text` field.

Delivery runs as its own arq job per alert (worker.py), never inside the sync or the evaluation,
so a webhook that hangs or fails delays nothing else, and a queued delivery survives a worker
restart. Each attempt has a timeout; failures (connection errors, timeouts, 5xx, 408, 429) are
retried with exponential backoff, bounded by attempts and by a total deadline; any other 4xx is
final (retrying cannot fix a wrong URL or a refused payload). The outcome is recorded on the
alert after every attempt: webhook_attempts, webhook_error, then webhook_status delivered (with
webhook_delivered_at) or failed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp

from finops_gql.alerts.service import alert_payload
from finops_gql.db import dataversion
from finops_gql.db.models import Alert
from finops_gql.jsonjs import dumps

log = logging.getLogger(__name__)

MAX_ERROR_CHARS = 500
RETRYABLE_4XX = frozenset({408, 429})


@dataclass(frozen=True)
class WebhookSettings:
    url: str
    timeout_s: float = 5.0
    max_attempts: int = 5
    backoff_s: float = 1.0
    max_seconds: float = 60.0


class _Refused(Exception):
    def __init__(self, message: str, *, final: bool) -> None:
        super().__init__(message)
        self.final = final


def slack_text(a: Alert) -> str:
    return f"[{a.kind}] {a.title}"


def webhook_body(a: Alert) -> bytes:
    return dumps({"text": slack_text(a), "alert": alert_payload(a)})


async def deliver(
    session: aiohttp.ClientSession,
    settings: WebhookSettings,
    alert_id: int,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> str | None:
    """Deliver one alert's webhook; returns its final webhook_status (None: nothing to do)."""
    alert = await Alert.get_or_none(id=alert_id)
    if alert is None or alert.webhook_status != "pending":
        return None  # delivered or failed already (a duplicate job), or no longer there
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.max_seconds
    body = webhook_body(alert)
    attempts = alert.webhook_attempts
    while True:
        attempts += 1
        remaining = deadline - loop.time()
        try:
            async with asyncio.timeout(max(0.001, min(settings.timeout_s, remaining))):
                async with session.post(
                    settings.url, data=body, headers={"Content-Type": "application/json"}
                ) as response:
                    if response.status >= 300:
                        final = (
                            400 <= response.status < 500 and response.status not in RETRYABLE_4XX
                        )
                        raise _Refused(f"HTTP {response.status}", final=final)
            await Alert.filter(id=alert_id).update(
                webhook_status="delivered",
                webhook_attempts=attempts,
                webhook_delivered_at=clock(),
                webhook_error=None,
            )
            await dataversion.bump()  # Alert.webhookStatus and its attempts are answers too
            log.info("alert %s webhook delivered (attempt %s)", alert_id, attempts)
            return "delivered"
        except (TimeoutError, aiohttp.ClientError, _Refused) as exc:
            if isinstance(exc, TimeoutError):
                error = f"no answer within {min(settings.timeout_s, remaining):g} s"
            else:
                error = str(exc) or type(exc).__name__
            final = isinstance(exc, _Refused) and exc.final
        delay = settings.backoff_s * 2 ** (attempts - 1)
        give_up = final or attempts >= settings.max_attempts or loop.time() + delay >= deadline
        error = f"attempt {attempts}: {error}"[:MAX_ERROR_CHARS]
        await Alert.filter(id=alert_id).update(
            webhook_status="failed" if give_up else "pending",
            webhook_attempts=attempts,
            webhook_error=error,
        )
        await dataversion.bump()
        if give_up:
            log.warning(
                "alert %s webhook failed after %s attempt(s): %s", alert_id, attempts, error
            )
            return "failed"
        log.info("alert %s webhook %s; retrying in %.2fs", alert_id, error, delay)
        await sleep(delay)
