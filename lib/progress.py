"""A progress bar for long management commands (prune, recover, seed).

On a terminal it redraws one line in place; into a file or a pipe (cron, CI, a log system)
it writes a plain line every few seconds instead, so logs stay readable.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from types import FrameType
from typing import TextIO

from django.core.management.base import OutputWrapper

WIDTH = 30


class ProgressBar:
    def __init__(
        self,
        stream: TextIO,
        label: str,
        total: float | None = None,
        *,
        enabled: bool = True,
        every: float = 5.0,
    ) -> None:
        """
        Args:
            stream: where to draw (a command's stderr, so its stdout stays the summary).
            label: what is being counted, e.g. "attempts".
            total: the value `update` reaches at the end, if known.
            enabled: False draws nothing (e.g. --verbosity 0).
            every: seconds between plain lines when not on a terminal.
        """
        self.stream = stream
        # A command's OutputWrapper ends every write with a newline unless told otherwise.
        self.write = (
            partial(stream.write, ending="") if isinstance(stream, OutputWrapper) else stream.write
        )
        self.label = label
        self.total = total
        self.enabled = enabled
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.every = every if not self.tty else 0.1
        self.drawn_at = -float("inf")
        self.line = ""

    def update(self, done: float, detail: str = "", *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self.drawn_at < self.every:
            return
        self.drawn_at = now
        self.line = self.render(done, detail)
        if self.tty:
            self.write("\r\033[K" + self.line)
        else:
            self.write(self.line + "\n")
        self.stream.flush()

    def close(self, done: float, detail: str = "") -> None:
        """Draw the final state and end the line."""
        if not self.enabled:
            return
        line = self.render(done, detail)
        if self.tty:
            self.write("\r\033[K" + line + "\n")
        elif line != self.line:
            self.write(line + "\n")
        self.stream.flush()

    def render(self, done: float, detail: str) -> str:
        if not self.total:
            return f"{self.label}: {detail}".rstrip()
        fraction = max(0.0, min(1.0, done / self.total))
        filled = int(fraction * WIDTH)
        bar = "#" * filled + "-" * (WIDTH - filled)
        return f"{self.label:<10} [{bar}] {fraction:4.0%} {detail}".rstrip()


@contextmanager
def stop_requested_on_ctrl_c() -> Iterator[Callable[[], bool]]:
    """The first Ctrl-C asks a loop to stop after its current step; a second one stops at once.

    A KeyboardInterrupt can land between a batch's commit and the line that counts it, so
    a command that reports what it did lets the batch finish instead.

    Yields:
        A function telling whether Ctrl-C was pressed.
    """
    requested = False
    previous = signal.getsignal(signal.SIGINT)

    def handle(signum: int, frame: FrameType | None) -> None:
        nonlocal requested
        requested = True
        signal.signal(signal.SIGINT, previous)

    installed = threading.current_thread() is threading.main_thread()
    if installed:
        signal.signal(signal.SIGINT, handle)
    try:
        yield lambda: requested
    finally:
        if installed:
            signal.signal(signal.SIGINT, previous)
