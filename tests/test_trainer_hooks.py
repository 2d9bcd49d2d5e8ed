"""FT_TRAINER_HOOKS: entries load in order, and a bad one is a clear user error before any
work (the multi-node path is exercised by tests/test_local_multinode.py's sample ledger)."""

from __future__ import annotations

import os

import pytest

from tests.cli_runner import run_ft
from tests.support import rank_voices, sample_ledger
from tests.train_helpers import write_tiny_spec
from trainer.loop.hooks import load_hooks
from trainer.torch_free.errors import UserError


def test_entries_load_in_order():
    hooks = load_hooks(f" {sample_ledger.HOOK} ,{rank_voices.HOOK},")
    assert hooks == [sample_ledger.install, rank_voices.speak]
    assert load_hooks(None) == [] and load_hooks("") == []


@pytest.mark.parametrize(("value", "message"), [
    ("tests.support.sample_ledger", r"`tests.support.sample_ledger` is not "
                                    r"`package.module:function`"),
    ("no_such_module_xyz:install", r"cannot import `no_such_module_xyz`.*PYTHONPATH"),
    ("tests.support.sample_ledger:nope", r"`nope` is not defined there"),
    ("tests.support.sample_ledger:HOOK", r"`HOOK` is not callable"),
])
def test_a_bad_entry_is_a_user_error(value, message):
    with pytest.raises(UserError, match=f"FT_TRAINER_HOOKS: .*{message}"):
        load_hooks(value)


def test_ft_train_reports_a_bad_hook_without_a_traceback(tmp_path, tiny_model_dir):
    spec = write_tiny_spec(tmp_path, tiny_model_dir)
    result = run_ft("train", str(spec), cwd=tmp_path,
                    env={**os.environ, "FT_TRAINER_HOOKS": "no_such_module_xyz:install"})
    assert result.returncode == 2
    assert "error: FT_TRAINER_HOOKS: cannot import `no_such_module_xyz`" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "prepared").exists(), "work started before the hooks were checked"
