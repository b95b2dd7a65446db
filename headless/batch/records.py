"""A shard's results: one JSON line per finished image, appended and flushed as it finishes.

Appending is what makes a shard resumable: a process killed at any moment leaves every
finished image on disk (flushed to the OS at once, fsynced every few seconds and at the end) and
at most one torn last line, which reading ignores. The first record of a file names the run it
belongs to; reading tolerates anything else a crash can leave.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

RECORDS_NAME = "records.jsonl"
DONE_NAME = "done.json"
PROGRESS_NAME = "progress.json"
INFO_NAME = "info.json"


def shard_dir(run_dir: str | Path, index: int) -> Path:
    return Path(run_dir) / "shards" / f"{index:05d}"


def read_records(path: str | Path) -> Iterator[dict[str, Any]]:
    """The complete records of a records file (a torn or damaged line is skipped)."""
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below, iterated lazily
    except FileNotFoundError:
        return
    with fh:
        for raw in fh:
            if not raw.endswith(b"\n"):
                break  # the torn last line of a killed writer
            try:
                rec = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if isinstance(rec, dict) and "key" in rec:
                yield rec


def done_keys(path: str | Path) -> set[str]:
    """Keys of the images a records file holds (finished, whether they succeeded or failed)."""
    return {rec["key"] for rec in read_records(path)}


class RecordWriter:
    """Appends records to a shard's file; a torn last line is cut off before the first append."""

    def __init__(self, path: str | Path, fsync_every_s: float = 5.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._trim_torn_tail()
        self._fh = open(self.path, "ab")  # noqa: SIM115 - closed by close()
        self._fsync_every = fsync_every_s
        self._last_sync = time.monotonic()

    def _trim_torn_tail(self) -> None:
        try:
            with open(self.path, "rb+") as fh:
                data_end = fh.seek(0, os.SEEK_END)
                if data_end == 0:
                    return
                pos = data_end
                while pos > 0:
                    step = min(4096, pos)
                    fh.seek(pos - step)
                    chunk = fh.read(step)
                    nl = chunk.rfind(b"\n")
                    if nl >= 0:
                        pos = pos - step + nl + 1
                        break
                    pos -= step
                if pos != data_end:
                    fh.truncate(pos)
        except FileNotFoundError:
            return

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, allow_nan=False, separators=(",", ":")) + "\n"
        self._fh.write(line.encode("utf-8"))
        self._fh.flush()  # in the OS at once: a killed process loses nothing finished
        if time.monotonic() - self._last_sync > self._fsync_every:
            os.fsync(self._fh.fileno())
            self._last_sync = time.monotonic()

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
