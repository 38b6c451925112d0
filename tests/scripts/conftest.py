"""Loading the measurement and bundling scripts (scripts/ is not a package) as modules for their tests."""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from tests.data.conftest import digits_root  # noqa: F401  (the real digit crops, or a loud failure without them)

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def load_script(name: str) -> ModuleType:
    """scripts/NAME.py as a module; scripts/ is on sys.path while it loads (a script may import another)."""
    sys.path.insert(0, str(SCRIPTS))
    try:
        spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(SCRIPTS))
    return module
