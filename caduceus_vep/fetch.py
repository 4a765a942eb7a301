"""Download the workflow's inputs (variant table, genome, annotation) robustly, and prepare the genome.

Design, and why:

* **Never write into the destination directly.** Bytes stream into a partial file beside ``dest``
  and only a complete, verified file is renamed onto ``dest`` (``os.replace`` in the same folder is
  atomic). Snakemake treats an existing output as done, so a failed or killed job must never leave a
  half-written or unverified ``dest`` behind; a stray partial file is harmless because no rule names
  it as an output.
* **Resume, only where it is safe.** hg38.fa.gz is about 938 MB; a dropped connection or a killed
  job should not cost the whole transfer again. The partial file is named by a hash of the URL and
  the pinned checksum (``<dest>.<key>.part``, see :func:`part_path`), and a sidecar
  ``<part>.json`` records the URL and the validators of the response that started it (``ETag``,
  ``Last-Modified``, total size). A later attempt, in this call or a later run, continues it with
  ``Range: bytes=N-`` and ``If-Range``, and appends only a ``206`` whose range starts at N and whose
  validators and total size match the recorded ones; anything else restarts from byte zero. A
  partial file of another URL (e.g. after changing ``main`` to a commit in the config) is never
  continued: it is deleted when a download for the same ``dest`` starts.
* **Retries** with exponential backoff on transient failures only (connection errors, timeouts,
  a body that ends before its ``Content-Length``, a stalled transfer, 5xx, 429). A 404 or 403 will
  not fix itself, so it fails at once with a message that names the URL and the status.
* **Limits.** ``max_bytes`` (default 8 GiB) refuses a larger ``Content-Length`` before reading and
  stops a body that grows past it; ``stall_timeout``/``min_rate`` (default: less than 1 KiB/s over
  60 s) end an attempt on a trickling server, which is then retried (resuming); ``deadline``
  (default 6 h) bounds the whole call, retries and waits included. ``timeout`` is the socket timeout.
* **Checks before acceptance.** A pinned ``sha256`` is enforced. Without one, the content is
  checked: ``expect`` names what the file must be (``"fasta"``, ``"gtf"``, ``"gzip"``,
  ``"csv_header:COL1,COL2"``, ``"text"``, or ``"any"`` for no check); by default it is inferred
  from the URL's and ``dest``'s file names (``.gz`` must be a complete, CRC-clean gzip/BGZF stream,
  ``.fa``/``.fasta`` must start with ``>``, ``.gtf`` must have 9 tab-separated columns, ``.csv``
  must be text). An HTML page (a login page, an error or rate-limit page served with status 200)
  is always refused, with a message saying what came back. A file that fails a check is deleted.
* **The first download's checksum is recorded and enforced.** Besides the provenance JSON that
  the rules write (``<file>.download.json``, an output Snakemake deletes before re-running the
  rule), :func:`download` keeps ``<dest>.first-download.json`` (see :func:`record_path`) with the
  sha256 of the first successful download into ``dest``. Every later download into the same
  ``dest`` without a pinned checksum must produce the same bytes, so a file that changed upstream
  under the same URL (a Hugging Face ``main`` branch, UCSC's hg38.fa.gz) stops the run instead of
  silently changing the results. A pinned checksum wins over the record (and replaces it).

Only the standard library is used for the transfer (``urllib``), so downloading needs nothing the
workflow does not already have.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import gzip
import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from caduceus_vep import __version__
from caduceus_vep.atomic import atomic_path, kill_point, write_text_atomic
from caduceus_vep.provenance import sha256_file

__all__ = [
    "ChecksumError",
    "ContentError",
    "DownloadError",
    "DownloadRecord",
    "FastaPrepError",
    "download",
    "part_path",
    "prepare_fasta",
    "record_path",
    "recorded_download",
    "sha256_file",
    "write_download_provenance",
]

log = logging.getLogger(__name__)

USER_AGENT = f"caduceus-vep/{__version__}"
# Hosts that get the optional HF_TOKEN; never sent elsewhere (and never across redirects, see below).
_HF_HOSTS = ("huggingface.co", "hf.co")
_MAX_BACKOFF_S = 60.0
# A server that keeps answering with an unusable range would otherwise loop forever.
_MAX_RESTARTS = 3
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.IGNORECASE)
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)", re.IGNORECASE)
# Errors raised while talking to the server that a new attempt may cure. Local disk errors
# (e.g. ENOSPC) are plain OSErrors and deliberately not in this list.
_TRANSIENT = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError)

# Defaults of the limits (see the module docstring). hg38.fa.gz is ~0.94 GB, the T2T FASTA ~3.1 GB.
DEFAULT_MAX_BYTES = 8 << 30
DEFAULT_STALL_TIMEOUT_S = 60.0
DEFAULT_MIN_RATE = 1024.0  # bytes/s, averaged over stall_timeout
DEFAULT_DEADLINE_S = 6 * 3600.0
RECORD_SUFFIX = ".first-download.json"
_HEAD_BYTES = 64 * 1024  # how much of the (decompressed) start the content checks look at

Progress = Callable[[int, "int | None"], Any]


class DownloadError(RuntimeError):
    """A download failed for good (a client error, or transient errors beyond the retry budget)."""


class ChecksumError(DownloadError):
    """The downloaded bytes do not match the pinned (or first recorded) sha256."""


class ContentError(DownloadError):
    """The downloaded bytes are not what was expected (an HTML page, a corrupt gzip, a wrong header)."""


class FastaPrepError(RuntimeError):
    """A downloaded genome could not be turned into an indexed plain FASTA."""


@dataclasses.dataclass(frozen=True)
class DownloadRecord:
    """What was fetched, from where, and the digest of the bytes actually written."""

    source: str
    path: str
    sha256: str
    size_bytes: int
    http_status: int | None
    resumed: bool
    attempts: int
    finished_utc: str
    # How the bytes were accepted: "pinned sha256", "recorded sha256 (...)" or "content: ...".
    verified: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class _Retry(Exception):
    """Internal: this attempt failed in a way another attempt may cure."""


class _Restart(Exception):
    """Internal: the .part cannot be continued; start again from byte zero."""


class _OutOfTime(Exception):
    """Internal: the overall deadline passed."""


@dataclasses.dataclass
class _Limits:
    max_bytes: int | None
    stall_timeout: float | None
    min_rate: float
    deadline: float | None
    started: float = dataclasses.field(default_factory=time.monotonic)

    def remaining(self) -> float:
        return float("inf") if self.deadline is None else self.deadline - (time.monotonic() - self.started)

    def check(self) -> None:
        if self.remaining() <= 0:
            raise _OutOfTime()

    def socket_timeout(self, timeout: float) -> float:
        """Per-read socket timeout: no longer than the stall timeout or what is left of the deadline."""
        value = min(timeout, self.stall_timeout or timeout, self.remaining())
        if value <= 0:
            raise _OutOfTime()
        return max(value, 0.01)


# --------------------------------------------------------------------------- public helpers


def write_download_provenance(record: DownloadRecord, path: str | os.PathLike[str]) -> None:
    """Write ``record`` as JSON, atomically (a provenance file is itself a workflow output)."""
    write_text_atomic(path, json.dumps(record.to_dict(), indent=2, sort_keys=True) + "\n")


def part_path(dest: str | os.PathLike[str], source: str, sha256: str | None = None) -> Path:
    """The partial file of a download of ``source`` (with pinned ``sha256``) into ``dest``."""
    dest = Path(dest)
    pinned = sha256.strip().lower() if sha256 else ""
    key = hashlib.sha256(f"{source}\n{pinned}".encode()).hexdigest()[:16]
    return dest.with_name(f"{dest.name}.{key}.part")


def record_path(dest: str | os.PathLike[str]) -> Path:
    """Where the sha256 of the first successful download into ``dest`` is kept."""
    dest = Path(dest)
    return dest.with_name(dest.name + RECORD_SUFFIX)


def recorded_download(dest: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The record of the first successful download into ``dest`` (None if there is none or it is unreadable)."""
    path = record_path(dest)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("ignoring the unreadable download record %s (%s); it will be written again", path, exc)
        return None
    if not isinstance(data, dict) or not re.fullmatch(r"[0-9a-f]{64}", str(data.get("sha256", ""))):
        log.warning("ignoring the download record %s: it holds no sha256; it will be written again", path)
        return None
    return data


def download(
    source: str,
    dest: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    retries: int = 4,
    timeout: float = 60.0,
    backoff: float = 1.0,
    chunk_size: int = 1 << 20,
    progress: Progress | None = None,
    expect: str | None = None,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
    stall_timeout: float | None = DEFAULT_STALL_TIMEOUT_S,
    min_rate: float = DEFAULT_MIN_RATE,
    deadline: float | None = DEFAULT_DEADLINE_S,
) -> DownloadRecord:
    """Fetch ``source`` to ``dest`` via a partial file; verify, rename, and describe the result.

    ``source`` is an http(s) URL, a ``file://`` URL or a local path (a mirror or a pre-fetched
    file; it is copied with the same checks). ``retries`` is the number of extra attempts after
    transient failures; the wait before retry k is ``backoff * 2**(k-1)`` seconds (capped at 60).
    ``progress(done_bytes, total_bytes_or_None)`` is called after every chunk. ``expect``,
    ``max_bytes``, ``stall_timeout``, ``min_rate`` and ``deadline`` are described in the module
    docstring (``None`` switches a limit off). Raises :class:`DownloadError` (or its subclasses
    :class:`ChecksumError`, :class:`ContentError`); ``dest`` is then untouched.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    pinned = sha256.strip().lower() if sha256 else None
    spec = _content_spec(expect, source, dest)  # raises ValueError for an unknown `expect` before any transfer
    recorded = recorded_download(dest)
    expected = pinned or (recorded["sha256"] if recorded else None)
    part = part_path(dest, source, pinned)
    _remove_stale_parts(dest, part)
    limits = _Limits(max_bytes, stall_timeout, min_rate, deadline)
    local = _local_source(source)

    content_type = None
    if local is not None:
        digest, size = _copy_local(local, part, chunk_size, progress, limits)
        status, resumed, attempts = None, False, 1
    else:
        fetched = _http_fetch(source, part, pinned, retries=retries, timeout=timeout, backoff=backoff,
                              chunk_size=chunk_size, progress=progress, limits=limits)
        digest, size, status, resumed, attempts, content_type = fetched
        if expected and digest != expected and resumed:
            # The kept .part may be from an older version of the file at this URL: resuming glued
            # two different files together. One clean download from zero settles which it is.
            _discard_part(part)
            fetched = _http_fetch(source, part, pinned, retries=retries, timeout=timeout, backoff=backoff,
                                  chunk_size=chunk_size, progress=progress, limits=limits)
            digest, size, status, resumed, more, content_type = fetched
            attempts += more

    if expected and digest != expected:
        hint = _html_hint(part)
        _discard_part(part)
        if pinned:
            raise ChecksumError(
                f"sha256 mismatch for {source}: expected {expected}, got {digest} "
                f"({size} bytes{hint}). The download is corrupt or the pinned checksum in your config is "
                "wrong (e.g. the upstream file changed); the partial file was deleted."
            )
        assert recorded is not None
        raise ChecksumError(
            f"{source} sent different bytes than the first download into {dest}: sha256 {digest} "
            f"({size} bytes{hint}) now, {recorded['sha256']} ({recorded.get('size_bytes')} bytes) recorded in "
            f"{record_path(dest)} (from {recorded.get('source')}, {recorded.get('first_downloaded_utc')}). "
            "The upstream file changed under its URL, or this download is corrupt; nothing was saved. "
            f"If the change is intended, pin the new checksum (sha256 in the config) or delete {record_path(dest)}."
        )
    if pinned:
        verified = "pinned sha256"
    elif expected:
        verified = f"recorded sha256 ({record_path(dest).name})"
    else:
        try:
            verified = _check_content(part, spec, source, status, content_type)
        except ContentError:
            _discard_part(part)
            raise
    finished = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    if recorded is None or recorded.get("sha256") != digest:
        if recorded is not None:
            log.warning("the pinned sha256 of %s replaces the one recorded in %s (%s)", dest, record_path(dest), recorded["sha256"])
        # Before the rename: a dest in place always has its record beside it.
        write_text_atomic(record_path(dest), json.dumps({
            "sha256": digest, "size_bytes": size, "source": source, "path": str(dest),
            "first_downloaded_utc": finished, "pinned": bool(pinned),
        }, indent=2, sort_keys=True) + "\n")
    kill_point("write")
    os.replace(part, dest)
    _meta_path(part).unlink(missing_ok=True)
    return DownloadRecord(
        source=source,
        path=str(dest),
        sha256=digest,
        size_bytes=size,
        http_status=status,
        resumed=resumed,
        attempts=attempts,
        finished_utc=finished,
        verified=verified,
    )


# --------------------------------------------------------------------------- partial files


def _meta_path(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def _discard_part(part: Path) -> None:
    part.unlink(missing_ok=True)
    _meta_path(part).unlink(missing_ok=True)


def _remove_stale_parts(dest: Path, keep: Path) -> None:
    """Delete partial files of other downloads into ``dest`` (another URL or pin, or the old ``<dest>.part``)."""
    legacy = dest.with_name(dest.name + ".part")
    try:
        names = [p for p in dest.parent.iterdir() if p.name.startswith(dest.name + ".")]
    except OSError:
        return
    for path in names:
        stem = path.name[: -len(".json")] if path.name.endswith(".part.json") else path.name
        if not stem.endswith(".part") or stem == keep.name:
            continue
        if stem == legacy.name or re.fullmatch(re.escape(dest.name) + r"\.[0-9a-f]{16}\.part", stem):
            if path.name == stem:
                log.info("deleting %s: a partial download of another URL or checksum into %s", path, dest)
            path.unlink(missing_ok=True)


# --------------------------------------------------------------------------- local sources


def _local_source(source: str) -> Path | None:
    """The file a ``file://`` URL or bare path names; None for http(s)."""
    parsed = urllib.parse.urlparse(source)
    if parsed.scheme in ("http", "https"):
        return None
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise DownloadError(f"file:// URL with a remote host is not supported: {source}")
        return Path(urllib.request.url2pathname(parsed.path))
    # A Windows drive letter parses as a one-letter scheme; anything longer is a typo'd scheme.
    if parsed.scheme and len(parsed.scheme) > 1:
        raise DownloadError(f"unsupported URL scheme {parsed.scheme!r} in {source}")
    return Path(source).expanduser()


def _copy_local(src: Path, part: Path, chunk_size: int, progress: Progress | None, limits: _Limits) -> tuple[str, int]:
    """Streamed copy into ``part`` from zero (local copies are fast; no resume needed)."""
    if not src.is_file():
        raise DownloadError(f"local source {src} does not exist or is not a file")
    total = src.stat().st_size
    if limits.max_bytes is not None and total > limits.max_bytes:
        raise DownloadError(f"local source {src} is {total} bytes, more than max_bytes={limits.max_bytes}")
    hasher, done = hashlib.sha256(), 0
    try:
        with src.open("rb") as fin, part.open("wb") as fout:
            while chunk := fin.read(chunk_size):
                fout.write(chunk)
                hasher.update(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
    except BaseException:
        _discard_part(part)
        raise
    return hasher.hexdigest(), done


# --------------------------------------------------------------------------- HTTP


class _PartState:
    """The partial file, its sidecar (URL and validators) and the running hash, shared across attempts."""

    def __init__(self, path: Path, url: str, pinned: str | None, chunk_size: int) -> None:
        self.path, self.meta_path, self.url, self.pinned = path, _meta_path(path), url, pinned
        self.meta = self._read_meta()
        if self.path.exists() and (self.meta is None or self.meta.get("url") != url or self.meta.get("sha256") != pinned):
            # Without a sidecar naming this URL nobody can say what the bytes are: never append to them.
            log.info("discarding %s: not known to be a partial download of %s", self.path, url)
            self.path.unlink(missing_ok=True)
        # Hash what an earlier run left behind once, then keep hashing incrementally.
        self.hasher = _hash_file(path, chunk_size) if path.exists() else hashlib.sha256()
        # True while the .part holds bytes from an earlier attempt or run that were continued.
        self.resumed = False
        self.content_type: str | None = None

    def _read_meta(self) -> dict[str, Any] | None:
        try:
            meta = json.loads(self.meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return meta if isinstance(meta, dict) else None

    @property
    def size(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def if_range(self) -> str | None:
        """The validator to send with a range request: a strong ETag, else Last-Modified."""
        etag = (self.meta or {}).get("etag")
        if etag and not etag.startswith("W/"):
            return etag
        return (self.meta or {}).get("last_modified")

    def restart(self) -> None:
        """Forget the .part: the next bytes are byte zero of the file."""
        _discard_part(self.path)
        self.meta, self.hasher, self.resumed = None, hashlib.sha256(), False

    def begin(self, response: http.client.HTTPResponse, total: int | None) -> None:
        """A response carrying the whole file from byte zero: record what identifies it, then append to nothing."""
        self.restart()
        self.meta = {"url": self.url, "sha256": self.pinned, "etag": response.headers.get("ETag"),
                     "last_modified": response.headers.get("Last-Modified"), "total": total}
        write_text_atomic(self.meta_path, json.dumps(self.meta, sort_keys=True) + "\n")

    def check_continuation(self, response: http.client.HTTPResponse, total: int | None) -> None:
        """Raise _Restart unless a 206 provably continues the same file the .part holds."""
        meta = self.meta or {}
        for header, key in (("ETag", "etag"), ("Last-Modified", "last_modified")):
            if meta.get(key) is not None and response.headers.get(header) != meta[key]:
                log.info("the server's %s changed (%r, was %r): restarting %s from zero", header,
                         response.headers.get(header), meta[key], self.url)
                raise _Restart()
        if meta.get("total") is not None and total is not None and total != meta["total"]:
            log.info("the size of %s changed (%d, was %d): restarting from zero", self.url, total, meta["total"])
            raise _Restart()


def _partial_note(part: Path) -> str:
    """What is left for the next run, stated truthfully."""
    size = part.stat().st_size if part.exists() else 0
    if size:
        return f"The partial file {part} ({size} bytes) is kept; re-running resumes from it."
    return "No partial file was kept; re-running starts from zero."


def _http_fetch(
    url: str, part: Path, pinned: str | None, *, retries: int, timeout: float, backoff: float,
    chunk_size: int, progress: Progress | None, limits: _Limits,
) -> tuple[str, int, int | None, bool, int, str | None]:
    """Fill ``part`` with the whole remote file. Returns (sha256, size, status, resumed, attempts, content type)."""
    state = _PartState(part, url, pinned, chunk_size)
    attempts = failures = restarts = 0
    try:
        while True:
            limits.check()
            attempts += 1
            try:
                status = _attempt(url, state, timeout, chunk_size, progress, limits)
                return state.hasher.hexdigest(), state.size, status, state.resumed, attempts, state.content_type
            except _Restart:
                restarts += 1
                state.restart()
                if restarts > _MAX_RESTARTS:
                    raise DownloadError(f"server keeps sending unusable byte ranges for {url}") from None
            except _Retry as exc:
                failures += 1
                if failures > retries:
                    raise DownloadError(
                        f"giving up on {url} after {attempts} attempt(s): {exc}. {_partial_note(part)}"
                    ) from exc.__cause__
                wait = min(backoff * 2 ** (failures - 1), _MAX_BACKOFF_S, max(limits.remaining(), 0.0))
                time.sleep(wait)
    except _OutOfTime:
        raise DownloadError(
            f"{url} did not finish within the deadline of {limits.deadline:g} s ({attempts} attempt(s), "
            f"{state.size} bytes received). {_partial_note(part)}"
        ) from None


def _attempt(
    url: str, state: _PartState, timeout: float, chunk_size: int, progress: Progress | None, limits: _Limits,
) -> int:
    """One request: append to (or restart) the .part. Returns the HTTP status."""
    offset = state.size
    request = _build_request(url, offset, if_range=state.if_range() if offset else None)
    try:
        response = urllib.request.urlopen(request, timeout=limits.socket_timeout(timeout))
    except urllib.error.HTTPError as exc:
        return _handle_http_error(exc, url, state, offset, timeout)
    except _TRANSIENT as exc:
        raise _Retry(f"{type(exc).__name__}: {exc}") from exc
    with response:
        start, total = _plan_body(response, offset)
        if total is not None and limits.max_bytes is not None and total > limits.max_bytes:
            state.restart()
            raise DownloadError(f"{url} is {total} bytes, more than max_bytes={limits.max_bytes}; "
                                "raise the limit if this file is meant to be that large")
        if start == 0:
            state.begin(response, total)  # a 200 carries the whole file, even if we asked for a range
        else:
            state.check_continuation(response, total)
            state.resumed = True
        state.content_type = response.headers.get("Content-Type")
        _stream_body(response, state, total, chunk_size, progress, limits, url)
        return response.status


def _build_request(url: str, offset: int, if_range: str | None = None) -> urllib.request.Request:
    request = urllib.request.Request(url, headers={
        "User-Agent": USER_AGENT,
        # No transparent compression: Content-Length and byte ranges must refer to the file itself.
        "Accept-Encoding": "identity",
    })
    if offset > 0:
        request.add_header("Range", f"bytes={offset}-")
        if if_range:
            # A server honouring If-Range answers 200 (the whole, new file) when it changed.
            request.add_header("If-Range", if_range)
    token = os.environ.get("HF_TOKEN", "").strip()
    if token and _is_hf_host(urllib.parse.urlparse(url).hostname or ""):
        # Unredirected: HF resolve URLs redirect to a CDN with a signed URL, which must not get it.
        request.add_unredirected_header("Authorization", f"Bearer {token}")
    return request


def _is_hf_host(host: str) -> bool:
    host = host.lower()
    return any(host == h or host.endswith("." + h) for h in _HF_HOSTS)


def _handle_http_error(
    exc: urllib.error.HTTPError, url: str, state: _PartState, offset: int, timeout: float,
) -> int:
    """Map an error status to retry, restart, done (416 on a complete .part) or a hard failure."""
    with exc:
        code, reason = exc.code, exc.reason
        if code == 416 and offset > 0:
            remote = _unsatisfied_total(exc) or _remote_size(url, timeout)
            known = (state.meta or {}).get("total")
            if remote == offset and (known is None or known == offset):
                state.resumed = True
                return code  # the .part from an earlier run already holds the whole file
            raise _Restart()
        if code == 429 or code >= 500:
            raise _Retry(f"HTTP {code} {reason}")
    raise DownloadError(
        f"HTTP {code} {reason} for {url} — check the URL or the pinned revision in your config"
        + (" (or set HF_TOKEN for a gated/private Hugging Face repository)" if code in (401, 403) else "")
    )


def _unsatisfied_total(exc: urllib.error.HTTPError) -> int | None:
    match = _UNSATISFIED_RANGE.search(exc.headers.get("Content-Range", "") if exc.headers else "")
    return int(match.group(1)) if match else None


def _remote_size(url: str, timeout: float) -> int | None:
    """Content-Length from a HEAD request, or None if the server will not say."""
    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": USER_AGENT})
    with contextlib.suppress(*_TRANSIENT, ValueError), urllib.request.urlopen(request, timeout=timeout) as response:
        length = response.headers.get("Content-Length")
        return int(length) if length is not None else None
    return None


def _plan_body(response: http.client.HTTPResponse, offset: int) -> tuple[int, int | None]:
    """Where the body starts in the file and the file's total size (None if unknown)."""
    length = response.headers.get("Content-Length")
    if response.status == 206:
        match = _CONTENT_RANGE.search(response.headers.get("Content-Range", ""))
        if not match or int(match.group(1)) != offset:
            raise _Restart()  # a range we did not ask for cannot be appended safely
        total = match.group(3)
        return offset, (int(total) if total != "*" else None)
    return 0, (int(length) if length is not None else None)


def _stream_body(
    response: http.client.HTTPResponse, state: _PartState, total: int | None,
    chunk_size: int, progress: Progress | None, limits: _Limits, url: str,
) -> None:
    """Append the body to the .part; raise _Retry if it ends short of ``total`` or stalls."""
    done = state.size
    window_start, window_bytes = time.monotonic(), 0
    with state.path.open("ab") as fout:
        while True:
            limits.check()
            try:
                # read1: whatever has arrived (up to chunk_size), so a trickle cannot hide in one long read.
                chunk = response.read1(chunk_size)
            except _TRANSIENT as exc:
                raise _Retry(f"connection lost after {done} bytes: {type(exc).__name__}: {exc}") from exc
            if not chunk:
                break
            fout.write(chunk)
            state.hasher.update(chunk)
            done += len(chunk)
            window_bytes += len(chunk)
            if limits.max_bytes is not None and done > limits.max_bytes:
                fout.close()
                state.restart()
                raise DownloadError(f"{url} sent more than max_bytes={limits.max_bytes} bytes; stopped. "
                                    "Raise the limit if this file is meant to be that large")
            if progress:
                progress(done, total)
            now = time.monotonic()
            if limits.stall_timeout is not None and now - window_start >= limits.stall_timeout:
                if window_bytes < limits.min_rate * limits.stall_timeout:
                    raise _Retry(f"transfer stalled: {window_bytes} bytes in the last {now - window_start:.1f} s "
                                 f"(less than {limits.min_rate:g} bytes/s) after {done} bytes")
                window_start, window_bytes = now, 0
    # http.client returns b"" (no error) when the peer closes early, so count bytes ourselves.
    if total is not None and done < total:
        raise _Retry(f"incomplete read: got {done} of {total} bytes (the connection closed early)")
    if total is not None and done > total:
        raise _Restart()
    if total is None:
        log.info("%s sent no length: the end of the connection was taken as the end of the file "
                 "(its sha256 or content check decides whether it is whole)", url)


def _hash_file(path: Path, chunk_size: int = 1 << 20) -> Any:
    hasher = hashlib.sha256()
    with path.open("rb") as fin:
        while chunk := fin.read(chunk_size):
            hasher.update(chunk)
    return hasher


# --------------------------------------------------------------------------- content checks

# "unknown" (inferred when the names say nothing): refuse HTML, verify a gzip stream if it is one.
_KINDS = ("any", "unknown", "text", "gzip", "fasta", "gtf", "csv_header")


@dataclasses.dataclass(frozen=True)
class _ContentSpec:
    kind: str  # one of _KINDS
    gzip: bool  # the file must be gzip/BGZF
    columns: tuple[str, ...] = ()
    inferred_from: str = ""


def _content_spec(expect: str | None, source: str, dest: Path) -> _ContentSpec:
    """What the file must be: from ``expect``, or inferred from the URL's and dest's names."""
    names = [Path(urllib.parse.urlparse(source).path).name.lower(), dest.name.lower()]
    gz = any(n.endswith((".gz", ".bgz", ".bgzf")) for n in names)
    if expect is not None:
        kind, _, arg = expect.partition(":")
        kind = kind.strip().lower()
        if kind not in _KINDS:
            raise ValueError(f"expect={expect!r}: must be one of {', '.join(_KINDS)} (csv_header:COL1,COL2,...)")
        columns = tuple(c.strip() for c in arg.split(",") if c.strip()) if kind == "csv_header" else ()
        if kind == "csv_header" and not columns:
            raise ValueError(f"expect={expect!r}: name the columns, e.g. csv_header:CHROM,POS,REF,ALT")
        return _ContentSpec(kind, kind == "gzip" or (gz and kind != "any"), columns, "expect")
    for name in names:
        bare = re.sub(r"\.(gz|bgz|bgzf)$", "", name)
        if bare.endswith((".fa", ".fasta", ".fna", ".fas")):
            return _ContentSpec("fasta", gz, inferred_from=name)
        if bare.endswith((".gtf", ".gff", ".gff3")):
            return _ContentSpec("gtf", gz, inferred_from=name)
        if bare.endswith((".csv", ".tsv", ".txt", ".vcf", ".bed")):
            return _ContentSpec("text", gz, inferred_from=name)
    return _ContentSpec("gzip" if gz else "unknown", gz, inferred_from=names[0])


def _looks_like_html(head: bytes) -> bool:
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or (
        text.startswith(b"<") and b"<html" in text[:2048])


def _html_title(head: bytes) -> str:
    match = re.search(rb"<title[^>]*>(.*?)</title>", head, re.IGNORECASE | re.DOTALL)
    return " ".join(match.group(1).decode("utf-8", "replace").split())[:120] if match else ""


def _html_hint(part: Path) -> str:
    """', and it is an HTML page titled ...' for a mismatching file that is a web page."""
    try:
        with part.open("rb") as f:
            head = f.read(4096)
    except OSError:
        return ""
    if not _looks_like_html(head):
        return ""
    title = _html_title(head)
    return ", an HTML page" + (f" titled {title!r}" if title else "") + ", not the file"


def _gunzip_head(path: Path, source: str) -> bytes:
    """The first decompressed bytes; reads the whole stream so a truncated or corrupt gzip is refused."""
    head = b""
    try:
        with gzip.open(path, "rb") as fin:
            while chunk := fin.read(4 << 20):
                if len(head) < _HEAD_BYTES:
                    head += chunk[: _HEAD_BYTES - len(head)]
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise ContentError(f"{source} sent a truncated or corrupt gzip ({type(exc).__name__}: {exc}); "
                           "nothing was saved. Re-running downloads it again.") from None
    return head


def _check_content(path: Path, spec: _ContentSpec, source: str, status: int | None, content_type: str | None) -> str:
    """Refuse what is not the expected file (ContentError); returns how the content was checked."""
    if spec.kind == "any":
        return "content: not checked (expect='any')"
    size = path.stat().st_size
    with path.open("rb") as f:
        raw = f.read(_HEAD_BYTES)
    came = f"HTTP {status}, " if status is not None else ""
    came += f"Content-Type {content_type!r}, " if content_type else ""
    came += f"{size} bytes"
    if not raw:
        raise ContentError(f"{source} sent an empty file ({came}); nothing was saved")
    if _looks_like_html(raw):
        title = _html_title(raw)
        raise ContentError(
            f"{source} sent an HTML page instead of the file ({came}"
            + (f", title {title!r}" if title else "") + f", starting {raw[:60]!r}). The URL is probably wrong, "
            "needs a login, or the server refused or rate-limited the request; nothing was saved.")
    is_gz = raw[:2] == _GZIP_MAGIC
    if spec.gzip and not is_gz:
        raise ContentError(f"{source} should be gzip/BGZF ({spec.inferred_from or 'expect'}) but does not start with "
                           f"the gzip magic bytes ({came}, starting {raw[:16]!r}); nothing was saved")
    head = _gunzip_head(path, source) if is_gz else raw
    how = "gzip stream complete" if is_gz else ""
    if spec.kind == "fasta":
        if not head.lstrip().startswith(b">"):
            raise ContentError(f"{source} is not a FASTA file: it does not start with a '>' header ({came}, "
                               f"{'decompressed ' if is_gz else ''}start {head[:40]!r}); nothing was saved")
        how = ", ".join(filter(None, [how, "FASTA header"]))
    elif spec.kind == "gtf":
        line = next((ln for ln in head.split(b"\n") if ln.strip() and not ln.startswith(b"#")), b"")
        fields = line.rstrip(b"\r").split(b"\t")
        if len(fields) != 9 or not (fields[3].isdigit() and fields[4].isdigit()):
            raise ContentError(f"{source} is not a GTF/GFF file: its first record has {len(fields)} tab-separated "
                               f"columns, not 9 with numeric start/end ({came}, first record {line[:80]!r}); nothing was saved")
        how = ", ".join(filter(None, [how, "GTF columns"]))
    elif spec.kind in ("csv_header", "text"):
        if b"\0" in head:
            raise ContentError(f"{source} is not a text file: it holds NUL bytes ({came}, starting {head[:24]!r}); "
                               "nothing was saved")
        if spec.kind == "csv_header":
            first = head.split(b"\n", 1)[0].decode("utf-8-sig", "replace").rstrip("\r")
            columns = [c.strip().strip('"') for c in first.split(",")]
            missing = [c for c in spec.columns if c not in columns]
            if missing:
                raise ContentError(f"{source} does not have the expected CSV header: missing {missing} "
                                   f"({came}, header {first[:200]!r}); nothing was saved")
        how = ", ".join(filter(None, [how, "CSV header" if spec.kind == "csv_header" else "text"]))
    return f"content: {how or 'not HTML'}"


# --------------------------------------------------------------------------- genome preparation

_GZIP_MAGIC = b"\x1f\x8b"
_COPY_BUFFER = 4 << 20


def prepare_fasta(source_path: str | os.PathLike[str], dest_fasta: str | os.PathLike[str]) -> Path:
    """Write ``source_path`` (gzip, bgzip or plain FASTA) as plain FASTA at ``dest_fasta`` + ``.fai``.

    Plain FASTA because random access by samtools/pyfaidx is simplest and fastest on it (a plain
    gzip is not seekable at all). Decompression streams: hg38 is about 3 GB uncompressed.
    Both files appear only when complete: the index is built on the temporary FASTA, any old
    ``.fai`` is removed first, the FASTA is renamed into place, and then its index.
    """
    src, dest = Path(source_path), Path(dest_fasta)
    if src.resolve() == dest.resolve():
        raise ValueError(f"prepare_fasta: source and destination are the same file: {src}")
    if not src.is_file():
        raise FastaPrepError(f"genome file {src} does not exist")
    fai = dest.with_name(dest.name + ".fai")
    # An old index must never sit beside a new FASTA, not even for a moment.
    fai.unlink(missing_ok=True)
    tmp_fai: Path | None = None
    try:
        with atomic_path(dest) as tmp:
            _decompress_fasta(src, tmp)
            tmp_fai = _index_fasta(tmp, src)
        os.replace(tmp_fai, fai)
    finally:
        if tmp_fai is not None:
            tmp_fai.unlink(missing_ok=True)
    return dest


def _is_gzip(path: Path) -> bool:
    with path.open("rb") as fin:
        return fin.read(2) == _GZIP_MAGIC


def _decompress_fasta(src: Path, out: Path) -> None:
    """Stream ``src`` (decompressing if gzip/bgzip: bgzip is multi-member gzip) into ``out``."""
    opener = gzip.open if _is_gzip(src) else open
    try:
        with opener(src, "rb") as fin, out.open("wb") as fout:
            _copy_checked(fin, fout, src)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise FastaPrepError(
            f"{src}: truncated or corrupt gzip ({exc}); delete it and download it again"
        ) from exc


def _copy_checked(fin: BinaryIO, fout: BinaryIO, src: Path) -> None:
    head = fin.read(_COPY_BUFFER)
    if not head.startswith(b">"):
        what = "is empty" if not head else f"does not start with '>' (starts with {head[:20]!r})"
        raise FastaPrepError(f"{src} is not a FASTA file: its content {what}")
    fout.write(head)
    shutil.copyfileobj(fin, fout, _COPY_BUFFER)


def _index_fasta(fasta: Path, src: Path) -> Path:
    """Build ``<fasta>.fai`` with samtools (via pysam); returns its path."""
    import pysam  # local import: only genome preparation needs it

    fai = fasta.with_name(fasta.name + ".fai")
    try:
        pysam.faidx(str(fasta))
    except pysam.utils.SamtoolsError as exc:
        fai.unlink(missing_ok=True)
        raise FastaPrepError(f"could not index the FASTA decompressed from {src}: {exc}") from exc
    if not fai.is_file():
        raise FastaPrepError(f"samtools faidx wrote no index for the FASTA from {src}")
    return fai
