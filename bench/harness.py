"""What the signup, campaign and chaos benches share: a scratch PostgreSQL database, a Redis
database of their own, subprocesses in process groups that are always killed, RSS samples.

Nothing here is a benchmark by itself; every helper cleans up after itself even when the
bench fails (a `with` block, or `Processes.stop_all()` in a `finally`).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BIN = Path(sys.executable).parent
# The claim keys the test suite uses (tests/conftest.py), so tests and benches never share
# a Redis database.
REDIS_CLAIM = "actionlist:testdb:{}"


def postgres_server() -> str:
    return os.environ.get("BENCH_DATABASE_URL") or os.environ.get(
        "TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def redis_server() -> str:
    return os.environ.get("BENCH_REDIS_URL") or os.environ.get(
        "TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def sigterm_exits() -> None:
    """SIGTERM (a timeout in the smoke test, a Ctrl-C elsewhere) runs the `finally` blocks."""
    def _exit(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)


def load() -> str:
    """The load averages, as `uptime` prints them."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


@contextlib.contextmanager
def scratch_database(tag: str) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database (psycopg URL), dropped afterwards."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = make_url(postgres_server()).set(drivername="postgresql+psycopg")
    name = f"actionlist_bench_{tag}_{os.getpid()}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = base.set(database=name).render_as_string(hide_password=False)
    try:
        cfg = Config(str(ROOT / "alembic.ini"))
        cfg.attributes["url"] = url
        command.upgrade(cfg, "head")
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextlib.contextmanager
def redis_database(tag: str) -> Iterator[str]:
    """A Redis database of our own (claimed like the test suite claims its own), flushed
    before and after; yields its URL."""
    from redis import Redis

    server = redis_server()
    base = Redis.from_url(server)
    claim = f"bench-{tag}-{os.getpid()}"
    for number in range(15, 0, -1):
        if base.set(REDIS_CLAIM.format(number), claim, nx=True, ex=6 * 3600):
            break
    else:
        raise RuntimeError("no free Redis database for the bench")
    root = server.rstrip("/").rsplit("/", 1)[0] if server.count("/") > 2 else server
    url = f"{root.rstrip('/')}/{number}"
    own = Redis.from_url(url)
    own.flushdb()
    try:
        yield url
    finally:
        own.flushdb()
        own.close()
        if base.get(REDIS_CLAIM.format(number)) == claim.encode():
            base.delete(REDIS_CLAIM.format(number))
        base.close()


class Processes:
    """Subprocesses started in process groups of their own, so that killing one kills its
    children too (RQ's scheduler, gunicorn's workers)."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, args: Sequence[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log: IO[bytes]
        with (self.log_dir / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(list(args), env=env, cwd=ROOT, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        return proc

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.log_dir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    @staticmethod
    def kill_group(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
        """SIGTERM the group, SIGKILL it if it is still there after `timeout`."""
        self.kill_group(proc, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
        self.kill_group(proc, signal.SIGKILL)  # children that outlived their parent
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in list(self.procs):
            self.kill_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in list(self.procs):
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.1, deadline - time.monotonic()))
        for proc in list(self.procs):
            self.kill_group(proc, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        self.procs.clear()


def require_free_port(port: int) -> None:
    """Refuse to start when something (a bench still running) already listens on `port`:
    the bench would otherwise measure and count that process instead of its own."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            raise RuntimeError(f"port {port} is in use (another bench running?)") from exc


def wait_http(port: int, path: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process for port {port} exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing answered on port {port}")


def get_json(port: int, path: str, method: str = "GET") -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return json.loads(response.read() or b"null")
    finally:
        conn.close()


def post_json(port: int, path: str, body: bytes, headers: dict[str, str],
              timeout: float = 300) -> dict[str, Any]:
    """POST `body` on a new connection; the JSON answer (RuntimeError unless 200)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"{response.status}: {data[:300]!r}")
        return dict(json.loads(data or b"{}"))
    finally:
        conn.close()


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it (from /proc/<pid>/task/*/children)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                with contextlib.suppress(OSError):
                    todo.extend(int(c) for c in (task / "children").read_text().split())
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU the processes have used so far (those still alive), in seconds."""
    ticks = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def postgres_pids() -> list[int]:
    """Every PostgreSQL server process on this machine (backends, WAL writer, checkpointer…)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == "postgres":
                    pids.append(int(entry.name))
    return pids


def libpq(url: str) -> str:
    """A SQLAlchemy `postgresql+psycopg://` URL as psycopg itself takes it."""
    return url.replace("postgresql+psycopg://", "postgresql://")


def checkpoint(url: str) -> None:
    """Write out what earlier phases left in PostgreSQL's WAL (a seed writes gigabytes), so
    that no phase measured next pays for a checkpoint another phase caused."""
    import psycopg

    with psycopg.connect(libpq(url), autocommit=True) as conn:
        conn.execute("CHECKPOINT")


def rss_mb(pid: int) -> float:
    """VmRSS of one process in MB (0 when it is gone)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def sink_command(port: int, *extra: str) -> list[str]:
    """The sink's CLI (`actionlist sendgrid-sink`), run as a module so no app is built."""
    return [PYTHON, "-m", "sendgrid_sink", "--port", str(port), *extra]


def worker_env(database_url: str, redis_url: str, sink_port: int, **extra: str) -> dict[str, str]:
    return {
        **os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url,
        "QUEUE_PREFIX": "bench-", "SECRET_KEY": "bench-secret-key-used-only-by-the-benchmarks",
        "SENDGRID_API_KEY": "SG.bench", "SENDGRID_API_HOST": f"http://127.0.0.1:{sink_port}",
        "PUBLIC_URL": "https://lists.example.org", "MAIL_FROM": "Bench <alerts@example.org>",
        "ORG_NAME": "Bench Org", "ORG_POSTAL_ADDRESS": "1 Main St, Springfield, IL 62701",
        "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **extra,
    }
