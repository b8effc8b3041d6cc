"""``advance``: evolve a simulated source database day by day, as production would.

Each simulated day (from the clock stored in ``simulator.state``):

1. in-progress bordereaux move one step along their workflow (schema reference §3) with a
   deterministic per-row draw (``hashtext(id || day)``), their date columns set on that day and
   ``updatedAt`` bumped;
2. some drafts are soft-deleted (``isDeleted = true``, ``updatedAt`` bumped);
3. a few accepted BSDD revisions change ``quantityReceived`` (``BsddRevisionRequest`` +
   ``BsddRevisionRequestApproval`` rows, ``Form.updatedAt`` bumped);
4. a few new companies register;
5. new bordereaux are created (scale / 730 per day) with the generator of ``simulate``.

Rows listed as injected defects (``simulator.defect``) are left as they are, so they keep their defect.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path

from psycopg2.extras import Json

from ..db import connect
from ..errors import TdwError
from .bsds import Builder
from .copywriter import SCHEMA, CopyWriter
from .generate import SPAN_DAYS, TYPE_SHARES, default_out_dir, end_of, load_world, table_counts, write_company
from .refdata import load_reference
from .world import Pools, cuid

_INTERMEDIATE_SQL = "('R 12', 'R 13', 'D 9', 'D 13', 'D 14', 'D 15')"
_MODE_CASE = ("(case \"recipientProcessingOperation\" when 'R 1' then 'VALORISATION_ENERGETIQUE' "
              "when 'R 2' then 'REUTILISATION' when 'R 9' then 'REUTILISATION' "
              "when 'D 5' then 'ELIMINATION' when 'D 8' then 'ELIMINATION' when 'D 9 F' then 'ELIMINATION' "
              "when 'D 10' then 'ELIMINATION' when 'R 3' then 'RECYCLAGE' when 'R 4' then 'RECYCLAGE' "
              "when 'R 5' then 'RECYCLAGE' when 'R 6' then 'RECYCLAGE' end)::\"default$default\".\"OperationMode\"")
# (table, from status, to status, share per day in %, SET clause using %(ts)s and %(who)s)
_TRANSITIONS = [
    ("Form", "SEALED", "SIGNED_BY_PRODUCER", 40, '"emittedAt" = %(ts)s, "emittedBy" = %(who)s'),
    ("Form", "SIGNED_BY_PRODUCER", "SENT", 60, '"takenOverAt" = %(ts)s, "takenOverBy" = %(who)s, "sentAt" = %(ts)s'),
    ("Form", "SENT", "ACCEPTED", 50, '"receivedAt" = %(ts)s, "receivedBy" = %(who)s, "quantityReceived" = '
                                    '"wasteDetailsQuantity", "quantityRefused" = 0, "wasteAcceptationStatus" = '
                                    "'ACCEPTED', \"isAccepted\" = true"),
    ("Form", "ACCEPTED", "PROCESSED", 10, '"processedAt" = %(ts)s, "processedBy" = %(who)s, '
                                         '"processingOperationDone" = "recipientProcessingOperation", '
                                         '"destinationOperationMode" = ' + _MODE_CASE),
    ("Bsda", "SIGNED_BY_PRODUCER", "SIGNED_BY_WORKER", 50, '"workerWorkSignatureDate" = %(ts)s, '
                                                          '"workerWorkSignatureAuthor" = %(who)s'),
    ("Bsda", "SIGNED_BY_WORKER", "SENT", 50, '"transporterTransportSignatureDate" = %(ts)s'),
    ("Bsda", "SENT", "RECEIVED", 50, '"destinationReceptionDate" = %(ts)s, "destinationReceptionSignatureDate" = %(ts)s, '
                                    '"destinationReceptionSignatureAuthor" = %(who)s, "destinationReceptionWeight" = '
                                    '"weightValue", "destinationReceptionAcceptationStatus" = \'ACCEPTED\''),
    ("Bsdasri", "SIGNED_BY_PRODUCER", "SENT", 70, '"transporterTakenOverAt" = %(ts)s, '
                                                 '"transporterTransportSignatureDate" = %(ts)s'),
    ("Bsdasri", "SENT", "RECEIVED", 60, '"destinationReceptionDate" = %(ts)s, "destinationReceptionSignatureDate" = %(ts)s, '
                                       '"destinationReceptionWasteWeightValue" = "emitterWasteWeightValue", '
                                       '"destinationReceptionAcceptationStatus" = \'ACCEPTED\''),
    ("Bsvhu", "SIGNED_BY_PRODUCER", "SENT", 50, '"transporterTransportSignatureDate" = %(ts)s'),
    ("Bsvhu", "SENT", "RECEIVED", 50, '"destinationReceptionDate" = %(ts)s, "destinationReceptionSignatureDate" = %(ts)s, '
                                     '"destinationReceptionWeight" = "weightValue", "destinationReceptionQuantity" = '
                                     '"quantity", "destinationReceptionAcceptationStatus" = \'ACCEPTED\''),
    ("Bsff", "SIGNED_BY_EMITTER", "SENT", 50, '"transporterTransportSignatureDate" = %(ts)s'),
    ("Bsff", "SENT", "RECEIVED", 50, '"destinationReceptionDate" = %(ts)s, "destinationReceptionSignatureDate" = %(ts)s, '
                                    '"destinationReceptionSignatureAuthor" = %(who)s'),
    ("Bspaoh", "SIGNED_BY_PRODUCER", "SENT", 60, '"transporterTransportTakenOverAt" = %(ts)s'),
]
_ENUM = {"Form": "Status", "Bsda": "BsdaStatus", "Bsdasri": "BsdasriStatus", "Bsvhu": "BsvhuStatus",
         "Bsff": "BsffStatus", "Bspaoh": "BspaohStatus"}
_DELETABLE = {"Form": "'DRAFT'", "Bsda": "'INITIAL'", "Bsdasri": "'INITIAL'", "Bsvhu": "'INITIAL'",
              "Bsff": "'INITIAL'", "Bspaoh": "'DRAFT'"}


def advance(source_dsn: str, *, days: int, out_dir: Path | None = None) -> dict:
    """Evolve the simulated database by ``days`` days from its stored clock.

    Deterministic: the same database advanced by the same number of days gives the same result.

    Returns:
        ``{"clock_from", "clock_to", "days", "updated": {table: rows}, "inserted": {table: rows},
        "revisions": n, "counts": {table: rows}}``, also written to ``out_dir/advance-<clock_to>.json``.

    Raises:
        TdwError: ``days`` < 1, or the database was not created by :func:`tdw.simulator.simulate`.
    """
    if days < 1:
        raise TdwError(f"--advance must be a positive number of days (got {days})")
    from .generate import _data_dir

    ref = load_reference(_data_dir())
    conn = connect(source_dsn)
    updated: dict[str, int] = {}
    inserted: dict[str, int] = {}
    revisions = 0
    try:
        world, config = None, None
        with conn.cursor() as cur:
            cur.execute("select to_regclass('simulator.state')")
            if cur.fetchone()[0] is None:
                raise TdwError("this database was not created by 'tdw simulate' (no simulator.state): run it first")
        pools = Pools(_config(conn)["seed"])
        world, config = load_world(conn, ref, pools)
        clock = dt.date.fromisoformat(config["clock"])
        start_clock = clock
        per_day = max(1, round(config["scale"] / SPAN_DAYS))
        for _ in range(days):
            clock = clock + dt.timedelta(days=1)
            rng = random.Random(f"{config['seed']}:{clock.isoformat()}")
            now = end_of(clock)
            day_ts = dt.datetime.combine(clock, dt.time(10, 0), tzinfo=dt.timezone.utc)
            with conn.cursor() as cur:
                for table, frm, to, pct, set_clause in _TRANSITIONS:
                    status_sql = f'%(to)s::"{SCHEMA}"."{_ENUM[table]}"'
                    if table == "Form" and to == "PROCESSED":
                        status_sql = (f"(case when \"recipientProcessingOperation\" in {_INTERMEDIATE_SQL} "
                                      f"then 'AWAITING_GROUP' else 'PROCESSED' end)::\"{SCHEMA}\".\"Status\"")
                    update = (
                        f'update "{SCHEMA}"."{table}" t set "status" = {status_sql}, "updatedAt" = %(ts)s, {set_clause} '
                        f'where "status" = %(frm)s and not coalesce("isDeleted", false) and "updatedAt" < %(ts)s '
                        f"and abs(hashtext(t.id || %(day)s)) %% 100 < %(pct)s "
                        f"and not exists (select 1 from simulator.defect d where d.table_name = %(table)s and d.id = t.id)")
                    params = {"to": to, "frm": frm, "ts": day_ts, "who": pools.name(rng), "day": clock.isoformat(),
                              "pct": pct, "table": table}
                    if table == "Form":
                        # the status history and the first transport leg follow the form
                        cur.execute(
                            f'with u as ({update} returning t.id, t."ownerId", t.status), '
                            f'l as (insert into "{SCHEMA}"."StatusLog" (id, "formId", "userId", status, "loggedAt", '
                            f'"authType", "updatedFields") select \'c\' || substr(md5(u.id || %(day)s || u.status::text), 1, 24), '
                            f"u.id, u.\"ownerId\", u.status, %(ts)s, 'SESSION', '{{}}'::jsonb from u), "
                            f'b as (update "{SCHEMA}"."BsddTransporter" b set "takenOverAt" = %(ts)s, "takenOverBy" = %(who)s, '
                            f'"updatedAt" = %(ts)s from u where b."formId" = u.id and b.number = 1 and u.status = \'SENT\') '
                            f"select count(*) from u",
                            params)
                        updated["Form"] = updated.get("Form", 0) + cur.fetchone()[0]
                    else:
                        cur.execute(update, params)
                        updated[table] = updated.get(table, 0) + cur.rowcount
                for table, status in _DELETABLE.items():
                    cur.execute(
                        f'update "{SCHEMA}"."{table}" t set "isDeleted" = true, "updatedAt" = %(ts)s '
                        f'where "status" = {status} and not "isDeleted" and "createdAt" < %(ts)s - interval \'3 days\' '
                        f"and abs(hashtext(t.id || %(day)s)) %% 1000 < 5",
                        {"ts": day_ts, "day": clock.isoformat()})
                    updated[table] = updated.get(table, 0) + cur.rowcount
                revisions += _revisions(cur, rng, world, pools, day_ts, max(1, per_day // 200))
            out = CopyWriter(conn)
            for _ in range(max(0, round(len(world.companies) / SPAN_DAYS / 4))):
                co = world.make_company(rng, rng.choice(["producer", "producer", "garage", "health"]), day_ts)
                write_company(out, co, rng, pools)
                world.add(co)
                with conn.cursor() as cur:
                    out.flush()
                    cur.execute("insert into simulator.registry values (%s, %s)", (co.siret, Json(co.to_json())))
            b = Builder(world, out, rng, now, config["rates"], _NoObservations(), {})
            types, shares = list(TYPE_SHARES), list(TYPE_SHARES.values())
            for _ in range(per_day):
                created = dt.datetime.combine(clock, dt.time(rng.randint(6, 17), rng.randrange(60)),
                                              tzinfo=dt.timezone.utc)
                getattr(b, rng.choices(types, weights=shares)[0])(created)
            out.flush()
            for kind, entry in b.defects.items():
                with conn.cursor() as cur:
                    for r in entry["rows"]:
                        cur.execute("insert into simulator.defect values (%s, %s, %s, %s) on conflict do nothing",
                                    (kind, r["table"], r["id"], r["column"]))
            for t, n in out.counts.items():
                inserted[t] = inserted.get(t, 0) + n
        with conn.cursor() as cur:
            config["clock"] = clock.isoformat()
            config["advanced_days"] = config.get("advanced_days", 0) + days
            cur.execute("update simulator.state set value = %s where key = 'config'", (Json(config),))
        conn.commit()
        counts = table_counts(conn)
    finally:
        conn.close()
    result = {"clock_from": start_clock.isoformat(), "clock_to": clock.isoformat(), "days": days,
              "updated": updated, "inserted": inserted, "revisions": revisions, "counts": counts}
    out_dir = Path(out_dir) if out_dir else default_out_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"advance-{clock.isoformat()}.json").write_text(json.dumps(result, indent=1))
    return result


def _config(conn) -> dict:
    with conn.cursor() as cur:
        cur.execute("select value from simulator.state where key = 'config'")
        return cur.fetchone()[0]


class _NoObservations:
    """ICPE observations are not collected after the initial extract (capacities keep their margin)."""

    def reception(self, *args, **kwargs) -> None:
        return None

    def outflow(self, *args, **kwargs) -> None:
        return None


def _revisions(cur, rng, world, pools, day_ts, n: int) -> int:
    """Accepted revision requests on processed BSDDs: quantityReceived corrected by ±5-20 %."""
    cur.execute(
        f'select f.id, f."quantityReceived", f."recipientCompanySiret", f."wasteDetailsCode" from "{SCHEMA}"."Form" f '
        f"where f.status = 'PROCESSED' and not f.\"isDeleted\" and f.\"quantityReceived\" is not null "
        f'and f."updatedAt" < %s and not exists (select 1 from simulator.defect d where d.id = f.id) '
        f"order by md5(f.id || %s) limit %s",
        (day_ts, day_ts.isoformat(), n))
    done = 0
    by_siret = {c.siret: c for c in world.companies}
    for fid, qty, siret, code in cur.fetchall():
        author = by_siret.get(siret) or world.companies[0]
        new_qty = round(float(qty) * rng.uniform(0.8, 1.2), 3)
        rid = cuid(rng)
        cur.execute(
            f'insert into "{SCHEMA}"."BsddRevisionRequest" (id, "createdAt", "updatedAt", "bsddId", "authoringCompanyId", '
            f'status, comment, "quantityReceived", "initialQuantityReceived", "initialWasteDetailsCode") '
            f"values (%s, %s, %s, %s, %s, 'ACCEPTED', %s, %s, %s, %s)",
            (rid, day_ts, day_ts, fid, author.id, f"Erreur de pesée, signalée par {pools.name(rng)}", new_qty, qty, code))
        cur.execute(
            f'insert into "{SCHEMA}"."BsddRevisionRequestApproval" (id, "createdAt", "updatedAt", "revisionRequestId", '
            f"\"approverSiret\", status) values (%s, %s, %s, %s, %s, 'ACCEPTED')",
            (cuid(rng), day_ts, day_ts, rid, siret or author.siret))
        cur.execute(f'update "{SCHEMA}"."Form" set "quantityReceived" = %s, "updatedAt" = %s where id = %s',
                    (new_qty, day_ts, fid))
        done += 1
    return done
