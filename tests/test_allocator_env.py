"""`ft train` runs with the CUDA allocator's expandable segments unless the user set the
allocator variable (orchestrator/cli/allocator_env.py)."""

from __future__ import annotations

import json
import os

from orchestrator.cli.allocator_env import allocator_env
from tests.cli_runner import run_ft
from tests.train_helpers import write_tiny_spec


def test_expandable_segments_unless_the_user_chose_a_setting():
    assert allocator_env({}, "2.11.0+cu130") == {"PYTORCH_ALLOC_CONF": "expandable_segments:True"}
    assert allocator_env({}, "2.8.1") == {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}
    assert allocator_env({"PYTORCH_CUDA_ALLOC_CONF": "max_split_size_mb:512"}, "2.11.0") == {}
    assert allocator_env({"PYTORCH_ALLOC_CONF": "expandable_segments:False"}, "2.11.0") == {}


def test_ft_train_sets_it_for_the_training_process(tmp_path, tiny_model_dir):
    spec = write_tiny_spec(tmp_path, tiny_model_dir, max_steps=1, save_steps=100, eval_steps=100)
    record = tmp_path / "env.json"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTORCH_ALLOC_CONF",
                                                             "PYTORCH_CUDA_ALLOC_CONF")}
    env.update(FT_TRAINER_HOOKS="tests.support.record_env:install",
               FT_TEST_ENV_RECORD=str(record))
    proc = run_ft("train", str(spec), cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(record.read_text())
    assert "expandable_segments:True" in seen.values()
