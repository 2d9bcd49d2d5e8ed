"""The cluster profile's fabric must exist on the clouds the spec pins the job to: an
InfiniBand profile on AWS, or EFA off AWS, is refused before anything is rendered."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from orchestrator.backends import get
from orchestrator.spec.load import parse_spec
from tests.specs import SHARED_OUTPUT_DIR, SHARED_VOLUMES
from trainer.torch_free.errors import SpecError

REPO = Path(__file__).resolve().parent.parent
TRAINING = {"base_model": "./model", "datasets": [{"path": "d.jsonl", "type": "alpaca"}],
            "adapter": "lora", "lora_target_linear": True, "output_dir": SHARED_OUTPUT_DIR}


def _spec(cluster: str, **launch: object):
    text = yaml.safe_dump({**TRAINING, "launch": {"nodes": 2, "gpus_per_node": 8, "gpu": "H100",
                                                  "cluster": cluster, "volumes": SHARED_VOLUMES,
                                                  **launch}})
    return parse_spec(text, "spec.yaml", for_launch=True)


@pytest.mark.parametrize(("backend", "cluster", "launch", "words"), [
    ("skypilot", "infiniband", {"skypilot": {"cloud": "aws"}},
     "`launch.skypilot.cloud` includes aws, whose fabric is EFA"),
    ("dstack", "infiniband", {"dstack": {"backends": ["gcp", "aws"]}},
     "`launch.dstack.backends` includes aws, whose fabric is EFA"),
    ("skypilot", "aws-efa", {"skypilot": {"cloud": "gcp"}},
     "EFA exists only on AWS, but `launch.skypilot.cloud` names gcp"),
    ("dstack", "aws-efa", {"dstack": {"backends": ["aws", "azure", "lambda"]}},
     "EFA exists only on AWS, but `launch.dstack.backends` names azure, lambda"),
])
def test_a_fabric_the_cloud_lacks_is_refused(backend, cluster, launch, words):
    with pytest.raises(SpecError) as caught:
        get(backend).render(_spec(cluster, **launch))
    assert "launch.cluster" in str(caught.value) and words in str(caught.value)


@pytest.mark.parametrize(("backend", "cluster", "launch"), [
    ("skypilot", "aws-efa", {"skypilot": {"cloud": "aws"}}),
    ("dstack", "aws-efa", {"dstack": {"backends": ["aws"]}}),
    ("skypilot", "infiniband", {"skypilot": {"cloud": "azure"}}),
    ("dstack", "infiniband", {}),  # no cloud named: dstack may pick one with IB
    ("skypilot", "tcp", {"skypilot": {"cloud": "aws"}}),
])
def test_a_fabric_the_cloud_has_renders(backend, cluster, launch):
    assert get(backend).render(_spec(cluster, **launch)).files


def test_the_readme_launch_section_renders_on_every_backend():
    """The annotated `launch:` block of docs/spec.md is a spec the backends accept as written."""
    page = (REPO / "docs" / "spec.md").read_text()
    block = re.search(r"```yaml\n(launch:\n.*?)```", page, re.S).group(1)
    launch = yaml.safe_load(block)["launch"]
    spec = parse_spec(yaml.safe_dump({**TRAINING, "launch": launch}), "docs/spec.md",
                      for_launch=True)
    for backend in ("dstack", "skypilot", "slurm"):
        assert get(backend).render(spec).files


# --- The backend is asked for the fabric the profile names -----------------------------

def _sky(cluster: str, nodes: int = 2, **launch: object):
    rendered = get("skypilot").render(_spec(cluster, nodes=nodes, **launch))
    (text,) = rendered.files.values()
    return yaml.safe_load(text)["resources"], text, rendered.notes


@pytest.mark.parametrize("cluster", ["infiniband", "roce", "aws-efa"])
def test_skypilot_asks_for_the_rdma_tier_on_a_multi_node_rdma_profile(cluster):
    resources, _, _ = _sky(cluster)
    assert resources["network_tier"] == "best"


@pytest.mark.parametrize(("cluster", "nodes"), [("tcp", 2), ("auto", 2), ("infiniband", 1)])
def test_skypilot_leaves_the_tier_alone_without_rdma_between_nodes(cluster, nodes):
    resources, _, _ = _sky(cluster, nodes=nodes)
    assert "network_tier" not in resources


@pytest.mark.parametrize(("cluster", "tier"), [("tcp", "best"), ("infiniband", "best"),
                                               ("tcp", "standard")])
def test_skypilot_renders_the_users_tier(cluster, tier):
    resources, _, _ = _sky(cluster, skypilot={"network_tier": tier})
    assert resources["network_tier"] == tier


def test_skypilot_standard_tier_with_an_rdma_profile_is_refused():
    """Plain networking under a profile that expects RDMA trains over TCP sockets: an
    impossible combination, so it fails before anything is rendered, naming both fixes."""
    with pytest.raises(SpecError) as caught:
        _sky("roce", skypilot={"network_tier": "standard"})
    message = str(caught.value)
    assert "launch.skypilot.network_tier" in message and "`cluster: roce`" in message
    assert "Remove `network_tier`" in message and "`cluster: tcp`" in message
    # One node has no inter-node traffic: nothing contradicts.
    assert _sky("roce", nodes=1, skypilot={"network_tier": "standard"})[0]["network_tier"] \
        == "standard"


def test_skypilot_efa_says_what_sky_config_needs_in_the_file_and_the_notes():
    _, text, notes = _sky("aws-efa", skypilot={"cloud": "aws"})
    wanted = "~/.sky/config.yaml has `aws: {use_internal_ips: true, use_ssm: true}`"
    assert any(wanted in note for note in notes)
    comment, tier = re.search(r"\n(  # .*)\n(  network_tier: .*)\n", text).groups()
    assert wanted in comment and tier == '  network_tier: "best"'
    assert "config" not in yaml.safe_load(text)  # a task cannot set it (server test below)


@pytest.mark.parametrize("backend", ["dstack", "skypilot"])
def test_efa_image_requirement_is_said_at_render_never_silently(backend):
    def efa_notes(**launch):
        notes = get(backend).render(_spec("aws-efa", **launch)).notes
        return [note for note in notes if "aws-ofi-nccl" in note]

    (default,) = efa_notes()
    assert "ft's default image (nvcr.io/nvidia/pytorch:" in default
    assert "libfabric" in default and "AWS Deep Learning Container" in default
    assert ("dstack adds them only to its own default image" in default) == \
        (backend == "dstack")
    (own,) = efa_notes(image="example.com/me/train:1")
    assert "`launch.image` (example.com/me/train:1)" in own
    assert not [n for n in get(backend).render(_spec("infiniband")).notes
                if "aws-ofi-nccl" in n]


def test_validate_prints_the_efa_notes(tmp_path):
    from tests.cli_runner import run_ft

    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({**TRAINING, "launch": {
        "nodes": 2, "gpus_per_node": 8, "gpu": "H100", "cluster": "aws-efa",
        "skypilot": {"cloud": "aws"}, "volumes": SHARED_VOLUMES}}))
    result = run_ft("validate", str(spec), "--backend", "skypilot")
    assert result.returncode == 0, result.stderr
    assert "--backend skypilot: note: SkyPilot attaches only one EFA interface" in result.stderr
    assert "--backend skypilot: note: `cluster: aws-efa` needs libfabric" in result.stderr


def test_modal_rdma_follows_the_profile():
    """`@modal.clustered(rdma=...)`: on for every profile but plain TCP."""
    from orchestrator.backends.modal.render import render

    def rdma(cluster):
        spec = _spec(cluster, gpus_per_node=8)
        (text,) = render(spec).files.values()
        return re.search(r"@modal\.clustered\(size=2, rdma=(\w+)\)", text).group(1)

    assert [rdma(c) for c in ("infiniband", "roce", "aws-efa", "auto", "tcp")] == \
        ["True"] * 4 + ["False"]


def test_skypilots_parser_reads_the_fabric_ft_renders(skypilot_validator):
    texts = {cluster: next(iter(get("skypilot").render(
        _spec(cluster, skypilot={"cloud": "aws"} if cluster == "aws-efa" else {})
    ).files.values())) for cluster in ("infiniband", "roce", "aws-efa", "tcp")}
    results = skypilot_validator(texts)
    tiers = {}
    for cluster, result in results.items():
        assert result.error is None, f"{cluster}: {result.error}"
        (resources,) = result.parsed["resources"]
        tiers[cluster] = resources["network_tier"]
    assert tiers == {"infiniband": "best", "roce": "best", "aws-efa": "best", "tcp": None}


def test_skypilots_server_refuses_aws_settings_in_a_task(skypilot_validator):
    """Why ft notes ~/.sky/config.yaml instead of rendering `config: {aws: {use_internal_ips:
    true}}`: SkyPilot's client lets the block through, its API server (which every launch
    goes through) refuses it; `docker.run_options`, an overridable key, passes both."""
    from tests.support import backend_validators as bv

    base = "name: x\nnum_nodes: 2\nresources: {cloud: aws, network_tier: best}\nrun: echo\n"
    texts = {"aws": base + "config: {aws: {use_internal_ips: true}}\n",
             "docker": base + "config: {docker: {run_options: [--ipc=host]}}\n"}
    client, server = skypilot_validator(texts), bv.validate_skypilot_as_server(texts)
    assert client["aws"].error is None  # the client defers to the server...
    assert "unsupported field 'aws'" in server["aws"].error  # ...which refuses it
    assert client["docker"].error is None and server["docker"].error is None
