"""Shared pieces of the exports: leak scan before publication, atomic folder swap, manifest.

Publication is atomic (``publish_folder``): files are written into a temporary folder next to the
target, every file is scanned for sensitive values with :mod:`tdw.privacy` (its functions, not a
copy), and only then the temporary folder is renamed into place. Whatever fails, the previous
export folder is left as it was.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from .. import db, privacy
from ..config import Settings, load_settings
from ..errors import TdwError

log = logging.getLogger(__name__)

THIN_NBSP = "\u202f"  # thousands separator: narrow no-break space (French typography)


# the time zone of the dates the marts bucket by (dbt var tdw_time_zone, METRICS.md § Units and dates)
PARIS = ZoneInfo("Europe/Paris")


def french_timestamp(moment: datetime) -> str:
    """``moment`` (timezone-aware) as French readers expect it on a page: Paris local time,
    ``dd/mm/yyyy hh:mm (heure de Paris)``."""
    return moment.astimezone(PARIS).strftime("%d/%m/%Y %H:%M") + " (heure de Paris)"


def french_number(number, digits: int = 0) -> str:
    """A number (int, float or Decimal) in French typography: "1\u202f234,560" (narrow no-break
    space between thousands, decimal comma, exactly ``digits`` decimals)."""
    return f"{number:,.{digits}f}".replace(",", THIN_NBSP).replace(".", ",")


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sensitive_values(dsn: str, settings: Settings | None = None, *, restricted: bool = True) -> privacy.ValueIndex:
    """Known sensitive values for the leak scan (:mod:`tdw.privacy`).

    The simulator manifest's personal values when the file exists, and, when ``restricted``, the
    SIRETs and names of non-diffusible establishments (raw ``AnonymousCompany``).
    """
    settings = settings or load_settings()
    values = privacy.ValueIndex()
    manifest = privacy.default_manifest(settings)
    if manifest.exists():
        privacy.manifest_values(manifest, values)
    if restricted:
        privacy.restricted_values(dsn, values)
    return values


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def _recover_leftovers(target: Path) -> None:
    """Tidy what a killed export left next to ``target`` (``kill -9``, power loss): its
    ``.<name>.tmp-<pid>-*`` folder is deleted; its ``.<name>.old-<pid>-*`` folder (the previous
    publication, renamed aside just before the swap) is put back as ``target`` when the swap did
    not happen, deleted otherwise. Folders of a process still alive are left alone."""
    for leftover in sorted(target.parent.glob(f".{target.name}.*-*-*")):
        kind, _, rest = leftover.name[len(target.name) + 2:].partition("-")
        pid = rest.split("-", 1)[0]
        if kind not in ("tmp", "old") or not pid.isdigit() or _pid_alive(int(pid)):
            continue
        if kind == "old" and not target.exists():
            leftover.rename(target)
            log.warning("%s: the previous publication, left aside by a killed export, was put back", target)
        else:
            shutil.rmtree(leftover, ignore_errors=True)


@contextlib.contextmanager
def publish_folder(target: Path, values: privacy.ValueIndex | None,
                   progress: Callable[[str], None] | None = None) -> Iterator[Path]:
    """Yield a fresh temporary folder next to ``target``; on success scan it and swap it in.

    Usage::

        with publish_folder(out, values) as tmp:
            (tmp / "x.csv").write_text(...)

    On leaving the block without error: every file is leak-scanned (``values``; None skips the
    known-value part but keeps the e-mail / phone / plate patterns), then ``target`` is replaced by
    the temporary folder in two renames (the old folder is removed afterwards). On any error
    (including findings, raised as :class:`TdwError` naming the file and column, and a full disk
    or an unwritable folder, raised as :class:`TdwError` naming the path) the temporary folder is
    deleted and ``target`` is untouched. What a killed export left behind is tidied
    first (:func:`_recover_leftovers`).
    """
    target = Path(target)
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp = target.parent / f".{target.name}.tmp-{tag}"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _recover_leftovers(target)
        tmp.mkdir()
    except OSError as exc:  # a file where a folder should be, no permission, no space
        raise TdwError(f"cannot write the export folder {target}: {exc.strerror or exc} "
                       f"({exc.filename or target.parent})") from exc
    try:
        yield tmp
        if progress:
            progress("leak scan")
        findings = privacy.scan_files(tmp, values if values is not None else privacy.ValueIndex())
        if findings:
            listed = "; ".join(str(f) for f in findings[:5])
            raise TdwError(f"the export was not published: the leak scan found sensitive values ({listed})")
        old = target.parent / f".{target.name}.old-{tag}"
        if target.exists():
            target.rename(old)
        try:
            tmp.rename(target)
        except OSError:
            if old.exists():
                old.rename(target)
            raise
        shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:  # e.g. the disk filled up while the files were written
        raise TdwError(f"the export {target} was not published ({exc.strerror or exc}: {exc.filename or tmp}); "
                       "the previous one is kept") from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


# what every export of simulated data says, visibly (stats page, inspection sheets, open data, API)
SIMULATED_BANNER = ("Données simulées — ne pas utiliser : ces chiffres sont produits par le simulateur du projet, "
                    "pas par Trackdéchets. Les établissements réels qui peuvent y figurer n'ont rien déclaré de tel "
                    "et aucune alerte ne les concerne.")

# The data is simulated while some table's rows come from an extract of the simulator that no
# later full extract of a real source replaced (a full extract deletes the rows its source lacks).
_SIMULATED_SQL = """
select exists (
    select 1 from meta.extract_runs as s
    where s.source_is_simulated
      and not exists (select 1 from meta.extract_runs as p
                      where p.table_name = s.table_name and p.extract_id > s.extract_id
                        and p.mode in ('full', 'replace') and p.source_is_simulated is false))"""


def source_is_simulated(cur) -> bool:
    """True when the warehouse's Trackdéchets data was extracted from the project's simulator
    (``meta.extract_runs.source_is_simulated``, recorded by ``tdw extract``), so that every export
    says so. A role that cannot read ``meta`` (the API's) reads the flag the API refresh copied
    into ``api.refresh_info``. False when neither says (a warehouse extracted before the flag was
    recorded: its next extract records it)."""
    for statement in (_SIMULATED_SQL, "select coalesce(bool_or(source_is_simulated), false) from api.refresh_info"):
        cur.execute("savepoint tdw_simulated")
        try:
            cur.execute(statement)
            value = bool(cur.fetchone()[0])
            cur.execute("release savepoint tdw_simulated")
            return value
        except Exception:  # table or column missing, or not readable by this role
            cur.execute("rollback to savepoint tdw_simulated")
    return False


def mart_build_info(dsn: str) -> dict:
    """When the marts were built and how recent their data is.

    Returns ``{"simulated_source": the data comes from the simulator (:func:`source_is_simulated`),
    "data_as_of": ISO timestamp of the latest BSD load (fct_bordereaux.loaded_at),
    "mart_built_at": ISO time the public weekly mart's table file was written, or None when the
    server does not let this role read it}``.
    """
    info: dict = {"data_as_of": None, "mart_built_at": None}
    with contextlib.closing(db.connect(dsn)) as conn, conn.cursor() as cur:
        info["simulated_source"] = source_is_simulated(cur)
        cur.execute("select max(loaded_at) from marts.fct_bordereaux")
        v = cur.fetchone()[0]
        info["data_as_of"] = v.isoformat() if v else None
        try:
            cur.execute("select (pg_stat_file(pg_relation_filepath('marts.mart_public_weekly_stats'))).modification")
            v = cur.fetchone()[0]
            info["mart_built_at"] = v.astimezone(timezone.utc).isoformat() if v else None
        except Exception:  # not superuser: the build time is unknown, say so (None)
            conn.rollback()
    return info


def write_manifest(folder: Path, extra: dict) -> dict:
    """Write ``manifest.json`` listing every file of ``folder`` (path, bytes, sha256) plus ``extra``."""
    files = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        files.append({"path": str(path.relative_to(folder)), "bytes": path.stat().st_size, "sha256": sha256_file(path)})
    manifest = {"generated_at": datetime.now(timezone.utc).isoformat(), **extra, "files": files}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False, default=str) + "\n",
                                          encoding="utf-8")
    return manifest
