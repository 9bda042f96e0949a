"""The partnerloop instance a simulation drives: one already running (its URL
and an admin API key), or one started here on a temporary SQLite data
directory (`partnerloop serve` as a child process, stopped by its pid at the
end), so a merchant can rehearse without touching their own data.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import httpx

from partnerloop.access import service as access
from partnerloop.access.service import Scope
from partnerloop.core import migrate
from partnerloop.core.clock import utcnow
from partnerloop.core.db import make_engine, transaction
from partnerloop.core.settings import Settings, ensure_secret_key
from partnerloop.runtime import build_runtime

START_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class Target:
    url: str
    api_key: str


class InstanceError(Exception):
    """The instance could not be started or reached."""


def wait_healthy(
    url: str, *, timeout: float, process: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise InstanceError(f"partnerloop serve exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise InstanceError(f"{url}/healthz did not answer 200 within {timeout:.0f} s")


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class LocalInstance:
    """`partnerloop serve` (with its in-process worker) on a fresh SQLite file."""

    def __init__(self, *, host: str = "127.0.0.1", keep: bool = False) -> None:
        self.host = host
        self.keep = keep
        self.data_dir = Path(tempfile.mkdtemp(prefix="partnerloop-simulate-"))
        self.log_path = self.data_dir / "serve.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.target: Target | None = None

    def _env(self, port: int) -> dict[str, str]:
        # None of the caller's PARTNERLOOP_* settings: never their database.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PARTNERLOOP_")}
        env.update(
            PARTNERLOOP_DATA_DIR=str(self.data_dir),
            PARTNERLOOP_PUBLIC_URL=f"http://{self.host}:{port}",
            PARTNERLOOP_LOG_LEVEL="warning",
        )
        return env

    def start(self) -> Target:
        port = _free_port(self.host)
        env = self._env(port)
        settings = Settings.from_env(env)
        ensure_secret_key(settings)
        engine = make_engine(settings.database_url)
        try:
            migrate.upgrade(engine)
        finally:
            engine.dispose()
        runtime = build_runtime(settings)
        try:
            with transaction(runtime.sessions) as session:
                key = access.create(
                    session, name="simulate", scope=Scope.admin, program_id=None, now=utcnow()
                ).secret
        finally:
            runtime.close()
        with self.log_path.open("wb") as log:
            # Our own interpreter and fixed arguments: nothing from the user is run.
            self.process = subprocess.Popen(  # noqa: S603
                [
                    sys.executable,
                    "-c",
                    "from partnerloop.cli import main; main()",
                    "serve",
                    "--host",
                    self.host,
                    "--port",
                    str(port),
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        url = f"http://{self.host}:{port}"
        try:
            wait_healthy(url, timeout=START_TIMEOUT_SECONDS, process=self.process)
        except InstanceError as error:
            raise InstanceError(f"{error}; its log:\n{self.log_tail()}") from None
        self.target = Target(url=url, api_key=key)
        return self.target

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None
        if not self.keep:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> LocalInstance:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()
