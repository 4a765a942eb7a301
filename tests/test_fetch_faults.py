"""Fault injection on downloads: stale partial files, HTML pages, tricklers, short bodies, corrupt gzip, changed files.

Every server listens on 127.0.0.1 only, and every test is bounded in time. Each test checks what
the user is told and that nothing wrong is left where Snakemake would take it as finished (``dest``)
or where a later run would build on it (the partial file, the checksum record).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from caduceus_vep import fetch
from caduceus_vep.fetch import ChecksumError, ContentError, DownloadError, download

pytestmark = pytest.mark.timeout(60)

V1 = os.urandom(200_000)
V2 = os.urandom(200_000)
CHUNK = 8 * 1024
FASTA = b">chr1 test\n" + b"ACGT" * 5000 + b"\n>chr2\n" + b"GGCC" * 100 + b"\n"
GTF = (b"##description: test\n"
       b"chr1\tHAVANA\tgene\t11869\t14409\t.\t+\t.\tgene_id \"ENSG1\"; gene_type \"lncRNA\";\n") * 50
EQTL_CSV = b"CHROM,POS,SNP,REF,ALT,label,split,tissue,distance_to_nearest_TSS\nchr1,100,rs1,A,G,1,train,Whole_Blood,5\n"
HTML = (b"<!DOCTYPE html>\n<html><head><title>429 Too Many Requests</title></head>"
        b"<body>Slow down</body></html>\n")


@dataclass
class Behaviour:
    """One file on the server and how the server (mis)behaves for it."""

    data: bytes
    content_type: str = "application/octet-stream"
    etag: str | None = None
    last_modified: str | None = None
    honour_range: bool = True
    honour_if_range: bool = True
    send_length: bool = True
    cut_after: int | None = None  # body bytes sent before the connection is closed
    cut_times: int = 10**9  # on this many GETs (then served whole)
    trickle: tuple[int, float] | None = None  # (bytes, seconds between them)
    gets: int = 0


@dataclass
class Server:
    base: str
    files: dict[str, Behaviour] = field(default_factory=dict)
    log: list[dict] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def add(self, name: str, data: bytes, **kw) -> str:
        self.files["/" + name] = Behaviour(data=data, **kw)
        return f"{self.base}/{name}"

    def gets(self, name: str) -> list[dict]:
        return [r for r in self.log if r["path"] == "/" + name and r["method"] == "GET"]


def _handler(state: Server):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_HEAD(self):
            self._serve(head=True)

        def do_GET(self):
            self._serve(head=False)

        def _serve(self, head: bool) -> None:
            state.log.append({"method": self.command, "path": self.path, "range": self.headers.get("Range"),
                              "if_range": self.headers.get("If-Range")})
            b = state.files.get(self.path)
            if b is None:
                self.send_error(404)
                return
            if not head:
                b.gets += 1
            data, status = b.data, 200
            rng = self.headers.get("Range")
            if_range = self.headers.get("If-Range")
            validator_ok = if_range is None or not b.honour_if_range or if_range in (b.etag, b.last_modified)
            if rng and b.honour_range and validator_ok:
                start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status, data = 206, data[start:]
            self.send_response(status)
            self.send_header("Content-Type", b.content_type)
            if b.send_length:
                self.send_header("Content-Length", str(len(data)))
            else:
                self.send_header("Connection", "close")
                self.close_connection = True
            if status == 206:
                self.send_header("Content-Range", f"bytes {len(b.data) - len(data)}-{len(b.data) - 1}/{len(b.data)}")
            for name, value in (("ETag", b.etag), ("Last-Modified", b.last_modified)):
                if value:
                    self.send_header(name, value)
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            if head:
                return
            try:
                if b.trickle:
                    step, pause = b.trickle
                    for i in range(0, len(data), step):
                        if state.stop.is_set():
                            break
                        self.wfile.write(data[i:i + step])
                        self.wfile.flush()
                        time.sleep(pause)
                elif b.cut_after is not None and b.gets <= b.cut_times:
                    self.wfile.write(data[: b.cut_after])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                else:
                    self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (stall, deadline): that is the point of the test
            self.close_connection = True

    return Handler


@pytest.fixture()
def server():
    state = Server(base="")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield state
    state.stop.set()
    httpd.shutdown()
    httpd.server_close()


def _get(url: str, dest: Path, **kw) -> fetch.DownloadRecord:
    kw.setdefault("backoff", 0)
    kw.setdefault("timeout", 5)
    kw.setdefault("chunk_size", CHUNK)
    return download(url, dest, **kw)


def _leftovers(dest: Path) -> list[str]:
    """Partial files, sidecars and temporary files of ``dest`` (the record is listed separately)."""
    return sorted(p.name for p in dest.parent.iterdir() if p.name.startswith((dest.name + ".", "." + dest.name))
                  and not p.name.endswith(fetch.RECORD_SUFFIX))


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- stale partial files


def test_stale_partial_of_another_url_is_never_glued_on(server, tmp_path):
    """The README advises changing `main` to a commit: the old URL's partial bytes must not survive."""
    old = server.add("main/All_Tissues.bin", V1, cut_after=70_000)
    dest = tmp_path / "All_Tissues.bin"
    with pytest.raises(DownloadError, match="incomplete read"):
        _get(old, dest, retries=0)
    assert fetch.part_path(dest, old).stat().st_size == 70_000
    new = server.add("commit/All_Tissues.bin", V2)
    record = _get(new, dest)
    assert dest.read_bytes() == V2 and record.resumed is False
    assert server.gets("commit/All_Tissues.bin")[0]["range"] is None  # started from zero
    assert _leftovers(dest) == []  # the old URL's partial file is gone too


def test_partial_file_without_sidecar_is_not_trusted(server, tmp_path):
    url = server.add("f.bin", V2)
    dest = tmp_path / "f.bin"
    part = fetch.part_path(dest, url)
    part.write_bytes(V1[:5000])  # bytes of unknown origin (no sidecar naming the URL)
    dest.with_name("f.bin.part").write_bytes(V1[:7000])  # the pre-keyed name of older versions
    record = _get(url, dest)
    assert dest.read_bytes() == V2 and not record.resumed
    assert server.gets("f.bin")[0]["range"] is None and _leftovers(dest) == []


@pytest.mark.parametrize("validator", ["etag", "last_modified"])
@pytest.mark.parametrize("server_kind", ["honours_if_range", "ignores_if_range"])
def test_changed_validator_on_resume_restarts_from_zero(server, tmp_path, validator, server_kind):
    values = {"etag": ('"v1"', '"v2"'), "last_modified": ("Mon, 01 Jan 2024 00:00:00 GMT", "Tue, 02 Jan 2024 00:00:00 GMT")}[validator]
    url = server.add("genome.bin", V1, cut_after=50_000, **{validator: values[0]})
    dest = tmp_path / "genome.bin"
    with pytest.raises(DownloadError, match="is kept; re-running resumes"):
        _get(url, dest, retries=0)
    # The file changes upstream under the same URL.
    server.files["/genome.bin"] = Behaviour(V2, honour_if_range=server_kind == "honours_if_range", **{validator: values[1]})
    record = _get(url, dest)
    assert dest.read_bytes() == V2 and not record.resumed
    gets = server.gets("genome.bin")
    assert gets[1]["range"] == "bytes=50000-" and gets[1]["if_range"] == values[0]
    if server_kind == "ignores_if_range":  # a 206 with the new validator is refused, then a clean restart
        assert gets[2]["range"] is None and len(gets) == 3


def test_matching_validator_resumes(server, tmp_path):
    url = server.add("genome.bin", V1, cut_after=50_000, cut_times=1, etag='"same"')
    dest = tmp_path / "genome.bin"
    record = _get(url, dest)
    assert dest.read_bytes() == V1 and record.resumed and record.attempts == 2
    assert server.gets("genome.bin")[1]["if_range"] == '"same"'


# --------------------------------------------------------------------------- what came back


def test_html_page_with_status_200_is_refused(server, tmp_path):
    url = server.add("variant_effect_causal_eqtl/All_Tissues.csv", HTML, content_type="text/html; charset=utf-8")
    dest = tmp_path / "All_Tissues.csv"
    with pytest.raises(ContentError) as info:
        _get(url, dest)
    message = str(info.value)
    assert "HTML page" in message and "HTTP 200" in message and "text/html" in message
    assert "429 Too Many Requests" in message and url in message and "nothing was saved" in message
    assert not dest.exists() and _leftovers(dest) == [] and not fetch.record_path(dest).exists()


def test_html_page_against_a_pinned_checksum_says_so(server, tmp_path):
    url = server.add("hg38.fa.gz", HTML, content_type="text/html")
    dest = tmp_path / "hg38.fa.download"
    with pytest.raises(ChecksumError, match="an HTML page titled '429 Too Many Requests'"):
        _get(url, dest, sha256=_sha(FASTA))
    assert not dest.exists() and _leftovers(dest) == []


def test_variant_table_header_is_checked(server, tmp_path):
    good = server.add("All_Tissues.csv", EQTL_CSV)
    columns = "CHROM,POS,REF,ALT,label,tissue"
    record = _get(good, tmp_path / "ok.csv", expect=f"csv_header:{columns}")
    assert record.verified == "content: CSV header"
    bad = server.add("other.csv", b"chrom;pos;ref;alt\n1;2;A;C\n")
    with pytest.raises(ContentError, match=r"missing \['CHROM', 'POS'") as info:
        _get(bad, tmp_path / "bad.csv", expect=f"csv_header:{columns}")
    assert "chrom;pos;ref;alt" in str(info.value)
    assert not (tmp_path / "bad.csv").exists()
    with pytest.raises(ValueError, match="expect="):
        _get(good, tmp_path / "x.csv", expect="xml")


def test_corrupt_gzip_is_refused(server, tmp_path):
    data = bytearray(gzip.compress(GTF * 20))
    data[len(data) // 2] ^= 0xFF
    url = server.add("gencode.v44.annotation.gtf.gz", bytes(data))
    dest = tmp_path / "gencode.v44.annotation.gtf.gz"
    with pytest.raises(ContentError, match="truncated or corrupt gzip") as info:
        _get(url, dest)
    assert url in str(info.value)
    assert not dest.exists() and _leftovers(dest) == []
    plain = server.add("not-really.gtf.gz", GTF)  # a .gz name over plain bytes
    with pytest.raises(ContentError, match="gzip magic"):
        _get(plain, tmp_path / "not-really.gtf.gz")


def test_genome_and_annotation_content(server, tmp_path):
    genome = server.add("goldenPath/hg38/bigZips/hg38.fa.gz", gzip.compress(FASTA))
    record = _get(genome, tmp_path / "hg38.fa.download")  # the rule's dest says nothing; the URL does
    assert record.verified == "content: gzip stream complete, FASTA header"
    not_fasta = server.add("hg19.fa.gz", gzip.compress(b"chr1\t100\n"))
    with pytest.raises(ContentError, match="not a FASTA file"):
        _get(not_fasta, tmp_path / "hg19.fa.download")
    gtf = server.add("a.gtf.gz", gzip.compress(GTF))
    assert _get(gtf, tmp_path / "a.gtf.gz").verified == "content: gzip stream complete, GTF columns"
    bad_gtf = server.add("b.gtf", b"#comment\nchr1 gene 1 2\n")
    with pytest.raises(ContentError, match="not a GTF"):
        _get(bad_gtf, tmp_path / "b.gtf")


# --------------------------------------------------------------------------- slow, short and oversized bodies


def test_trickling_server_stalls_and_gives_up(server, tmp_path):
    url = server.add("slow.bin", V1, trickle=(1, 0.05))  # 20 bytes/s, forever in practice
    dest = tmp_path / "slow.bin"
    started = time.monotonic()
    with pytest.raises(DownloadError, match="stalled") as info:
        _get(url, dest, stall_timeout=0.5, min_rate=1000, retries=1)
    assert time.monotonic() - started < 10
    assert "after 2 attempt" in str(info.value) and "is kept; re-running resumes" in str(info.value)
    assert not dest.exists()


def test_overall_deadline_bounds_a_slow_but_steady_server(server, tmp_path):
    url = server.add("steady.bin", V1, trickle=(2048, 0.05))  # ~40 kB/s: no stall, but 5 s in all
    dest = tmp_path / "steady.bin"
    started = time.monotonic()
    with pytest.raises(DownloadError, match="deadline of 1 s") as info:
        _get(url, dest, deadline=1.0, min_rate=1)
    assert time.monotonic() - started < 5
    assert "is kept; re-running resumes" in str(info.value) and not dest.exists()
    server.files["/steady.bin"].trickle = None
    record = _get(url, dest)  # the next run resumes
    assert dest.read_bytes() == V1 and record.resumed


def test_short_body_is_a_failed_attempt(server, tmp_path):
    url = server.add("short.bin", V1, cut_after=10_000)  # every response closes after 10 kB
    dest = tmp_path / "short.bin"
    with pytest.raises(DownloadError, match=f"got 20000 of {len(V1)} bytes") as info:
        _get(url, dest, retries=1)  # the second attempt resumed at 10 kB, and was cut short too
    assert "after 2 attempt" in str(info.value) and "(20000 bytes) is kept" in str(info.value)
    assert not dest.exists()


def test_short_gzip_without_length_is_refused(server, tmp_path):
    data = gzip.compress(FASTA * 10)
    url = server.add("hg38.fa.gz", data, send_length=False, cut_after=len(data) // 2)
    dest = tmp_path / "hg38.fa.download"
    with pytest.raises(ContentError, match="truncated or corrupt gzip"):
        _get(url, dest)
    assert not dest.exists() and _leftovers(dest) == []


def test_size_limit(server, tmp_path):
    url = server.add("big.bin", V1)
    with pytest.raises(DownloadError, match="more than max_bytes=1000") as info:
        _get(url, tmp_path / "big.bin", max_bytes=1000)
    assert "raise the limit" in str(info.value)
    unknown = server.add("big-no-length.bin", V1, send_length=False)
    with pytest.raises(DownloadError, match="more than max_bytes=100000"):
        _get(unknown, tmp_path / "big2.bin", max_bytes=100_000)
    assert not (tmp_path / "big2.bin").exists() and _leftovers(tmp_path / "big2.bin") == []


def test_no_false_claim_of_a_kept_partial_file(server, tmp_path):
    def closed_port() -> int:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()
        return port

    with pytest.raises(DownloadError) as info:
        _get(f"http://127.0.0.1:{closed_port()}/f.bin", tmp_path / "f.bin", retries=0)
    assert "No partial file was kept" in str(info.value) and "is kept" not in str(info.value)


# --------------------------------------------------------------------------- the recorded checksum


def test_first_download_is_recorded_and_later_runs_verify_it(server, tmp_path):
    url = server.add("All_Tissues.bin", V1)
    dest = tmp_path / "All_Tissues.bin"
    first = _get(url, dest)
    record = json.loads(fetch.record_path(dest).read_text())
    assert record["sha256"] == first.sha256 == _sha(V1) and record["source"] == url
    dest.unlink()  # Snakemake deletes a rule's outputs before re-running it
    again = _get(url, dest)
    assert again.verified.startswith("recorded sha256")
    # Upstream changes the file under the same URL.
    server.files["/All_Tissues.bin"] = Behaviour(V2)
    dest.unlink()
    with pytest.raises(ChecksumError) as info:
        _get(url, dest)
    message = str(info.value)
    assert _sha(V1) in message and _sha(V2) in message and str(fetch.record_path(dest)) in message
    assert "pin the new checksum" in message
    assert not dest.exists() and _leftovers(dest) == []
    # Pinning the new checksum is the way to accept it; the record follows the pin.
    pinned = _get(url, dest, sha256=_sha(V2))
    assert dest.read_bytes() == V2 and pinned.verified == "pinned sha256"
    assert json.loads(fetch.record_path(dest).read_text())["sha256"] == _sha(V2)


def test_unreadable_record_is_rewritten(server, tmp_path):
    url = server.add("x.bin", V1)
    dest = tmp_path / "x.bin"
    fetch.record_path(dest).write_text("{not json")
    _get(url, dest)
    assert json.loads(fetch.record_path(dest).read_text())["sha256"] == _sha(V1)


def test_local_copy_is_checked_and_recorded_too(tmp_path):
    src = tmp_path / "mirror" / "page.csv"
    src.parent.mkdir()
    src.write_bytes(HTML)
    with pytest.raises(ContentError, match="HTML page"):
        _get(str(src), tmp_path / "out" / "All_Tissues.csv")
    src.write_bytes(EQTL_CSV)
    _get(str(src), tmp_path / "out" / "All_Tissues.csv")
    assert fetch.recorded_download(tmp_path / "out" / "All_Tissues.csv")["sha256"] == _sha(EQTL_CSV)
