"""Recording: what happened to a batch of attempts, written with a few bulk statements.

Nothing a receiver sends can fail a record: each result is made safe to store (NUL bytes and
invalid UTF-8 in bodies and headers, absurd `Retry-After` values), and if the batch cannot be
written as one, each result is written alone, so one bad result never costs the rest of its
batch. `record()` never raises: a pump must outlive anything a receiver does. When the
database itself is away (restarting, failing over, out of connections), it says so instead of
dropping the batch, and the recorder writes the batch once the database is back.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import InterfaceError, OperationalError, connection, transaction

from deliveries import observability
from deliveries.engine import breaker, sequencing
from deliveries.engine.claiming import release
from deliveries.engine.clock import db_now
from deliveries.engine.disabling import auto_disable, check_failing
from deliveries.models import ATTEMPT_COLUMNS, Delivery, DeliveryAttempt
from deliveries.results import AttemptResult
from deliveries.signals import delivery_recorded
from deliveries.sql import insert_sql
from endpoints.models import Endpoint

log = logging.getLogger(__name__)


# What a database that is away raises (PostgreSQL restarting or failing over, PgBouncer
# restarting, SQLite's write lock held too long): worth the same write again later.
DATABASE_AWAY = (OperationalError, InterfaceError)


def record(token: str, results: Iterable[AttemptResult]) -> bool:
    """Store the outcomes of a batch of attempts. Never raises.

    Args:
        token: the claim token the deliveries were claimed with; a delivery whose claim was
            taken back (its endpoint disabled, its lease expired) is left as it is now.
        results: what happened to each delivery.

    Returns:
        False when the database could not be reached and nothing of the batch was written:
        keep the batch and record it again (every statement of a second try is a no-op for
        what the first one wrote).
    """
    results = list(results)
    unsent = [r.delivery.pk for r in results if not r.sent]
    sent = [r for r in results if r.sent]
    try:
        if unsent:
            try:
                release(token, unsent)
            except DATABASE_AWAY:
                raise
            except Exception:  # the claims come back when their lease ends; record the rest
                log.exception("could not give back %d unsent claims", len(unsent))
        if sent:
            _record(token, sent)
    except DATABASE_AWAY as exc:
        forget_connection()
        log.warning("database unavailable (%s): %d outcomes kept to write later", exc, len(results))
        return False
    except Exception:
        log.exception("could not record %d attempts", len(sent))
    return True


def forget_connection() -> None:
    """Drop this thread's database connection, so the next statement connects afresh.

    Outside a request Django never replaces a dead connection by itself: every later
    statement on this thread would fail the same way.
    """
    with contextlib.suppress(Exception):
        connection.close()


def _record(token: str, results: list[AttemptResult]) -> None:
    now = db_now()
    for result in results:
        if not result.moved:  # a batch written again after the database was away
            _move_to_next_state(result, now)
            result.moved = True
    try:
        _write(token, results, now)
    except DATABASE_AWAY:
        raise
    except Exception:
        # One result the database refused must not cost the others: write them one by one.
        log.exception("a batch of %d outcomes failed; writing them one by one", len(results))
        for result in results:
            _write_alone(token, result, now)
    try:
        sequencing.release_next([r.delivery for r in results], now)
    except DATABASE_AWAY:
        raise
    except Exception:  # what stays parked, the sweep's safety net makes due later
        log.exception("could not make the next ordered deliveries due")
    observability.observe(results)
    _after(results, now)


def _move_to_next_state(result: AttemptResult, now: datetime) -> None:
    """Move the delivery to its next state; an answer we cannot read is a failed attempt."""
    delivery = result.delivery
    try:
        delivery.move_to_next_state(result, now)
    except Exception as exc:
        log.exception("could not read the answer to %s", delivery.public_id)
        result.status, result.error, result.answered = None, f"unreadable answer: {exc}", False
        result.response_headers, result.response_body = {}, b""
        delivery.move_to_next_state(result, now)


def _write(token: str, results: list[AttemptResult], now: datetime) -> None:
    # Every row is made ready before the transaction: on SQLite it holds the write lock that
    # the API's emits and the other workers wait for.
    outcomes = _outcome_rows(token, [r.delivery for r in results])
    attempts = _attempt_rows(
        [r.delivery.attempt_row(r) for r in results if r.delivery.should_log(r)]
    )
    succeeded = {r.delivery.endpoint_id for r in results if r.ok and r.delivery.endpoint_id}
    failed = {r.delivery.endpoint_id for r in results if not r.ok and r.delivery.endpoint_id}
    with transaction.atomic():
        _write_outcomes(outcomes)
        _insert_attempts(attempts)
        if succeeded:
            Endpoint.objects.filter(pk__in=succeeded, failing_since__isnull=False).update(
                failing_since=None, failure_warning_sent_at=None
            )
        if failed - succeeded:
            Endpoint.objects.filter(pk__in=failed - succeeded, failing_since__isnull=True).update(
                failing_since=now
            )
        # In the same transaction: on SQLite a write outside one waits in the busy handler.
        breaker.update(results, now)


def _write_alone(token: str, result: AttemptResult, now: datetime) -> None:
    try:
        _write(token, [result], now)
        return
    except Exception:
        log.exception("could not record %s; storing its outcome without the log", result.delivery)
    # The attempt log row is what can carry the receiver's bytes; the outcome never does.
    result.response_headers, result.response_body = {}, b""
    result.error = (result.error or "answer could not be stored")[:500]
    try:
        with transaction.atomic():
            _write_outcomes(_outcome_rows(token, [result.delivery]))
    except Exception:
        log.exception("could not record the outcome of %s", result.delivery)


def _after(results: list[AttemptResult], now: datetime) -> None:
    """410 Gone and the auto-disable clock; guarded, they cannot undo a record."""
    gone = {r.delivery.endpoint_id for r in results if r.status == 410 and r.delivery.endpoint_id}
    failing = (
        {r.delivery.endpoint_id for r in results if not r.ok and r.delivery.endpoint_id}
        - {r.delivery.endpoint_id for r in results if r.ok}
        - gone
    )
    try:
        for endpoint_id in gone:
            auto_disable(
                endpoint_id, Endpoint.DisabledReason.GONE, "The receiver answered 410 Gone."
            )
        if failing:
            check_failing(failing, now)
        delivery_recorded.send(Delivery, results=results)
    except Exception:
        log.exception("could not check failing endpoints")


def _write_outcomes(rows: list[tuple[Any, ...]]) -> None:
    """One prepared UPDATE executed for every row (executemany).

    Django's bulk_update builds a CASE expression per field and row, which cost more CPU than
    the HTTP requests themselves. The claim token in the WHERE clause leaves a row alone if it
    was taken back meanwhile (its endpoint disabled, its lease expired and taken by another).
    """
    qn = connection.ops.quote_name
    sql = (
        f"UPDATE {qn(Delivery._meta.db_table)} SET {qn('status')} = %s, "
        f"{qn('next_attempt_at')} = %s, {qn('claimed_by')} = '', {qn('claimed_until')} = NULL, "
        f"{qn('last_status_code')} = %s, {qn('last_error')} = %s, {qn('last_duration_ms')} = %s, "
        f"{qn('completed_at')} = %s, {qn('manual_retry')} = %s "
        f"WHERE {qn('id')} = %s AND {qn('claimed_by')} = %s"
    )
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


def _outcome_rows(token: str, deliveries: list[Delivery]) -> list[tuple[Any, ...]]:
    ops = connection.ops
    return [
        (
            d.status,
            ops.adapt_datetimefield_value(d.next_attempt_at),
            d.last_status_code,
            d.last_error,
            d.last_duration_ms,
            ops.adapt_datetimefield_value(d.completed_at),
            False,  # the manual retry has been made
            d.pk,
            token,
        )
        for d in deliveries
    ]


def _insert_attempts(rows: list[tuple[Any, ...]]) -> None:
    """One prepared INSERT for every attempt row (bulk_create's per-field work cost more)."""
    if rows:
        with connection.cursor() as cursor:
            cursor.executemany(insert_sql(DeliveryAttempt, ATTEMPT_COLUMNS), rows)


def _attempt_rows(attempts: list[DeliveryAttempt]) -> list[tuple[Any, ...]]:
    ops = connection.ops
    meta = DeliveryAttempt._meta
    json_fields = [meta.get_field("request_headers"), meta.get_field("response_headers")]
    return [
        (
            a.delivery_id,
            a.number,
            ops.adapt_datetimefield_value(a.created_at),
            a.url,
            json_fields[0].get_db_prep_save(a.request_headers, connection),
            a.request_body,
            a.response_status,
            json_fields[1].get_db_prep_save(a.response_headers, connection),
            a.response_body,
            a.response_truncated,
            a.duration_ms,
            a.error,
            a.succeeded,
            a.manual,
        )
        for a in attempts
    ]
