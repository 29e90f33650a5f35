"""Run `oms serve` as a real subprocess on free ports, for integration tests."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

READY_FIX = re.compile(r"FIX listening on ([\d.]+):(\d+)")
READY_HTTP = re.compile(r"HTTP listening on ([\d.]+):(\d+)")


def audit_verify_ok(data: Path | str, timeout: float = 120) -> str:
    """Run `oms audit verify` on a stopped server's data folder, as an operator would; assert it
    exits 0 and return what it printed."""
    proc = subprocess.run([sys.executable, "-m", "oms_trading.cli", "audit", "verify", "--data-dir", str(data)],
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


class ServerProcess:
    def __init__(self, data_dir: Path, config: Path | None = None, extra: list[str] | None = None,
                 module: str = "oms_trading.cli", env: dict[str, str] | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.config = config
        self.extra = extra or []
        self.module = module          # tests/crash_launcher.py: the same server, with a fault injected
        self.env = env or {}
        self.proc: subprocess.Popen | None = None
        self.fix_port = self.http_port = 0
        self.lines: list[str] = []
        self.stderr_lines: list[str] = []

    def start(self, timeout: float = 180.0) -> "ServerProcess":
        cmd = [sys.executable, "-m", self.module, "serve", "--data-dir", str(self.data_dir),
               "--fix-port", "0", "--http-port", "0", *self.extra]
        if self.config is not None:
            cmd += ["--config", str(self.config)]
        env = dict(os.environ, PYTHONUNBUFFERED="1", **self.env)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"oms serve exited {self.proc.returncode}: {''.join(self.stderr_lines)[-3000:]}")
                continue
            self.lines.append(line)
            if m := READY_FIX.search(line):
                self.fix_port = int(m.group(2))
            if m := READY_HTTP.search(line):
                self.http_port = int(m.group(2))
            if self.fix_port and self.http_port:
                threading.Thread(target=self._drain_stdout, daemon=True).start()
                return self
        self.kill()
        raise RuntimeError("oms serve did not print its ready lines in time")

    def _drain_stdout(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    def _drain_stderr(self) -> None:
        for line in self.proc.stderr:
            self.stderr_lines.append(line)

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
