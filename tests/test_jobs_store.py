"""The state file: where it lives, finding jobs by ref / id / name, atomic and concurrent writes."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from orchestrator.backends.job_model import JobRecord
from orchestrator.jobs import store
from trainer.torch_free.errors import UserError


def record(backend: str = "slurm", job_id: str = "1", name: str = "tiny") -> JobRecord:
    return JobRecord(backend=backend, job_id=job_id, name=name, spec="/w/tiny.yaml",
                     spec_sha256="ab" * 32, rendered_dir="/w/.ft/rendered/tiny",
                     submitted_at="2026-11-23T11:00:00+00:00", workdir="/w",
                     log_files=[f"/w/tiny-{job_id}.out"])


@pytest.fixture(autouse=True)
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FT_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


def test_state_dir_precedence(tmp_path: Path) -> None:
    assert store.state_dir({"FT_STATE_DIR": "/a", "XDG_DATA_HOME": "/b"}) == Path("/a")
    assert store.state_dir({"XDG_DATA_HOME": "/b"}) == Path("/b/ft")
    assert store.state_dir({}) == Path.home() / ".local" / "share" / "ft"


def test_round_trip_and_lookup(state: Path) -> None:
    store.add_record(record("slurm", "7", "tiny"))
    store.add_record(record("dstack", "tiny", "tiny"))
    store.add_record(record("slurm", "9", "other"))
    assert store.find_record(None).ref == "slurm:9"  # newest
    assert store.find_record("slurm:7").job_id == "7"
    assert store.find_record("7").ref == "slurm:7"
    assert store.find_record("tiny").ref == "dstack:tiny"  # id beats name
    assert store.find_record("other").ref == "slurm:9"
    saved = json.loads((state / "jobs.json").read_text())
    assert saved["version"] == 1 and [j["job_id"] for j in saved["jobs"]] == ["7", "tiny", "9"]
    assert saved["jobs"][0]["log_files"] == ["/w/tiny-7.out"]
    assert sorted(p.name for p in state.iterdir()) == ["jobs.json", "jobs.json.lock"]


def test_same_id_on_two_backends_is_ambiguous() -> None:
    store.add_record(record("slurm", "3"))
    store.add_record(record("skypilot", "3"))
    with pytest.raises(UserError, match=r"ambiguous: say which backend \(skypilot:3, slurm:3\)"):
        store.find_record("3")
    assert store.find_record("skypilot:3").backend == "skypilot"


def test_a_resubmitted_id_replaces_the_old_record() -> None:
    store.add_record(record("slurm", "3", "old"))
    store.add_record(record("slurm", "3", "new"))
    assert [r.name for r in store.load_records()] == ["new"]


def test_empty_unknown_and_damaged(state: Path) -> None:
    with pytest.raises(UserError, match="ft has launched no jobs yet"):
        store.find_record(None)
    store.add_record(record())
    with pytest.raises(UserError, match=r"no job 'nope' in ft's job list \(recent: slurm:1\)"):
        store.find_record("nope")
    (state / "jobs.json").write_text("{not json")
    with pytest.raises(UserError, match="is damaged"):
        store.load_records()


def test_unknown_keys_from_a_newer_ft_are_ignored(state: Path) -> None:
    state.mkdir(parents=True)
    data = {"version": 1, "jobs": [{**record().to_json(), "added_later": True}]}
    (state / "jobs.json").write_text(json.dumps(data))
    assert store.load_records() == [record()]


def test_a_record_from_before_backend_owned_fields_still_loads(state: Path) -> None:
    """An ft that kept SkyPilot's cluster / managed flag as top-level keys of every record
    wrote this; they load as the backend's own fields (JobRecord.extra), which it reads."""
    from orchestrator.backends.skypilot import BACKEND as SKYPILOT

    state.mkdir(parents=True)
    old = {key: value for key, value in record("skypilot", "5").to_json().items()
           if key != "extra"}
    jobs = [{**old, "cluster": "ftcap", "managed": False},
            {**old, "job_id": "6", "cluster": None, "managed": True}]
    (state / "jobs.json").write_text(json.dumps({"version": 1, "jobs": jobs}))
    on_cluster, managed = store.load_records()
    assert on_cluster.extra == {"cluster": "ftcap", "managed": False}
    assert SKYPILOT.details(on_cluster) == ["cluster: ftcap  (`sky down ftcap` when done)"]
    assert SKYPILOT.details(managed) == ["controller log: sky jobs logs --controller 6"]
    store.add_record(record("slurm", "7"))  # rewritten: the fields keep their values
    assert [r.extra for r in store.load_records()][:2] == [on_cluster.extra, managed.extra]


def _add_many(args: tuple[str, int]) -> None:
    directory, start = args
    import os

    os.environ["FT_STATE_DIR"] = directory
    for job_id in range(start, start + 10):
        store.add_record(record(job_id=str(job_id)))


def test_concurrent_launches_all_land(state: Path) -> None:
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        pool.map(_add_many, [(str(state), start) for start in (0, 100, 200, 300)])
    ids = sorted(int(r.job_id) for r in store.load_records())
    assert ids == [i for start in (0, 100, 200, 300) for i in range(start, start + 10)]
