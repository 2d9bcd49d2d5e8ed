"""A job carries ft and every file its spec points to (orchestrator.shipping).

The rendered file names what ships and pins each file's hash; `ft launch` writes the bundle
(ft's wheel, the node installer, the spec, the files) where the backend's own mechanism
picks it up; `ft node` refuses a file that changed; an unshippable path is a clear error.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import pytest
import yaml

from orchestrator import DISTRIBUTION, __version__
from orchestrator.backends import get
from orchestrator.node.entry import check_file_hashes
from orchestrator.shipping.bundle import ship
from orchestrator.shipping.wheel import build_wheel, wheel_name
from orchestrator.spec.load import load_spec
from tests.cli_runner import run_ft
from tests.specs import SHARED_OUTPUT_DIR, SHARED_VOLUMES
from trainer.torch_free.errors import SpecError, UserError

REPO = Path(__file__).resolve().parent.parent


def _spec_dir(tmp: Path, **launch: object) -> Path:
    """A spec with a custom cluster profile and DeepSpeed JSON beside it, in `tmp`."""
    profile = yaml.safe_load((REPO / "clusters" / "tcp.yaml").read_text())
    (tmp / "mine.yaml").write_text(yaml.safe_dump({**profile, "name": "mine"}))
    (tmp / "ds").mkdir()
    shutil.copy(REPO / "trainer" / "deepspeed_configs" / "zero2.json", tmp / "ds" / "z2.json")
    spec = {"base_model": "./model", "datasets": [{"path": "d.jsonl", "type": "alpaca"}],
            "deepspeed": "ds/z2.json", "output_dir": SHARED_OUTPUT_DIR,
            "launch": {"name": "shipme", "nodes": 2, "gpus_per_node": 1, "gpu": "H100",
                       "cluster": "mine.yaml", "volumes": SHARED_VOLUMES, **launch}}
    (tmp / "spec.yaml").write_text(yaml.safe_dump(spec))
    return tmp


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_dstack_ships_the_spec_and_its_files_at_the_paths_the_job_reads(tmp_path, monkeypatch):
    monkeypatch.chdir(_spec_dir(tmp_path, install={"method": "image"}))
    spec = load_spec("spec.yaml", for_launch=True)
    rendered = get("dstack").render(spec)
    (text,) = rendered.files.values()
    task = yaml.safe_load(text)
    assert task["files"] == ["shipme.ship/.ft/shipme.yaml:.ft/shipme.yaml",
                             "shipme.ship/mine.yaml:mine.yaml",
                             "shipme.ship/ds/z2.json:ds/z2.json"]
    # The hashes are in the file (a changed JSON makes a checked-in render stale) and go to
    # ft node, which checks them on every node.
    for path in ("mine.yaml", "ds/z2.json"):
        assert f"# ships {path} sha256: {_sha(tmp_path / path)}\n" in text
        assert f"--file-sha256 {path}={_sha(tmp_path / path)}" in task["commands"][-1]

    bundle = ship(rendered.ship, tmp_path / "out")
    assert bundle == tmp_path / "out" / "shipme.ship"
    for mapping in task["files"]:
        local, _ = mapping.split(":")
        assert (tmp_path / "out" / local).is_file(), local
    assert (bundle / ".ft" / "shipme.yaml").read_text() == spec.effective_text
    assert (bundle / "ds" / "z2.json").read_bytes() == (tmp_path / "ds" / "z2.json").read_bytes()
    assert not (bundle / ".ft" / "shipme").exists()  # install: image ships no wheel


def test_render_check_goes_stale_when_a_shipped_file_changes(tmp_path):
    _spec_dir(tmp_path)
    args = ("render", "spec.yaml", "--backend", "slurm", "-o", "out")
    assert run_ft(*args, cwd=tmp_path).returncode == 0
    assert run_ft(*args, "--check", cwd=tmp_path).returncode == 0
    config = json.loads((tmp_path / "ds" / "z2.json").read_text())
    config["gradient_clipping"] = 0.5
    (tmp_path / "ds" / "z2.json").write_text(json.dumps(config))
    stale = run_ft(*args, "--check", cwd=tmp_path)
    assert stale.returncode == 1 and "shipme.sbatch (differs)" in stale.stderr, stale.stderr


@pytest.mark.parametrize(("backend", "cluster", "words"), [
    ("dstack", "ABSOLUTE", "is an absolute path on this machine"),
    ("skypilot", "ABSOLUTE", "is an absolute path on this machine"),
    ("dstack", "../mine.yaml", "leaves the directory `ft launch` runs in"),
    ("slurm", "../mine.yaml", "leaves the directory `ft launch` runs in"),
])
def test_unshippable_paths_are_errors_naming_the_field(tmp_path, monkeypatch, backend, cluster,
                                                       words):
    _spec_dir(tmp_path)  # the profile exists, one level up from where the job is launched
    cluster = str(tmp_path / "mine.yaml") if cluster == "ABSOLUTE" else cluster
    job = tmp_path / "job"
    job.mkdir()
    spec_text = (tmp_path / "spec.yaml").read_text().replace("cluster: mine.yaml",
                                                             f"cluster: {cluster}")
    (job / "spec.yaml").write_text(spec_text)
    shutil.copytree(tmp_path / "ds", job / "ds")
    monkeypatch.chdir(job)
    spec = load_spec("spec.yaml", for_launch=True)
    with pytest.raises(SpecError) as caught:
        get(backend).render(spec)
    message = str(caught.value)
    assert "launch.cluster" in message and words in message, message


def test_slurm_reads_absolute_paths_on_the_shared_filesystem(tmp_path, monkeypatch):
    monkeypatch.chdir(_spec_dir(tmp_path, cluster=str(tmp_path / "mine.yaml")))
    rendered = get("slurm").render(load_spec("spec.yaml", for_launch=True))
    (text,) = rendered.files.values()
    assert f"--file-sha256 {tmp_path / 'mine.yaml'}={_sha(tmp_path / 'mine.yaml')}" in text


def test_ft_node_refuses_a_shipped_file_that_changed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.yaml").write_text("fabric: tcp\n")
    digest = _sha(tmp_path / "mine.yaml")
    check_file_hashes([f"mine.yaml={digest}"])  # unchanged: fine
    (tmp_path / "mine.yaml").write_text("fabric: infiniband\n")
    with pytest.raises(UserError, match="mine.yaml on this node differs"):
        check_file_hashes([f"mine.yaml={digest}"])
    with pytest.raises(UserError, match="ships, cannot be read"):
        check_file_hashes([f"gone.yaml={digest}"])


def test_the_wheel_of_this_ft_is_complete_and_reproducible(tmp_path):
    wheel = build_wheel(tmp_path / "a")
    assert wheel.name == wheel_name() == f"ft_finetune-{__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(f"ft_finetune-{__version__}.dist-info/METADATA").decode()
    assert f"Name: {DISTRIBUTION}\n" in metadata
    for needed in ("orchestrator/templates/dstack.task.yml.j2", "orchestrator/clusters/tcp.yaml",
                   "orchestrator/shipping/install_ft.py", "trainer/deepspeed_configs/zero2.json"):
        assert needed in names, needed
    # Every module of both packages, every subpackage included (setup.py finds them).
    modules = {str(path.relative_to(REPO)) for top in ("orchestrator", "trainer")
               for path in (REPO / top).rglob("*.py")}
    assert modules <= names, sorted(modules - names)
    # Same sources, same bytes: nodes caching installs by the wheel's hash reuse them.
    assert _sha(build_wheel(tmp_path / "b")) == _sha(wheel)


def test_render_ship_writes_the_bundle_and_dry_run_lists_it(tmp_path):
    _spec_dir(tmp_path)
    dry = run_ft("launch", "spec.yaml", "--backend", "dstack", "--dry-run", "-o", "out",
                 cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    listed = dry.stdout.split("# ---- shipped at submit ----\n")[1].split("# ----")[0]
    assert listed.splitlines() == [
        "out/shipme.ship/.ft/shipme.yaml  (the spec)",
        "out/shipme.ship/.ft/shipme/wheels/  (the wheel of this ft, built now)",
        "out/shipme.ship/.ft/shipme/install_ft.py  (installs it once per node)",
        "out/shipme.ship/mine.yaml  (`launch.cluster`)",
        "out/shipme.ship/ds/z2.json  (`deepspeed`)"]
    assert not (tmp_path / "out").exists()  # a dry run writes nothing

    rendered = run_ft("render", "spec.yaml", "--backend", "dstack", "-o", "out", "--ship",
                      cwd=tmp_path)
    assert rendered.returncode == 0, rendered.stderr
    for line in listed.splitlines():
        path = tmp_path / line.split("  ")[0]
        assert path.exists(), path
    assert [p.name for p in (tmp_path / listed.splitlines()[1].split("  ")[0]).iterdir()] == \
        [wheel_name()]


def test_readme_states_the_default_image_and_install_method():
    from orchestrator.backends.node_steps import DEFAULT_IMAGE
    from orchestrator.spec.launch_schema import Install

    page = (REPO / "docs" / "spec.md").read_text()
    assert f"image: null                   # default: {DEFAULT_IMAGE} (public)" in page
    assert Install().method == "wheel"
    assert "install: {method: wheel}      # wheel (ft ships itself)" in page


@pytest.mark.parametrize(("backend", "own", "other"), [
    ("dstack", ".dstackignore", ".skyignore"), ("skypilot", ".skyignore", ".dstackignore")])
def test_the_bundle_carries_the_submitting_backends_own_ignore_file(
        tmp_path, monkeypatch, fake, backend, own, other):
    """`ft launch` asks the backend for its ignore file (Backend.ignore_file) and writes only
    that one into the bundle, keeping every file from the tool's upload filter."""
    from orchestrator.jobs.submit import submit
    from orchestrator.process import Completed

    monkeypatch.chdir(_spec_dir(tmp_path, install={"method": "image"}))
    monkeypatch.setenv("FT_STATE_DIR", str(tmp_path / "state"))
    spec = load_spec("spec.yaml", for_launch=True)
    chosen = get(backend)
    monkeypatch.setattr(chosen, "check_ready", lambda: None)
    fake({(): Completed((), 1, "", "stop here")})  # the submit itself fails: ship came first
    with pytest.raises(UserError, match="stop here"):
        submit(chosen, chosen.render(spec), tmp_path / "out", spec)
    bundle = tmp_path / "out" / "shipme.ship"
    assert (bundle / own).read_text() == chosen.ignore_file.text
    assert chosen.ignore_file.text.startswith("# Written by ft: the job needs every file")
    assert not (bundle / other).exists()
