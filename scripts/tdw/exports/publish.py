"""Publication of the open-data export on data.gouv.fr (``tdw publish data-gouv``).

Reads the published export (``$TDW_EXPORT_DIR/open-data/manifest.json``), compares each file
with the remote resource (``GET {base}/datasets/{dataset}/``: each resource's ``checksum``
{type, value} and ``filesize``) and, with ``apply=True``, uploads what changed:

* a file mapped to a resource id: ``POST {base}/datasets/{dataset}/resources/{rid}/upload/``
  (multipart field ``file``) replaces the resource's file;
* an unmapped file: ``POST {base}/datasets/{dataset}/upload/`` creates a resource; its new id is
  written back to the mapping file.

Configuration (environment): ``TDW_DATAGOUV_API_KEY`` (sent as header ``X-API-KEY``, never
printed), ``TDW_DATAGOUV_DATASET`` (dataset id or slug), ``TDW_DATAGOUV_URL`` (default
https://www.data.gouv.fr/api/1), ``TDW_DATAGOUV_RESOURCES`` (JSON mapping file
``{"file name": "resource id"}``, default ``$TDW_HOME/datagouv_resources.json``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import requests

from ..config import load_settings
from ..errors import InputFileError, TdwError
from .common import sha256_file

DEFAULT_URL = "https://www.data.gouv.fr/api/1"
TIMEOUT = 60


@dataclass
class Change:
    """What publishing one file does: action is 'unchanged', 'replace' or 'create'."""

    file: str
    action: str
    resource_id: str | None
    local_sha256: str
    local_bytes: int
    remote_checksum: str | None = None
    remote_bytes: int | None = None

    def __str__(self) -> str:
        if self.action == "unchanged":
            return f"unchanged  {self.file} (resource {self.resource_id}, sha256 matches)"
        if self.action == "create":
            return f"create     {self.file} ({self.local_bytes} bytes, new resource)"
        return (f"replace    {self.file} -> resource {self.resource_id} ({self.remote_bytes} -> {self.local_bytes} bytes, "
                f"checksum {(self.remote_checksum or 'none')[:12]} -> {self.local_sha256[:12]})")


@dataclass(frozen=True)
class DataGouvConfig:
    """Where and how to publish."""

    base_url: str
    dataset: str
    api_key: str | None
    mapping_path: Path

    @classmethod
    def from_env(cls, env: dict | None = None) -> DataGouvConfig:
        """Read the TDW_DATAGOUV_* variables. Raises TdwError when the dataset id is missing."""
        env = dict(os.environ if env is None else env)
        dataset = env.get("TDW_DATAGOUV_DATASET")
        if not dataset:
            raise TdwError("set TDW_DATAGOUV_DATASET to the data.gouv.fr dataset id to publish to")
        mapping = env.get("TDW_DATAGOUV_RESOURCES") or str(load_settings(env).home / "datagouv_resources.json")
        return cls(base_url=(env.get("TDW_DATAGOUV_URL") or DEFAULT_URL).rstrip("/"), dataset=dataset,
                   api_key=env.get("TDW_DATAGOUV_API_KEY") or None, mapping_path=Path(mapping))


def load_mapping(path: Path) -> dict[str, str]:
    """Read the ``{"file": "resource id"}`` mapping; missing file = empty. Raises InputFileError."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputFileError(path, exc.lineno, str(exc.colno), f"not valid JSON ({exc.msg})") from exc
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise InputFileError(path, None, None, 'expected a JSON object {"file name": "resource id"}')
    return data


def _files(export_dir: Path) -> list[Path]:
    manifest = export_dir / "manifest.json"
    if not manifest.exists():
        raise TdwError(f"no open-data export in {export_dir} (manifest.json missing); run 'tdw export open-data' first")
    content = json.loads(manifest.read_text(encoding="utf-8"))
    if content.get("simulated_source"):
        raise TdwError(f"the open-data export in {export_dir} was made from simulated data (the warehouse's source is "
                       "the project's simulator): it is never sent to data.gouv.fr")
    return [export_dir / e["path"] for e in content["files"]]


def _session(cfg: DataGouvConfig) -> requests.Session:
    s = requests.Session()
    s.headers["User-Agent"] = "tdw-publish"
    if cfg.api_key:
        s.headers["X-API-KEY"] = cfg.api_key
    return s


def _send(session: requests.Session, method: str, url: str, what: str, **kwargs) -> dict:
    """One request to the API, its JSON answer; TdwError (naming the address) when the server
    cannot be reached or refuses."""
    try:
        resp = session.request(method, url, timeout=TIMEOUT, **kwargs)
    except requests.RequestException as exc:
        raise TdwError(
            f"cannot reach data.gouv.fr for {what} ({url}): {exc.__class__.__name__}. The dry run also "
            "needs the API (it compares checksums with the dataset's resources): check the network, "
            "or TDW_DATAGOUV_URL"
        ) from exc
    return _check(resp, what)


def _check(resp: requests.Response, what: str) -> dict:
    if resp.status_code >= 400:
        raise TdwError(f"data.gouv.fr refused {what}: HTTP {resp.status_code} {resp.text[:200]}")
    try:
        return resp.json()
    except ValueError as exc:
        raise TdwError(f"data.gouv.fr answered {what} with something that is not JSON") from exc


def plan(cfg: DataGouvConfig, export_dir: Path, session: requests.Session | None = None) -> list[Change]:
    """Compare the export's files with the dataset's resources (read-only: one GET).

    A mapped file is unchanged when the remote checksum (sha256, or sha1 recomputed locally) and
    filesize match. Raises TdwError when the API cannot be reached, on HTTP errors, or for a mapping
    to a resource the dataset lacks, and, before any request, for an export of simulated data.
    """
    files = _files(export_dir)  # refuses an export of simulated data before reaching the network
    session = session or _session(cfg)
    dataset = _send(session, "GET", f"{cfg.base_url}/datasets/{cfg.dataset}/", "reading the dataset")
    remote = {r["id"]: r for r in dataset.get("resources") or []}
    mapping = load_mapping(cfg.mapping_path)
    changes = []
    for path in files:
        sha = sha256_file(path)
        size = path.stat().st_size
        rid = mapping.get(path.name)
        if rid is None:
            changes.append(Change(path.name, "create", None, sha, size))
            continue
        if rid not in remote:
            raise TdwError(f"{cfg.mapping_path}: resource {rid} (for {path.name}) is not in dataset {cfg.dataset}")
        r = remote[rid]
        checksum = r.get("checksum") or {}
        ctype, cvalue = (checksum.get("type") or "").lower(), checksum.get("value")
        local = sha if ctype in ("sha256", "") else _digest(path, ctype)
        same = cvalue is not None and local == cvalue and r.get("filesize") in (None, size)
        changes.append(Change(path.name, "unchanged" if same else "replace", rid, sha, size, cvalue, r.get("filesize")))
    return changes


def _digest(path: Path, algo: str) -> str | None:
    import hashlib

    try:
        h = hashlib.new(algo)
    except ValueError:
        return None
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def publish(cfg: DataGouvConfig, export_dir: Path | None = None, *, apply: bool = False) -> list[Change]:
    """Plan, and with ``apply`` upload, the open-data export to data.gouv.fr.

    Returns the list of changes (what was, or would be, done). Raises TdwError when applying
    without an API key, when the API cannot be reached or when it refuses a request (files already uploaded stay uploaded;
    rerunning uploads only what still differs).
    """
    export_dir = Path(export_dir) if export_dir else load_settings().export_dir / "open-data"
    session = _session(cfg)
    changes = plan(cfg, export_dir, session)
    if not apply:
        return changes
    if not cfg.api_key:
        raise TdwError("set TDW_DATAGOUV_API_KEY to publish (--apply)")
    mapping = load_mapping(cfg.mapping_path)
    for ch in changes:
        if ch.action == "unchanged":
            continue
        path = export_dir / ch.file
        url = (f"{cfg.base_url}/datasets/{cfg.dataset}/resources/{ch.resource_id}/upload/" if ch.action == "replace"
               else f"{cfg.base_url}/datasets/{cfg.dataset}/upload/")
        with open(path, "rb") as fh:
            body = _send(session, "POST", url, f"the upload of {ch.file}", files={"file": (path.name, fh)})
        if ch.action == "create":
            ch.resource_id = body.get("id")
            if not ch.resource_id:
                raise TdwError(f"data.gouv.fr created a resource for {ch.file} but returned no id")
            mapping[ch.file] = ch.resource_id
            cfg.mapping_path.parent.mkdir(parents=True, exist_ok=True)
            cfg.mapping_path.write_text(json.dumps(mapping, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return changes
