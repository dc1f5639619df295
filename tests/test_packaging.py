"""pyproject.toml and the pinned requirements files describe the same product; its pytest settings hold.

requirements.txt is the lock Render installs and CI tests; pyproject.toml's [project] is what
`pip install .` resolves. If they drift, one of them installs something nobody tested. The wheel
itself is built, installed and run from outside the checkout by .ci/run (.ci/check_install.py).
"""

from __future__ import annotations

import importlib
import re
import tomllib
import warnings
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def pins(path: Path) -> dict[str, Requirement]:
    """name -> requirement of each line of a requirements file (comments, options and -r lines skipped)."""
    found = {}
    for line in path.read_text().splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()
        if line and not line.startswith(("#", "-")):
            req = Requirement(line)
            found[canonicalize_name(req.name)] = req
    return found


def declared(requirements: list[str]) -> dict[str, Requirement]:
    return {canonicalize_name(r.name): r for r in map(Requirement, requirements)}


def exact_version(req: Requirement) -> str | None:
    """The version of a `==` pin; None for a range."""
    specs = list(req.specifier)
    return specs[0].version if len(specs) == 1 and specs[0].operator == "==" else None


@pytest.mark.parametrize(("lock", "group"), [("requirements.txt", None), ("requirements-dev.txt", "dev"),
                                             ("requirements-dev.txt", "real-llm")])
def test_the_lock_satisfies_pyproject(lock: str, group: str | None) -> None:
    locked = pins(ROOT / lock)
    wanted = declared(PROJECT["dependencies"] if group is None else PROJECT["optional-dependencies"][group])
    for name, req in wanted.items():
        assert name in locked, f"pyproject names {name}, {lock} does not"
        pinned = exact_version(locked[name])
        if pinned is not None:
            assert req.specifier.contains(pinned, prereleases=True), f"{lock} pins {name}=={pinned}, outside {req}"
        assert locked[name].extras == req.extras, f"{name}: extras {locked[name].extras} in {lock}, {req.extras} here"


def test_every_runtime_pin_is_a_project_dependency() -> None:
    """What Render installs is exactly what `pip install .` needs: no package only one of them has."""
    assert set(pins(ROOT / "requirements.txt")) == set(declared(PROJECT["dependencies"]))


def test_the_dev_extras_cover_requirements_dev() -> None:
    dev_only = set(pins(ROOT / "requirements-dev.txt")) - set(pins(ROOT / "requirements.txt"))
    extras = set(declared(PROJECT["optional-dependencies"]["dev"])) | set(
        declared(PROJECT["optional-dependencies"]["real-llm"]))
    assert dev_only == extras


def test_the_console_script_is_python_m_assistant() -> None:
    module, _, attr = PROJECT["scripts"]["doc-assistant"].partition(":")
    main = getattr(importlib.import_module(module), attr)
    assert module == "assistant.__main__" and callable(main)
    with pytest.raises(SystemExit) as exit_info:  # argparse's --help, as `python -m assistant --help`
        main(["--help"])
    assert exit_info.value.code == 0


def test_our_deprecations_are_errors_and_upstream_ones_are_reported() -> None:
    """pyproject's filterwarnings: a DeprecationWarning raised from assistant/, tests/ or bench/ fails
    the test; one from a dependency only appears in the summary (so upgrades show what they deprecate)."""
    with pytest.raises(DeprecationWarning):
        warnings.warn("our own deprecated call", DeprecationWarning, stacklevel=1)
    with warnings.catch_warnings(record=True) as seen:  # keeps the filters in force, records what they show
        warnings.warn_explicit("an upstream deprecation", DeprecationWarning, "somelib/api.py", 1, module="somelib.api")
    assert [str(w.message) for w in seen] == ["an upstream deprecation"]
