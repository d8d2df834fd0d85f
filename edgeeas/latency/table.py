"""A target's latency table: SQLite, one committed transaction per measured figure.

``targets/<name>/latency.sqlite`` (:attr:`edgeeas.targets.TargetStore.table_path`) holds::

    meta     (key, value JSON)   format, space, protocol, fingerprint, created, target, measured_protocol
    rows     one per table row   key, kind, count, median_ms, p90_ms, std_ms, runs_us, measured_at, ...
    subnets  one per (arch, K)   median_ms, p90_ms, ..., rows_sum_ms, predicted_ms (held-out)

Every measured row is committed on its own as the target reports it, so killing ``bench``
at any moment loses no measured row and a rerun measures only what is missing.  A table
keeps one search space and one protocol: opening it with others is a
:class:`TableMismatchError`.
"""
from __future__ import annotations

import json
import sqlite3
import threading
from datetime import datetime, timezone
from pathlib import Path

from ..space import Arch, SearchSpace
from ..targets import TargetStore
from .errors import LatencyError, TableMismatchError

__all__ = ["FORMAT", "LatencyTable", "statistic_column"]

FORMAT = "edgeeas-latency/1"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def statistic_column(protocol) -> str:
    """The figure a protocol's tables and predictors use: ``"p90_ms"`` when its statistic is
    ``"p90"``, else ``"median_ms"`` (the default, also for ``None`` or a protocol without one).

    Args:
        protocol: a :class:`device_bench.Protocol`, its ``to_dict()`` (as stored in a table's
            meta or a ``predictor.json``), or ``None``.
    """
    if isinstance(protocol, dict):
        statistic = protocol.get("statistic")
    else:
        statistic = getattr(protocol, "statistic", "median")
    return "p90_ms" if statistic == "p90" else "median_ms"


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rows (
    key TEXT PRIMARY KEY, kind TEXT NOT NULL, count INTEGER NOT NULL,
    median_ms REAL NOT NULL, p90_ms REAL NOT NULL, std_ms REAL NOT NULL,
    runs_us TEXT NOT NULL, measured_at TEXT NOT NULL, attempts INTEGER NOT NULL, command TEXT);
CREATE TABLE IF NOT EXISTS subnets (
    arch TEXT NOT NULL, num_classes INTEGER NOT NULL, median_ms REAL NOT NULL, p90_ms REAL NOT NULL,
    std_ms REAL NOT NULL, count INTEGER NOT NULL, rows_sum_ms REAL, predicted_ms REAL,
    measured_at TEXT NOT NULL, attempts INTEGER NOT NULL, command TEXT,
    PRIMARY KEY (arch, num_classes));
"""

# Protocol fields that change what a figure means; a table keeps one value of each.
_PROTOCOL_KEYS = ("runner", "runner_version", "interpreter", "interpreter_version", "threads", "cpu_mask",
                  "warmup_runs", "num_runs", "min_secs", "warmup_min_secs", "statistic", "use_xnnpack", "passes")


class LatencyTable:
    """``targets/<name>/latency.sqlite``.  Every write is its own transaction.

    Args:
        path: the SQLite file (created on first use); :meth:`open` finds it in a target's
            folder and checks its space and protocol.

    Raises:
        LatencyError: the file cannot be opened or is not a latency table.
    """

    FILENAME = TargetStore.TABLE

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, timeout=60)
            conn.execute("PRAGMA synchronous=FULL")
            return conn
        except sqlite3.Error as e:
            raise LatencyError(f"cannot open latency table {self.path}: {e}") from None

    def _q(self, sql: str, args: tuple = (), *, many: bool = False) -> list:
        with self._lock:
            conn = self._connect()
            try:
                with conn:
                    cur = conn.executescript(sql) if many else conn.execute(sql, args)
                    return cur.fetchall()
            except sqlite3.DatabaseError as e:
                raise LatencyError(f"{self.path} is not a readable latency table ({e}): "
                                   f"move it away or rerun with --force") from None
            finally:
                conn.close()

    # -- opening ---------------------------------------------------------------------------
    @classmethod
    def open(cls, directory: Path, space: SearchSpace | None = None, protocol=None, fingerprint: dict | None = None,
             *, create: bool = True, force: bool = False, target_name: str = "") -> "LatencyTable":
        """Open (or create) the table of a target directory, checking it was measured for
        ``space`` under ``protocol``; ``force`` starts it afresh instead.

        Args:
            directory: the target's folder (:attr:`edgeeas.targets.Target.directory`).
            space, protocol: what the table must have been measured for (``None``: not checked);
                both are needed to create a table.
            fingerprint: stored in a new table's meta.
            create: ``False`` raises instead of creating a missing table.
            force: delete the table, ``predictor.json`` and the plot first (with ``create``).
            target_name: for the meta and the hint in errors (default: the folder's name).

        Raises:
            LatencyError: no table and ``create=False``; a file that is not a latency table.
            TableMismatchError: the table holds another search space or protocol.
        """
        directory = Path(directory)
        store = TargetStore(directory)
        path = store.table_path
        if force and create and path.exists():
            for p in (path, store.predictor_path, store.plot_path, Path(str(path) + "-journal")):
                if p.exists():
                    p.unlink()
        if not path.exists() and not create:
            raise LatencyError(f"no latency table at {path}: run `edgeeas bench --target "
                               f"{target_name or directory.name}` first")
        directory.mkdir(parents=True, exist_ok=True)
        table = cls(path)
        table._q(_SCHEMA, many=True)
        meta = table.meta()
        if create and "space" not in meta:
            if space is None or protocol is None:
                raise LatencyError(f"{path} has no metadata and cannot be created without a space and protocol")
            table.set_meta(format=FORMAT, space_name=space.name, space=space.to_dict(),
                           protocol=protocol.to_dict(), fingerprint=fingerprint or {}, created=_now(),
                           target=target_name or directory.name)
            return table
        if "space" not in meta:
            raise LatencyError(f"{path} is not a latency table (no metadata): move it away or rerun with --force")
        if space is not None:
            table.check_space(space)
        if protocol is not None:
            table.check_protocol(protocol)
        return table

    def meta(self) -> dict:
        """The ``meta`` table, each value decoded from JSON (space, protocol, fingerprint, ...)."""
        out = {}
        for k, v in self._q("SELECT key, value FROM meta"):
            try:
                out[k] = json.loads(v)
            except ValueError:
                out[k] = v
        return out

    def set_meta(self, **items) -> None:
        """Store ``items`` (JSON-encodable values) in ``meta``, replacing those keys, in one transaction."""
        with self._lock:
            conn = self._connect()
            try:
                with conn:
                    conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                                     [(k, json.dumps(v, sort_keys=True)) for k, v in items.items()])
            finally:
                conn.close()

    @property
    def space(self) -> SearchSpace:
        """The search space the table was measured for; :class:`LatencyError` if unreadable."""
        try:
            return SearchSpace.from_dict(self.meta()["space"])
        except (KeyError, TypeError, ValueError) as e:
            raise LatencyError(f"{self.path}: unreadable search space in the table ({e})") from None

    @property
    def statistic(self) -> str:
        """The column its figures are read from: ``"median_ms"`` or ``"p90_ms"`` (:func:`statistic_column`
        of the stored protocol)."""
        return statistic_column(self.meta().get("protocol"))

    def _hint(self) -> str:
        return ("use another target name (--name NAME) for the new table, or --force to discard this one")

    def check_space(self, space: SearchSpace) -> None:
        """Raise :class:`TableMismatchError` (naming up to two differing fields) unless the table
        was measured for ``space``."""
        stored = self.meta().get("space")
        if isinstance(stored, dict) and "num_classes" in stored:  # head rows are per head size: any num_classes
            stored = {**stored, "num_classes": space.num_classes}
        if stored != space.to_dict():
            name = stored.get("name") if isinstance(stored, dict) else stored
            diff = ""
            if isinstance(stored, dict):
                keys = [k for k in space.to_dict() if stored.get(k) != space.to_dict()[k]]
                diff = ", ".join(f"{k} {stored.get(k)} vs {space.to_dict()[k]}" for k in keys[:2])
            raise TableMismatchError(f"{self.path} holds a table for search space {name!r}, not {space.name!r}"
                                     f"{' (' + diff + ')' if diff else ''}: {self._hint()}")

    def check_protocol(self, protocol) -> None:
        """Raise :class:`TableMismatchError` unless the stored protocol matches ``protocol`` on
        every field that changes what a figure means (runner, interpreter, threads, runs, statistic ...)."""
        stored = self.meta().get("protocol") or {}
        want = protocol.to_dict()
        # tables from before passes existed were measured in one pass
        have = {**stored, "passes": stored.get("passes", 1)} if stored else stored
        diff = [f"{k} {have.get(k)!r} vs {want.get(k)!r}" for k in _PROTOCOL_KEYS
                if have.get(k) != want.get(k)]
        if diff:
            raise TableMismatchError(f"{self.path} was measured under another protocol ({'; '.join(diff[:3])}): "
                                     f"{self._hint()}")

    # -- rows ------------------------------------------------------------------------------
    def rows(self) -> dict[str, dict]:
        """``{key: {kind, count, median_ms, p90_ms, std_ms, runs_us (list, µs), measured_at,
        attempts, command}}`` for every measured row."""
        cols = ("key", "kind", "count", "median_ms", "p90_ms", "std_ms", "runs_us", "measured_at", "attempts",
                "command")
        out = {}
        for r in self._q(f"SELECT {', '.join(cols)} FROM rows"):
            d = dict(zip(cols, r))
            d["runs_us"] = json.loads(d["runs_us"])
            out[d["key"]] = d
        return out

    def put_row(self, key: str, kind: str, m) -> None:
        """Commit row ``key`` from a :class:`device_bench.Measurement` ``m`` (replacing it)."""
        self._q("INSERT OR REPLACE INTO rows (key, kind, count, median_ms, p90_ms, std_ms, runs_us, measured_at, "
                "attempts, command) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key, kind, int(m.count), float(m.median_ms), float(m.p90_ms), float(m.std_ms),
                 json.dumps([round(float(v), 3) for v in m.runs_us]), _now(), int(m.attempts), m.command))

    def subnets(self) -> list[dict]:
        """Every measured whole subnet, in measuring order: ``{arch, num_classes, median_ms,
        p90_ms, std_ms, count, rows_sum_ms, predicted_ms, measured_at, attempts, command}``."""
        cols = ("arch", "num_classes", "median_ms", "p90_ms", "std_ms", "count", "rows_sum_ms", "predicted_ms",
                "measured_at", "attempts", "command")
        return [dict(zip(cols, r)) for r in self._q(f"SELECT {', '.join(cols)} FROM subnets ORDER BY rowid")]

    def put_subnet(self, arch: Arch, num_classes: int, m, rows_sum_ms: float | None) -> None:
        """Commit subnet ``(arch, num_classes)`` from Measurement ``m``, with the sum of its
        rows (ms, ``None`` when rows are missing); its prediction is cleared until the next fit."""
        self._q("INSERT OR REPLACE INTO subnets (arch, num_classes, median_ms, p90_ms, std_ms, count, rows_sum_ms, "
                "predicted_ms, measured_at, attempts, command) VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?)",
                (str(arch), int(num_classes), float(m.median_ms), float(m.p90_ms), float(m.std_ms), int(m.count),
                 rows_sum_ms, _now(), int(m.attempts), m.command))

    def set_predicted(self, values: dict[tuple[str, int], float]) -> None:
        """Store the predicted ms of subnets, ``{(arch string, num_classes): ms}``, in one transaction."""
        with self._lock:
            conn = self._connect()
            try:
                with conn:
                    conn.executemany("UPDATE subnets SET predicted_ms = ? WHERE arch = ? AND num_classes = ?",
                                     [(v, a, k) for (a, k), v in values.items()])
            finally:
                conn.close()
