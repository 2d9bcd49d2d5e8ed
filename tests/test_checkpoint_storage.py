"""Checkpoint storage every node sees, per backend (docs/storage.md): each
combination that cannot work is refused by `ft validate --backend X` and by the render with
the YAML field and the fix; what renders is read back by dstack's and SkyPilot's own parsers."""

from __future__ import annotations

import os

import pytest
import yaml

from orchestrator.backends import get
from orchestrator.backends.local.emulation import check_storage
from orchestrator.spec.load import parse_spec
from tests.cli_runner import run_ft
from tests.specs import SHARED_VOLUMES
from tests.train_helpers import write_tiny_spec
from trainer.torch_free.errors import Problem, SpecError

TRAINING = {"base_model": "./model", "datasets": [{"path": "d.jsonl", "type": "alpaca"}],
            "adapter": "lora", "lora_target_linear": True}
BUCKET = {"source": "s3://ckpt", "path": "/checkpoints"}
INSTANCE = {"source": "/fsx/ckpt", "path": "/checkpoints"}
NAMED = {"name": "ckpt", "path": "/checkpoints"}


def _spec(output_dir: str = "./outputs", nodes: int = 2, **launch: object):
    data = {**TRAINING, "output_dir": output_dir,
            "launch": {"name": "ckpt", "nodes": nodes, "gpus_per_node": 8, "gpu": "H100",
                       "cluster": "tcp", **launch}}
    return parse_spec(yaml.safe_dump(data), "spec.yaml", for_launch=True)


def _refused(backend: str, spec) -> list[Problem]:
    """What `ft validate --backend` reports; the render refuses with the same problems."""
    problems = get(backend).spec_problems(spec)
    assert problems, f"{backend} accepted it"
    with pytest.raises(SpecError) as caught:
        get(backend).render(spec)
    assert {(p.path, p.message) for p in caught.value.problems} == \
        {(p.path, p.message) for p in problems}
    return problems


def _text(backend: str, spec) -> str:
    assert get(backend).spec_problems(spec) == []
    (text,) = get(backend).render(spec).files.values()
    return text


# ---- dstack ---------------------------------------------------------------------------

def test_dstack_network_volume_on_several_nodes_is_refused():
    (problem,) = _refused("dstack", _spec("/checkpoints/run", volumes=[NAMED]))
    assert problem.path == "launch.volumes[0].name"
    assert "attaches to one instance at a time" in problem.message
    assert "`source: /mnt/fsx/checkpoints` instead of `name`" in problem.message


def test_dstack_instance_volume_holds_a_multi_node_checkpoint(dstack_validator):
    spec = _spec("/checkpoints/run", volumes=[INSTANCE])
    result = dstack_validator({"t": _text("dstack", spec)})["t"]
    assert result.error is None, result.error
    assert result.parsed["volumes"] == [{"instance_path": "/fsx/ckpt", "path": "/checkpoints",
                                         "optional": False}]
    (note,) = [n for n in get("dstack").render(spec).notes if "launch.volumes[0]" in n]
    assert "a filesystem every host of the fleet mounts" in note


def test_dstack_network_volume_on_one_node_renders(dstack_validator):
    result = dstack_validator({"t": _text("dstack", _spec(nodes=1, volumes=[NAMED]))})["t"]
    assert result.error is None, result.error
    assert result.parsed["volumes"] == [{"name": "ckpt", "path": "/checkpoints"}]


def test_dstack_per_node_volumes_serve_a_cache_but_not_checkpoints(dstack_validator):
    """`${{ dstack.node_rank }}` in a name: one network volume per node (dstack's server
    interpolates it per job), accepted by dstack's parser; every node its own, so never the
    checkpoint directory."""
    cache = {"name": "cache-${{ dstack.node_rank }}", "path": "/cache"}
    spec = _spec("/checkpoints/run", volumes=[INSTANCE, cache])
    result = dstack_validator({"t": _text("dstack", spec)})["t"]
    assert result.error is None, result.error
    assert result.parsed["volumes"][1] == {"name": "cache-${{ dstack.node_rank }}",
                                           "path": "/cache"}
    (problem,) = _refused("dstack", _spec("/cache/run", volumes=[INSTANCE, cache]))
    assert problem.path == "output_dir" and "one network volume per node" in problem.message


def test_dstack_refuses_a_relative_host_path():
    (problem,) = _refused("dstack", _spec(nodes=1, volumes=[{**INSTANCE, "source": "fsx"}]))
    assert problem.path == "launch.volumes[0].source" and "must be absolute" in problem.message


def test_dstack_refuses_a_bucket():
    (problem,) = _refused("dstack", _spec(nodes=1, volumes=[BUCKET]))
    assert problem.path == "launch.volumes[0].source" and "not object-store URLs" in \
        problem.message


# ---- SkyPilot -------------------------------------------------------------------------

@pytest.mark.parametrize(("cloud", "said"), [("aws", "`launch.skypilot.cloud` is aws"),
                                             (None, "`launch.skypilot.cloud` is not pinned")])
def test_skypilot_named_volume_off_kubernetes_and_runpod_is_refused(cloud, said):
    sky = {"cloud": cloud} if cloud else {}
    (problem,) = _refused("skypilot", _spec(nodes=1, volumes=[NAMED], skypilot=sky))
    assert problem.path == "launch.volumes[0].name"
    assert "exist only on Kubernetes and RunPod" in problem.message and said in problem.message
    assert "`source: s3://my-bucket` in place of `name`" in problem.message


@pytest.mark.parametrize("cloud", ["kubernetes", "runpod"])
def test_skypilot_named_volume_on_kubernetes_or_runpod_renders(cloud, skypilot_validator):
    spec = _spec("/checkpoints/run", volumes=[NAMED], skypilot={"cloud": cloud})
    result = skypilot_validator({"t": _text("skypilot", spec)})["t"]
    assert result.error is None, result.error
    assert result.parsed["volumes"] == {"/checkpoints": "ckpt"}
    notes = " ".join(get("skypilot").render(spec).notes)
    assert ("ReadWriteMany" in notes) == (cloud == "kubernetes")


def test_skypilot_checkpoint_bucket_mounts_cached_on_every_node(skypilot_validator):
    spec = _spec("/checkpoints/run", volumes=[BUCKET, {"source": "gs://data", "path": "/data"}],
                 skypilot={"cloud": "aws"})
    result = skypilot_validator({"t": _text("skypilot", spec)})["t"]
    assert result.error is None, result.error
    storage = result.parsed["storage"]
    assert storage["/checkpoints"] == {"source": "s3://ckpt", "mode": "MOUNT_CACHED",
                                       "source_error": None}
    assert storage["/data"]["mode"] == "MOUNT"  # not the checkpoint bucket: a plain mount
    # Rank 0 waits for the other nodes' shards to finish uploading before it marks.
    assert result.parsed["envs"]["FT_CHECKPOINT_VISIBILITY_WAIT_S"] == "900"


@pytest.mark.parametrize("mode", ["mount", "mount_cached", "copy"])
def test_skypilot_renders_the_mode_given(mode, skypilot_validator):
    spec = _spec(nodes=1, volumes=[{**BUCKET, "mode": mode}])
    result = skypilot_validator({"t": _text("skypilot", spec)})["t"]
    assert result.error is None, result.error
    assert result.parsed["storage"]["/checkpoints"]["mode"] == mode.upper()


def test_skypilot_refuses_a_bucket_folder_in_a_mount_mode_as_skypilot_does(skypilot_validator):
    (problem,) = _refused("skypilot", _spec(nodes=1, volumes=[{**BUCKET,
                                                              "source": "s3://ckpt/run"}]))
    assert problem.path == "launch.volumes[0].source"
    assert "mounts a whole bucket in `mode: mount`" in problem.message
    # SkyPilot's own launch-time check refuses the same file mount ...
    raw = ("name: t\nrun: echo\nfile_mounts:\n  /c:\n    source: s3://ckpt/run\n"
           "    mode: MOUNT\n")
    refused = skypilot_validator({"t": raw})["t"].parsed["storage"]["/c"]["source_error"]
    assert "MOUNT mode does not support" in refused
    # ... and takes the folder in COPY mode, as ft does.
    text = _text("skypilot", _spec(nodes=1, volumes=[{**BUCKET, "source": "s3://ckpt/run",
                                                      "mode": "copy"}]))
    assert skypilot_validator({"t": text})["t"].parsed["storage"]["/checkpoints"][
        "source_error"] is None


@pytest.mark.parametrize(("source", "words"), [
    ("az://ckpt", "Azure: https://ACCOUNT.blob.core.windows.net/CONTAINER"),
    ("/fsx/ckpt", "not host paths"),
])
def test_skypilot_refuses_storage_it_cannot_mount(source, words):
    (problem,) = _refused("skypilot", _spec(nodes=1, volumes=[{**BUCKET, "source": source}]))
    assert problem.path == "launch.volumes[0].source" and words in problem.message


# ---- a multi-node output_dir outside shared storage -----------------------------------

@pytest.mark.parametrize(("backend", "output_dir", "volumes", "where", "fix"), [
    ("dstack", "./outputs", [], "is relative", "an instance volume on a filesystem every host"),
    ("dstack", "/scratch/run", [INSTANCE], "is under no `launch.volumes` path",
     "an instance volume on a filesystem every host"),
    ("skypilot", "./outputs", [], "is relative", "mount a bucket on every node"),
    ("skypilot", "/scratch/run", [BUCKET], "is under no `launch.volumes` path",
     "mount a bucket on every node"),
    ("skypilot", "/checkpoints/run", [{**BUCKET, "mode": "copy"}], "in `mode: copy`",
     "Use `mode: mount_cached`"),
    ("modal", "/scratch/run", [], "is outside every Modal Volume", "make it relative"),
])
def test_multi_node_output_dir_off_shared_storage_is_refused(backend, output_dir, volumes,
                                                             where, fix):
    problems = _refused(backend, _spec(output_dir, volumes=volumes))
    (problem,) = [p for p in problems if p.path == "output_dir"]
    assert where in problem.message and fix in problem.message
    if backend != "modal":
        assert "a restart on new machines starts at step 0" in problem.message


def test_slurm_warns_of_a_multi_node_output_dir_outside_the_job_directory():
    def warned(spec) -> bool:
        assert get("slurm").spec_problems(spec) == []
        return any("must be on a filesystem every node mounts" in note
                   for note in get("slurm").render(spec).notes)

    assert warned(_spec("/scratch/run"))
    assert not warned(_spec("./outputs"))  # the submit directory: shared by assumption
    assert not warned(_spec("/shared/job/out", slurm={"workdir": "/shared/job"}))
    assert not warned(_spec("/scratch/run", nodes=1))


def test_validate_shows_the_slurm_warning(tmp_path):
    data = {**TRAINING, "output_dir": "/scratch/run",
            "launch": {"nodes": 2, "gpus_per_node": 8, "cluster": "tcp"}}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(data))
    result = run_ft("validate", "spec.yaml", "--backend", "slurm", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "--backend slurm: note: `output_dir: /scratch/run` is outside the job's " \
        "directory: it must be on a filesystem every node mounts" in result.stderr


def test_slurm_says_precisely_why_volumes_are_not_rendered():
    (note,) = [n for n in get("slurm").render(_spec(volumes=[NAMED])).notes
               if "launch.volumes[0]" in n]
    assert "Slurm mounts no volumes" in note and "the submit directory is on one" in note


# ---- mode where it cannot be honoured, and the per-backend selection -----------------

@pytest.mark.parametrize(("backend", "volume"), [("dstack", INSTANCE), ("modal", NAMED),
                                                 ("slurm", NAMED)])
def test_mode_is_refused_where_it_cannot_be_honoured(backend, volume):
    spec = _spec(nodes=1, volumes=[{**volume, "mode": "mount_cached"}])
    (problem,) = _refused(backend, spec)
    assert problem.path == "launch.volumes[0].mode"
    assert "`mode: mount_cached` cannot be honoured" in problem.message


def test_mode_on_a_skypilot_named_volume_is_refused():
    spec = _spec(nodes=1, volumes=[{**NAMED, "mode": "copy"}], skypilot={"cloud": "runpod"})
    (problem,) = _refused("skypilot", spec)
    assert problem.path == "launch.volumes[0].mode"


def test_each_backend_mounts_only_its_own_entries(dstack_validator, skypilot_validator):
    spec = _spec("/checkpoints/run", volumes=SHARED_VOLUMES)
    dstack = dstack_validator({"t": _text("dstack", spec)})["t"].parsed
    assert dstack["volumes"] == [{"instance_path": "/fsx/checkpoints", "path": "/checkpoints",
                                  "optional": False}]
    sky = skypilot_validator({"t": _text("skypilot", spec)})["t"].parsed
    assert list(sky["storage"]) == ["/checkpoints"] and sky["volumes"] == {}
    assert sky["storage"]["/checkpoints"]["source"] == "s3://ft-checkpoints"
    assert "Volume.from_name('ft-checkpoints'" in _text("modal", spec)
    assert not [n for n in get("slurm").render(spec).notes if "launch.volumes" in n]


def test_an_unknown_backend_in_a_volume_is_refused():
    spec = _spec(nodes=1, volumes=[{**INSTANCE, "backends": ["dstak"]}])
    (problem,) = _refused("dstack", spec)
    assert problem.path == "launch.volumes[0].backends" and "no backend 'dstak'" in \
        problem.message


# ---- local emulation refuses what the emulated backend refuses -----------------------

@pytest.mark.parametrize("backend", ["dstack", "skypilot"])
def test_emulation_refuses_an_unshared_output_dir_as_the_backend_does(backend):
    spec = _spec("./outputs")
    (real,) = get(backend).spec_problems(spec)
    with pytest.raises(SpecError) as caught:
        check_storage(spec, backend)
    (emulated,) = caught.value.problems
    assert (emulated.path, emulated.message) == ("output_dir", f"(as on {backend}) "
                                                 f"{real.message}")


@pytest.mark.parametrize("backend", ["slurm", "modal", "dstack", "skypilot"])
def test_emulation_takes_an_output_dir_the_backend_shares(backend):
    shared = "./outputs" if backend in ("slurm", "modal") else "/checkpoints/run"
    check_storage(_spec(shared, volumes=SHARED_VOLUMES), backend)


def test_emulated_nodes_share_only_the_emulated_backends_volumes(tmp_path):
    from orchestrator.backends.local.isolation import plan_storage

    spec = _spec("/checkpoints/run", volumes=SHARED_VOLUMES)
    shared = {b: [t for _, t in plan_storage(spec, tmp_path, False, b).shared]
              for b in ("dstack", "skypilot", "slurm")}
    assert shared == {"dstack": ["/checkpoints"], "skypilot": ["/checkpoints"], "slurm": []}
    # The dstack entry's host path is what its emulated nodes share.
    assert plan_storage(spec, tmp_path, False, "dstack").shared[0][0] == "/fsx/checkpoints"


def test_validate_and_emulated_launch_report_the_same_storage_error(tmp_path, tiny_model_dir):
    spec = write_tiny_spec(tmp_path, tiny_model_dir, output_dir="./out")
    validate = run_ft("validate", str(spec), "--backend", "dstack", "--nodes", "2", cwd=tmp_path)
    launch = run_ft("launch", str(spec), "--backend", "local", "--nodes", "2", "--emulate",
                    "dstack", cwd=tmp_path)
    assert validate.returncode == launch.returncode == 2, validate.stderr + launch.stderr
    assert "[node0]" not in launch.stdout  # refused before any node starts
    said = "is relative (it lands in the job's working directory, on each node's own disk)"
    assert said in validate.stderr and f"(as on dstack) ./out {said}" in launch.stderr


def test_modal_multi_node_says_its_checkpoints_are_not_marked():
    """The Modal limit in docs/storage.md: said in a note for a cluster, not for one container."""
    def said(nodes: int) -> bool:
        return any("checkpoints are not marked complete" in note
                   for note in get("modal").render(_spec(nodes=nodes)).notes)

    assert said(2) and not said(1)


def test_the_starter_specs_storage_advice_makes_every_backend_ready(tmp_path):
    """`ft init`'s volumes, as written, satisfy every backend that renders; here, where its
    data is in place, only its 2 x 8 GPUs stop the local backend."""
    assert run_ft("init", "ft.yaml", cwd=tmp_path).returncode == 0
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.jsonl").write_text('{"messages": []}\n')
    result = run_ft("validate", "ft.yaml", cwd=tmp_path, env={**os.environ,
                                                              "CUDA_VISIBLE_DEVICES": ""})
    assert result.returncode == 0, result.stderr
    not_ready = [line for line in result.stderr.splitlines() if "not ready" in line]
    assert len(not_ready) == 1 and "--backend local" in not_ready[0] and \
        "need 16 GPUs of this machine" in not_ready[0], result.stderr
    assert result.stdout.count(": ready") == 4
