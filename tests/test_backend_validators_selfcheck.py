"""Self-check: the backend validators accept good files and reject bad ones.

If these fail, every test that relies on the validators is meaningless, so they run in CI
(the venvs are built on first use and cached under .cache/validators).
"""

import textwrap

from tests.support.fixtures import dstack_validator, skypilot_validator  # noqa: F401

DSTACK_TASK = textwrap.dedent(
    """\
    type: task
    name: selfcheck
    nodes: 2
    commands:
      - echo hello
    resources:
      gpu: H100:8
    """
)

SKY_TASK = textwrap.dedent(
    """\
    name: selfcheck
    num_nodes: 2
    resources:
      accelerators: H100:8
    run: echo hello
    """
)


def test_dstack_accepts_minimal_task(dstack_validator):  # noqa: F811
    res = dstack_validator({"ok": DSTACK_TASK})["ok"]
    assert res.error is None
    assert res.parsed["type"] == "task"
    assert res.parsed["nodes"] == 2
    assert res.parsed["resources"]["gpu"]["name"] == ["H100"]
    assert res.parsed["resources"]["gpu"]["count"] == {"min": 8, "max": 8}


def test_dstack_rejects_unknown_key(dstack_validator):  # noqa: F811
    res = dstack_validator({"typo": DSTACK_TASK.replace("nodes:", "nodez:")})["typo"]
    assert res.parsed is None
    assert "nodez" in res.error


def test_skypilot_accepts_minimal_task(skypilot_validator):  # noqa: F811
    res = skypilot_validator({"ok": SKY_TASK})["ok"]
    assert res.error is None
    assert res.parsed["name"] == "selfcheck"
    assert res.parsed["num_nodes"] == 2
    assert res.parsed["run"] == "echo hello"
    [resources] = res.parsed["resources"]
    assert resources["accelerators"] == {"H100": 8}


def test_skypilot_rejects_unknown_key(skypilot_validator):  # noqa: F811
    res = skypilot_validator({"typo": SKY_TASK.replace("num_nodes:", "num_nodez:")})["typo"]
    assert res.parsed is None
    assert "num_nodez" in res.error


def test_skypilot_null_secret_is_a_launch_time_reference(skypilot_validator):  # noqa: F811
    text = SKY_TASK + "secrets:\n  HF_TOKEN: null\n"
    res = skypilot_validator({"secret": text})["secret"]
    assert res.error is None
    assert "HF_TOKEN" in res.parsed["secrets"]
    # null means "value supplied at launch", so nothing secret is written in the file
    assert res.parsed["managed_secrets"] == ["HF_TOKEN"]
    assert res.parsed["inline_secrets"] == []


def test_many_files_in_one_call_keep_their_labels(dstack_validator):  # noqa: F811
    texts = {f"f{i}": DSTACK_TASK.replace("nodes: 2", f"nodes: {i + 1}") for i in range(3)}
    texts["broken"] = "type: task\n"  # neither commands nor image
    results = dstack_validator(texts)
    assert set(results) == set(texts)
    assert [results[f"f{i}"].parsed["nodes"] for i in range(3)] == [1, 2, 3]
    assert "commands" in results["broken"].error
