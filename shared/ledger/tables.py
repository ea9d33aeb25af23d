"""The shared ledger on Azure Table Storage: every Function instance sees the same claims, results and audit.

Layout — one table ``{prefix}ledger``; ids are hashed into keys because they may hold characters keys forbid::

    PartitionKey           RowKey                      entity
    e<h(event id)>         e|<h(event key)>            the event: status, lease, outcome, attempts, holder
    e<h(event id)>         a|<action key>              the result of one action of that event
    e<h(event id)>         z|<newest first>|<seq>|<n>  an audit entry (``audit --event``: one partition)
    c<h(correlation id)>   z|<newest first>|<seq>|<n>  a copy of an audit entry of an event that joined a chain
                                                       another event started (``audit --correlation``)
    t<h(throttle key)>     t                           a throttle window
    q<YYYYMMDD>            <oldest first>|<n>          a quarantine record; the raw payload is a blob
    p                      purge                       where an unfinished purge pass continues
    r                      <h(target|scope|id)>        a release mlreactor queued (all in one partition: releases
                                                       are few, and the reconciler lists the pending ones at once)

An event, its action results and its audit entries share one partition, so settling an event (last action results +
outcome + audit entry) is one entity-group transaction: atomic, one round-trip. What each write is for, and what it
costs (``benchmarks/ledger_tables.py`` counts them on the wire, ``tests/ledger/test_round_trips.py`` asserts them):

- claim: 1 insert (the recorded intent; a 409 costs one partition query that also returns the earlier results);
- each action's result before the next action starts: 1 transaction with any sub-step results of that action;
- a throttle or once_per window: 1 insert when new; a window this instance has seen is updated If-Match the ETag it
  remembers (1), else 409 + read + conditional write;
- an adapter's sub-step intent (``start_action``, e.g. one notification channel): 1 insert, whose ETag the result
  reuses, inside the next transaction;
- settle: 1 transaction; plus 1 insert of the correlation copy only when the event joined a chain another event
  started (a chain's first event is found in its own partition: its id is the correlation id).

Concurrency: inserts are insert-if-absent (409 = someone else has it); every update is conditional on the ETag that
was read (412 = someone else moved first: read again). Each claim carries a random ``holder`` so a request the SDK
retried after it had in fact succeeded is recognised as our own. Throttling (429/503), 5xx and timeouts become
``TransientError`` after the SDK's short retry budget; nothing else is retried.

Azure SDKs are imported only when this module is (``open_ledger`` imports it only when the Tables ledger is chosen).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError
from azure.data.tables import TableClient, TableServiceClient, TableTransactionError, UpdateMode

from shared.errors import ConfigError, PermanentError, TransientError
from shared.identity import azure_credential
from shared.jsontext import dumps
from shared.ledger.port import (
    ActionRecord,
    ActionStatus,
    AuditEntry,
    ClaimOutcome,
    ClaimResult,
    EventRecord,
    EventStatus,
    PurgeProgress,
    QuarantineRecord,
    ReleaseRecord,
    ReleaseState,
    ThrottleDecision,
    release_lookup_key,
)
from shared.settings import Settings
from shared.storage import blob_service

if TYPE_CHECKING:  # azure-storage-blob loads with the first quarantined payload, not with the ledger
    from azure.storage.blob import BlobServiceClient, ContainerClient

log = logging.getLogger("mlreactor.ledger.tables")

T = TypeVar("T")

#: Fits Event Grid's 30 s window: a few quick retries of throttling/5xx, short timeouts (azure-core's defaults are
#: 10 retries and 300 s).
CLIENT_DEFAULTS: Mapping[str, Any] = {
    "retry_total": 3,
    "retry_backoff_factor": 0.4,
    "retry_backoff_max": 4,
    "connection_timeout": 5,
    "read_timeout": 10,
}
_TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_CAS_ROUNDS = 8  # read → conditional write rounds before contention is reported as transient
_TEXT_LIMIT = 8_000  # characters kept of one free-text value (a string property holds at most 32 K characters)
_JSON_LIMIT = 30_000
_PROPERTY_CHARS = 32_000  # a string property holds 64 KiB of UTF-16
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FAR = 10**17  # microseconds; ~3 000 years after the epoch, so inverted times stay positive
_BATCH = 100  # operations per entity-group transaction (service limit)
_PAGE = 1000  # entities per query page (service maximum): a purge holds one page at a time
_SEEN_THROTTLES = 4096  # throttle windows whose last ETag this instance remembers
#: A purge pass scans the table once; a new pass starts only when the cutoff has moved on this much since the last
#: finished one, so an hourly timer resumes an unfinished pass without rescanning the table every hour.
_PURGE_EVERY = timedelta(days=1)
#: The key ranges a purge scans, in order; the quarantine range ends at the cutoff's day (its partitions are days).
_PURGE_RANGES = (("c", "d"), ("e", "f"), ("q", None), ("r", "s"), ("t", "u"))


def _h(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _micros(at: datetime) -> int:
    return (at - _EPOCH) // timedelta(microseconds=1)


def _event_pk(event_id: str | None) -> str:
    return "e" + _h(event_id or "")


def _event_rk(key: str) -> str:
    return "e|" + _h(key)


def _clip(text: str, limit: int = _TEXT_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@contextmanager
def _storage(what: str) -> Iterator[None]:
    """Classify a storage failure where it happens: throttling, 5xx and timeouts are transient."""
    try:
        yield
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise TransientError(f"ledger: {what}: Table Storage did not answer ({type(exc).__name__})") from exc
    except HttpResponseError as exc:
        code = getattr(exc, "error_code", None) or exc.reason or ""
        detail = f"ledger: {what}: Table Storage answered {exc.status_code} {code}"
        if exc.status_code in _TRANSIENT_STATUS or exc.status_code is None:
            raise TransientError(detail.strip()) from exc
        if exc.status_code in (401, 403):  # a role assignment being fixed must not drop events: redeliver
            raise TransientError(f"{detail.strip()} (check the identity's Storage Table Data Contributor role)") \
                from exc
        raise PermanentError(detail.strip()) from exc


def _status(exc: HttpResponseError) -> int | None:
    return exc.status_code


class TablesLedger:
    """``Ledger`` on Azure Table Storage (and Azurite), with quarantined payloads in a blob container."""

    def __init__(
        self,
        tables: TableServiceClient,
        blobs: Callable[[], BlobServiceClient],
        *,
        table_prefix: str = "mlreactor",
        container: str = "mlreactor-quarantine",
    ) -> None:
        name = f"{table_prefix}ledger"
        if not (name.isascii() and name.isalnum() and name[0].isalpha() and 3 <= len(name) <= 63):
            raise ConfigError(
                f"MLREACTOR_TABLE_PREFIX={table_prefix!r}: a table name is 3-63 letters and digits, starting with a "
                "letter"
            )
        self._service = tables
        self._make_blobs = blobs  # made on the first quarantine: most instances never quarantine anything
        self._blobs: BlobServiceClient | None = None
        self._container_name = container
        self._container_ready = False
        with _storage(f"create table {name}"):
            self._table: TableClient = tables.create_table_if_not_exists(name)
        self._seq = itertools.count()
        self._throttles: OrderedDict[str, tuple[dict[str, Any], str]] = OrderedDict()
        self.purge_page = _PAGE  # rows per purge page (tests and the reduced-scale benchmark make it smaller)

    @classmethod
    def from_settings(cls, settings: Settings, **client_options: Any) -> TablesLedger:
        """Connection string (Azurite: ``UseDevelopmentStorage=true``) or account URL + managed identity.

        ``client_options`` reach both SDK clients (e.g. ``raw_request_hook`` to count round-trips, retry knobs).
        """
        options = {**CLIENT_DEFAULTS, **client_options}
        if settings.storage_connection_string is not None:
            secret = settings.storage_connection_string.get_secret_value()
            tables = TableServiceClient.from_connection_string(secret, **options)
        elif settings.storage_account_url:  # the process's credential: the quarantine blobs share its tokens
            credential = azure_credential(settings.managed_identity_client_id)
            tables = TableServiceClient(endpoint=settings.storage_account_url, credential=credential, **options)
        else:
            raise ConfigError(
                "MLREACTOR_LEDGER=tables needs MLREACTOR_STORAGE_ACCOUNT_URL (managed identity) or "
                "MLREACTOR_STORAGE_CONNECTION_STRING"
            )
        return cls(
            tables, lambda: blob_service(settings, **options), table_prefix=settings.table_prefix,
            container=settings.quarantine_container,
        )

    # events ---------------------------------------------------------------------------------------------------
    def together(self) -> AbstractContextManager[None]:
        """Each call on its own: a claim and its windows live in different partitions (no shared transaction)."""
        return nullcontext()

    def claim_event(self, key: str, event_id: str, now: datetime, lease: timedelta) -> ClaimResult:
        """Insert-if-absent, or take over a released or expired claim with an ETag-conditional update::

            insert e|key {IN_PROGRESS, lease_until = now + lease, attempts = 1, holder = new}
              ├─ created ──────────────────────────────────────────────► CLAIMED   (1 round-trip)
              └─ 409: read the event and its action results (one partition query)
                   ├─ holder is ours (the SDK retried our own insert) ──► CLAIMED
                   ├─ DONE ────────────────────────────────────────────► DONE      (a duplicate, with the results)
                   ├─ IN_PROGRESS, lease_until > now ──────────────────► BUSY      (not before the lease runs out)
                   └─ RELEASED, or lease_until <= now:
                        update If-Match <etag read> {IN_PROGRESS, new lease, attempts + 1, holder = new}
                          ├─ ok ───────────────────────────────────────► RESUMED  (with the recorded results)
                          └─ 412: someone else moved first ─────────────► read again
        """
        pk, rk = _event_pk(event_id), _event_rk(key)
        holder = uuid.uuid4().hex
        fresh = {
            "PartitionKey": pk, "RowKey": rk, "record": "event", "key": key, "event_id": event_id,
            "status": EventStatus.IN_PROGRESS.value, "lease_until": now + lease, "attempts": 1, "holder": holder,
            "touched": now,
        }
        with _storage(f"claim event {event_id}"):
            created = self._insert(fresh)
            if created is not None:
                return ClaimResult(ClaimOutcome.CLAIMED, _event_record(fresh, created, holder))
            for _ in range(_CAS_ROUNDS):
                row, actions = self._read_event(pk, rk, key)
                if row is None:  # purged between our insert and our read: insert again
                    created = self._insert(fresh)
                    if created is not None:
                        return ClaimResult(ClaimOutcome.CLAIMED, _event_record(fresh, created, holder))
                    continue
                current = _event_record(row, row.metadata, row["holder"])
                if row["holder"] == holder:
                    outcome = ClaimOutcome.CLAIMED if current.attempts == 1 else ClaimOutcome.RESUMED
                    return ClaimResult(outcome, current, actions)
                if current.status is EventStatus.DONE:
                    return ClaimResult(ClaimOutcome.DONE, current, actions)
                if current.status is EventStatus.IN_PROGRESS and current.lease_until and current.lease_until > now:
                    return ClaimResult(ClaimOutcome.BUSY, current)
                taken = {
                    "PartitionKey": pk, "RowKey": rk, "status": EventStatus.IN_PROGRESS.value,
                    "lease_until": now + lease, "attempts": current.attempts + 1, "holder": holder, "touched": now,
                }
                updated = self._update(taken, row.metadata["etag"])
                if updated is not None:
                    return ClaimResult(ClaimOutcome.RESUMED, _event_record({**row, **taken}, updated, holder), actions)
        raise TransientError(f"ledger: claim event {event_id}: contended by other instances; try again")

    def settle_event(
        self,
        claim: EventRecord,
        outcome: str | None,
        now: datetime,
        *,
        actions: Sequence[ActionRecord] = (),
        audit: AuditEntry | None = None,
        quarantine: QuarantineRecord | None = None,
    ) -> bool:
        if quarantine is not None:  # its own partition (by day) and a blob: before the event is finished
            self.quarantine(quarantine)
        pk, rk = _event_pk(claim.event_id), _event_rk(claim.key)
        holder, etag = _split_version(claim.version)
        change: dict[str, Any] = {
            "PartitionKey": pk, "RowKey": rk, "lease_until": None, "touched": now,
            "status": (EventStatus.RELEASED if outcome is None else EventStatus.DONE).value,
        }
        if outcome is not None:
            change["outcome"] = outcome
        together = [a for a in actions if _event_pk(a.event_id) == pk]
        audit_row = _audit_entity(pk, audit, self._next_seq()) if audit is not None else None
        operations = [_action_operation(a) for a in together]
        operations.append(("update", _present(change), {"mode": UpdateMode.MERGE, "etag": etag,
                                                        "match_condition": MatchConditions.IfNotModified}))
        if audit_row is not None:
            operations.append(("create", _present(audit_row)))
        with _storage(f"settle event {claim.event_id}"):
            for record in actions:
                if record not in together:
                    self._put_action(record)
            try:
                self._table.submit_transaction(operations)
                kept = True
            except TableTransactionError as exc:
                if _status(exc) not in (409, 412):
                    raise
                kept = self._settle_apart(together, change, etag, holder, audit_row)
            self._index_by_correlation(audit)
        return kept

    def _index_by_correlation(self, audit: AuditEntry | None) -> None:
        """The by-correlation copy, for an event that joined a chain another event started; a chain's first event
        (its id is the correlation id) is found in its own partition, so it needs none."""
        if audit is not None and audit.correlation_id and audit.correlation_id != audit.event_id:
            self._insert(_audit_entity("c" + _h(audit.correlation_id), audit, self._next_seq()))

    def _settle_apart(
        self,
        actions: Sequence[ActionRecord],
        change: dict[str, Any],
        etag: str,
        holder: str,
        audit_row: dict[str, Any] | None,
    ) -> bool:
        """The transaction met a conflict: an action result already stored, our lease lost, or our own earlier try
        that succeeded unseen. Store each part on its own, never overwriting another instance's claim."""
        row = self._get(change["PartitionKey"], change["RowKey"])
        if row is not None and row["holder"] == holder and row["status"] == change["status"] \
                and row.metadata["etag"] != etag:
            return True  # the SDK retried a transaction that had gone through: everything is stored
        for record in actions:
            self._put_action(record)
        kept = self._update(change, etag) is not None
        if audit_row is not None:
            self._insert(audit_row)
        return kept

    def renew_event(self, claim: EventRecord, now: datetime, lease: timedelta) -> EventRecord | None:
        """One conditional MERGE of ``lease_until``; on 412 the row is read once to tell our own retried renewal
        (same holder, still in progress) from a takeover or a settle."""
        pk, rk = _event_pk(claim.event_id), _event_rk(claim.key)
        holder, etag = _split_version(claim.version)
        change = {"PartitionKey": pk, "RowKey": rk, "lease_until": now + lease, "touched": now}
        with _storage(f"renew the lease of event {claim.event_id}"):
            updated = self._update(change, etag)
            if updated is not None:
                return replace(claim, lease_until=now + lease, updated_at=now,
                               version=_version(holder, updated["etag"]))
            row = self._get(pk, rk)
        if row is None or row["holder"] != holder or row["status"] != EventStatus.IN_PROGRESS:
            return None
        return _event_record(row, row.metadata, holder)

    def reopen_event(self, key: str, event_id: str, now: datetime) -> bool:
        pk, rk = _event_pk(event_id), _event_rk(key)
        with _storage(f"reopen event {event_id}"):
            for _ in range(_CAS_ROUNDS):
                row = self._get(pk, rk)
                if row is None or row["status"] != EventStatus.DONE:
                    return False
                change = {"PartitionKey": pk, "RowKey": rk, "status": EventStatus.RELEASED.value, "touched": now}
                if self._update(change, row.metadata["etag"]) is not None:
                    return True
        raise TransientError(f"ledger: reopen event {event_id}: contended by other instances; try again")

    def _read_event(self, pk: str, rk: str, key: str) -> tuple[Any, dict[str, ActionRecord]]:
        """The event row and its action results, in one partition query (``a|…`` sorts before ``e|…``)."""
        rows = self._table.query_entities(
            "PartitionKey eq @pk and RowKey ge 'a|' and RowKey le @rk", parameters={"pk": pk, "rk": rk}
        )
        event, actions = None, {}
        for row in rows:
            if row["RowKey"] == rk:
                event = row
            elif row.get("record") == "action" and row.get("event_key") == key:
                actions[row["key"]] = _action_record(row)
        return event, actions

    # actions --------------------------------------------------------------------------------------------------
    def record_action(self, *records: ActionRecord) -> None:
        """Results of one event go in one transaction (insert, or update If-Match the ``version`` they carry); if
        it meets a conflict, each is stored on its own."""
        by_partition: dict[str, list[ActionRecord]] = {}
        for record in records:
            by_partition.setdefault(_event_pk(record.event_id), []).append(record)
        for group in by_partition.values():
            with _storage(f"record {len(group)} action result(s) of event {group[0].event_id}"):
                if len(group) == 1:  # a plain insert or update: the same round-trip without the batch envelope
                    self._put_action(group[0])
                    continue
                for start in range(0, len(group), _BATCH):
                    chunk = group[start : start + _BATCH]
                    try:
                        self._table.submit_transaction([_action_operation(r) for r in chunk])
                    except TableTransactionError as exc:
                        if _status(exc) not in (404, 409, 412):
                            raise
                        for record in chunk:
                            self._put_action(record)

    def _put_action(self, record: ActionRecord) -> None:
        """Insert; else update a non-DONE record If-Match its ETag, keeping its attempt count. DONE is final."""
        entity = _action_entity(record)
        if record.version and self._update(_without_attempts(entity), record.version) is not None:
            return
        for _ in range(_CAS_ROUNDS):
            if self._insert(entity) is not None:
                return
            row = self._get(entity["PartitionKey"], entity["RowKey"])
            if row is None:
                continue
            if row["status"] == ActionStatus.DONE:
                return
            if self._update(_without_attempts(entity), row.metadata["etag"]) is not None:
                return
        raise TransientError(f"ledger: record action {record.key[:16]}: contended by other instances; try again")

    def get_action(self, key: str, event_id: str) -> ActionRecord | None:
        with _storage(f"read action {key[:16]} of event {event_id}"):
            row = self._get(_event_pk(event_id), f"a|{key}")
        return _action_record(row) if row is not None else None

    def start_action(
        self, key: str, event_key: str, event_id: str, rule: str, kind: str, now: datetime
    ) -> ActionRecord:
        """Insert a STARTED record with one attempt; else count one more attempt (If-Match) unless it is DONE."""
        started = ActionRecord(
            key=key, event_key=event_key, event_id=event_id, rule=rule, kind=kind, status=ActionStatus.STARTED,
            external_id=None, detail="", url=None, updated_at=now, attempts=1,
        )
        entity = _action_entity(started)
        with _storage(f"start action {key[:16]} of event {event_id}"):
            for _ in range(_CAS_ROUNDS):
                created = self._insert(entity)
                if created is not None:
                    return replace(started, version=created["etag"])
                row = self._get(entity["PartitionKey"], entity["RowKey"])
                if row is None:
                    continue
                if row["status"] == ActionStatus.DONE:
                    return _action_record(row)
                counted = {"PartitionKey": row["PartitionKey"], "RowKey": row["RowKey"],
                           "attempts": row.get("attempts", 0) + 1, "touched": now}
                updated = self._update(counted, row.metadata["etag"])
                if updated is not None:
                    return _action_record({**row, **counted}, updated["etag"])
        raise TransientError(f"ledger: start action {key[:16]}: contended by other instances; try again")

    # throttles ------------------------------------------------------------------------------------------------
    def acquire_throttle(self, key: str, holder: str, window: timedelta, now: datetime) -> ThrottleDecision:
        pk = "t" + _h(key)
        opened = {
            "PartitionKey": pk, "RowKey": "t", "record": "throttle", "key": key, "holder": holder,
            "window_start": now, "window_end": now + window, "suppressed": 0, "touched": now + window,
        }
        # Start from the window as this instance last saw it (its ETag makes the write conditional, so a stale
        # memory costs a 412 and a read, never a wrong decision), else from an insert: most windows are new.
        seen = self._throttles.get(pk)
        row, etag, fresh = (seen[0], seen[1], False) if seen else (None, "", False)
        with _storage(f"throttle {key}"):
            for _ in range(_CAS_ROUNDS):
                if row is None:
                    created = self._insert(opened)
                    if created is not None:
                        self._saw_throttle(pk, opened, created["etag"])
                        return ThrottleDecision(True, 0, now)
                    row, etag, fresh = self._read_throttle(pk)
                    continue
                start: datetime = row["window_start"]
                if row["holder"] == holder:
                    if fresh:  # a decision without a write must rest on what the service holds now
                        return ThrottleDecision(True, 0, start)
                elif row["window_end"] > now:
                    suppressed = row["suppressed"] + 1
                    counted = {"PartitionKey": pk, "RowKey": "t", "suppressed": suppressed}
                    updated = self._update(counted, etag)
                    if updated is not None:
                        self._saw_throttle(pk, {**row, **counted}, updated["etag"])
                        return ThrottleDecision(False, suppressed, start)
                else:
                    updated = self._update(opened, etag, UpdateMode.REPLACE)
                    if updated is not None:
                        self._saw_throttle(pk, opened, updated["etag"])
                        return ThrottleDecision(True, row["suppressed"], now)
                row, etag, fresh = self._read_throttle(pk)
        raise TransientError(f"ledger: throttle {key}: contended by other instances; try again")

    def _read_throttle(self, pk: str) -> tuple[dict[str, Any] | None, str, bool]:
        row = self._get(pk, "t")
        if row is None:
            self._throttles.pop(pk, None)
            return None, "", True
        self._saw_throttle(pk, row, row.metadata["etag"])
        return dict(row), row.metadata["etag"], True

    def _saw_throttle(self, pk: str, row: Mapping[str, Any], etag: str) -> None:
        self._throttles[pk] = (dict(row), etag)
        self._throttles.move_to_end(pk)
        while len(self._throttles) > _SEEN_THROTTLES:
            self._throttles.popitem(last=False)

    # quarantine -----------------------------------------------------------------------------------------------
    def quarantine(self, record: QuarantineRecord) -> None:
        """The raw payload goes to a blob first, so a record never points at a missing payload."""
        name = uuid.uuid4().hex
        blob = f"{record.at:%Y/%m/%d}/{record.at:%H%M%S}-{name}.json"
        with _storage(f"quarantine event {record.event_id}"):
            self._container().upload_blob(blob, record.raw.encode("utf-8", "backslashreplace"), overwrite=True)
            self._insert({
                "PartitionKey": f"q{record.at:%Y%m%d}", "RowKey": f"{_micros(record.at):017d}|{name}",
                "record": "quarantine", "at": record.at, "event_key": record.event_key, "event_id": record.event_id,
                "reason": _clip(record.reason), "blob": blob, "touched": record.at,
            })

    def quarantined(self, since: datetime | None = None) -> list[QuarantineRecord]:
        lower = f"q{since:%Y%m%d}" if since else "q"
        with _storage("list quarantined events"):
            rows = self._table.query_entities(
                "PartitionKey ge @lower and PartitionKey lt 'r' and record eq 'quarantine'",
                parameters={"lower": lower},
            )
            container = self._container()
            return [
                QuarantineRecord(
                    at=row["at"], event_key=_opt(row.get("event_key")), event_id=_opt(row.get("event_id")),
                    reason=row["reason"],
                    raw=container.download_blob(row["blob"]).readall().decode(),
                )
                for row in rows
                if since is None or row["at"] >= since
            ]

    def _container(self) -> ContainerClient:
        if self._blobs is None:
            self._blobs = self._make_blobs()
        container = self._blobs.get_container_client(self._container_name)
        if not self._container_ready:
            try:
                container.create_container()
            except HttpResponseError as exc:
                if _status(exc) != 409:  # 409: it exists
                    raise
            self._container_ready = True
        return container

    # audit ----------------------------------------------------------------------------------------------------
    def record_audit(self, entry: AuditEntry) -> None:
        with _storage(f"audit event {entry.event_id}"):
            self._insert(_audit_entity(_event_pk(entry.event_id), entry, self._next_seq()))
            self._index_by_correlation(entry)

    def audit(
        self,
        *,
        event_id: str | None = None,
        correlation_id: str | None = None,
        since: datetime | None = None,
        limit: int = 200,
    ) -> list[AuditEntry]:
        clauses = ["RowKey ge 'z|'", "RowKey lt 'z}'"]
        parameters: dict[str, Any] = {}
        partitions: list[str] = []
        if event_id is not None:  # one partition
            partitions.append(_event_pk(event_id))
            clauses.append("event_id eq @event_id")
            parameters["event_id"] = event_id
        if correlation_id is not None:
            clauses.append("correlation_id eq @correlation_id")
            parameters["correlation_id"] = correlation_id
            if event_id is None:  # the copies, and the chain's first event in its own partition: two partitions
                partitions += ["c" + _h(correlation_id), _event_pk(correlation_id)]
        if since is not None:
            clauses.append("at ge @since")
            parameters["since"] = since
        with _storage("read the audit trail"):
            if not partitions:  # every event partition (each entry has one copy there): a scan, for operators only
                rows = self._table.query_entities(
                    " and ".join([*clauses, "PartitionKey ge 'e'", "PartitionKey lt 'f'"]), parameters=parameters
                )
                found = sorted(rows, key=lambda r: r["RowKey"])[:limit]  # RowKeys sort newest first
            else:  # each partition reads newest first: the first ``limit`` of each suffice
                found = sorted(
                    (row for pk in partitions for row in itertools.islice(self._table.query_entities(
                        " and ".join([*clauses, "PartitionKey eq @pk"]), parameters={**parameters, "pk": pk}
                    ), limit) if not _old_first_copy(row, correlation_id)),
                    key=lambda r: r["RowKey"],
                )[:limit]
        return [_audit_record(row) for row in found]

    # retention ------------------------------------------------------------------------------------------------
    def purge(self, before: datetime, *, budget: timedelta | None = None) -> PurgeProgress:
        """One pass over the table in key order, one page (``_PAGE`` rows) at a time, deleting what was last touched
        before the pass's cutoff (quarantine payload blobs too) per partition in transactions of up to 100; a row
        changed since it was read is kept (If-Match). Quarantine partitions are days: the pass reads them only up
        to the cutoff's day.

        With a ``budget`` the pass stops after the page that spends it and stores where it stopped (``p``/``purge``);
        the next call continues there with the same cutoff. A new pass starts only once the cutoff has moved on
        ``_PURGE_EVERY`` since the last finished one. The count leaves out the by-correlation copies of audit
        entries, so it counts records as the SQLite ledger does."""
        deadline = None if budget is None else time.monotonic() + budget.total_seconds()
        with _storage("purge the ledger"):
            state = self._get("p", "purge")
            if state is not None and state["next"] == "" and before - state["before"] < _PURGE_EVERY:
                return PurgeProgress(0, True)  # the last pass is recent enough
            if state is None or state["next"] == "":
                state_before, resume = before, _PURGE_RANGES[0][0]
            else:
                state_before, resume = state["before"], state["next"]
            deleted = 0
            for low, high in _PURGE_RANGES:
                upper = high or f"{low}{state_before:%Y%m%d}~"  # "~" sorts after any row of that day
                if upper <= resume:
                    continue
                pager = self._table.query_entities(
                    "PartitionKey ge @low and PartitionKey lt @high and touched lt @before",
                    parameters={"low": max(low, resume), "high": upper, "before": state_before},
                    results_per_page=self.purge_page,
                )
                for page in pager.by_page():
                    rows = list(page)
                    deleted += self._delete_page(rows)
                    if rows and deadline is not None and time.monotonic() > deadline:
                        # Resume at the partition of the last row read: what it had left is read again, once.
                        self._save_purge(state_before, rows[-1]["PartitionKey"])
                        return PurgeProgress(deleted, False)
            self._save_purge(state_before, "")
            return PurgeProgress(deleted, True)

    def _save_purge(self, before: datetime, resume: str) -> None:
        """Where the pass continues ("" once finished). Unconditional: one timer runs at a time (``use_monitor``)."""
        self._table.upsert_entity({"PartitionKey": "p", "RowKey": "purge", "record": "purge", "before": before,
                                   "next": resume, "touched": datetime.now(UTC)}, mode=UpdateMode.REPLACE)

    def _delete_page(self, rows: Sequence[Any]) -> int:
        by_partition: dict[str, list[Any]] = {}
        for row in rows:
            by_partition.setdefault(row["PartitionKey"], []).append(row)
        deleted = 0
        for pk, partition in by_partition.items():
            for start in range(0, len(partition), _BATCH):
                gone = self._delete(partition[start : start + _BATCH])
                deleted += 0 if pk.startswith("c") else gone
        return deleted

    def _delete(self, rows: Sequence[Any]) -> int:
        for row in rows:
            if row.get("record") == "quarantine":
                try:
                    self._container().delete_blob(row["blob"])
                except HttpResponseError as exc:
                    if _status(exc) != 404:
                        raise
        operations = [
            ("delete", row, {"etag": row.metadata["etag"], "match_condition": MatchConditions.IfNotModified})
            for row in rows
        ]
        try:
            self._table.submit_transaction(operations)
            return len(rows)
        except TableTransactionError as exc:
            if _status(exc) not in (404, 412):
                raise
        deleted = 0
        for row in rows:  # one of them changed or vanished meanwhile: one by one
            try:
                self._table.delete_entity(row, etag=row.metadata["etag"], match_condition=MatchConditions.IfNotModified)
                deleted += 1
            except HttpResponseError as exc:
                if _status(exc) not in (404, 412):
                    raise
        return deleted

    # releases -------------------------------------------------------------------------------------------------
    def track_release(self, record: ReleaseRecord) -> bool:
        with _storage(f"track release {record.key}"):
            return self._insert(_release_entity(record)) is not None

    def find_release(self, target: str, scope: str, release_id: str) -> ReleaseRecord | None:
        with _storage(f"find release {target} {release_id}"):
            row = self._get(_RELEASES, _h(release_lookup_key(target, scope, release_id)))
        return _release_record(row) if row is not None else None

    def advance_release(
        self, key: str, state: ReleaseState, now: datetime, *, waiting_since: datetime | None = None
    ) -> bool:
        """Read, check ``may_become``, update If-Match the ETag read; a 412 (someone moved first) reads again."""
        with _storage(f"advance release {key}"):
            for _ in range(_CAS_ROUNDS):
                row = self._get(_RELEASES, _h(key))
                if row is None:
                    return False
                moved = ReleaseState(row["state"]).may_become(state)
                change: dict[str, Any] = {"PartitionKey": _RELEASES, "RowKey": _h(key), "checked_at": now,
                                          "touched": now}
                if moved:
                    change["state"] = state.value
                    if waiting_since is not None and not row.get("waiting_since"):
                        change["waiting_since"] = waiting_since
                if self._update(change, row.metadata["etag"]) is not None:
                    return moved
        raise TransientError(f"ledger: advance release {key}: contended by other instances; try again")

    def pending_releases(self, limit: int) -> list[ReleaseRecord]:
        clauses = " and ".join(f"state ne '{s.value}'" for s in ReleaseState if s.terminal)
        with _storage("list pending releases"):
            rows = self._table.query_entities(f"PartitionKey eq '{_RELEASES}' and {clauses}")
            records = [_release_record(row) for row in rows]
        records.sort(key=lambda r: (r.checked_at or _EPOCH, r.queued_at))
        return records[:limit]

    def close(self) -> None:
        self._table.close()
        self._service.close()
        if self._blobs is not None:
            self._blobs.close()

    # primitives -----------------------------------------------------------------------------------------------
    def _next_seq(self) -> int:
        return next(self._seq)

    def _insert(self, entity: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """Insert-if-absent: the response metadata (ETag), or None if the entity exists."""
        return _absent_on(409, lambda: self._table.create_entity(_present(entity)))

    def _update(
        self, entity: Mapping[str, Any], etag: str, mode: UpdateMode = UpdateMode.MERGE
    ) -> Mapping[str, Any] | None:
        """Update If-Match ``etag``: the new metadata, or None if the entity changed (412) or vanished (404)."""
        return _absent_on(412, lambda: self._table.update_entity(
            _present(entity), mode=mode, etag=etag, match_condition=MatchConditions.IfNotModified
        ), also=404)

    def _get(self, pk: str, rk: str) -> Any:
        return _absent_on(404, lambda: self._table.get_entity(pk, rk))


def _absent_on(status: int, call: Callable[[], T], also: int | None = None) -> T | None:
    try:
        return call()
    except HttpResponseError as exc:
        if _status(exc) in (status, also):
            return None
        raise


def _old_first_copy(row: Mapping[str, Any], correlation_id: str | None) -> bool:
    """A by-correlation copy of a chain's first event, as ledgers written before these copies stopped hold: the
    event's own partition has the entry, so the timeline shows it once."""
    return row["PartitionKey"].startswith("c") and row.get("event_id") == correlation_id


def _present(entity: Mapping[str, Any]) -> dict[str, Any]:
    """A MERGE leaves properties it does not name: an absent value is written as an empty string instead of None.

    Every string is cut to fit a property (64 KiB of UTF-16): event data can hold a 70,000-character tag value.
    """
    return {k: ("" if v is None else _fit(v) if isinstance(v, str) else v) for k, v in entity.items()}


def _fit(text: str, limit: int = _PROPERTY_CHARS) -> str:
    """``text`` if it fits a string property, else its start and the sha256 and length of the whole (the raw
    payload of a quarantined event is kept whole in its blob). Lone surrogates cannot be sent at all: escaped."""
    if len(text) > limit // 2 and len(text.encode("utf-16-le", "surrogatepass")) // 2 > limit:
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        text = f"{text[:_TEXT_LIMIT]}…[cut: {len(text)} characters, sha256 {digest}]"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _fit_json(value: Any) -> str:
    """JSON of a result's data, or — too large for a property — a marker naming its size and hash."""
    text = dumps(value)
    if len(text) <= _JSON_LIMIT:
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return json.dumps({"cut": f"{len(text)} characters of data, sha256 {digest}, too large for Table Storage"})


def _version(holder: str, etag: str) -> str:
    return f"{holder} {etag}"


def _split_version(version: str) -> tuple[str, str]:
    holder, _, etag = version.partition(" ")
    return holder, etag


def _opt(value: Any) -> Any:
    return None if value == "" else value


def _event_record(row: Mapping[str, Any], metadata: Mapping[str, Any], holder: str) -> EventRecord:
    return EventRecord(
        key=row["key"], event_id=row["event_id"], status=EventStatus(row["status"]), outcome=_opt(row.get("outcome")),
        lease_until=_opt(row.get("lease_until")), attempts=row["attempts"], updated_at=row["touched"],
        version=_version(holder, metadata["etag"]),
    )


_RELEASES = "r"


def _release_entity(r: ReleaseRecord) -> dict[str, Any]:
    return {
        "PartitionKey": _RELEASES, "RowKey": _h(r.key), "record": "release", "key": r.key, "target": r.target,
        "scope": r.scope.lower(), "release_id": r.release_id, "model": r.model, "version": r.version,
        "correlation_id": r.correlation_id, "workspace": r.workspace, "queued_at": r.queued_at, "project": r.project,
        "definition": r.definition, "environment": r.environment, "url": r.url, "release_key": r.release_key,
        "state": r.state.value, "waiting_since": r.waiting_since, "checked_at": r.checked_at,
        "touched": r.updated_at or r.queued_at,
    }


def _release_record(row: Mapping[str, Any]) -> ReleaseRecord:
    return ReleaseRecord(
        target=row["target"], scope=row["scope"], release_id=row["release_id"], model=row["model"],
        version=row["version"], correlation_id=row["correlation_id"], workspace=row["workspace"],
        queued_at=row["queued_at"], project=row.get("project", ""), definition=row.get("definition", ""),
        environment=row.get("environment", ""), url=row.get("url", ""), release_key=row.get("release_key", ""),
        state=ReleaseState(row["state"]), waiting_since=_opt(row.get("waiting_since")),
        checked_at=_opt(row.get("checked_at")), updated_at=row.get("touched"),
    )


def _action_entity(r: ActionRecord) -> dict[str, Any]:
    return {
        "PartitionKey": _event_pk(r.event_id), "RowKey": f"a|{r.key}", "record": "action", "key": r.key,
        "event_key": r.event_key, "event_id": r.event_id, "rule": r.rule, "action_kind": r.kind,
        "status": r.status.value, "attempts": r.attempts, "external_id": r.external_id, "detail": _clip(r.detail),
        "url": r.url, "data": _fit_json(r.data), "touched": r.updated_at,
    }


def _action_operation(record: ActionRecord) -> tuple[Any, ...]:
    """A result in a transaction: over the stored record it was read or started as (If-Match), else an insert."""
    entity = _present(_action_entity(record))
    if record.version:
        return ("update", _without_attempts(entity), {"mode": UpdateMode.MERGE, "etag": record.version,
                                                       "match_condition": MatchConditions.IfNotModified})
    return ("create", entity)


def _without_attempts(entity: Mapping[str, Any]) -> dict[str, Any]:
    """A result recorded over a started record keeps the attempts ``start_action`` counted."""
    return {k: v for k, v in entity.items() if k != "attempts"}


def _action_record(row: Mapping[str, Any], etag: str | None = None) -> ActionRecord:
    metadata = getattr(row, "metadata", None) or {}
    return ActionRecord(
        key=row["key"], event_key=row["event_key"], event_id=row["event_id"], rule=row["rule"],
        kind=row["action_kind"], status=ActionStatus(row["status"]), external_id=_opt(row.get("external_id")),
        detail=row.get("detail", ""), url=_opt(row.get("url")), updated_at=row["touched"],
        attempts=row.get("attempts", 0), data=json.loads(row.get("data") or "{}"),
        version=etag or metadata.get("etag", ""),
    )


def _audit_entity(pk: str, entry: AuditEntry, seq: int) -> dict[str, Any]:
    """RowKey ``z|<inverted time>|<inverted seq>|<nonce>``: a partition reads newest first, ties in write order."""
    row_key = f"z|{_FAR - _micros(entry.at):017d}|{10**12 - seq:012d}|{uuid.uuid4().hex[:8]}"
    return {
        "PartitionKey": pk, "RowKey": row_key, "record": "audit", "at": entry.at, "event_key": entry.event_key,
        "event_id": entry.event_id, "event_type": entry.event_type, "subject": _clip(entry.subject),
        "source": entry.source, "correlation_id": entry.correlation_id, "outcome": entry.outcome,
        "reason": _clip(entry.reason), "reactions": dumps(entry.reactions),
        "actions": _fit_actions(entry.actions), "touched": entry.at,
    }


def _fit_actions(actions: Iterable[Mapping[str, Any]]) -> str:
    """JSON of the action outcomes, within one property's size: structured data goes first, then long details
    are shortened."""
    listed = list(actions)
    text = dumps(listed)
    if len(text) > _JSON_LIMIT:
        listed = [{**a, "data": {}} for a in listed]
        text = dumps(listed)
    if len(text) > _JSON_LIMIT:
        listed = [{**a, "detail": _clip(str(a.get("detail", "")), 200)} for a in listed]
        text = dumps(listed)
    while len(text) > _JSON_LIMIT and listed:
        listed = listed[:-1]
        text = dumps([*listed, {"status": "truncated"}])
    return text


def _audit_record(row: Mapping[str, Any]) -> AuditEntry:
    return AuditEntry(
        at=row["at"], event_key=_opt(row.get("event_key")), event_id=_opt(row.get("event_id")),
        event_type=row.get("event_type", ""), subject=row.get("subject", ""), source=row.get("source", ""),
        correlation_id=row.get("correlation_id", ""), outcome=row["outcome"], reason=row.get("reason", ""),
        reactions=json.loads(row["reactions"]), actions=json.loads(row["actions"]),
    )
