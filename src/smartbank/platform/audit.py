"""The audit log: who did what, when, from where — written in the same transaction as the action.

Use cases call :func:`record` with their own connection, so an audited action and its audit row
commit or roll back together. Rows are append-only. Never put a password, one-time code, token or
other secret in ``details``.

Tamper evidence (docs/adr/0003-audit-chain.md): each row carries an HMAC of its canonical content
under the audit key, which the database does not hold. Writers take no shared lock: a chainer
(:func:`chain_pending`, run as a periodic job and by ``smartbank audit verify``) links rows of
finished transactions, in (txid, seq) order, into the append-only ``platform.audit_chain``, each
entry keyed-hashing the previous one. :func:`verify` finds changed, deleted and inserted rows.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

import orjson
import procrastinate
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from smartbank.kernel.ids import new_id
from smartbank.platform import jobs
from smartbank.platform.db import Database
from smartbank.platform.keys import derive, load_key
from smartbank.platform.settings import get_settings

MAX_DETAILS_BYTES: Final = 4096
#: Rows linked per chainer transaction, and rows read per verification page.
CHAIN_BATCH: Final = 2000
MAX_PROBLEMS: Final = 100
GENESIS: Final = bytes(32)
_CHAIN_LOCK: Final = 0x5B_A0_D1_7C  # pg_advisory_xact_lock key: one chainer at a time

_keys: dict[str, bytes] = {}


class Outcome(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    DENIED = "denied"


@dataclass(frozen=True, slots=True)
class AuditEvent:
    #: Dotted verb, e.g. ``identity.login``, ``identity.mfa_enrolled``, ``banking.payment_created``.
    action: str
    outcome: Outcome = Outcome.SUCCESS
    #: ``customer``, ``staff``, ``merchant``, ``system`` or ``anonymous``.
    actor_kind: str = "system"
    actor_id: uuid.UUID | None = None
    subject_type: str | None = None
    subject_id: str | None = None
    ip: str | None = None
    device: str | None = None
    request_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    #: When it happened (the use case's clock); the wall clock when omitted.
    occurred_at: datetime | None = None


def configure_key(key: bytes) -> None:
    """Use this audit master key in this process (the runtime calls it with the configured key)."""
    _keys["mac"] = derive(key, "audit-mac")
    _keys["chain"] = derive(key, "audit-chain")


def _key(purpose: str) -> bytes:
    if purpose not in _keys:
        configure_key(load_key(get_settings(), "audit"))
    return _keys[purpose]


def canonical(
    *,
    id: uuid.UUID,
    occurred_at: datetime,
    action: str,
    outcome: str,
    actor_kind: str,
    actor_id: uuid.UUID | None,
    subject_type: str | None,
    subject_id: str | None,
    ip: str | None,
    device: str | None,
    request_id: str | None,
    details: dict[str, Any],
) -> bytes:
    """The bytes a row's MAC covers: every column but seq, txid and the MAC itself."""
    return orjson.dumps(
        [
            "audit.v1",
            str(id),
            occurred_at.astimezone(UTC).isoformat(timespec="microseconds"),
            action,
            outcome,
            actor_kind,
            str(actor_id) if actor_id else None,
            subject_type,
            subject_id,
            ip,
            device,
            request_id,
            details,
        ],
        option=orjson.OPT_SORT_KEYS,
    )


def row_mac(content: bytes) -> bytes:
    return hmac.new(_key("mac"), content, hashlib.sha256).digest()


def chain_hash(prev_hash: bytes, chain_seq: int, audit_seq: int, mac: bytes) -> bytes:
    message = prev_hash + chain_seq.to_bytes(8, "big") + audit_seq.to_bytes(8, "big") + mac
    return hmac.new(_key("chain"), message, hashlib.sha256).digest()


def _normal_ip(ip: str | None) -> str | None:
    return None if ip is None else str(ipaddress.ip_address(ip))


async def record(conn: AsyncConnection, event: AuditEvent, *, now: datetime | None = None) -> uuid.UUID:
    """Append one audit row inside the caller's transaction; returns its id.

    The row is dated ``event.occurred_at``, else ``now`` (a service passes its clock's), else the
    system time."""
    details_json = orjson.dumps(event.details, option=orjson.OPT_SORT_KEYS)
    if len(details_json) > MAX_DETAILS_BYTES:
        raise ValueError(f"audit details are {len(details_json)} bytes; at most {MAX_DETAILS_BYTES}")
    details = orjson.loads(details_json)  # what jsonb will give back
    audit_id = new_id()
    occurred_at = (event.occurred_at or now or datetime.now(UTC)).astimezone(UTC)
    columns: dict[str, Any] = {
        "id": audit_id,
        "occurred_at": occurred_at,
        "action": event.action,
        "outcome": event.outcome.value,
        "actor_kind": event.actor_kind,
        "actor_id": event.actor_id,
        "subject_type": event.subject_type,
        "subject_id": event.subject_id,
        "ip": _normal_ip(event.ip),
        "device": event.device[:300] if event.device else None,
        "request_id": event.request_id,
        "details": details,
    }
    mac = row_mac(canonical(**columns))
    await conn.execute(
        text(
            """
            INSERT INTO platform.audit_log (id, occurred_at, action, outcome, actor_kind, actor_id, subject_type,
                                            subject_id, ip, device, request_id, details, mac)
            VALUES (:id, :occurred_at, :action, :outcome, :actor_kind, :actor_id, :subject_type, :subject_id,
                    CAST(:ip AS inet), :device, :request_id, CAST(:details AS jsonb), :mac)
            """
        ),
        {**columns, "details": details_json.decode(), "mac": mac},
    )
    return audit_id


#: Most rows one :func:`recent` call returns.
MAX_RECENT: Final = 100


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audit row as read back (the ``seq`` orders rows and pages :func:`recent`)."""

    seq: int
    id: uuid.UUID
    occurred_at: datetime
    action: str
    outcome: Outcome
    actor_kind: str
    actor_id: uuid.UUID | None
    subject_type: str | None
    subject_id: str | None
    ip: str | None
    device: str | None
    details: dict[str, Any]


async def recent(
    db: Database,
    *,
    actor_id: uuid.UUID | None = None,
    subjects: Sequence[tuple[str, str]] = (),
    before_seq: int | None = None,
    limit: int = 20,
) -> list[AuditRecord]:
    """The newest audit rows done by ``actor_id`` or about any of ``subjects`` ((type, id) pairs).

    Newest first, at most ``limit`` (capped at :data:`MAX_RECENT`); pass the last row's ``seq`` as
    ``before_seq`` for the next page. Each side is an index scan on its own partial index.
    """
    if actor_id is None and not subjects:
        return []
    limit = max(1, min(limit, MAX_RECENT))
    columns = (
        "seq, id, occurred_at, action, outcome, actor_kind, actor_id, subject_type, subject_id, host(ip) AS ip, "
        "device, details"
    )
    before = "AND seq < :before" if before_seq is not None else ""
    parts: list[str] = []
    if actor_id is not None:
        parts.append(
            f"(SELECT {columns} FROM platform.audit_log WHERE actor_id = :actor {before} ORDER BY seq DESC LIMIT :n)"
        )
    if subjects:
        parts.append(
            f"""(SELECT {columns} FROM platform.audit_log
                 WHERE (subject_type, subject_id) IN
                       (SELECT * FROM unnest(CAST(:types AS text[]), CAST(:ids AS text[])))
                   {before}
                 ORDER BY seq DESC LIMIT :n)"""
        )
    sql = f"SELECT * FROM ({' UNION '.join(parts)}) AS found ORDER BY seq DESC LIMIT :n"
    params: dict[str, Any] = {
        "actor": actor_id,
        "types": [kind for kind, _ in subjects],
        "ids": [ident for _, ident in subjects],
        "before": before_seq,
        "n": limit,
    }
    async with db.connect() as conn:
        rows = (await conn.execute(text(sql), params)).mappings().all()
    return [AuditRecord(**{**row, "outcome": Outcome(row["outcome"])}) for row in rows]


# -- the chain ------------------------------------------------------------------------------------


async def chain_pending(db: Database, *, batch: int = CHAIN_BATCH, max_batches: int = 1000) -> int:
    """Link audit rows of finished transactions into the chain; returns how many were linked.

    Only rows whose transaction id is below the snapshot's xmin are taken: every such transaction
    has finished, so no row can later appear before the chain head in (txid, seq) order.

    The order is the ``xid8`` column's (``a.txid``): an unqualified ``txid`` in ``ORDER BY`` would
    name the text column of the select list, and '10000' sorts before '1268'. Chains linked in that
    order by earlier versions have entries out of order; rows already in the chain are skipped, so
    such a chain goes on growing, and ``verify`` names the rows it left behind.
    """
    total = 0
    for _ in range(max_batches):
        async with db.transaction() as conn:
            await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _CHAIN_LOCK})
            head = (
                await conn.execute(
                    text(
                        "SELECT chain_seq, audit_seq, audit_txid::text AS txid, chain_hash FROM platform.audit_chain"
                        " ORDER BY chain_seq DESC LIMIT 1"
                    )
                )
            ).first()
            chain_seq, head_seq, head_txid, prev = (0, 0, "0", GENESIS) if head is None else tuple(head)
            rows = (
                await conn.execute(
                    text(
                        """
                        SELECT a.seq, a.txid::text AS txid, a.mac FROM platform.audit_log a
                        WHERE a.txid < pg_snapshot_xmin(pg_current_snapshot())
                          AND (a.txid, a.seq) > (CAST(:txid AS xid8), :seq)
                          AND NOT EXISTS (SELECT 1 FROM platform.audit_chain c WHERE c.audit_seq = a.seq)
                        ORDER BY a.txid, a.seq LIMIT :limit
                        """
                    ),
                    {"txid": head_txid, "seq": head_seq, "limit": batch},
                )
            ).all()
            if not rows:
                return total
            entries = []
            for row in rows:
                chain_seq += 1
                link = chain_hash(prev, chain_seq, row.seq, row.mac)
                entries.append(
                    {"chain_seq": chain_seq, "audit_seq": row.seq, "txid": row.txid, "mac": row.mac, "prev": prev}
                    | {"hash": link}
                )
                prev = link
            await conn.execute(
                text(
                    "INSERT INTO platform.audit_chain (chain_seq, audit_seq, audit_txid, mac, prev_hash, chain_hash)"
                    " VALUES (:chain_seq, :audit_seq, CAST(:txid AS xid8), :mac, :prev, :hash)"
                ),
                entries,
            )
            total += len(rows)
            if len(rows) < batch:
                return total
    return total


@dataclass(frozen=True, slots=True)
class VerifyReport:
    rows: int
    chained: int
    problems: list[str]
    #: Rows of transactions that were still running somewhere in the cluster: chained later.
    pending: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


async def verify(db: Database, *, chain_first: bool = True) -> VerifyReport:
    """Check every row against its MAC and the whole chain; each problem names the row."""
    if chain_first:
        await chain_pending(db)
    problems: list[str] = []

    def problem(message: str) -> None:
        if len(problems) < MAX_PROBLEMS:
            problems.append(message)

    rows = 0
    async with db.connect() as conn:
        after = 0
        while True:
            page = (
                await conn.execute(
                    text(
                        """
                        SELECT seq, id, occurred_at, action, outcome, actor_kind, actor_id, subject_type, subject_id,
                               host(ip) AS ip, device, request_id, details, mac
                        FROM platform.audit_log WHERE seq > :after ORDER BY seq LIMIT :limit
                        """
                    ),
                    {"after": after, "limit": CHAIN_BATCH},
                )
            ).all()
            for r in page:
                content = canonical(
                    id=r.id,
                    occurred_at=r.occurred_at,
                    action=r.action,
                    outcome=r.outcome,
                    actor_kind=r.actor_kind,
                    actor_id=r.actor_id,
                    subject_type=r.subject_type,
                    subject_id=r.subject_id,
                    ip=r.ip,
                    device=r.device,
                    request_id=r.request_id,
                    details=r.details,
                )
                if not hmac.compare_digest(row_mac(content), r.mac):
                    problem(f"audit row seq={r.seq} id={r.id}: content does not match its MAC (changed or forged)")
            rows += len(page)
            if len(page) < CHAIN_BATCH:
                break
            after = page[-1].seq

        chained = 0
        prev = GENESIS
        after = 0
        while True:
            page = (
                await conn.execute(
                    text(
                        """
                        SELECT c.chain_seq, c.audit_seq, c.mac, c.prev_hash, c.chain_hash, a.seq AS present,
                               a.mac AS row_mac
                        FROM platform.audit_chain c LEFT JOIN platform.audit_log a ON a.seq = c.audit_seq
                        WHERE c.chain_seq > :after ORDER BY c.chain_seq LIMIT :limit
                        """
                    ),
                    {"after": after, "limit": CHAIN_BATCH},
                )
            ).all()
            for c in page:
                chained += 1
                if c.chain_seq != chained:
                    problem(f"chain entry {chained}: missing (the chain jumps to entry {c.chain_seq})")
                    chained = c.chain_seq
                if c.prev_hash != prev or not hmac.compare_digest(
                    chain_hash(c.prev_hash, c.chain_seq, c.audit_seq, c.mac), c.chain_hash
                ):
                    problem(f"chain entry {c.chain_seq} (audit row seq={c.audit_seq}): chain hash broken")
                if c.present is None:
                    problem(f"audit row seq={c.audit_seq}: missing from the log (deleted); chain entry {c.chain_seq}")
                elif c.row_mac != c.mac:
                    problem(f"audit row seq={c.audit_seq}: MAC differs from the chained one (changed)")
                prev = c.chain_hash
            if len(page) < CHAIN_BATCH:
                break
            after = page[-1].chain_seq

        # Every row behind the chain head in (txid, seq) order was finished when the head was
        # chained, so it must be in the chain: one that is not was slipped in afterwards.
        behind_head = """
            FROM platform.audit_log a
            WHERE NOT EXISTS (SELECT 1 FROM platform.audit_chain c WHERE c.audit_seq = a.seq)
              AND (a.txid, a.seq) < (SELECT h.audit_txid, h.audit_seq FROM platform.audit_chain h
                                     ORDER BY h.chain_seq DESC LIMIT 1)
        """
        stray = await conn.execute(
            text(f"SELECT a.seq, a.id {behind_head} ORDER BY a.seq LIMIT :limit"), {"limit": MAX_PROBLEMS}
        )
        for s in stray:
            problem(f"audit row seq={s.seq} id={s.id}: not in the chain though written before its head (inserted)")
        pending = rows - chained
    return VerifyReport(rows=rows, chained=chained, problems=problems, pending=pending)


# -- the periodic chainer -------------------------------------------------------------------------

blueprint = procrastinate.Blueprint()


@blueprint.periodic(cron="* * * * * */10")  # sixth field: seconds
@blueprint.task(queueing_lock="platform.chain_audit", pass_context=False)
async def chain_audit(timestamp: int) -> int:
    """Link newly finished audit rows into the hash chain (every ten seconds)."""
    db: Database = jobs.services["db"]
    return await chain_pending(db)
