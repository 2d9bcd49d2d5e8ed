"""Checkpoint markers, verification, choice, rotation and disk-full errors on real files
(no training here: tests/test_checkpoint_trust.py resumes real runs)."""

from __future__ import annotations

import errno
import json
import logging
import os
from pathlib import Path

import pytest

from trainer.checkpoint.disk_full import disk_full_is_a_user_error, full_disk_reason
from trainer.checkpoint.manifest import WHOLE_FILE_LIMIT, WINDOW, file_digest
from trainer.checkpoint.resume import (
    COMPLETE_MARKER,
    checkpoint_problem,
    choose_checkpoint,
    mark_complete,
    resolve_resume,
)
from trainer.checkpoint.rotation import rotate
from trainer.torch_free.errors import UserError


def _checkpoint(out: Path, step: int, marked: bool = True) -> Path:
    """A checkpoint-like directory with a nested shard directory, like torch DCP writes."""
    path = out / f"checkpoint-{step}"
    (path / "optimizer_0").mkdir(parents=True)
    (path / "adapter_model.safetensors").write_bytes(os.urandom(4096))
    (path / "optimizer_0" / "__0_0.distcp").write_bytes(os.urandom(8192))
    (path / "optimizer_0" / ".metadata").write_bytes(b"dcp metadata")
    if marked:
        names = ["adapter_model.safetensors", "optimizer_0/__0_0.distcp", "optimizer_0/.metadata"]
        mark_complete(path, step, names)
    return path


def test_the_marker_lists_every_file_with_size_and_checksum(tmp_path):
    path = _checkpoint(tmp_path, 4)
    marker = json.loads((path / COMPLETE_MARKER).read_text())
    assert marker["step"] == 4 and marker["format"] == 2
    assert set(marker["files"]) == {"adapter_model.safetensors", "optimizer_0/__0_0.distcp",
                                    "optimizer_0/.metadata"}
    assert marker["files"]["optimizer_0/__0_0.distcp"]["size"] == 8192
    assert checkpoint_problem(path) is None
    assert not list(path.glob(".ft-complete.*")), "the marker's temporary file was left"


@pytest.mark.parametrize("tear, reason", [
    (lambda p: os.truncate(p / "adapter_model.safetensors", 100),
     "adapter_model.safetensors is 100 bytes, the marker recorded 4096"),
    (lambda p: (p / "optimizer_0" / "__0_0.distcp").unlink(),
     "optimizer_0/__0_0.distcp is missing"),
    (lambda p: (p / "adapter_model.safetensors").write_bytes(bytes(4096)),
     "adapter_model.safetensors has the recorded size but different content"),
    (lambda p: (p / COMPLETE_MARKER).unlink(), "no completion marker"),
    (lambda p: (p / COMPLETE_MARKER).write_text("{trunc"), "unreadable completion marker"),
])
def test_a_torn_checkpoint_says_what_is_wrong(tmp_path, tear, reason):
    path = _checkpoint(tmp_path, 4)
    tear(path)
    assert reason in checkpoint_problem(path)


def _entry(**changes):
    return {"format": 2, "step": 8, "world_size": 1,
            "files": {"adapter_model.safetensors": {"size": 4096, "crc32": "0badf00d",
                                                    "sampled": False, **changes}}}


# Valid JSON of every wrong shape seen or likely: each used to crash resume at every restart
# (TypeError, KeyError, AttributeError) or to be trusted without checking a single file.
WRONG_SHAPES = {
    "null": None, "number": 8, "string": "done", "list": [], "empty object": {},
    "files null": {"files": None}, "files empty": {**_entry(), "files": {}},
    "entry without size": {**_entry(), "files": {"a": {"crc32": "0badf00d", "sampled": False}}},
    "size a string": _entry(size="4096"), "size a bool": _entry(size=True),
    "crc32 not hex": _entry(crc32="xyz"), "step a float": {**_entry(), "step": 8.0},
    "world_size missing": {k: v for k, v in _entry().items() if k != "world_size"},
    "unknown key": {**_entry(), "extra": 1}, "format 3": {**_entry(), "format": 3},
    "trained_with a list": {**_entry(), "trained_with": []},
    "format 1": {"step": 8},
}


@pytest.mark.parametrize("shape", WRONG_SHAPES)
def test_a_marker_of_any_other_shape_is_set_aside_not_trusted_nor_a_crash(tmp_path, caplog,
                                                                           shape):
    _checkpoint(tmp_path, 4)
    path = _checkpoint(tmp_path, 8, marked=False)
    (path / COMPLETE_MARKER).write_text(json.dumps(WRONG_SHAPES[shape]))
    assert checkpoint_problem(path).startswith("unverifiable marker (")
    with caplog.at_level(logging.INFO, logger="ft.checkpoint"):
        assert resolve_resume("auto", None, tmp_path) == str(tmp_path / "checkpoint-4")
    assert "checkpoint-8 cannot be resumed from: unverifiable marker (" in caplog.text
    assert "); set aside as incomplete-checkpoint-8." in caplog.text
    assert not path.exists() and len(list(tmp_path.glob("incomplete-checkpoint-8.*"))) == 1


def test_a_step_only_marker_of_an_older_ft_is_unverifiable_but_can_be_named(tmp_path,
                                                                            caplog):
    """Format 1 held only the step: nothing to check the files against. Auto-resume never
    trusts it; a user who names the checkpoint resumes from it, warned."""
    path = _checkpoint(tmp_path, 4, marked=False)
    (path / COMPLETE_MARKER).write_text('{"step": 4}')
    assert "format 1 (an older ft's step-only marker)" in checkpoint_problem(path)
    with caplog.at_level(logging.INFO, logger="ft.checkpoint"):
        assert resolve_resume(str(path), None, tmp_path) == str(path)
    assert "resuming from it unverified" in caplog.text


def test_large_files_are_checked_by_size_and_their_first_and_last_mib(tmp_path):
    big = tmp_path / "shard.distcp"
    big.write_bytes(os.urandom(WHOLE_FILE_LIMIT + WINDOW))
    digest = file_digest(big)
    assert digest["sampled"] and digest["size"] == WHOLE_FILE_LIMIT + WINDOW
    with big.open("r+b") as handle:  # a crash that left the tail unwritten (zeros)
        handle.seek(-100, os.SEEK_END)
        handle.write(bytes(100))
    assert file_digest(big)["crc32"] != digest["crc32"]


def test_resume_falls_back_to_the_newest_checkpoint_that_verifies(tmp_path, caplog):
    for step in (2, 4, 6, 8):
        _checkpoint(tmp_path, step)
    os.truncate(tmp_path / "checkpoint-8" / "adapter_model.safetensors", 10)
    (tmp_path / "checkpoint-6" / COMPLETE_MARKER).unlink()
    with caplog.at_level(logging.INFO, logger="ft.checkpoint"):
        chosen = resolve_resume("auto", None, tmp_path)
    assert chosen == str(tmp_path / "checkpoint-4")
    assert "checkpoint-8 cannot be resumed from: adapter_model.safetensors is 10 bytes" \
        in caplog.text
    assert "checkpoint-6 cannot be resumed from: no completion marker" in caplog.text
    assert "resuming from" in caplog.text and "checkpoint-4" in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("checkpoint-")) == \
        ["checkpoint-2", "checkpoint-4"]


def test_two_interrupted_saves_of_one_step_are_both_set_aside(tmp_path):
    _checkpoint(tmp_path, 4)
    (tmp_path / "incomplete-checkpoint-8").mkdir()  # the name an older ft set aside under
    (tmp_path / "incomplete-checkpoint-8" / "x").write_text("first attempt")
    for attempt in range(2):
        _checkpoint(tmp_path, 8, marked=False)
        assert choose_checkpoint(tmp_path) == tmp_path / "checkpoint-4", attempt
    assert len(list(tmp_path.glob("incomplete-checkpoint-8*"))) == 3


def test_no_complete_checkpoint_is_said_not_silent(tmp_path, caplog):
    _checkpoint(tmp_path, 2, marked=False)
    with caplog.at_level(logging.INFO, logger="ft.checkpoint"):
        assert resolve_resume("auto", None, tmp_path) is None
    assert "no complete checkpoint" in caplog.text and "starting at step 0" in caplog.text


def test_a_damaged_checkpoint_named_by_the_user_is_a_user_error(tmp_path):
    path = _checkpoint(tmp_path, 2)
    (path / "adapter_model.safetensors").unlink()
    with pytest.raises(UserError, match="damaged: adapter_model.safetensors is missing"):
        resolve_resume(str(path), None, tmp_path)


def test_rotation_keeps_the_newest_and_the_limit_and_drops_set_aside_ones(tmp_path):
    for step in (2, 4, 6):
        _checkpoint(tmp_path, step)
    (tmp_path / "incomplete-checkpoint-8.x").mkdir()
    assert rotate(tmp_path, None, tmp_path / "checkpoint-6") == []
    deleted = rotate(tmp_path, 2, tmp_path / "checkpoint-6")
    assert [p.name for p in deleted] == ["checkpoint-2", "incomplete-checkpoint-8.x"]
    rotate(tmp_path, 1, tmp_path / "checkpoint-6")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-6"]


def test_rotation_never_removes_the_checkpoint_just_marked(tmp_path):
    newest = _checkpoint(tmp_path, 2)
    assert rotate(tmp_path, 1, newest) == [] and checkpoint_problem(newest) is None


def test_the_kernels_disk_full_becomes_a_user_error_with_the_free_space(tmp_path):
    with pytest.raises(UserError) as caught, disk_full_is_a_user_error(tmp_path), \
            open("/dev/full", "wb") as handle:  # ENOSPC from the kernel
        handle.write(b"x" * 65536)
        handle.flush()
    message = str(caught.value)
    assert message.startswith(f"disk full while writing to {tmp_path} (no space left on device)")
    assert " free of " in message and "Traceback" not in message


def test_torch_and_safetensors_wording_of_a_full_disk_is_recognised():
    # What torch's zip writer and safetensors raised on a full tmpfs here (see the e2e test).
    torch_error = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos "
                               "80064 vs 79952")
    assert full_disk_reason(torch_error) == "the writer reported 'unexpected pos'"
    safetensors_error = Exception("Error while serializing: I/O error: No space left on "
                                  "device (os error 28)")
    assert full_disk_reason(safetensors_error) is not None


def test_other_errors_pass_through_untouched(tmp_path):
    with pytest.raises(ValueError), disk_full_is_a_user_error(tmp_path):
        raise ValueError("a bug")
    wrapped = RuntimeError("save failed")
    wrapped.__cause__ = OSError(errno.EDQUOT, "Disk quota exceeded")
    assert full_disk_reason(wrapped) == "disk quota exceeded"


def test_dcp_failures_on_any_rank_are_searched():
    from torch.distributed.checkpoint.api import CheckpointException

    exc = CheckpointException("save", {1: (OSError(errno.ENOSPC, "No space left"), None)})
    assert full_disk_reason(exc) == "no space left on device"
