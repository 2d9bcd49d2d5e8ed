"""Session fixtures for the backend validators (import them into conftest.py).

A cold cache needs each backend's venv built (dstack ~30-45 s, SkyPilot ~1.5-3 min, needs
PyPI); conftest starts the builds in the background after collection, and these fixtures
wait for theirs, saying so on the terminal. Later sessions reuse the venvs. Each fixture
yields the validate function itself, so tests call ``dstack_validator({"label": yaml_text})``.
"""

import pytest

from tests.support import backend_validators as bv
from tests.support import validator_prep


@pytest.fixture(scope="session")
def dstack_validator(pytestconfig):
    validator_prep.wait(bv.DSTACK_PIN, validator_prep.terminal_say(pytestconfig))
    return bv.validate_dstack


@pytest.fixture(scope="session")
def skypilot_validator(pytestconfig):
    validator_prep.wait(bv.SKYPILOT_PIN, validator_prep.terminal_say(pytestconfig))
    return bv.validate_skypilot


@pytest.fixture(scope="session")
def dstack_server_python(pytestconfig):
    """The python of a venv with `dstack[server]` (tests start their own server with it)."""
    return validator_prep.wait(bv.DSTACK_SERVER_PIN, validator_prep.terminal_say(pytestconfig))
