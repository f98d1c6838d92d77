"""Atomic writes and manifests."""

from __future__ import annotations

import pytest

from reldistill.artifacts import atomic_path, read_json, read_manifest, write_json, write_manifest
from reldistill.run_layout import RunDir
from reldistill.errors import UserError


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    f = tmp_path / "a.json"
    write_json(f, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(f) as tmp:
            tmp.write_text("{half")
            raise RuntimeError("crash")
    assert read_json(f) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_atomic_directory_swap(tmp_path):
    d = tmp_path / "index"
    for v in (1, 2):
        with atomic_path(d) as tmp:
            tmp.mkdir()
            (tmp / "x.txt").write_text(str(v))
    assert (d / "x.txt").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index"]


def test_manifest_roundtrip_and_kind_check(tmp_path):
    write_manifest(tmp_path, "teacher", config={"lr": 1e-5})
    m = read_manifest(tmp_path, "teacher")
    assert m["config"] == {"lr": 1e-5} and "torch" in m["versions"]
    with pytest.raises(UserError, match="not a 'student'"):
        read_manifest(tmp_path, "student")
    with pytest.raises(UserError, match="no manifest.json"):
        read_manifest(tmp_path / "nope")


def test_corrupt_json_is_user_error(tmp_path):
    (tmp_path / "r.json").write_text('{"a": ')
    with pytest.raises(UserError, match="not valid JSON"):
        read_json(tmp_path / "r.json")


def test_rundir(tmp_path):
    with pytest.raises(UserError):
        RunDir(tmp_path / "missing")
    run = RunDir(tmp_path / "r", create=True)
    assert run.teacher == tmp_path / "r" / "teacher" and not run.done("teacher")
    write_manifest(run.teacher, "teacher")
    assert run.done("teacher")
