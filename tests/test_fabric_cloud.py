"""The cluster profile's fabric must exist on the clouds the spec pins the job to: an
InfiniBand profile on AWS, or EFA off AWS, is refused before anything is rendered."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from orchestrator.backends import get
from orchestrator.spec.load import parse_spec
from trainer.contract.errors import SpecError

REPO = Path(__file__).resolve().parent.parent
TRAINING = {"base_model": "./model", "datasets": [{"path": "d.jsonl", "type": "alpaca"}],
            "adapter": "lora", "lora_target_linear": True}


def _spec(cluster: str, **launch: object):
    text = yaml.safe_dump({**TRAINING, "launch": {"nodes": 2, "gpus_per_node": 8, "gpu": "H100",
                                                  "cluster": cluster, **launch}})
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
    """The README's annotated `launch:` block is a spec the backends accept as written."""
    readme = (REPO / "README.md").read_text()
    block = re.search(r"```yaml\n(launch:\n.*?)```", readme, re.S).group(1)
    launch = yaml.safe_load(block)["launch"]
    spec = parse_spec(yaml.safe_dump({**TRAINING, "launch": launch}), "README.md",
                      for_launch=True)
    for backend in ("dstack", "skypilot", "slurm"):
        assert get(backend).render(spec).files
