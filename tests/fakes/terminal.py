"""A command run on a real pseudo-terminal, as a person runs it: isatty() is true for its stdin,
stdout and stderr, answers are typed, and Ctrl-C is SIGINT to its whole process group (what the
terminal does), so child processes get it too."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import time
from collections.abc import Sequence


class Terminal:
    """`python -m ...` on a pty; `expect` waits for output, `type` answers, `ctrl_c` interrupts."""

    def __init__(self, argv: Sequence[str], *, env: dict[str, str], cwd: str) -> None:
        master, slave = pty.openpty()
        self.master = master
        # A shell starts programs with Ctrl-C's default action even when it was started in the
        # background (where SIGINT is ignored and the ignoring would be inherited).
        self.proc = subprocess.Popen(list(argv), stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd,
                                     start_new_session=True, close_fds=True,
                                     preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        os.close(slave)
        self.output = ""

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return False
        try:
            data = os.read(self.master, 65536)
        except OSError:  # the other side closed (the process ended)
            return False
        if not data:
            return False
        self.output += data.decode(errors="replace").replace("\r\n", "\n")
        return True

    def expect(self, pattern: str, timeout: float = 300) -> re.Match[str]:
        """Wait until the output matches `pattern` (a regex); fail with what was seen."""
        end = time.monotonic() + timeout
        while True:
            m = re.search(pattern, self.output)
            if m:
                return m
            if time.monotonic() > end:
                raise AssertionError(f"timed out waiting for {pattern!r}; output so far:\n{self.output}")
            if not self._read(0.2) and self.proc.poll() is not None:
                while self._read(0.1):
                    pass
                m = re.search(pattern, self.output)
                if m:
                    return m
                raise AssertionError(f"exited ({self.proc.returncode}) before {pattern!r}; output:\n{self.output}")

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def ctrl_c(self) -> None:
        os.killpg(self.proc.pid, signal.SIGINT)

    def wait(self, timeout: float = 120) -> int:
        """Wait for the exit, reading the rest of the output; returns the exit code."""
        end = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > end:
                self.proc.kill()
                raise AssertionError(f"did not exit; output:\n{self.output}")
            self._read(0.2)
        while self._read(0.1):
            pass
        return self.proc.returncode

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        os.close(self.master)
