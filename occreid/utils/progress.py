"""Progress of long work (training epochs, feature extraction) with rate and ETA.

On a terminal it is a tqdm bar on stderr. When stderr is a file, a pipe or CI's log, a bar's carriage returns
would fill the log, so it prints sparse plain lines instead: one when the work ends, and one every
`OCCREID_PROGRESS_SECONDS` seconds (default 60) while it runs:

    query: 12/40 batches (30%), 3.1 batches/s, ETA 0:00:09
    epoch 2/16: 18/18 steps (100%) in 0:00:41, 0.44 steps/s, loss 3.12

    for batch in progress(loader, desc="query", unit="batches"):
        ...
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _interval() -> float:
    try:
        return float(os.environ.get("OCCREID_PROGRESS_SECONDS", "60"))
    except ValueError:
        return 60.0


class PlainProgress:
    """The non-terminal form: the same interface as the tqdm bar the code uses (iterate, update,
    set_postfix_str, write, close), printing a plain line at the end and at most every `interval` seconds."""

    def __init__(
        self,
        iterable: Iterable[Any] | None,
        total: int | None,
        desc: str,
        unit: str,
        stream: TextIO,
        interval: float | None = None,
    ) -> None:
        self.iterable = iterable
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.desc, self.unit, self.stream = desc, unit, stream
        self.interval = _interval() if interval is None else interval
        self.n = 0
        self.postfix = ""
        self.start = self.last = time.perf_counter()
        self.closed = False

    def __iter__(self) -> Iterator[Any]:
        try:
            for item in self.iterable or ():
                yield item
                self.update(1)
        finally:
            self.close()

    def __len__(self) -> int:
        return self.total or 0

    def line(self, final: bool = False) -> str:
        elapsed = time.perf_counter() - self.start
        rate = self.n / elapsed if elapsed > 0 else 0.0
        count = f"{self.n}/{self.total} {self.unit}" if self.total else f"{self.n} {self.unit}"
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        if final:
            timing = f" in {_clock(elapsed)}, {rate:.3g} {self.unit}/s"
        else:
            eta = (self.total - self.n) / rate if rate > 0 and self.total else None
            timing = f", {rate:.3g} {self.unit}/s" + (f", ETA {_clock(eta)}" if eta is not None else "")
        return f"{self.desc}: {count}{pct}{timing}" + (f", {self.postfix}" if self.postfix else "")

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.perf_counter()
        if now - self.last >= self.interval and (self.total is None or self.n < self.total):
            self.last = now
            print(self.line(), file=self.stream, flush=True)

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        del refresh
        self.postfix = text

    def write(self, text: str) -> None:
        print(text, flush=True)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.n:
            print(self.line(final=True), file=self.stream, flush=True)


class _NoProgress(PlainProgress):
    def update(self, n: int = 1) -> None:
        self.n += n

    def close(self) -> None:
        self.closed = True


def progress(
    iterable: Iterable[Any] | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    enabled: bool = True,
    stream: TextIO | None = None,
    leave: bool = False,
) -> Any:
    """A tqdm bar when `stream` (default stderr) is a terminal, else a PlainProgress; with enabled=False an
    object with the same methods that prints nothing (e.g. on DDP ranks other than 0)."""
    stream = stream or sys.stderr
    if not enabled:
        return _NoProgress(iterable, total, desc, unit, stream)
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        from tqdm import tqdm

        return tqdm(
            iterable, total=total, desc=desc, unit=f" {unit}", leave=leave, file=stream, dynamic_ncols=True
        )
    return PlainProgress(iterable, total, desc, unit, stream)
