"""Bordereau builders: one call produces one BSD (or one small linked group) and its child rows.

Lifecycles follow the status workflows of the schema reference (§3); dates are ordered
(createdAt <= emission <= pick-up <= reception <= operation) except where a defect is injected
on purpose. Units follow §6.1: Form in tonnes, the other types in kg.
"""

from __future__ import annotations

import datetime as dt
import random

from .world import INTERMEDIATE_OPS, Co, World, cuid, readable_id

D = dt.timedelta
DEFECT_KINDS = (
    "bsdd_quantity_in_kg", "date_year_0001", "date_in_future", "operation_code_format",
    "non_star_code_flagged_dangerous", "siret_with_spaces", "unknown_destination_siret", "received_never_processed",
)
DEFAULT_DEFECT_RATES = {
    "bsdd_quantity_in_kg": 0.01, "date_year_0001": 0.005, "date_in_future": 0.005, "operation_code_format": 0.01,
    "non_star_code_flagged_dangerous": 0.005, "siret_with_spaces": 0.01, "unknown_destination_siret": 0.005,
    "received_never_processed": 0.01,
    # shares of generated treatment sites with an ICPE non-conformity (tdw.simulator.icpe_extract)
    "icpe_missing_rubrique": 0.05, "icpe_capacity_exceeded": 0.05, "icpe_no_record": 0.04, "icpe_m3_unit": 0.03,
}
BSDD_COMMON = {"13 02 05*": 8, "15 01 10*": 8, "16 06 01*": 4, "17 05 03*": 6, "13 05 07*": 4, "08 01 11*": 4,
               "15 02 02*": 6, "16 01 07*": 2, "20 01 21*": 2, "19 12 11*": 3, "07 01 04*": 2, "12 01 09*": 2,
               "16 05 06*": 2, "19 08 13*": 2, "13 01 13*": 1, "16 01 14*": 2, "08 01 17*": 2, "19 02 05*": 2}
BSDD_EXCLUDED = {"14 06 01*", "06 07 01*", "06 13 04*", "10 13 09*", "16 01 11*", "16 02 12*", "17 06 01*",
                 "17 06 05*", "18 01 03*", "18 02 02*"}
HAZ_OPS = {"R 1": 12, "D 10": 14, "D 9 F": 12, "R 13": 12, "D 15": 9, "D 5": 7, "R 2": 3, "R 9": 6, "R 4": 4,
           "R 5": 3, "D 13": 3, "R 12": 3, "D 14": 1, "D 8": 2, "R 6": 1}
ND_OPS = {"R 3": 30, "R 5": 25, "R 1": 15, "D 10": 10, "R 12": 10}
BSDA_CODES = {"17 06 05*": 60, "17 06 01*": 20, "16 02 12*": 4, "17 06 03*": 6, "15 01 11*": 3, "17 05 03*": 4,
              "08 01 17*": 3}
BSDA_OPS = {"D 5": 80, "R 13": 6, "D 15": 10, "D 9 F": 4}
MODES = {"R 1": "VALORISATION_ENERGETIQUE", "R 2": "REUTILISATION", "R 3": "RECYCLAGE", "R 4": "RECYCLAGE",
         "R 5": "RECYCLAGE", "R 6": "RECYCLAGE", "R 9": "REUTILISATION", "D 5": "ELIMINATION", "D 8": "ELIMINATION",
         "D 9 F": "ELIMINATION", "D 10": "ELIMINATION"}
REFUSAL_REASONS = ["Non conforme au CAP", "Présence de déchets non autorisés", "Emballages non étanches",
                   "Erreur de code déchet", "Quantité supérieure à l'acceptation préalable"]


def _w(rng, d: dict):
    return rng.choices(list(d), weights=list(d.values()))[0]


class Builder:
    """Builds bordereaux into a CopyWriter; collects defects, ICPE observations and counters."""

    def __init__(self, world: World, writer, rng: random.Random, now: dt.datetime, defect_rates: dict,
                 acc, defects: dict):
        self.w, self.out, self.rng, self.now = world, writer, rng, now
        self.rates = defect_rates
        self.acc = acc  # IcpeObservations
        self.defects = defects
        ref = world.ref
        codes = ref.waste_codes
        self.bsdd_haz = [c for c, (_d, h) in codes.items() if h and c not in BSDD_EXCLUDED]
        self.bsdd_nd = [c for c, (_d, h) in codes.items() if not h and c not in BSDD_EXCLUDED]
        self.common = {c: w for c, w in BSDD_COMMON.items() if c in codes}
        self.bsda_codes = {c: w for c, w in BSDA_CODES.items() if c in codes}

    # ------------------------------------------------------------------ helpers
    def delay(self, lo_h: float, hi_h: float) -> dt.timedelta:
        return D(hours=self.rng.uniform(lo_h, hi_h))

    def reached(self, t: dt.datetime | None) -> bool:
        return t is not None and t <= self.now

    def written_at(self, t: dt.datetime) -> dt.datetime:
        """System time (createdAt/updatedAt) of a row recording an event at ``t``: never after the
        clock, even when the event's own date is a defect in the future (an extractor's watermark
        would otherwise jump past the rows written on the following days)."""
        return min(t, self.now)

    def actor(self, prefix: str, co: Co | None, with_person: bool = True) -> dict:
        if co is None:
            return {}
        d = {f"{prefix}CompanySiret": co.siret, f"{prefix}CompanyName": co.name, f"{prefix}CompanyAddress": co.address}
        if with_person:
            d[f"{prefix}CompanyContact"] = co.contact
            d[f"{prefix}CompanyPhone"] = co.phone
            d[f"{prefix}CompanyMail"] = co.mail
        return d

    def private_person(self, prefix: str) -> tuple[dict, dict]:
        name, mail, phone = self.w.pools.person(self.rng)
        c = self.w.ref.pick_commune(self.rng)
        street = self.w.pools.street(self.rng)
        d = {f"{prefix}CompanySiret": None, f"{prefix}CompanyName": name,
             f"{prefix}CompanyAddress": f"{street} {c.postal_code} {c.name}", f"{prefix}CompanyContact": name,
             f"{prefix}CompanyPhone": phone, f"{prefix}CompanyMail": mail}
        return d, {"street": street, "postal": c.postal_code, "city": c.name, "reg": c.reg}

    def user_of(self, co: Co | None) -> str:
        if co is None or not co.users:
            return self.w.companies[0].users[0]
        return co.users[self.rng.randrange(len(co.users))]

    def transporter_leg(self, co: Co) -> dict:
        r = co.receipt or [None, None, None]
        return {"siret": co.siret, "name": co.name, "address": co.address, "contact": co.contact, "phone": co.phone,
                "mail": co.mail, "receipt": r[0], "dep": r[1],
                "validity": dt.datetime.fromisoformat(r[2]) if r[2] else None}

    def qty_t(self, median: float, hi: float) -> float:
        return round(min(max(self.rng.lognormvariate(0, 1.0) * median, 0.01), hi), 3)

    def pick_defect(self) -> str | None:
        x = self.rng.random()
        for k in DEFECT_KINDS:
            x -= self.rates.get(k, 0.0)
            if x < 0:
                return k
        return None

    def record_defect(self, kind: str, table: str, row_id: str, column: str, readable: str | None = None) -> None:
        entry = self.defects.setdefault(kind, {"rate": self.rates.get(kind, 0.0), "count": 0, "rows": []})
        entry["count"] += 1
        entry["rows"].append({"table": table, "id": row_id, "column": column, "readableId": readable})

    def status_log(self, form_id: str, user: str, steps: list[tuple[str, dt.datetime, dict]]) -> None:
        for status, t, fields in steps:
            self.out.add("StatusLog", {"id": cuid(self.rng), "formId": form_id, "userId": user, "status": status,
                                       "loggedAt": t, "authType": "BEARER" if self.rng.random() < 0.2 else "SESSION",
                                       "updatedFields": fields})

    # ------------------------------------------------------------------ BSDD
    def bsdd_code(self, hazardous: bool) -> str:
        if hazardous:
            return _w(self.rng, self.common) if self.rng.random() < 0.75 else self.rng.choice(self.bsdd_haz)
        return self.rng.choice(self.bsdd_nd)

    def bsdd_op(self, hazardous: bool, intermediate: bool | None = None) -> str:
        ops = HAZ_OPS if hazardous else ND_OPS
        if intermediate is not None:
            ops = {k: v for k, v in ops.items() if (k in INTERMEDIATE_OPS) == intermediate} or ops
        return _w(self.rng, ops)

    def bsdd(self, created: dt.datetime) -> None:
        """One BSDD event: a simple form, a temporary storage (2 forms) or a grouping (n + 1 forms)."""
        x = self.rng.random()
        if x < 0.08:
            self.bsdd_temp_storage(created)
        elif x < 0.13:
            self.bsdd_grouping(created)
        else:
            self.bsdd_simple(created)

    def _form_times(self, created: dt.datetime, suite: bool = False) -> dict:
        r = self.rng
        t = {"created": created}
        t["sealed"] = None if r.random() < 0.035 else created + self.delay(0, 30)
        t["emitted"] = None if t["sealed"] is None or r.random() < 0.02 else t["sealed"] + self.delay(0.5, 72)
        t["taken"] = None if t["emitted"] is None else t["emitted"] + self.delay(0.2, 30)
        t["received"] = None if t["taken"] is None else t["taken"] + self.delay(1, 60)
        t["processed"] = None if t["received"] is None else t["received"] + self.delay(20, 24 * 25)
        return t

    def form_row(self, fid: str, rid: str, emitter: Co | None, emitter_block: dict, recipient: Co | None,
                 legs: list[tuple[Co, dt.datetime | None]], code: str, qty: float, planned_op: str,
                 t: dict, owner: str) -> dict:
        r = self.rng
        desc, haz = self.w.ref.waste_codes.get(code, ("", code.endswith("*")))
        row = {"id": fid, "readableId": rid, "createdAt": t["created"], "ownerId": owner, "status": "DRAFT",
               "emitterType": "PRODUCER", "wasteDetailsCode": code, "wasteDetailsName": desc[:80],
               "wasteDetailsIsDangerous": haz, "wasteDetailsQuantity": qty,
               "wasteDetailsQuantityType": "REAL" if r.random() < 0.4 else "ESTIMATED",
               "wasteDetailsConsistence": [r.choice(["SOLID", "SOLID", "LIQUID", "DOUGHY"])],
               "wasteDetailsPackagingInfos": [{"type": r.choice(["FUT", "GRV", "BENNE", "CITERNE"]),
                                               "quantity": r.randint(1, 12), "other": None, "volume": None,
                                               "identificationNumbers": []}],
               "wasteDetailsIsSubjectToADR": haz, "wasteDetailsOnuCode": "UN 3082" if haz and r.random() < 0.5 else None,
               "recipientProcessingOperation": planned_op, "recipientCap": f"CAP-{r.randrange(10**6):06d}" if haz else None,
               "customId": f"REF{r.randrange(10**5)}" if r.random() < 0.2 else None,
               "emitterWorkSiteName": None}
        row.update(emitter_block)
        if recipient is not None:
            row.update(self.actor("recipient", recipient))
            row["recipientsSirets"] = [recipient.siret]
        row["transportersSirets"] = [leg[0].siret for leg in legs]
        row["canAccessDraftSirets"] = [x for x in (emitter.siret if emitter else None,) if x]
        return row

    def _apply_form_status(self, row: dict, t: dict, legs, recipient, planned_op: str, qty: float,
                           outcome: str, emitter_user: str, log: bool = True, final_status: bool = True) -> list:
        """Fill dates/statuses of a form from its times; return StatusLog steps."""
        r = self.rng
        steps = [("DRAFT", t["created"], {})]
        last = t["created"]
        if self.reached(t["sealed"]):
            row["status"] = "SEALED"
            steps.append(("SEALED", t["sealed"], {}))
            last = t["sealed"]
        if self.reached(t["emitted"]):
            who = self.w.pools.name(r)
            row.update(status="SIGNED_BY_PRODUCER", emittedAt=t["emitted"], emittedBy=who, emittedByEcoOrganisme=False,
                       signedAt=t["emitted"], signedBy=who)
            steps.append(("SIGNED_BY_PRODUCER", t["emitted"], {"emittedBy": who}))
            last = t["emitted"]
        if self.reached(t["taken"]):
            driver = self.w.pools.name(r)
            row.update(status="SENT", takenOverAt=t["taken"], takenOverBy=driver, sentAt=t["taken"],
                       sentBy=row.get("emittedBy"), signedByTransporter=True,
                       currentTransporterOrgId=legs[-1][0].siret)
            steps.append(("SENT", t["taken"], {"takenOverBy": driver}))
            last = max(last, t["taken"], *[lt for _c, lt in legs if lt and lt <= self.now])
        if self.reached(t["received"]):
            who = self.w.pools.name(r)
            row.update(receivedAt=t["received"], receivedBy=who, quantityReceived=qty, isAccepted=outcome != "REFUSED",
                       quantityReceivedType="REAL", wasteAcceptationStatus=outcome,
                       currentTransporterOrgId=None)
            if outcome == "REFUSED":
                row.update(status="REFUSED", quantityRefused=qty, wasteRefusalReason=r.choice(REFUSAL_REASONS))
            else:
                refused = round(qty * r.uniform(0.05, 0.5), 3) if outcome == "PARTIALLY_REFUSED" else 0
                row["quantityRefused"] = refused
                if outcome == "PARTIALLY_REFUSED":
                    row["wasteRefusalReason"] = r.choice(REFUSAL_REASONS)
                row["status"] = "ACCEPTED"
            steps.append((row["status"], t["received"], {"receivedBy": who}))
            last = t["received"]
        if self.reached(t["processed"]) and outcome != "REFUSED":
            who = self.w.pools.name(r)
            op = planned_op
            row.update(processedAt=t["processed"], processedBy=who, processingOperationDone=op,
                       processingOperationDescription=f"Traitement {op}",
                       destinationOperationMode=MODES.get(op) if op not in INTERMEDIATE_OPS else None,
                       noTraceability=False)
            row["status"] = "AWAITING_GROUP" if op in INTERMEDIATE_OPS else "PROCESSED"
            steps.append((row["status"], t["processed"], {"processedBy": who}))
            last = t["processed"]
        row["updatedAt"] = last
        return steps

    def _legs(self, taken: dt.datetime | None, received: dt.datetime | None) -> list[tuple[Co, dt.datetime | None]]:
        r = self.rng
        n = 1 if r.random() < 0.93 else (2 if r.random() < 0.85 else 3)
        legs = [(self.w.pick(r, "transporter"), taken)]
        for i in range(1, n):
            lt = None
            if taken and received:
                lt = taken + (received - taken) * (i / n)
            legs.append((self.w.pick(r, "transporter"), lt))
        return legs

    def _write_legs(self, fid: str, legs, created: dt.datetime) -> None:
        r = self.rng
        prev = None
        for i, (co, lt) in enumerate(legs, start=1):
            leg = self.transporter_leg(co)
            reached = self.reached(lt)
            mode = "ROAD" if i == 1 or r.random() < 0.6 else r.choice(["RAIL", "RIVER", "SEA"])
            self.out.add("BsddTransporter", {
                "id": cuid(r), "formId": fid, "number": i, "transporterCompanySiret": leg["siret"],
                "transporterCompanyName": leg["name"], "transporterCompanyAddress": leg["address"],
                "transporterCompanyContact": leg["contact"], "transporterCompanyPhone": leg["phone"],
                "transporterCompanyMail": leg["mail"], "transporterIsExemptedOfReceipt": False,
                "transporterReceipt": leg["receipt"], "transporterDepartment": leg["dep"],
                "transporterValidityLimit": leg["validity"],
                "transporterNumberPlate": self.w.pools.plate(r) if mode == "ROAD" else None,
                "transporterTransportMode": mode, "readyToTakeOver": True, "previousTransporterCompanyOrgId": prev,
                "takenOverAt": lt if reached else None, "takenOverBy": self.w.pools.name(r) if reached else None,
                "createdAt": created, "updatedAt": lt if reached else created})
            prev = leg["siret"]

    def _observe(self, site: Co | None, bsd: str, op: str, hazardous: bool, t_received, t_processed, tonnes: float,
                 performed: bool) -> None:
        if site is None or tonnes <= 0:
            return
        self.acc.reception(site, bsd, op, hazardous, t_received, t_processed, tonnes, performed)

    def bsdd_simple(self, created: dt.datetime) -> None:
        r, w = self.rng, self.w
        defect = self.pick_defect()
        hazardous = r.random() < 0.85
        emitter = w.pick(r, "producer")
        private = r.random() < 0.02
        code = self.bsdd_code(hazardous)
        is_dangerous_flag = code.endswith("*")
        if defect == "non_star_code_flagged_dangerous":
            code, is_dangerous_flag = r.choice(self.bsdd_nd), True
        haz = code.endswith("*") or is_dangerous_flag
        op = self.bsdd_op(haz)
        site = w.site(r, "bsdd", op, emitter.reg) or w.site(r, "bsdd", "R 13", None)
        if site is None:
            return
        qty = self.qty_t(1.2, 30)
        t = self._form_times(created)
        if defect == "received_never_processed":
            if t["received"] is None or t["received"] > self.now - D(days=120):
                defect = None
            else:
                t["processed"] = None
        outcome = "ACCEPTED"
        x = r.random()
        if x < 0.02:
            outcome = "REFUSED"
        elif x < 0.05:
            outcome = "PARTIALLY_REFUSED"
        fid, rid = cuid(r), readable_id(r, "BSD", created.date())
        owner = self.user_of(emitter)
        if private:
            block, _addr = self.private_person("emitter")
            block["emitterIsPrivateIndividual"] = True
        else:
            block = self.actor("emitter", emitter)
            block["emitterWorkSiteName"] = None
        legs = self._legs(t["taken"], t["received"])
        row = self.form_row(fid, rid, emitter, block, site, legs, code, qty, op, t, owner)
        row["wasteDetailsIsDangerous"] = is_dangerous_flag
        if r.random() < 0.02:
            tr = w.pick(r, "trader")
            row.update(self.actor("trader", tr))
            row.update(traderReceipt=f"NEG-{r.randrange(10**5)}", traderDepartment=tr.dep,
                       traderValidityLimit=created + D(days=365))
            row["intermediariesSirets"] = [tr.siret]
        steps = self._apply_form_status(row, t, legs, site, op, qty, outcome, owner)
        if row["status"] == "ACCEPTED" and r.random() < 0.15 and defect != "received_never_processed":
            row["status"] = "RECEIVED"
        accepted = qty - float(row.get("quantityRefused") or 0)
        self._observe(site, "bsdd", op, haz, t["received"] if self.reached(t["received"]) else None,
                      row.get("processedAt"), accepted if outcome != "REFUSED" else 0, row.get("processedAt") is not None)
        deleted = row["status"] in ("DRAFT", "SEALED") and r.random() < 0.25
        if deleted:
            row["isDeleted"] = True
            row["updatedAt"] = row["updatedAt"] + self.delay(1, 200)
            if row["updatedAt"] > self.now:
                row["updatedAt"] = self.now
        if defect:
            defect = self._form_defect(row, defect)
        self.out.add("Form", row)
        self._write_legs(fid, legs, created)
        self.status_log(fid, owner, steps)
        if row["status"] == "PROCESSED" and defect not in ("operation_code_format",):
            self.out.add("BsddFinalOperation", {"id": cuid(r), "initialFormId": fid, "finalFormId": fid,
                                                "operationCode": op, "quantity": accepted,
                                                "createdAt": self.written_at(row["processedAt"]),
                                                "updatedAt": self.written_at(row["processedAt"])})
        if row.get("intermediariesSirets"):
            tr_siret = row["intermediariesSirets"][0]
            self.out.add("IntermediaryFormAssociation", {"id": cuid(r), "formId": fid, "siret": tr_siret,
                                                         "name": row["traderCompanyName"],
                                                         "address": row["traderCompanyAddress"],
                                                         "contact": row["traderCompanyContact"],
                                                         "phone": row["traderCompanyPhone"],
                                                         "mail": row["traderCompanyMail"], "createdAt": created})

    def _form_defect(self, row: dict, kind: str) -> str | None:
        """Inject one known defect into a non-draft form; records it. Returns the kind or None."""
        r = self.rng
        fid, rid = row["id"], row["readableId"]
        if kind == "bsdd_quantity_in_kg":
            if row["status"] == "DRAFT" or row["wasteDetailsQuantity"] < 0.1:
                return None
            row["wasteDetailsQuantity"] = round(row["wasteDetailsQuantity"] * 1000, 3)
            if row.get("quantityReceived") is not None:
                row["quantityReceived"] = round(float(row["quantityReceived"]) * 1000, 3)
                row["quantityRefused"] = round(float(row.get("quantityRefused") or 0) * 1000, 3)
            self.record_defect(kind, "Form", fid, "wasteDetailsQuantity", rid)
        elif kind in ("date_year_0001", "date_in_future", "operation_code_format"):
            if not row.get("processedAt"):
                return None
            if kind == "date_year_0001":
                p = row["processedAt"]
                row["processedAt"] = p.replace(year=1, day=min(p.day, 28))
                self.record_defect(kind, "Form", fid, "processedAt", rid)
            elif kind == "date_in_future":
                row["processedAt"] = self.now + D(days=r.randint(200, 900))
                self.record_defect(kind, "Form", fid, "processedAt", rid)
            else:
                op = row["processingOperationDone"]
                variants = [op.lower(), op.replace(" ", "") + " ", " " + op, op.replace(" ", "  ", 1)]
                if op == "D 9 F":
                    variants.append("D 9F")
                row["processingOperationDone"] = r.choice(variants)
                self.record_defect(kind, "Form", fid, "processingOperationDone", rid)
        elif kind == "non_star_code_flagged_dangerous":
            self.record_defect(kind, "Form", fid, "wasteDetailsIsDangerous", rid)
        elif kind == "siret_with_spaces":
            s = row.get("recipientCompanySiret")
            if not s:
                return None
            row["recipientCompanySiret"] = f"{s[:3]} {s[3:6]} {s[6:9]} {s[9:]}"
            self.record_defect(kind, "Form", fid, "recipientCompanySiret", rid)
        elif kind == "unknown_destination_siret":
            s = self.w.new_siret(r)
            self.w.sirets.add(s)
            row["recipientCompanySiret"] = s
            row["recipientsSirets"] = [s]
            self.record_defect(kind, "Form", fid, "recipientCompanySiret", rid)
        elif kind == "received_never_processed":
            self.record_defect(kind, "Form", fid, "receivedAt", rid)
        return kind

    def bsdd_temp_storage(self, created: dt.datetime) -> None:
        """Initial form to a temporary storer + its ``-suite`` form (emitter = the storer)."""
        r, w = self.rng, self.w
        emitter = w.pick(r, "producer")
        code = self.bsdd_code(True)
        store_op = r.choice(["R 13", "D 15"])
        storer = w.site(r, "bsdd", store_op, emitter.reg)
        final_op = self.bsdd_op(True, intermediate=False)
        final = w.site(r, "bsdd", final_op, storer.reg if storer else None)
        if storer is None or final is None:
            return self.bsdd_simple(created)
        qty = self.qty_t(1.5, 25)
        t = self._form_times(created)
        t["processed"] = None
        fid, rid = cuid(r), readable_id(r, "BSD", created.date())
        owner = self.user_of(emitter)
        legs = self._legs(t["taken"], t["received"])
        row = self.form_row(fid, rid, emitter, self.actor("emitter", emitter), storer, legs, code, qty, store_op, t, owner)
        row["recipientIsTempStorage"] = True
        steps = self._apply_form_status(row, t, legs, storer, store_op, qty, "ACCEPTED", owner)
        suite = None
        if self.reached(t["received"]):
            row["status"] = "TEMP_STORED"
            steps[-1] = ("TEMP_STORED", t["received"], steps[-1][2])
            acc_t = t["received"] + self.delay(0.1, 4)
            if self.reached(acc_t):
                row["status"] = "TEMP_STORER_ACCEPTED"
                steps.append(("TEMP_STORER_ACCEPTED", acc_t, {}))
                row["updatedAt"] = acc_t
            st = {"created": acc_t + self.delay(1, 24 * 10)}
            st["sealed"] = st["created"] + self.delay(0, 5)
            st["emitted"] = st["sealed"] + self.delay(0.5, 48)
            st["taken"] = st["emitted"] + self.delay(0.2, 24)
            st["received"] = st["taken"] + self.delay(2, 48)
            st["processed"] = st["received"] + self.delay(20, 24 * 20)
            if self.reached(st["created"]):
                sid = cuid(r)
                slegs = [(w.pick(r, "transporter"), st["taken"])]
                srow = self.form_row(sid, rid + "-suite", storer, self.actor("emitter", storer), final, slegs, code, qty,
                                     final_op, st, self.user_of(storer))
                srow["emitterType"] = "PRODUCER"
                ssteps = self._apply_form_status(srow, st, slegs, final, final_op, qty, "ACCEPTED", srow["ownerId"])
                row["forwardedInId"] = sid
                mapping = {"SEALED": "RESEALED", "SIGNED_BY_PRODUCER": "SIGNED_BY_TEMP_STORER", "SENT": "RESENT",
                           "ACCEPTED": "ACCEPTED", "PROCESSED": "PROCESSED"}
                for status, ts, fields in ssteps[1:]:
                    if status in mapping:
                        row["status"] = mapping[status]
                        steps.append((mapping[status], ts, fields))
                        row["updatedAt"] = max(row["updatedAt"], ts)
                suite = (srow, slegs, ssteps, st)
                self.acc.outflow(storer, st["taken"] if self.reached(st["taken"]) else None, qty)
                self._observe(final, "bsdd", final_op, True, st["received"] if self.reached(st["received"]) else None,
                              srow.get("processedAt"), qty, srow.get("processedAt") is not None)
        self._observe(storer, "bsdd", store_op, True, t["received"] if self.reached(t["received"]) else None,
                      None, qty, False)
        if suite:
            self.out.add("Form", suite[0])
        self.out.add("Form", row)
        self._write_legs(fid, legs, created)
        self.status_log(fid, owner, steps)
        if suite:
            srow, slegs, ssteps, st = suite
            self._write_legs(srow["id"], slegs, st["created"])
            self.status_log(srow["id"], srow["ownerId"], ssteps)
            if srow["status"] == "PROCESSED":
                self.out.add("BsddFinalOperation", {"id": cuid(r), "initialFormId": fid, "finalFormId": srow["id"],
                                                    "operationCode": final_op, "quantity": qty,
                                                    "createdAt": self.written_at(srow["processedAt"]),
                                                    "updatedAt": self.written_at(srow["processedAt"])})

    def bsdd_grouping(self, created: dt.datetime) -> None:
        """Appendix-2 grouping: n initial forms treated R 13/D 15 at a transit site, then one grouping form."""
        r, w = self.rng, self.w
        store_op = r.choice(["R 13", "D 15"])
        site = w.site(r, "bsdd", store_op, None)
        final_op = self.bsdd_op(True, intermediate=False)
        final = w.site(r, "bsdd", final_op, site.reg if site else None)
        if site is None or final is None:
            return self.bsdd_simple(created)
        code = self.bsdd_code(True)
        initials = []
        for _ in range(r.randint(2, 6)):
            emitter = w.pick(r, "producer")
            qty = self.qty_t(0.8, 10)
            # an initial BSDD is written by then at the latest: never after the clock
            t = self._form_times(min(created + self.delay(0, 24 * 15), self.now))
            if t["processed"] is None:
                t = {"created": t["created"], "sealed": t["created"] + D(hours=1), "emitted": t["created"] + D(hours=5),
                     "taken": t["created"] + D(hours=8), "received": t["created"] + D(hours=30)}
                t["processed"] = t["received"] + D(days=2)
            fid, rid = cuid(r), readable_id(r, "BSD", t["created"].date())
            owner = self.user_of(emitter)
            legs = self._legs(t["taken"], t["received"])
            row = self.form_row(fid, rid, emitter, self.actor("emitter", emitter), site, legs, code, qty, store_op, t,
                                owner)
            steps = self._apply_form_status(row, t, legs, site, store_op, qty, "ACCEPTED", owner)
            self._observe(site, "bsdd", store_op, True, t["received"] if self.reached(t["received"]) else None,
                          row.get("processedAt"), qty, row.get("processedAt") is not None)
            initials.append((row, legs, steps, t, owner, qty))
        last_proc = max((i[3]["processed"] for i in initials), default=created)
        gt = {"created": last_proc + self.delay(24, 24 * 12)}
        gt["sealed"] = gt["created"] + self.delay(0, 6)
        gt["emitted"] = gt["sealed"] + self.delay(1, 48)
        gt["taken"] = gt["emitted"] + self.delay(0.2, 24)
        gt["received"] = gt["taken"] + self.delay(2, 48)
        gt["processed"] = gt["received"] + self.delay(20, 24 * 20)
        all_processed = all(self.reached(i[3]["processed"]) for i in initials)
        group = None
        if all_processed and self.reached(gt["created"]):
            gid = cuid(r)
            total = round(sum(i[5] for i in initials), 3)
            glegs = [(w.pick(r, "transporter"), gt["taken"])]
            grow = self.form_row(gid, readable_id(r, "BSD", gt["created"].date()), site, self.actor("emitter", site),
                                 final, glegs, code, total, final_op, gt, self.user_of(site))
            grow["emitterType"] = "APPENDIX2"
            gsteps = self._apply_form_status(grow, gt, glegs, final, final_op, total, "ACCEPTED", grow["ownerId"])
            group = (grow, glegs, gsteps, total)
            self.acc.outflow(site, gt["taken"] if self.reached(gt["taken"]) else None, total)
            self._observe(final, "bsdd", final_op, True, gt["received"] if self.reached(gt["received"]) else None,
                          grow.get("processedAt"), total, grow.get("processedAt") is not None)
            for row, _legs, steps, _t, _o, qty in initials:
                row["quantityGrouped"] = qty
                if self.reached(gt["sealed"]):
                    row["status"] = "GROUPED"
                    steps.append(("GROUPED", gt["sealed"], {}))
                    row["updatedAt"] = gt["sealed"]
                if grow["status"] == "PROCESSED":
                    row["status"] = "PROCESSED"
                    steps.append(("PROCESSED", grow["processedAt"], {}))
                    row["updatedAt"] = grow["processedAt"]
            self.out.add("Form", grow)
        for row, legs, steps, t, owner, _q in initials:
            self.out.add("Form", row)
            self._write_legs(row["id"], legs, t["created"])
            self.status_log(row["id"], owner, steps)
        if group:
            grow, glegs, gsteps, total = group
            self._write_legs(grow["id"], glegs, gt["created"])
            self.status_log(grow["id"], grow["ownerId"], gsteps)
            for row, _l, _s, _t, _o, qty in initials:
                self.out.add("FormGroupement", {"id": cuid(r), "nextFormId": grow["id"], "initialFormId": row["id"],
                                                "quantity": qty})
                if grow["status"] == "PROCESSED":
                    self.out.add("BsddFinalOperation", {"id": cuid(r), "initialFormId": row["id"],
                                                        "finalFormId": grow["id"], "operationCode": final_op,
                                                        "quantity": qty, "createdAt": self.written_at(grow["processedAt"]),
                                                        "updatedAt": self.written_at(grow["processedAt"])})

    # ------------------------------------------------------------------ newer BSDs (shared pieces)
    def _new_times(self, created: dt.datetime, steps: list[tuple[str, float, float]]) -> dict:
        t, cur = {"created": created}, created
        for name, lo, hi in steps:
            if cur is None or (name == "emission" and self.rng.random() < 0.04):
                t[name] = cur = None
                continue
            cur = cur + self.delay(lo, hi)
            t[name] = cur
        return t

    def _transporter_row(self, table: str, fk: str, bsd_id: str, co: Co, taken, created, number: int = 1,
                         taken_col: str = "transporterTransportTakenOverAt") -> dict:
        r = self.rng
        leg = self.transporter_leg(co)
        reached = self.reached(taken)
        row = {"id": cuid(r), fk: bsd_id, "number": number, "createdAt": created,
               "updatedAt": taken if reached else created, "transporterCompanySiret": leg["siret"],
               "transporterCompanyName": leg["name"], "transporterCompanyAddress": leg["address"],
               "transporterCompanyContact": leg["contact"], "transporterCompanyPhone": leg["phone"],
               "transporterCompanyMail": leg["mail"], "transporterRecepisseIsExempted": False,
               "transporterRecepisseNumber": leg["receipt"], "transporterRecepisseDepartment": leg["dep"],
               "transporterRecepisseValidityLimit": leg["validity"], "transporterTransportMode": "ROAD",
               "transporterTransportPlates": [self.w.pools.plate(r)],
               taken_col: taken if reached else None,
               "transporterTransportSignatureDate": taken if reached else None,
               "transporterTransportSignatureAuthor": self.w.pools.name(r) if reached else None}
        self.out.add(table, row)
        return row

    def _reception_outcome(self) -> str:
        x = self.rng.random()
        return "REFUSED" if x < 0.015 else "PARTIALLY_REFUSED" if x < 0.04 else "ACCEPTED"

    def _deleted(self, row: dict, early: bool) -> None:
        if early and self.rng.random() < 0.2:
            row["isDeleted"] = True
            row["updatedAt"] = min(self.now, row["updatedAt"] + self.delay(1, 24 * 60))

    # ------------------------------------------------------------------ BSDA
    def bsda(self, created: dt.datetime) -> None:
        r, w = self.rng, self.w
        bid = readable_id(r, "BSDA", created.date())
        private = r.random() < 0.25
        emitter = None if private else w.pick(r, "producer")
        worker = w.pick(r, "worker")
        op = _w(r, BSDA_OPS)
        site = w.site(r, "bsda", op, (emitter or worker).reg)
        if site is None:
            return
        code = _w(r, self.bsda_codes)
        kg = round(self.qty_t(0.6, 20) * 1000, 1)
        t = self._new_times(created, [("emission", 1, 96), ("work", 1, 72), ("transport", 1, 48),
                                      ("reception", 2, 72), ("operation", 24, 24 * 30)])
        tr = w.pick(r, "transporter")
        row = {"id": bid, "createdAt": created, "status": "INITIAL", "isDraft": r.random() < 0.05,
               "type": "COLLECTION_2710" if r.random() < 0.05 else "OTHER_COLLECTIONS",
               "emitterIsPrivateIndividual": private, "wasteCode": code, "wasteFamilyCode": str(r.choice([2, 3, 6, 7])),
               "wasteMaterialName": r.choice(["Fibrociment", "Dalles vinyle amiante", "Plaques ondulées", "Calorifugeage"]),
               "wasteConsistence": r.choice(["SOLIDE", "SOLIDE", "PULVERULENT"]), "wasteSealNumbers": [f"SC{r.randrange(10**6)}"],
               "wasteIsSubjectToADR": True, "wasteAdr": "UN 2590, AMIANTE CHRYSOTILE, 9, (E)", "wastePop": False,
               "packagings": [{"type": r.choice(["BIG_BAG", "PALETTE_FILME", "DEPOT_BAG"]), "quantity": r.randint(1, 8),
                               "other": None, "volume": None, "identificationNumbers": []}],
               "weightValue": kg, "weightIsEstimate": r.random() < 0.6, "destinationPlannedOperationCode": op,
               "destinationCap": f"CAP{r.randrange(10**6)}",
               "workerCertificationHasSubSectionFour": True, "workerCertificationHasSubSectionThree": r.random() < 0.3,
               "workerCertificationCertificationNumber": f"CERT-{r.randrange(10**5)}",
               "workerCertificationValidityLimit": created + D(days=700), "workerCertificationOrganisation": "AFNOR Certification",
               "transportersOrgIds": [tr.siret]}
        if private:
            block, addr = self.private_person("emitter")
            row.update(block)
            row.update(emitterPickupSiteName="Domicile", emitterPickupSiteAddress=addr["street"],
                       emitterPickupSiteCity=addr["city"], emitterPickupSitePostalCode=addr["postal"])
        else:
            row.update(self.actor("emitter", emitter))
        row.update(self.actor("worker", worker))
        row.update(self.actor("destination", site))
        row["canAccessDraftOrgIds"] = [worker.siret]
        last = created
        outcome = self._reception_outcome()
        if not row["isDraft"]:
            if self.reached(t["emission"]):
                row.update(status="SIGNED_BY_PRODUCER", emitterEmissionSignatureDate=t["emission"],
                           emitterEmissionSignatureAuthor=self.w.pools.name(r))
                last = t["emission"]
            if self.reached(t["work"]):
                row.update(status="SIGNED_BY_WORKER", workerWorkSignatureDate=t["work"],
                           workerWorkSignatureAuthor=self.w.pools.name(r), workerWorkHasEmitterPaperSignature=False)
                last = t["work"]
            if self.reached(t["transport"]):
                row.update(status="SENT", transporterTransportSignatureDate=t["transport"])
                last = t["transport"]
            if self.reached(t["reception"]):
                refused = kg if outcome == "REFUSED" else round(kg * r.uniform(0.05, 0.4), 1) if outcome == "PARTIALLY_REFUSED" else 0
                row.update(status="REFUSED" if outcome == "REFUSED" else "RECEIVED", destinationReceptionDate=t["reception"],
                           destinationReceptionWeight=kg, destinationReceptionWeightIsEstimate=False,
                           destinationReceptionRefusedWeight=refused, destinationReceptionAcceptationStatus=outcome,
                           destinationReceptionSignatureDate=t["reception"],
                           destinationReceptionSignatureAuthor=self.w.pools.name(r))
                if outcome != "ACCEPTED":
                    row["destinationReceptionRefusalReason"] = r.choice(REFUSAL_REASONS)
                last = t["reception"]
            if self.reached(t["operation"]) and outcome != "REFUSED":
                row.update(status="AWAITING_CHILD" if op in INTERMEDIATE_OPS else "PROCESSED",
                           destinationOperationCode=op, destinationOperationMode=MODES.get(op),
                           destinationOperationDate=t["operation"], destinationOperationSignatureDate=t["operation"],
                           destinationOperationSignatureAuthor=self.w.pools.name(r),
                           destinationOperationDescription=f"Traitement {op}")
                last = t["operation"]
        row["updatedAt"] = last
        self._deleted(row, row["status"] == "INITIAL")
        accepted = (kg - float(row.get("destinationReceptionRefusedWeight") or 0)) / 1000
        self._observe(site, "bsda", op, True, row.get("destinationReceptionDate"), row.get("destinationOperationDate"),
                      accepted if outcome != "REFUSED" else 0, row.get("destinationOperationDate") is not None)
        self.out.add("Bsda", row)
        self._transporter_row("BsdaTransporter", "bsdaId", bid, tr, t["transport"] if not row["isDraft"] else None, created)

    # ------------------------------------------------------------------ BSDASRI
    def bsdasri(self, created: dt.datetime) -> None:
        r, w = self.rng, self.w
        bid = readable_id(r, "DASRI", created.date())
        emitter = w.pick(r, "health")
        op = r.choices(["D10", "R1", "R12", "D13"], weights=[55, 30, 8, 7])[0]
        site = w.site(r, "bsdasri", op, emitter.reg)
        if site is None:
            return
        tr = w.pick(r, "transporter")
        kg = round(min(max(r.lognormvariate(0, 1) * 25, 0.5), 2000), 2)
        litres = round(kg * r.uniform(8, 15), 1)
        code = "18 02 02*" if emitter.naf == "75.00Z" else ("18 01 03*" if r.random() < 0.97 else "18 02 02*")
        t = self._new_times(created, [("emission", 0.2, 48), ("transport", 0.1, 6), ("reception", 1, 48),
                                      ("operation", 2, 24 * 6)])
        pk = [{"type": r.choice(["BOITE_CARTON", "FUT", "GRAND_EMBALLAGE"]), "volume": 50, "quantity": r.randint(1, 10),
               "other": None}]
        row = {"id": bid, "createdAt": created, "status": "INITIAL", "isDraft": r.random() < 0.03, "type": "SIMPLE",
               "wasteCode": code, "wasteAdr": "UN 3291", "emitterWasteWeightValue": kg,
               "emitterWasteWeightIsEstimate": True, "emitterWasteVolume": litres, "emitterWastePackagings": pk,
               "destinationCap": None}
        row.update(self.actor("emitter", emitter))
        row.update(emitterPickupSiteName=emitter.name, emitterPickupSiteAddress=emitter.street,
                   emitterPickupSiteCity=emitter.city, emitterPickupSitePostalCode=emitter.postal)
        leg = self.transporter_leg(tr)
        row.update(self.actor("transporter", tr))
        row.update(transporterRecepisseNumber=leg["receipt"], transporterRecepisseDepartment=leg["dep"],
                   transporterRecepisseValidityLimit=leg["validity"], transporterRecepisseIsExempted=False,
                   transporterTransportMode="ROAD")
        row.update(self.actor("destination", site))
        outcome = self._reception_outcome()
        last = created
        if not row["isDraft"]:
            if self.reached(t["emission"]):
                row.update(status="SIGNED_BY_PRODUCER", emitterEmissionSignatureDate=t["emission"],
                           emitterEmissionSignatureAuthor=w.pools.name(r), emissionSignatoryId=self.user_of(emitter))
                last = t["emission"]
            if self.reached(t["transport"]):
                row.update(status="SENT", transporterTakenOverAt=t["transport"], transporterTransportSignatureDate=t["transport"],
                           transporterTransportSignatureAuthor=w.pools.name(r), transporterAcceptationStatus="ACCEPTED",
                           transporterTransportPlates=[w.pools.plate(r)], transporterWasteWeightValue=kg,
                           transporterWasteWeightIsEstimate=True, transporterWasteVolume=litres,
                           transporterWastePackagings=pk, transportSignatoryId=self.user_of(tr))
                last = t["transport"]
            if self.reached(t["reception"]):
                refused = kg if outcome == "REFUSED" else round(kg * 0.2, 2) if outcome == "PARTIALLY_REFUSED" else 0
                row.update(status="REFUSED" if outcome == "REFUSED" else "RECEIVED", destinationReceptionDate=t["reception"],
                           handedOverToRecipientAt=t["reception"], destinationReceptionAcceptationStatus=outcome,
                           destinationReceptionSignatureDate=t["reception"], destinationReceptionSignatureAuthor=w.pools.name(r),
                           destinationReceptionWasteWeightValue=kg, destinationReceptionWasteRefusedWeightValue=refused,
                           destinationReceptionWasteVolume=litres, destinationWastePackagings=pk,
                           receptionSignatoryId=self.user_of(site))
                if outcome != "ACCEPTED":
                    row["destinationReceptionWasteRefusalReason"] = r.choice(REFUSAL_REASONS)
                last = t["reception"]
            if self.reached(t["operation"]) and outcome != "REFUSED":
                row.update(status="AWAITING_GROUP" if op in ("R12", "D13") else "PROCESSED", destinationOperationCode=op,
                           destinationOperationMode=MODES.get(op[0] + " " + op[1:]), destinationOperationDate=t["operation"],
                           destinationOperationSignatureDate=t["operation"], destinationOperationSignatureAuthor=w.pools.name(r),
                           operationSignatoryId=self.user_of(site))
                last = t["operation"]
        row["updatedAt"] = last
        self._deleted(row, row["status"] == "INITIAL")
        accepted = (kg - float(row.get("destinationReceptionWasteRefusedWeightValue") or 0)) / 1000
        self._observe(site, "bsdasri", op, True, row.get("destinationReceptionDate"), row.get("destinationOperationDate"),
                      accepted if outcome != "REFUSED" else 0, row.get("destinationOperationDate") is not None)
        self.out.add("Bsdasri", row)

    # ------------------------------------------------------------------ BSVHU
    def bsvhu(self, created: dt.datetime) -> None:
        r, w = self.rng, self.w
        bid = readable_id(r, "VHU", created.date())
        from_demolisseur = r.random() < 0.2 and w.by_kind.get("site")
        if from_demolisseur:
            emitter = w.site(r, "bsvhu", "R 12", None) or w.pick(r, "garage")
            op = "R 4"
            site = w.site(r, "bsvhu", "R 4", emitter.reg)
            dest_type = "BROYEUR"
            site = next((s for s in [site] if s and s.profile == "vhu_broyeur"), None) or site
        else:
            emitter = w.pick(r, "garage")
            op = r.choice(["R 4", "R 4", "R 12"])
            site = w.site(r, "bsvhu", op, emitter.reg)
            dest_type = "DEMOLISSEUR"
        if site is None:
            return
        tr = w.pick(r, "transporter")
        n = 1 if r.random() < 0.8 else r.randint(2, 12)
        kg = round(n * r.uniform(700, 1400), 0)
        code = "16 01 04*" if r.random() < 0.5 else "16 01 06"
        plates = [w.pools.plate(r) for _ in range(min(n, 5))]
        t = self._new_times(created, [("emission", 1, 72), ("transport", 1, 72), ("reception", 2, 48),
                                      ("operation", 24, 24 * 20)])
        row = {"id": bid, "createdAt": created, "status": "INITIAL", "isDraft": r.random() < 0.05, "wasteCode": code,
               "packaging": "UNITE" if n == 1 else "LOT", "quantity": n, "weightValue": kg, "weightIsEstimate": True,
               "identificationType": "NUMERO_IMMATRICULATION", "identificationNumbers": plates,
               "destinationType": dest_type, "destinationAgrementNumber": f"PR{site.dep}{r.randrange(10**4)}D",
               "destinationPlannedOperationCode": op, "emitterAgrementNumber": f"PR{emitter.dep}{r.randrange(10**4)}D",
               "containsElectricOrHybridVehicles": r.random() < 0.05, "transportersOrgIds": [tr.siret]}
        if r.random() < 0.04:
            block, addr = self.private_person("emitter")
            row.update(block)
            row.update(emitterNoSiret=True, emitterIrregularSituation=r.random() < 0.5, emitterCompanyStreet=addr["street"],
                       emitterCompanyCity=addr["city"], emitterCompanyPostalCode=addr["postal"], emitterCompanyCountry="FR",
                       emitterAgrementNumber=None)
        else:
            row.update(self.actor("emitter", emitter))
            row.update(emitterCompanyStreet=emitter.street, emitterCompanyCity=emitter.city,
                       emitterCompanyPostalCode=emitter.postal, emitterCompanyCountry="FR")
        row.update(self.actor("destination", site))
        outcome = "REFUSED" if r.random() < 0.01 else "ACCEPTED"
        last = created
        if not row["isDraft"]:
            if self.reached(t["emission"]):
                row.update(status="SIGNED_BY_PRODUCER", emitterEmissionSignatureDate=t["emission"],
                           emitterEmissionSignatureAuthor=w.pools.name(r))
                last = t["emission"]
            if self.reached(t["transport"]):
                row.update(status="SENT", transporterTransportSignatureDate=t["transport"])
                last = t["transport"]
            if self.reached(t["reception"]):
                row.update(status="REFUSED" if outcome == "REFUSED" else "RECEIVED", destinationReceptionDate=t["reception"],
                           destinationReceptionQuantity=n, destinationReceptionWeight=kg,
                           destinationReceptionAcceptationStatus=outcome, destinationReceptionSignatureDate=t["reception"],
                           destinationReceptionSignatureAuthor=w.pools.name(r),
                           destinationReceptionIdentificationNumbers=plates,
                           destinationReceptionIdentificationType="NUMERO_IMMATRICULATION")
                if outcome == "REFUSED":
                    row["destinationReceptionRefusalReason"] = r.choice(REFUSAL_REASONS)
                last = t["reception"]
            if self.reached(t["operation"]) and outcome != "REFUSED":
                row.update(status="PROCESSED", destinationOperationCode=op, destinationOperationMode=MODES.get(op),
                           destinationOperationDate=t["operation"], destinationOperationSignatureDate=t["operation"],
                           destinationOperationSignatureAuthor=w.pools.name(r))
                last = t["operation"]
        row["updatedAt"] = last
        self._deleted(row, row["status"] == "INITIAL")
        self._observe(site, "bsvhu", op, code.endswith("*"), row.get("destinationReceptionDate"),
                      row.get("destinationOperationDate"), kg / 1000 if outcome != "REFUSED" else 0,
                      row.get("destinationOperationDate") is not None)
        if from_demolisseur and row.get("transporterTransportSignatureDate"):
            self.acc.outflow(emitter, row["transporterTransportSignatureDate"], kg / 1000)
        self.out.add("Bsvhu", row)
        self._transporter_row("BsvhuTransporter", "bsvhuId", bid, tr, t["transport"] if not row["isDraft"] else None, created)

    # ------------------------------------------------------------------ BSFF
    def bsff(self, created: dt.datetime) -> None:
        r, w = self.rng, self.w
        bid = readable_id(r, "FF", created.date())
        emitter = w.pick(r, "fluid_operator")
        op = r.choices(["R2", "D10", "R12", "R13", "D15"], weights=[30, 20, 15, 20, 15])[0]
        site = w.site(r, "bsff", op, emitter.reg)
        if site is None:
            return
        tr = w.pick(r, "transporter")
        code = r.choices(["14 06 01*", "14 06 02*", "14 06 03*", "16 05 04*", "13 03 10*"], weights=[85, 4, 4, 5, 2])[0]
        fluid = r.choice(["R410A", "R32", "R134a", "R404A", "R407C", "R22"])
        btype = r.choices(["TRACER_FLUIDE", "COLLECTE_PETITES_QUANTITES", "GROUPEMENT"], weights=[70, 22, 8])[0]
        npk = r.randint(1, 4)
        weights = [round(r.uniform(2, 40), 2) for _ in range(npk)]
        total = round(sum(weights), 2)
        t = self._new_times(created, [("emission", 1, 72), ("transport", 1, 48), ("reception", 2, 72),
                                      ("acceptation", 0.1, 24), ("operation", 24, 24 * 30)])
        row = {"id": bid, "createdAt": created, "status": "INITIAL", "isDraft": r.random() < 0.04, "type": btype,
               "wasteCode": code, "wasteDescription": fluid, "wasteAdr": "UN 1078, GAZ FRIGORIFIQUE, 2.2, (C/E)",
               "weightValue": total, "weightIsEstimate": True, "destinationPlannedOperationCode": op,
               "transportersOrgIds": [tr.siret]}
        row.update(self.actor("emitter", emitter))
        row.update(self.actor("destination", site))
        last = created
        draft = row["isDraft"]
        if not draft and self.reached(t["emission"]):
            row.update(status="SIGNED_BY_EMITTER", emitterEmissionSignatureDate=t["emission"],
                       emitterEmissionSignatureAuthor=w.pools.name(r))
            last = t["emission"]
        if not draft and self.reached(t["transport"]):
            row.update(status="SENT", transporterTransportSignatureDate=t["transport"])
            last = t["transport"]
        if not draft and self.reached(t["reception"]):
            row.update(status="RECEIVED", destinationReceptionDate=t["reception"],
                       destinationReceptionSignatureDate=t["reception"], destinationReceptionSignatureAuthor=w.pools.name(r))
            last = t["reception"]
        statuses, packagings = [], []
        accepted_t = 0.0
        for i, wt in enumerate(weights):
            p = {"id": cuid(r), "bsffId": bid, "createdAt": created, "updatedAt": created,
                 "type": r.choice(["BOUTEILLE", "BOUTEILLE", "CONTENEUR"]), "volume": round(wt * 1.2, 1), "weight": wt,
                 "numero": f"B{r.randrange(10**7)}", "emissionNumero": f"B{r.randrange(10**7)}"}
            if not draft and self.reached(t["acceptation"]):
                status = "REFUSED" if r.random() < 0.02 else "ACCEPTED"
                aw = 0 if status == "REFUSED" else round(wt * r.uniform(0.9, 1.0), 2)
                p.update(acceptationDate=t["acceptation"], acceptationStatus=status, acceptationWeight=aw,
                         acceptationWasteCode=code, acceptationWasteDescription=fluid,
                         acceptationSignatureDate=t["acceptation"], acceptationSignatureAuthor=w.pools.name(r),
                         updatedAt=t["acceptation"])
                if status == "REFUSED":
                    p["acceptationRefusalReason"] = r.choice(REFUSAL_REASONS)
                elif self.reached(t["operation"]):
                    p.update(operationDate=t["operation"], operationCode=op,
                             operationMode=MODES.get(op[0] + " " + op[1:]), operationDescription=f"Traitement {op}",
                             operationSignatureDate=t["operation"], operationSignatureAuthor=w.pools.name(r),
                             updatedAt=t["operation"])
                    accepted_t += aw / 1000
                statuses.append(status)
            packagings.append(p)
        if statuses:
            if all(s == "REFUSED" for s in statuses):
                row["status"] = "REFUSED"
            else:
                row["status"] = "PARTIALLY_REFUSED" if "REFUSED" in statuses else "ACCEPTED"
                if self.reached(t["operation"]):
                    row["status"] = "INTERMEDIATELY_PROCESSED" if op in ("R12", "R13", "D13", "D14", "D15") else "PROCESSED"
            last = max(p["updatedAt"] for p in packagings)
        row["updatedAt"] = last
        row["detenteurCompanySirets"] = []
        fiches = []
        if btype == "TRACER_FLUIDE":
            for _ in range(r.randint(1, 2)):
                fid = cuid(r)
                priv = r.random() < 0.15
                if priv:
                    block, addr = self.private_person("detenteur")
                    post = addr["postal"]
                else:
                    det = w.pick(r, "producer")
                    block = self.actor("detenteur", det)
                    post = det.postal
                    row["detenteurCompanySirets"].append(det.siret)
                f = {"id": fid, "createdAt": created, "updatedAt": created, "numero": f"FI-{r.randrange(10**6)}",
                     "weight": round(total / 2, 2), "postalCode": post, "detenteurIsPrivateIndividual": priv}
                f.update(block)
                f.update({"operateurCompanySiret": emitter.siret, "operateurCompanyName": emitter.name,
                          "operateurCompanyAddress": emitter.address, "operateurCompanyContact": emitter.contact,
                          "operateurCompanyPhone": emitter.phone, "operateurCompanyMail": emitter.mail})
                fiches.append(f)
        self._deleted(row, row["status"] == "INITIAL")
        op_date = t["operation"] if self.reached(t["operation"]) else None
        self._observe(site, "bsff", op, True, t["reception"] if self.reached(t["reception"]) and not draft else None,
                      op_date if statuses else None, accepted_t or (total / 1000 if statuses else 0),
                      bool(op_date and statuses))
        self.out.add("Bsff", row)
        for p in packagings:
            self.out.add("BsffPackaging", p)
        self._transporter_row("BsffTransporter", "bsffId", bid, tr, t["transport"] if not draft else None, created)
        for f in fiches:
            self.out.add("BsffFicheIntervention", f)
            self.out.add("_BsffToBsffFicheIntervention", {"A": bid, "B": f["id"]})

    # ------------------------------------------------------------------ BSPAOH
    def bspaoh(self, created: dt.datetime) -> None:
        r, w = self.rng, self.w
        bid = readable_id(r, "PAOH", created.date())
        hospitals = [c for c in w.by_kind.get("health", [])[:200] if c.naf == "86.10Z"] or w.by_kind["health"]
        emitter = r.choice(hospitals)
        site = w.pick(r, "crematorium")
        tr = w.pick(r, "transporter")
        op = r.choice(["R 1", "D 10"])
        n = r.randint(1, 6)
        kg = round(r.uniform(2, 60), 1)
        t = self._new_times(created, [("emission", 1, 48), ("transport", 1, 24), ("handover", 1, 12),
                                      ("reception", 0, 2), ("operation", 2, 24 * 5)])
        row = {"id": bid, "createdAt": created, "status": "DRAFT" if r.random() < 0.04 else "INITIAL",
               "wasteCode": "18 01 02", "wasteType": "PAOH" if r.random() < 0.85 else "FOETUS",
               "wasteAdr": None, "wastePackagings": [{"type": "LITTLE_BOX", "volume": 10, "quantity": n,
                                                      "containerNumber": f"C{r.randrange(10**5)}",
                                                      "identificationCodes": [], "consistence": "SOLIDE"}],
               "emitterWasteQuantityValue": n, "emitterWasteWeightValue": kg, "emitterWasteWeightIsEstimate": True,
               "transportersSirets": [tr.siret]}
        row.update(self.actor("emitter", emitter))
        row.update(emitterPickupSiteName=emitter.name, emitterPickupSiteAddress=emitter.street,
                   emitterPickupSiteCity=emitter.city, emitterPickupSitePostalCode=emitter.postal)
        row.update(self.actor("destination", site))
        last = created
        taken = None
        if row["status"] == "INITIAL":
            if self.reached(t["emission"]):
                row.update(status="SIGNED_BY_PRODUCER", emitterEmissionSignatureDate=t["emission"],
                           emitterEmissionSignatureAuthor=w.pools.name(r))
                last = t["emission"]
            if self.reached(t["transport"]):
                row.update(status="SENT", transporterTransportTakenOverAt=t["transport"])
                taken = t["transport"]
                last = t["transport"]
            if self.reached(t["handover"]):
                row.update(handedOverToDestinationSignatureDate=t["handover"],
                           handedOverToDestinationSignatureAuthor=w.pools.name(r))
                last = t["handover"]
            if self.reached(t["reception"]):
                row.update(status="RECEIVED", destinationReceptionDate=t["reception"],
                           destinationReceptionSignatureDate=t["reception"], destinationReceptionSignatureAuthor=w.pools.name(r),
                           destinationReceptionAcceptationStatus="ACCEPTED", destinationReceptionWasteQuantityValue=n,
                           destinationReceptionWasteReceivedWeightValue=kg, destinationReceptionWasteAcceptedWeightValue=kg,
                           destinationReceptionWasteRefusedWeightValue=0)
                last = t["reception"]
            if self.reached(t["operation"]):
                row.update(status="PROCESSED", destinationOperationCode=op, destinationOperationDate=t["operation"],
                           destinationOperationSignatureDate=t["operation"], destinationOperationSignatureAuthor=w.pools.name(r))
                last = t["operation"]
        row["updatedAt"] = last
        self._deleted(row, row["status"] in ("DRAFT", "INITIAL"))
        self.out.add("Bspaoh", row)
        self._transporter_row("BspaohTransporter", "bspaohId", bid, tr, taken, created,
                              taken_col="transporterTakenOverAt")
