"""The real digit crops in ../shared/data (tests may read it; the product and `make demo` do not need it)."""

from pathlib import Path

import pytest

DIGITS = Path(__file__).resolve().parents[3] / "shared" / "data" / "meter-digits"


@pytest.fixture(scope="session")
def digits_root() -> Path:
    if not DIGITS.is_dir():
        pytest.fail(f"{DIGITS} is missing: the real digit crops must sit beside the checkout (../shared/data)")
    return DIGITS
