"""The rendered Modal app, read back by the real `modal` package (offline, no account): each
stage function's GPU, Volumes, secrets, timeout, retries and cluster size against the spec;
what Modal cannot run is refused at `ft validate --backend modal`; `--stage` picks stages;
the image carries the bundle `ft launch` ships and installs ft's wheel when it is built."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from orchestrator.backends import get
from orchestrator.backends.modal.cluster_env import FixedCluster, node_env
from orchestrator.backends.modal.jobs import result_line
from orchestrator.backends.modal.render import INSTALLED, NODE_CACHE, SHIPPED, app_filename
from orchestrator.backends.node_steps import DEFAULT_IMAGE, train_requirement
from orchestrator.node.job_id import job_id_env
from orchestrator.shipping import bundle
from orchestrator.shipping.bundle import ship
from orchestrator.shipping.wheel import build_wheel, wheel_name
from orchestrator.spec.launch_schema import duration_seconds
from orchestrator.spec.load import load_spec, parse_spec
from tests.cli_runner import REPO, run_ft
from tests.specs import example_id, example_specs, renders
from tests.support.modal_app import image_steps, resolve, settings
from trainer.torch_free.errors import SpecError

MODAL = get("modal")
EXAMPLES = [spec for spec in example_specs() if renders(spec, "modal")]
PLANTED = "planted-secret-value-0451"


@pytest.fixture(scope="module")
def ft_wheel(tmp_path_factory) -> Path:
    """ft's real wheel, built once for the module (a build takes a while on 2 cores)."""
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(autouse=True)
def _reuse_the_wheel(ft_wheel, monkeypatch):
    """`ship()` copies the module's wheel instead of building the same bytes again (a
    rebuild of unchanged sources is byte-identical: test_shipping checks it)."""
    def copy(dest: Path) -> Path:
        dest.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy2(ft_wheel, dest / ft_wheel.name))

    monkeypatch.setattr(bundle, "build_wheel", copy)


def _write_app(spec, directory: Path, shipped: bool = True) -> Path:
    """The rendered app and, as `ft launch` writes it before `modal run`, its bundle."""
    rendered = MODAL.render(spec)
    ((name, text),) = rendered.files.items()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text)
    if shipped:
        ship(rendered.ship, directory)
    return path


def _expected_image(spec, directory: Path, image: str) -> list:
    """The image a spec with the default `install.method: wheel` gets: the shipped wheel
    and installer copied into a layer and installed there by the shared node installer,
    then the whole bundle mounted at start."""
    job = spec.launch.name
    ours = [f".ft/{job}/install_ft.py", f".ft/{job}/wheels/{wheel_name()}"]
    installer, wheels = f"{INSTALLED}/.ft/{job}/install_ft.py", f"{INSTALLED}/.ft/{job}/wheels"
    shipped = sorted([f".ft/{job}.yaml", *ours, *(f.path for f in MODAL.render(spec).ship.files)])
    return [f"FROM {image}", f"ENV FT_NODE_CACHE={NODE_CACHE}",
            ("copy", directory / f"{job}.ship/.ft/{job}", f"{INSTALLED}/.ft/{job}",
             [f"{INSTALLED}/{path}" for path in ours]),
            f"RUN {shlex.join(['python3', installer, wheels, train_requirement()])}",
            ("mount", directory / f"{job}.ship", SHIPPED,
             [f"{SHIPPED}/{path}" for path in shipped])]


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
    # Every stage runs in the image that carries the bundle and the installed wheel.
    app = _load(app_file)
    assert image_steps(app.image) == _expected_image(spec, tmp_path, launch.image or DEFAULT_IMAGE)
    installer = app.FT_NODE[:5]
    assert installer == ["python3", f".ft/{launch.name}/install_ft.py",
                         f".ft/{launch.name}/wheels", train_requirement(), "--"]
    assert [*installer, "ft"] == app.FT and app.FT_NODE[5:7] == ["ft", "node"]
    # A cluster's ranks and addresses come from modal's own call (it exists in modal).
    assert ("modal.experimental.get_cluster_info()" in text) == (launch.nodes > 1)

    raw = yaml.safe_load(Path(spec_path).read_text())["launch"]
    gpu_type = raw["gpu"].split(":")[0] if raw.get("gpu") and launch.gpus_per_node else None
    volumes = {"/workspace": f"ft-{launch.name}",
               **{v["path"]: v["name"] for v in raw.get("volumes", [])
                  if "modal" in (v.get("backends") or ["modal"])}}  # entries for Modal
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
    for key in ("deepspeed", "base_model", "datasets", "micro_batch_size"):  # training keys
        if key in launch:
            data[key] = launch.pop(key)
    data["launch"].update(launch)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(("launch", "field", "phrase"), [
    ({"gpu": "V100"}, "launch.gpu", "Modal offers no 'V100' GPU"),
    ({"gpu": "A100:48GB"}, "launch.gpu", "40GB or 80GB"),
    # 16 A100s: a 16-GPU machine elsewhere (gpu_limits.py), not a Modal container.
    ({"gpu": "A100", "gpus_per_node": 16}, "launch.gpus_per_node", "at most 8 GPUs"),
    # (micro batch 1: the example's 4 x 4096 tokens do not fit a 24 GB A10G's memory)
    ({"gpu": "A10G", "gpus_per_node": 8, "micro_batch_size": 1}, "launch.gpus_per_node",
     "at most 4 GPUs of type A10"),
    ({"nodes": 2, "gpus_per_node": 4}, "launch.gpus_per_node", "all 8 GPUs of its host"),
    ({"volumes": [{"source": "/mnt/data", "path": "/data"}]}, "launch.volumes[0].source",
     "named Volumes"),
    ({"volumes": [{"name": "my data", "path": "/data"}]}, "launch.volumes[0].name",
     "at most 64 letters"),
    ({"base_model": "/models/llama"}, "base_model", "/models/llama is on no Modal Volume "
     "and not in the default image"),
    ({"datasets": [{"path": "~/data.jsonl", "type": "alpaca"}]}, "datasets[0].path",
     "so no container can read it"),
    ({"datasets": [{"path": "../data.jsonl", "type": "alpaca"}]}, "datasets[0].path",
     "../data.jsonl leaves the job's Volume ft-llama31-8b-lora"),
])
def test_validate_refuses_what_modal_cannot_run(tmp_path, launch, field, phrase):
    result = run_ft("validate", str(_spec(tmp_path, **launch)), "--backend", "modal")
    assert result.returncode == 2, result.stdout + result.stderr
    # Named with its line in the user's file, and the fix.
    assert re.search(rf"spec\.yaml:\d+: `{re.escape(field)}`: ", result.stderr), result.stderr
    assert phrase in result.stderr
    assert "Traceback" not in result.stderr
    # The same spec is fine for a backend that can run it (the refusal is Modal's alone).
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
    return _load(_write_app(spec, tmp_path))


def _load(app_file: Path):
    module_spec = importlib.util.spec_from_file_location("app", app_file)
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
    monkeypatch.setattr(app, "SHIPPED", str(tmp_path / "llama31-8b-lora.ship"))
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
    env = node_env(v6_only, 8, "fc-01J")
    assert env == {"FT_MODAL_NODE_RANK": "1", "FT_MODAL_NODE_IPS": "fdaa::1\nfdaa::2",
                   "FT_MODAL_NUM_NODES": "2", "FT_MODAL_GPUS_PER_NODE": "8",
                   "FT_MODAL_JOB_ID": "fc-01J"}
    assert MODAL.master_addr(env["FT_MODAL_NODE_IPS"])[0] == "fdaa::1"
    both = node_env(FixedCluster(0, ["fdaa::1", "fdaa::2"], ["10.0.0.1", "10.0.0.2"]), 8,
                    "fc-01J")
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
    """The Modal section of docs/backends.md: validate, launch (preprocess then train), follow the
    logs, merge; the launches are checked by their --dry-run (no account here)."""
    page = (REPO / "docs" / "backends.md").read_text()
    section = page[page.index("## Modal\n"):]
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


def _job_with_files(tmp_path: Path, monkeypatch, **launch) -> Path:
    """The tiny example with a custom cluster profile and a DeepSpeed JSON given by path,
    launched from tmp_path (paths in a spec are relative to the launch directory)."""
    profile = yaml.safe_load((REPO / "clusters/tcp.yaml").read_text())
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump({**profile, "name": "mine"}))
    (tmp_path / "ds").mkdir()
    shutil.copy(REPO / "trainer/deepspeed_configs/zero2.json", tmp_path / "ds/z2.json")
    data = yaml.safe_load((REPO / "examples/llama-3.1-8b-lora.yaml").read_text())
    data["deepspeed"] = "ds/z2.json"
    data["launch"].update({"cluster": "mine.yaml", "secrets": [], **launch})
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "spec.yaml"


def test_custom_profile_and_deepspeed_file_ship_with_the_app(tmp_path, monkeypatch):
    """Given by path, they ship in the bundle like on every backend (Modal refused them while
    it shipped ft's source), and `ft node` is told their hashes."""
    spec_file = _job_with_files(tmp_path, monkeypatch)
    checked = run_ft("validate", str(spec_file), "--backend", "modal", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    spec = load_spec(spec_file, for_launch=True)
    app = _load(_write_app(spec, tmp_path / "out"))
    mounted = image_steps(app.image)[-1]
    assert {f"{SHIPPED}/mine.yaml", f"{SHIPPED}/ds/z2.json"} <= set(mounted[3])
    for name in ("mine.yaml", "ds/z2.json"):
        digest = hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()
        assert f"{name}={digest}" in app.FT_NODE


def test_stages_run_the_ft_that_the_image_build_installed(tmp_path, monkeypatch, capfd):
    """The image build and a stage, run here with the shipped bundle: the build step installs
    the wheel; the stage lays the bundle out in the job's Volume and runs ft through the same
    installer, which reuses that install (no install in the container) and execs this ft."""
    spec = load_spec(_job_with_files(tmp_path, monkeypatch), for_launch=True)
    app = _load(_write_app(spec, tmp_path / "out"))
    bundle_dir = tmp_path / "out" / "llama31-8b-lora.ship"
    build = [step for step in image_steps(app.image) if str(step).startswith("RUN ")]
    assert len(build) == 1
    # The copy layer puts the bundle's .ft/<job> at INSTALLED (checked for every example).
    command = build[0].removeprefix("RUN ").replace(INSTALLED, str(bundle_dir))
    env = {**os.environ, "FT_NODE_CACHE": str(tmp_path / "image-cache"), "PIP_NO_INDEX": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    built = subprocess.run(command, shell=True, env=env, capture_output=True, text=True,
                           timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr
    assert f"installed {wheel_name()}" in built.stderr
    for key in ("FT_NODE_CACHE", "PIP_NO_INDEX", "PATH"):
        monkeypatch.setenv(key, env[key])
    volume = tmp_path / "volume"
    stale = volume / ".ft/llama31-8b-lora/wheels/ft_finetune-0.0.1-py3-none-any.whl"
    stale.parent.mkdir(parents=True)
    stale.write_text("an earlier launch's wheel")
    # The container's SHIPPED: what modal's mount of the bundle uploads (its ignores applied).
    shipped = tmp_path / "container-ship"
    for remote in image_steps(app.image)[-1][3]:
        relative = remote.removeprefix(f"{SHIPPED}/")
        (shipped / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(bundle_dir / relative, shipped / relative)
    monkeypatch.setattr(app, "SHIPPED", str(shipped))
    monkeypatch.setattr(app, "WORKDIR", str(volume))
    monkeypatch.setattr(app, "VOLUMES", {})  # nothing to commit off Modal
    app._start_stage()
    assert (volume / app.SPEC_PATH).read_text() == spec.effective_text
    assert (volume / "ds/z2.json").is_file() and (volume / "mine.yaml").is_file()
    assert not stale.exists() and not (volume / ".dstackignore").exists()
    capfd.readouterr()
    app._run([*app.FT, "version"])
    out, err = capfd.readouterr()
    assert "is already installed in" in err and "reusing it" in err, err
    assert out.strip().splitlines()[-1] == train_requirement().rsplit("==", 1)[1]


@pytest.mark.parametrize(("method", "build"), [
    ("pip", [f"RUN python -m pip install {shlex.quote(train_requirement())}"]),
    ("image", []),
])
def test_install_method_pip_or_image_runs_ft_as_it_is(tmp_path, monkeypatch, method, build):
    """pip: the image build installs the package from the index (once per image); image:
    `launch.image` has ft. Either way no wheel ships, the stages run plain `ft`, and the
    bundle still brings the spec and its files."""
    spec_file = _job_with_files(tmp_path, monkeypatch, image="example.org/ft:1",
                                install={"method": method})
    rendered = MODAL.render(load_spec(spec_file, for_launch=True))
    assert rendered.ship.wheel is False
    app = _load(_write_app(load_spec(spec_file, for_launch=True), tmp_path / "out"))
    assert image_steps(app.image) == ["FROM example.org/ft:1", *build, (
        "mount", tmp_path / "out/llama31-8b-lora.ship", SHIPPED,
        [f"{SHIPPED}/.ft/llama31-8b-lora.yaml", f"{SHIPPED}/ds/z2.json", f"{SHIPPED}/mine.yaml"])]
    assert app.FT == ["ft"] and app.FT_NODE[:2] == ["ft", "node"]


def test_the_app_maps_cluster_info_as_ft_node_and_emulation_do(tmp_path, monkeypatch, in_repo):
    """The image's Python cannot import ft, so the app spells the mapping out: it must stay
    the one `--emulate modal` runs (cluster_env.node_env)."""
    app = _import_app(load_spec("examples/llama-3.1-8b-lora.yaml", for_launch=True), tmp_path,
                      monkeypatch)
    for info in (FixedCluster(1, ["fdaa::1", "fdaa::2"], []),
                 FixedCluster(0, ["fdaa::1", "fdaa::2"], ["10.0.0.1", "10.0.0.2"]),
                 app._OneContainer()):
        assert app._node_env(info, "fc-01J") == node_env(info, app.GPUS_PER_NODE, "fc-01J")


@pytest.mark.filterwarnings("ignore:The train function is executing locally")
def test_the_train_stage_hands_ft_node_its_function_calls_id_as_the_job_id(
        tmp_path, monkeypatch, in_repo):
    """Modal sets no variable that outlives a retry (MODAL_TASK_ID names the container): the
    rendered train function passes its call's id, which Modal keeps when it retries the call
    or restarts it after a preemption, and `ft node` exports that as the trainer's job id."""
    app = _import_app(load_spec("examples/tiny/tiny.yaml", for_launch=True), tmp_path,
                      monkeypatch)
    # What Modal's container runtime answers; off Modal there is no current call.
    monkeypatch.setattr(app.modal, "current_function_call_id", lambda: "fc-01J")
    started = []
    monkeypatch.setattr(app, "_stage", lambda name, then, argv, extra_env=None,
                        passes_on=True: started.append((name, argv, extra_env)))
    app.train.local()
    ((stage, argv, env),) = started
    assert stage == "train" and argv == app.FT_NODE
    assert job_id_env(MODAL, env) == {"FT_JOB_ID": "FT_MODAL_JOB_ID=fc-01J"}


def test_an_app_without_its_bundle_says_how_to_write_it(tmp_path, in_repo):
    """`ft render -o DIR` alone writes no bundle: `modal run` on that file stops with the fix
    instead of failing to upload a directory that is not there."""
    app_file = _write_app(load_spec("examples/tiny/tiny.yaml", for_launch=True), tmp_path,
                          shipped=False)
    with pytest.raises(SystemExit, match=r"tiny\.ship is missing: .*--ship"):
        _load(app_file)


def test_local_model_and_data_paths_say_where_the_container_reads_them(tmp_path):
    """ft ships no data on any backend: a relative path is read from the job's Volume (the
    note gives the upload command), one under a `launch.volumes` mount from that Volume, and
    an absolute one elsewhere from `launch.image` (noted) or refused (no image has it)."""
    tiny = MODAL.render(load_spec(REPO / "examples/tiny/tiny.yaml", for_launch=True))
    (note,) = [n for n in tiny.notes if "ships no data" in n]
    for path in ("examples/tiny/data/alpaca.jsonl", "examples/tiny/model"):
        assert f"`modal volume put ft-tiny {path} {path}`" in note
    assert "`modal volume create ft-tiny`" in note
    on_volume = _spec(tmp_path, base_model="/models/llama",
                      volumes=[{"name": "models", "path": "/models"}])
    assert run_ft("validate", str(on_volume), "--backend", "modal").returncode == 0
    in_image = load_spec(_spec(tmp_path, base_model="/models/llama", image="example.org/x:1"),
                         for_launch=True)
    assert "`base_model`: /models/llama is on no Modal Volume, so it must be in " \
        "`launch.image` (example.org/x:1)" in MODAL.render(in_image).notes
    hub = load_spec(REPO / "examples/llama-3.1-8b-lora.yaml", for_launch=True)
    assert not [n for n in MODAL.render(hub).notes if "ships no data" in n]


def test_readme_says_how_ft_and_the_data_reach_modal(tmp_path, in_repo):
    """The Modal paragraphs of docs/backends.md on shipping, each claim against what ft does: the
    render/launch notes carry the upload commands, `ft render --ship` writes the bundle the
    app needs; the image steps and install methods are checked by the tests above."""
    page = (REPO / "docs" / "backends.md").read_text()
    section = " ".join(page[page.index("## Modal\n"):page.index("## Getting ft")].split())
    for claim in ("`ft launch` writes the bundle `<name>.ship/` beside the app",
                  "The image build installs the shipped wheel with the node installer",
                  "is mounted when a container starts, so changing them rebuilds nothing",
                  "runs `ft` through the same installer",
                  "`install: {method: pip}` installs the package when the image is built",
                  "write the bundle with `ft render --backend modal -o DIR --ship`",
                  "ft ships no data or models, on Modal as on every backend",
                  "`ft render` and `ft launch` print the `modal volume put` commands"):
        assert claim in section, claim
    rendered = run_ft("render", "examples/tiny/tiny.yaml", "--backend", "modal", "-o",
                      str(tmp_path), "--ship")
    assert rendered.returncode == 0, rendered.stderr
    put = "`modal volume put ft-tiny examples/tiny/model examples/tiny/model`"
    assert put in rendered.stderr
    app = _load(tmp_path / "tiny_modal.py")  # the bundle is there: the app loads
    assert image_steps(app.image)[-1][1] == tmp_path / "tiny.ship"
    launched = run_ft("launch", "examples/tiny/tiny.yaml", "--backend", "modal", "--dry-run")
    assert launched.returncode == 0 and put in launched.stderr


@pytest.mark.parametrize(("cluster", "words"), [
    ("ABSOLUTE", "is an absolute path on this machine"),
    ("../mine.yaml", "leaves the directory `ft launch` runs in"),
])
def test_a_file_that_cannot_ship_is_refused_like_on_dstack(tmp_path, monkeypatch, cluster,
                                                          words):
    """Modal ships files by their path relative to the launch directory, as dstack and
    SkyPilot do (docs/backends.md: they refuse absolute paths and `..`)."""
    job = tmp_path / "job"
    job.mkdir()
    spec_file = _job_with_files(job, monkeypatch)
    shutil.copy(job / "mine.yaml", tmp_path / "mine.yaml")
    value = str(job / "mine.yaml") if cluster == "ABSOLUTE" else cluster
    spec_file.write_text(spec_file.read_text().replace("cluster: mine.yaml",
                                                       f"cluster: {value}"))
    with pytest.raises(SpecError, match=re.escape(words)) as caught:
        MODAL.render(load_spec(spec_file, for_launch=True))
    assert "launch.cluster" in str(caught.value)
