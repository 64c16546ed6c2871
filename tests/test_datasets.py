"""Tests for als_spark.datasets: no Spark, no external network (127.0.0.1 only)."""

from __future__ import annotations

import hashlib
import io
import socket
import threading
import urllib.error
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from als_spark.datasets import default_cache_dir, fetch_ml_100k
from als_spark.errors import DatasetError

U_DATA = b"1\t10\t5\t881250949\n2\t10\t3\t891717742\n2\t20\t4\t878887116\n"
U_ITEM = b"10|Made-up Movie (1995)|01-Jan-1995||x|0|1\n20|Other (1996)|||x|1|0\n"
GOOD_SHA = {name: hashlib.sha256(data).hexdigest() for name, data in (("u.data", U_DATA), ("u.item", U_ITEM))}


def make_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


GOOD_ZIP = make_zip({"ml-100k/u.data": U_DATA, "ml-100k/u.item": U_ITEM, "ml-100k/README": b"not extracted\n"})


class Server:
    """A tiny HTTP server on 127.0.0.1 serving ``routes`` (path -> (status, body))."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, bytes]] = {}
        self.requests: list[str] = []
        routes, requests = self.routes, self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server API
                requests.append(self.path)
                status, body = routes.get(self.path, (404, b"not found"))
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        self.running = True

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def stop(self) -> None:
        if self.running:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.thread.join()
            self.running = False


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep urllib from sending 127.0.0.1 requests to a proxy from the environment."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    yield srv
    srv.stop()


@pytest.fixture
def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/ml-100k.zip"


def files_under(path: Path) -> set[str]:
    return {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()}


def test_download_extracts_and_verifies(server: Server, tmp_path: Path) -> None:
    server.routes["/ml-100k.zip"] = (200, GOOD_ZIP)
    out = fetch_ml_100k(url=server.url("/ml-100k.zip"), cache_dir=tmp_path, expected_sha256=GOOD_SHA)
    assert out == tmp_path / "ml-100k"
    assert (out / "u.data").read_bytes() == U_DATA
    assert (out / "u.item").read_bytes() == U_ITEM
    # Only the two files: no README, no leftover temp files.
    assert files_under(tmp_path) == {"ml-100k/u.data", "ml-100k/u.item"}


def test_second_call_uses_cache_without_network(server: Server, tmp_path: Path) -> None:
    server.routes["/ml-100k.zip"] = (200, GOOD_ZIP)
    url = server.url("/ml-100k.zip")
    first = fetch_ml_100k(url=url, cache_dir=tmp_path, expected_sha256=GOOD_SHA)
    assert server.requests == ["/ml-100k.zip"]
    server.stop()
    second = fetch_ml_100k(url=url, cache_dir=tmp_path, expected_sha256=GOOD_SHA, timeout=1)
    assert second == first
    assert (second / "u.data").read_bytes() == U_DATA


def test_corrupted_cache_is_discarded_and_downloaded_again(server: Server, tmp_path: Path) -> None:
    server.routes["/ml-100k.zip"] = (200, GOOD_ZIP)
    url = server.url("/ml-100k.zip")
    out = fetch_ml_100k(url=url, cache_dir=tmp_path, expected_sha256=GOOD_SHA)
    (out / "u.data").write_bytes(b"truncated")
    fetch_ml_100k(url=url, cache_dir=tmp_path, expected_sha256=GOOD_SHA)
    assert len(server.requests) == 2
    assert (out / "u.data").read_bytes() == U_DATA


@pytest.mark.parametrize("bad_file", ["u.data", "u.item"])
def test_checksum_mismatch(server: Server, tmp_path: Path, bad_file: str) -> None:
    server.routes["/ml-100k.zip"] = (200, GOOD_ZIP)
    expected = {**GOOD_SHA, bad_file: "0" * 64}
    with pytest.raises(DatasetError) as err:
        fetch_ml_100k(url=server.url("/ml-100k.zip"), cache_dir=tmp_path, expected_sha256=expected)
    msg = str(err.value)
    assert bad_file in msg
    assert "0" * 64 in msg and GOOD_SHA[bad_file] in msg
    assert "discarded" in msg
    # Nothing is moved into place unless *every* file verifies; no temp files left.
    assert files_under(tmp_path) == set()


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[float | None]:
    """The timeout of every TCP connection urllib opens (``http.client`` connects through ``socket.create_connection``)."""
    opened: list[float | None] = []
    real = socket.create_connection

    def create_connection(address, *args, **kwargs):
        opened.append(args[0] if args else kwargs.get("timeout"))
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", create_connection)
    return opened


def _root_cause(error: DatasetError) -> BaseException:
    """The OSError behind a failed download (urllib wraps some in ``URLError.reason``)."""
    cause = error.__cause__
    return cause.reason if isinstance(cause, urllib.error.URLError) else cause


def test_connection_refused_fails_at_once(tmp_path: Path, closed_port_url: str, connections: list) -> None:
    # One connection attempt, refused: no retry, and not the path of the 30 s timeout.
    with pytest.raises(DatasetError) as err:
        fetch_ml_100k(url=closed_port_url, cache_dir=tmp_path, expected_sha256=GOOD_SHA, timeout=30)
    assert connections == [30]
    assert isinstance(_root_cause(err.value), ConnectionRefusedError)
    msg = str(err.value)
    assert closed_port_url in msg and "no response within" not in msg
    assert "--input" in msg and "--dataset synthetic" in msg
    assert files_under(tmp_path) == set()


def test_unresponsive_server_times_out(tmp_path: Path, connections: list) -> None:
    # A listening socket that never answers: connect succeeds, the read must time out.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/ml-100k.zip"
        with pytest.raises(DatasetError) as err:
            fetch_ml_100k(url=url, cache_dir=tmp_path, expected_sha256=GOOD_SHA, timeout=0.5)
    # the given timeout is the socket's, once: the read ended by it, not by a retry or a refusal
    assert connections == [0.5]
    assert isinstance(_root_cause(err.value), TimeoutError)
    assert "no response within 0.5 s" in str(err.value)
    assert "--input" in str(err.value)
    assert files_under(tmp_path) == set()


def test_http_404(server: Server, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="HTTP 404") as err:
        fetch_ml_100k(url=server.url("/missing.zip"), cache_dir=tmp_path, expected_sha256=GOOD_SHA)
    assert "--dataset synthetic" in str(err.value)
    assert files_under(tmp_path) == set()


def test_corrupt_body(server: Server, tmp_path: Path) -> None:
    server.routes["/ml-100k.zip"] = (200, b"<html>this is not a zip</html>")
    with pytest.raises(DatasetError, match="not a valid zip archive"):
        fetch_ml_100k(url=server.url("/ml-100k.zip"), cache_dir=tmp_path, expected_sha256=GOOD_SHA)
    assert files_under(tmp_path) == set()


def test_missing_member(server: Server, tmp_path: Path) -> None:
    server.routes["/ml-100k.zip"] = (200, make_zip({"ml-100k/u.data": U_DATA}))
    with pytest.raises(DatasetError, match="no member ml-100k/u.item"):
        fetch_ml_100k(url=server.url("/ml-100k.zip"), cache_dir=tmp_path, expected_sha256=GOOD_SHA)
    assert files_under(tmp_path) == set()


def test_path_traversal_members_are_not_written(server: Server, tmp_path: Path) -> None:
    cache = tmp_path / "a" / "cache"
    evil = make_zip(
        {
            "ml-100k/u.data": U_DATA,
            "ml-100k/u.item": U_ITEM,
            "../evil": b"pwned",
            "ml-100k/../../../evil2": b"pwned",
            f"{tmp_path}/evil3": b"pwned",  # absolute name, still inside tmp_path
        }
    )
    server.routes["/ml-100k.zip"] = (200, evil)
    out = fetch_ml_100k(url=server.url("/ml-100k.zip"), cache_dir=cache, expected_sha256=GOOD_SHA)
    assert (out / "u.data").read_bytes() == U_DATA
    assert files_under(tmp_path) == {"a/cache/ml-100k/u.data", "a/cache/ml-100k/u.item"}


def test_traversal_name_does_not_satisfy_a_member(server: Server, tmp_path: Path) -> None:
    # "ml-100k/../u.item" must not be taken for ml-100k/u.item (nor written anywhere).
    server.routes["/ml-100k.zip"] = (200, make_zip({"ml-100k/u.data": U_DATA, "ml-100k/../u.item": U_ITEM}))
    cache = tmp_path / "cache"
    with pytest.raises(DatasetError, match="no member ml-100k/u.item"):
        fetch_ml_100k(url=server.url("/ml-100k.zip"), cache_dir=cache, expected_sha256=GOOD_SHA)
    assert files_under(tmp_path) == set()


def test_unwritable_cache_dir(tmp_path: Path, closed_port_url: str) -> None:
    # A regular file where the cache dir should be (works even when running as root).
    blocker = tmp_path / "cache"
    blocker.write_bytes(b"")
    with pytest.raises(DatasetError, match="Cannot write the dataset cache"):
        fetch_ml_100k(url=closed_port_url, cache_dir=blocker, expected_sha256=GOOD_SHA)


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ALS_SPARK_CACHE", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("ALS_SPARK_CACHE")
    assert default_cache_dir() == tmp_path / "xdg" / "als-spark"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "als-spark"
