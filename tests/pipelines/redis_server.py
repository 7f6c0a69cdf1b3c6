"""A real Redis server for tests: `redis-server` from PATH (`make redis` installs it; `make test`
runs that first), started on a free loopback port without persistence, stopped at the end.

A missing server fails the test, never skips it: CI must run the Redis tests.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

START_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class RedisServer:
    host: str
    port: int
    version: str

    @property
    def connection_string(self) -> str:
        """Feast's form: host:port[,db=N,...]."""
        return f"{self.host}:{self.port}"

    def client(self):
        import redis

        return redis.Redis(host=self.host, port=self.port)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def redis_server_binary() -> str:
    """`redis-server` from PATH (or /usr/bin). `make test` installs it first (`make redis`, from
    Debian's packages); a missing one fails the test, naming the target."""
    found = shutil.which("redis-server") or shutil.which("redis-server", path="/usr/bin:/usr/sbin")
    if not found:
        pytest.fail(
            "redis-server is not installed: run `make redis` (apt-get install redis-server), "
            "which `make test` runs first"
        )
    return found


@contextmanager
def running_redis(
    folder: Path, host: str = "127.0.0.1", password: str | None = None
) -> Iterator[RedisServer]:
    """A redis-server on a free port (no RDB snapshots, no AOF; its files in `folder`), up
    until the block ends; `password`: clients must give it (requirepass)."""
    import redis

    binary = redis_server_binary()
    port = free_port(host)
    log_file = folder / "redis-server.log"
    command = [
        binary,
        "--save",
        "",
        "--appendonly",
        "no",
        "--bind",
        host,
        "--port",
        str(port),
        "--daemonize",
        "no",
        "--dir",
        str(folder),
        *(["--requirepass", password] if password else []),
    ]
    with open(log_file, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        client = redis.Redis(host=host, port=port, socket_timeout=1.0, password=password)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"redis-server exited with {process.returncode} at start:\n"
                    f"{log_file.read_text()[-2000:]}"
                )
            try:
                if client.ping():
                    break
            except redis.ConnectionError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"redis-server on port {port} did not answer PING within 20 s")
            time.sleep(0.05)
        version = str(client.info("server")["redis_version"])
        client.close()
        yield RedisServer(host, port, version)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
