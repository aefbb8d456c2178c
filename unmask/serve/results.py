"""The server's own result store: heat-map and frame images by opaque id, bounded, never a client's path.

Why: a heat-map URL must not become a file-read primitive. A result id is 128 random bits
(``secrets.token_urlsafe(16)``), a file name is one the server wrote (checked against the entry's own list,
and against a strict pattern before that), and the path is built from those two only -- no client string is
ever joined to a directory. The store keeps at most ``max_results`` results; the oldest are deleted first.
"""

from __future__ import annotations

import re
import secrets
import shutil
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from unmask.serve.limits import private_dir

RESULT_ID = re.compile(r"^[A-Za-z0-9_-]{22}$")
FILE_NAME = re.compile(r"^(frame|heat|anomaly)_[0-9]{5}\.jpg$")


@dataclass
class ResultEntry:
    rid: str
    folder: Path
    files: set[str] = field(default_factory=set)
    body: dict | None = None  # the JSON answered for it (GET /v1/results/{id})


class ResultStore:
    def __init__(self, root: str | Path | None = None, max_results: int = 50) -> None:
        if max_results < 1:
            raise ValueError("max_results must be >= 1")
        self.root, self._owned = private_dir(root, "unmask-serve-results-")
        self.max_results = int(max_results)
        self._entries: "OrderedDict[str, ResultEntry]" = OrderedDict()
        self._lock = threading.Lock()

    def new(self) -> ResultEntry:
        """A fresh entry with its own private folder (evicts the oldest beyond ``max_results``)."""
        rid = secrets.token_urlsafe(16)
        folder = self.root / rid
        folder.mkdir(mode=0o700)
        entry = ResultEntry(rid, folder)
        with self._lock:
            self._entries[rid] = entry
            evicted = []
            while len(self._entries) > self.max_results:
                evicted.append(self._entries.popitem(last=False)[1])
        for e in evicted:
            shutil.rmtree(e.folder, ignore_errors=True)
        return entry

    def discard(self, entry: ResultEntry) -> None:
        with self._lock:
            self._entries.pop(entry.rid, None)
        shutil.rmtree(entry.folder, ignore_errors=True)

    def get(self, rid: str) -> ResultEntry | None:
        if not RESULT_ID.match(rid or ""):
            return None
        with self._lock:
            return self._entries.get(rid)

    def file(self, rid: str, name: str) -> Path | None:
        """The path of a file the server wrote for result ``rid``, or None (unknown id or name, evicted)."""
        entry = self.get(rid)
        if entry is None or not FILE_NAME.match(name or "") or name not in entry.files:
            return None
        path = entry.folder / name
        return path if path.is_file() else None

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def close(self) -> None:
        """Delete every result (and the root when the store made it as a temp dir)."""
        with self._lock:
            entries = list(self._entries.values())
            self._entries.clear()
        for e in entries:
            shutil.rmtree(e.folder, ignore_errors=True)
        if self._owned:
            shutil.rmtree(self.root, ignore_errors=True)


__all__ = ["FILE_NAME", "RESULT_ID", "ResultEntry", "ResultStore"]
