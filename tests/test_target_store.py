"""TargetStore (a target's folder, its files and its protocol) and Target.push, without measuring.

The store is the one place that spells a target's folder (``':'`` in a name becomes ``'_'``)
and file names; the load paths below (predictor, cost model, specialize's protocol, the
``latency`` command's lookup) all go through it.
"""
from __future__ import annotations

import json

import pytest

from device_bench import Protocol
from edgeeas import latency as L
from edgeeas.adb_target import REMOTE_DIR, AdbTarget
from edgeeas.errors import EdgeeasUsageError
from edgeeas.targets import HostTarget, Target, TargetError, TargetStore, resolve_target
from latency_fixtures import TINY

SERIAL = "192.168.1.20:5555"


def _table(directory, protocol: Protocol) -> L.LatencyTable:
    """A table with every row of the tiny space at 1 ms median and 2 ms p90 (nothing measured)."""
    table = L.LatencyTable.open(directory, TINY, protocol, {"kind": "test"})

    class M:
        count, std_ms, runs_us, attempts, command = 10, 0.1, (), 1, "test"
        median_ms, p90_ms = 1.0, 2.0

    for r in L.table_rows(TINY):
        table.put_row(r.key, r.kind, M)
    return table


def test_folder_of_a_name_with_a_colon(tmp_path):
    store = TargetStore.named(SERIAL, tmp_path)
    assert store.directory == tmp_path / "192.168.1.20_5555" and store.name == SERIAL
    assert TargetStore.folder_name(SERIAL) == "192.168.1.20_5555"
    assert TargetStore.folder_name("pixel") == "pixel"
    # every target kind takes its folder from the store
    assert HostTarget(SERIAL, root=tmp_path).directory == store.directory
    assert HostTarget(SERIAL, root=tmp_path).store.directory == store.directory
    assert AdbTarget(SERIAL, SERIAL, root=tmp_path, device=object()).directory == store.directory


def test_root_defaults_to_edgeeas_targets(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEEAS_TARGETS", str(tmp_path / "elsewhere"))
    assert TargetStore.named("a:b").directory == tmp_path / "elsewhere" / "a_b"
    assert HostTarget().directory == tmp_path / "elsewhere" / "host"


def test_file_paths(tmp_path):
    s = TargetStore(tmp_path / "t")
    assert s.name == "t"
    assert s.table_path == tmp_path / "t" / "latency.sqlite"
    assert s.predictor_path == tmp_path / "t" / "predictor.json"
    assert s.plot_path == tmp_path / "t" / "predicted_vs_measured.png"
    assert s.fingerprint_path == tmp_path / "t" / "fingerprint.json"
    assert s.protocol_path == tmp_path / "t" / "protocol.json"
    assert L.LatencyTable.FILENAME == s.table_path.name
    assert not s.exists()
    s.write_setup({"kind": "host"}, Protocol(threads=2))
    assert s.exists()
    assert json.loads(s.fingerprint_path.read_text()) == {"kind": "host"}
    assert json.loads(s.protocol_path.read_text())["threads"] == 2


def test_find_takes_a_folder_or_a_name(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEEAS_TARGETS", str(tmp_path / "targets"))
    d = tmp_path / "some" / "folder"
    _table(d, Protocol())
    assert TargetStore.find(d).directory == d
    assert TargetStore.find(str(d)).directory == d
    assert TargetStore.find(SERIAL).directory == tmp_path / "targets" / "192.168.1.20_5555"
    # a folder without a table or predictor is a name, not a store
    (tmp_path / "empty").mkdir()
    assert TargetStore.find(tmp_path / "empty", tmp_path / "targets").directory == \
        tmp_path / "targets" / str(tmp_path / "empty")


def test_protocol_from_predictor_else_table_else_default(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEEAS_TARGETS", str(tmp_path))
    store = TargetStore.named(SERIAL)
    assert store.protocol() == Protocol()                       # nothing there
    _table(store.directory, Protocol(threads=3, statistic="p90"))
    assert store.protocol() == Protocol(threads=3, statistic="p90")   # the table's
    store.predictor_path.write_text(json.dumps({"protocol": Protocol(threads=2).to_dict()}))
    assert store.protocol() == Protocol(threads=2)              # the predictor wins
    store.predictor_path.write_text("{not json")
    assert store.protocol().threads == 3                        # unreadable predictor: the table's
    store.table_path.write_bytes(b"garbage, not sqlite" * 100)
    assert store.protocol() == Protocol()                       # unreadable both: the default

    from edgeeas.specialize import target_protocol

    store.predictor_path.write_text(json.dumps({"protocol": Protocol(threads=4).to_dict()}))
    assert target_protocol(SERIAL).threads == 4


def test_statistic_written_once():
    assert L.statistic_column(Protocol()) == "median_ms"
    assert L.statistic_column(Protocol(statistic="p90")) == "p90_ms"
    assert L.statistic_column({"statistic": "p90"}) == "p90_ms"
    assert L.statistic_column({}) == L.statistic_column(None) == "median_ms"


def test_predictor_and_cost_model_find_a_colon_named_target(tmp_path, monkeypatch):
    """The readers go through the store: a bare table under the p90 protocol is summed in p90."""
    monkeypatch.setenv("EDGEEAS_TARGETS", str(tmp_path))
    _table(TargetStore.named(SERIAL).directory, Protocol(statistic="p90"))
    pred = L.LatencyPredictor.load(TargetStore.named(SERIAL))
    assert pred.row_ms("stem") == 2.0 and pred.target == "192.168.1.20_5555"
    a = TINY.smallest()
    assert pred.predict(a) == pytest.approx(2.0 * (2 + len(list(TINY.block_specs(a)))))

    from edgeeas.search.cost import load_cost

    cost, name = load_cost(TINY, SERIAL)
    assert name == SERIAL and cost.predict(a) == pred.predict(a)


def test_host_push_copies_a_folder_atomically(tmp_path):
    src = tmp_path / "model"
    src.mkdir()
    for f, text in (("model.tflite", "m"), ("manifest.json", "{}"), ("skip.txt", "x")):
        (src / f).write_text(text)
    t = resolve_target("host")
    assert t.is_local and not AdbTarget.is_local
    where = t.push(src, "vehicles_1/3ms", root=tmp_path / "deploy", files=["model.tflite", "manifest.json"])
    dest = tmp_path / "deploy" / "vehicles_1" / "3ms"
    assert where == str(dest)
    assert sorted(p.name for p in dest.iterdir()) == ["manifest.json", "model.tflite"]
    # again, with other content: the folder is replaced, nothing is left beside it
    (src / "model.tflite").write_text("m2")
    t.push(src, "vehicles_1/3ms", root=tmp_path / "deploy", files=["model.tflite"])
    assert [p.name for p in dest.iterdir()] == ["model.tflite"] and (dest / "model.tflite").read_text() == "m2"
    assert [p.name for p in dest.parent.iterdir()] == ["3ms"]
    # a whole folder (every file), and one file
    t.push(src, "all", root=tmp_path / "deploy")
    assert sorted(p.name for p in (tmp_path / "deploy" / "all").iterdir()) == \
        ["manifest.json", "model.tflite", "skip.txt"]
    assert t.push(src / "skip.txt", "one/skip.txt", root=tmp_path / "deploy") == \
        str(tmp_path / "deploy" / "one" / "skip.txt")
    assert [p.name for p in (tmp_path / "deploy" / "one").iterdir()] == ["skip.txt"]


def test_host_push_defaults_to_deploy_and_refuses_nonsense(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "f.bin").write_bytes(b"1")
    assert HostTarget().push(tmp_path / "f.bin", "x/f.bin") == "deploy/x/f.bin"
    assert (tmp_path / "deploy" / "x" / "f.bin").read_bytes() == b"1"
    with pytest.raises(TargetError, match="does not exist"):
        HostTarget().push(tmp_path / "missing", "x")
    with pytest.raises(EdgeeasUsageError, match="applies to a folder"):
        HostTarget().push(tmp_path / "f.bin", "x", files=["f.bin"])


def test_adb_push_lands_on_the_device(peer, tmp_path):
    src = tmp_path / "model"
    src.mkdir()
    (src / "model.tflite").write_bytes(b"tflite")
    (src / "manifest.json").write_text("{}")
    t = resolve_target(adb_serial=peer.serial)
    assert isinstance(t, Target) and not t.is_local
    where = t.push(src, "vehicles_1/3ms", files=["model.tflite", "manifest.json"])
    assert where == f"{peer.serial}:{REMOTE_DIR}/vehicles_1/3ms"
    on_device = tmp_path / "device0" / "edgeeas" / "vehicles_1" / "3ms"
    assert sorted(p.name for p in on_device.iterdir()) == ["manifest.json", "model.tflite"]
    assert (on_device / "model.tflite").read_bytes() == b"tflite"
    assert t.push(src / "manifest.json", "one/m.json") == f"{peer.serial}:{REMOTE_DIR}/one/m.json"
    assert [p.name for p in (tmp_path / "device0" / "edgeeas" / "one").iterdir()] == ["m.json"]
