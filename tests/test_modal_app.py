"""The rendered Modal app, read back by the real `modal` package (offline, no account): each
stage function's GPU, Volumes, secrets, timeout, retries and cluster size against the spec;
what Modal cannot run is refused at `ft validate --backend modal`; `--stage` picks stages."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from orchestrator.backends import get
from orchestrator.backends.modal.cluster_env import FixedCluster, node_env
from orchestrator.backends.modal.jobs import result_line
from orchestrator.backends.modal.render import app_filename
from orchestrator.backends.modal.ship import DEFAULT_IMAGE
from orchestrator.spec.load import load_spec, parse_spec
from tests.cli_runner import REPO, run_ft
from tests.specs import example_id, example_specs, renders
from tests.support.modal_app import resolve, settings
from trainer.contract.launch import duration_seconds

MODAL = get("modal")
EXAMPLES = [spec for spec in example_specs() if renders(spec, "modal")]
PLANTED = "planted-secret-value-0451"


def _write_app(spec, directory: Path) -> Path:
    ((name, text),) = MODAL.render(spec).files.items()
    path = directory / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("spec_path", EXAMPLES, ids=example_id)
def test_every_rendered_app_runs_the_spec_on_modal(spec_path, tmp_path, monkeypatch, in_repo):
    spec = load_spec(spec_path, for_launch=True)
    launch = spec.launch
    for name in launch.secrets:
        monkeypatch.setenv(name, PLANTED)
    app_file = _write_app(spec, tmp_path)
    text = app_file.read_text()
    assert PLANTED not in text
    if launch.secrets:  # names only; modal reads the values at `modal run`
        assert f"modal.Secret.from_local_environ({launch.secrets!r})" in text
    assert type(resolve(app_file, "launch")).__name__ == "LocalEntrypoint"
    image = launch.image or DEFAULT_IMAGE
    assert f"modal.Image.from_registry({image!r})" in text
    if not launch.image:  # a public image gets ft's own source
        assert '.add_local_python_source("orchestrator", "trainer")' in text
    # A cluster's ranks and addresses come from modal's own call (it exists in modal).
    assert ("modal.experimental.get_cluster_info()" in text) == (launch.nodes > 1)

    raw = yaml.safe_load(Path(spec_path).read_text())["launch"]
    gpu_type = raw["gpu"].split(":")[0] if raw.get("gpu") and launch.gpus_per_node else None
    volumes = {"/workspace": f"ft-{launch.name}",
               **{v["path"]: v["name"] for v in raw.get("volumes", [])}}
    timeout = duration_seconds(raw["max_duration"]) if "max_duration" in raw else None
    timeout = min(timeout or 86400, 86400)  # Modal's ceiling is a day
    train = settings(resolve(app_file, "train"))
    assert train.gpu == (f"{gpu_type}:{launch.gpus_per_node}" if gpu_type else None)
    assert train.cluster_size == (launch.nodes if launch.nodes > 1 else None)
    assert train.rdma == (True if launch.nodes > 1 else None)  # the examples' fabrics are RDMA
    stages = ["preprocess", "train", "inference"] + (["merge_lora"] if spec.training.adapter
                                                     else [])
    for stage in stages:
        got = settings(resolve(app_file, stage))
        assert got.volumes == volumes, stage
        assert got.timeout == timeout, stage
        assert got.secret_names[0] == sorted(launch.secrets) or not launch.secrets, stage
        assert all(PLANTED not in str(names) for names in got.secret_names)
        expected_retries = launch.retry.max_restarts if launch.retry.on_error else 0
        assert got.retries == (0 if stage == "inference" else expected_retries), stage
        # The launch resources describe the training nodes; other stages take Modal's.
        assert got.cpu == (launch.cpus_per_node if stage == "train" else None), stage
        memory = int(raw["memory"].removesuffix("GB")) * 1024 if "memory" in raw else None
        assert got.memory == (memory if stage == "train" else None), stage
    assert settings(resolve(app_file, "preprocess")).gpu is None  # tokenizing needs no GPU
    for one_gpu_stage in ("inference", *(["merge_lora"] if spec.training.adapter else [])):
        assert settings(resolve(app_file, one_gpu_stage)).gpu == gpu_type


def _spec(tmp_path: Path, **launch) -> Path:
    data = yaml.safe_load((REPO / "examples/llama-3.1-8b-lora.yaml").read_text())
    if "deepspeed" in launch:  # a training key
        data["deepspeed"] = launch.pop("deepspeed")
    data["launch"].update(launch)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(("launch", "field", "phrase"), [
    ({"gpu": "V100"}, "launch.gpu", "Modal offers no 'V100' GPU"),
    ({"gpu": "A100:24GB"}, "launch.gpu", "40GB or 80GB"),
    ({"gpus_per_node": 16}, "launch.gpus_per_node", "at most 8 GPUs"),
    ({"gpu": "A10G", "gpus_per_node": 8}, "launch.gpus_per_node", "at most 4 GPUs of type A10"),
    ({"nodes": 2, "gpus_per_node": 4}, "launch.gpus_per_node", "all 8 GPUs of its host"),
    ({"volumes": [{"source": "/mnt/data", "path": "/data"}]}, "launch.volumes[0].source",
     "named Volumes"),
    ({"volumes": [{"name": "my data", "path": "/data"}]}, "launch.volumes[0].name",
     "at most 64 letters"),
    ({"cluster": "./my-profile.yaml"}, "launch.cluster", "shipped profile name"),
    ({"deepspeed": "./my-zero.json"}, "deepspeed", "DeepSpeed configs only"),
])
def test_validate_refuses_what_modal_cannot_run(tmp_path, launch, field, phrase):
    result = run_ft("validate", str(_spec(tmp_path, **launch)), "--backend", "modal")
    assert result.returncode == 2, result.stdout + result.stderr
    # Named with its line in the user's file, and the fix.
    assert re.search(rf"spec\.yaml:\d+: `{re.escape(field)}`: ", result.stderr), result.stderr
    assert phrase in result.stderr
    assert "Traceback" not in result.stderr
    # The same spec is fine for a backend that can run it (the refusal is Modal's alone).
    if field not in ("launch.cluster", "deepspeed"):
        assert run_ft("validate", str(_spec(tmp_path, **launch))).returncode == 0


def test_output_outside_every_volume_is_refused(tmp_path):
    spec = _spec(tmp_path)
    spec.write_text(spec.read_text().replace("output_dir: ./outputs/", "output_dir: /scratch/"))
    result = run_ft("validate", str(spec), "--backend", "modal")
    assert result.returncode == 2 and "`output_dir`: /scratch/" in result.stderr
    assert "lost when the container exits" in result.stderr


def test_settings_modal_has_no_knob_for_are_named_in_notes(tmp_path):
    spec = load_spec(_spec(tmp_path, disk="500GB", shm_size="32GB", spot=False,
                           retry={"duration": "1d"}), for_launch=True)
    notes = "\n".join(MODAL.render(spec).notes)
    for named in ("`launch.disk`", "`launch.shm_size`", "`launch.spot: false`",
                  "`launch.retry.duration`"):
        assert named in notes


def test_each_stage_starts_the_next_and_only_the_last_reports(tmp_path, monkeypatch, capsys,
                                                               in_repo):
    """The rendered chain, run here up to modal's `spawn` (which needs an account): the
    stage passes the rest of the list on; the last one prints the result."""
    app = _import_app(load_spec("examples/llama-3.1-8b-lora.yaml", for_launch=True), tmp_path,
                      monkeypatch)
    spawned = []

    class Recorder:  # stands in for modal's Function.spawn, which needs a Modal account
        def __init__(self, name):
            self.name = name

        def spawn(self, then):
            spawned.append((self.name, then))

    monkeypatch.setattr(app, "STAGES", {name: Recorder(name) for name in app.STAGES})
    app._then("train,merge-lora")
    assert spawned == [("train", "merge-lora")]
    assert result_line(capsys.readouterr().out) is None  # not the end yet
    app._then("")
    assert result_line(capsys.readouterr().out) == "succeeded"


def _import_app(spec, tmp_path: Path, monkeypatch):
    for name in spec.launch.secrets:
        monkeypatch.setenv(name, PLANTED)
    module_spec = importlib.util.spec_from_file_location("app", _write_app(spec, tmp_path))
    app = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(app)
    return app


def test_a100_memory_picks_the_modal_variant(tmp_path, monkeypatch):
    spec = load_spec(_spec(tmp_path, gpu="A100:80GB"), for_launch=True)
    for name in spec.launch.secrets:  # modal reads them when the app is defined
        monkeypatch.setenv(name, PLANTED)
    app_file = _write_app(spec, tmp_path)
    assert settings(resolve(app_file, "train")).gpu == "A100-80GB:8"


def test_stage_picks_what_launch_submits_in_ft_order(tmp_path, in_repo):
    result = run_ft("launch", "examples/tiny/tiny.yaml", "--backend", "modal", "--dry-run",
                    "--stage", "merge-lora", "--stage", "train", "-o", str(tmp_path))
    assert result.returncode == 0, result.stderr
    command = result.stdout.rstrip().splitlines()[-1]
    assert command == (f"modal run --detach {tmp_path}/tiny_modal.py::launch "
                       "--stages train,merge-lora")
    default = run_ft("launch", "examples/tiny/tiny.yaml", "--backend", "modal", "--dry-run")
    assert default.stdout.rstrip().endswith("::launch --stages preprocess,train")
    refused = run_ft("launch", "examples/tiny/tiny.yaml", "--backend", "dstack", "--dry-run",
                     "--stage", "train")
    assert refused.returncode == 2 and "function per stage (modal)" in refused.stderr


def test_rendered_stages_report_their_result_where_ft_reads_it(tmp_path, monkeypatch, capsys,
                                                                 in_repo):
    """The app's own stage wrapper, run here: its result line is what `ft status` parses."""
    spec = load_spec("examples/llama-3.1-8b-lora.yaml", for_launch=True)
    app = _import_app(spec, tmp_path, monkeypatch)
    monkeypatch.setattr(app, "WORKDIR", str(tmp_path / "volume"))
    monkeypatch.setattr(app, "VOLUMES", {})  # nothing to commit off Modal
    app._stage("merge-lora", "", ["true"])
    assert result_line(capsys.readouterr().out) == "succeeded"
    with pytest.raises(RuntimeError):
        app._stage("train", "", ["false"])
    assert result_line(capsys.readouterr().out) == "failed in train"
    assert (tmp_path / "volume" / app.SPEC_PATH).read_text() == spec.effective_text


def test_cluster_info_maps_to_the_variables_ft_node_reads():
    """Modal's ClusterContext gives IPv6 addresses always and IPv4 where it can: ft takes
    IPv4 when present, and rank 0's address is the master."""
    v6_only = FixedCluster(1, ["fdaa::1", "fdaa::2"], [])
    env = node_env(v6_only, 8)
    assert env == {"FT_MODAL_NODE_RANK": "1", "FT_MODAL_NODE_IPS": "fdaa::1\nfdaa::2",
                   "FT_MODAL_NUM_NODES": "2", "FT_MODAL_GPUS_PER_NODE": "8"}
    assert MODAL.master_addr(env["FT_MODAL_NODE_IPS"])[0] == "fdaa::1"
    both = node_env(FixedCluster(0, ["fdaa::1", "fdaa::2"], ["10.0.0.1", "10.0.0.2"]), 8)
    assert both["FT_MODAL_NODE_IPS"].splitlines()[0] == "10.0.0.1"


def test_render_needs_no_modal_package():
    """The base install renders Modal apps: nothing on the render path imports modal."""
    probe = ("import sys; sys.modules['modal'] = None\n"
             "from orchestrator.backends import get\n"
             "from orchestrator.spec.load import load_spec\n"
             "get('modal').render(load_spec('examples/tiny/tiny.yaml', for_launch=True))\n")
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr


def test_spec_values_cannot_break_out_of_the_python_literals(tmp_path):
    text = (REPO / "examples/tiny/tiny.yaml").read_text().replace(
        "OMP_NUM_THREADS: 1", "OMP_NUM_THREADS: \"1'); import os; os.system('x')  #\\n\"")
    spec = parse_spec(text, "tiny.yaml", for_launch=True)
    app_file = _write_app(spec, tmp_path)
    source = app_file.read_text()
    compile(source, app_file.name, "exec")
    assert "\n    'OMP_NUM_THREADS': \"1'); import os; os.system('x')  #\\n\",\n" in source


def test_readme_modal_flow_is_four_commands_that_work(tmp_path, in_repo):
    """The README's Modal section: validate, launch (preprocess then train), follow the
    logs, merge; the launches are checked by their --dry-run (no account here)."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Modal\n"):]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [line.split() for line in block.strip().splitlines()]
    assert len(commands) == 4 and all(c[0] == "ft" for c in commands)
    validate, launch, logs, merge = commands
    assert run_ft(*validate[1:]).returncode == 0
    spec = load_spec(validate[2], for_launch=True)
    env = {**os.environ, **{name: PLANTED for name in spec.launch.secrets}}
    for command, stages in ((launch, "preprocess,train"), (merge, "merge-lora")):
        shown = run_ft(*command[1:], "--dry-run", "-o", str(tmp_path), env=env)
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.rstrip().splitlines()[-1] == (
            f"modal run --detach {tmp_path}/{app_filename(spec)}::launch --stages {stages}")
    assert logs == ["ft", "logs", spec.launch.name, "-f"]  # ft finds a job by its name
