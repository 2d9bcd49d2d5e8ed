"""Session fixtures for the backend validators (import them into conftest.py).

The first use in a session builds the backend's venv if the cache lacks it (dstack ~30 s,
SkyPilot ~60 s, needs PyPI); later sessions reuse it. Each fixture yields the validate
function itself, so tests call ``dstack_validator({"label": yaml_text})``.
"""

import pytest

from tests.support import backend_validators as bv


@pytest.fixture(scope="session")
def dstack_validator():
    bv.ensure_venv(bv.DSTACK_PIN)
    return bv.validate_dstack


@pytest.fixture(scope="session")
def skypilot_validator():
    bv.ensure_venv(bv.SKYPILOT_PIN)
    return bv.validate_skypilot
