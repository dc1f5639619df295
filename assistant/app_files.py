"""Where the files the app reads beside its code live, in a checkout and in an installed wheel.

The prompts (`prompts/`) and Chainlit's app root (`.chainlit/config.toml`, `chainlit*.md`,
`public/`) sit at the repository's top level, where the product's layout puts them. A wheel
carries a copy inside the package, in `assistant/app_files/` (pyproject's force-include), so an
install adds nothing at site-packages' top level. Chainlit also writes into its app root
(`.files/` for uploads, `.chainlit/translations/`), which an installed package's folder may not
allow, so an installed `serve` runs Chainlit in a folder of the data directory whose entries link
to that copy (`chainlit_root`). Stdlib only.
"""

from __future__ import annotations

import shutil
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
CHECKOUT_ROOT = PACKAGE_DIR.parent
BUNDLED = PACKAGE_DIR / "app_files"  # only in an installed wheel
# What Chainlit reads from its app root (prompts/ are ours and read in place).
CHAINLIT_ENTRIES = (".chainlit/config.toml", "chainlit.md", "chainlit_en-US.md", "public")


def source_root() -> Path:
    """The folder holding prompts/, public/, .chainlit/ and chainlit*.md: the wheel's copy when
    there is one, else the checkout's root (also what an editable install uses)."""
    return BUNDLED if (BUNDLED / "prompts").is_dir() else CHECKOUT_ROOT


def chainlit_root(data_dir: Path) -> Path:
    """The folder Chainlit runs in: a checkout's root, or for an installed package a folder in
    `data_dir` whose entries link to the wheel's copy (copied where links are not allowed)."""
    source = source_root()
    if source == CHECKOUT_ROOT:
        return CHECKOUT_ROOT
    root = data_dir / "chainlit-app"
    for entry in CHAINLIT_ENTRIES:
        _link(source / entry, root / entry)
    return root


def _link(source: Path, place: Path) -> None:
    """Make `place` show `source`, replacing what an older install left there."""
    if place.is_symlink() and place.resolve() == source.resolve():
        return
    place.parent.mkdir(parents=True, exist_ok=True)
    if place.is_symlink() or place.is_file():
        place.unlink()
    elif place.is_dir():
        shutil.rmtree(place)
    try:
        place.symlink_to(source, target_is_directory=source.is_dir())
    except OSError:  # e.g. Windows without the right to make links
        if source.is_dir():
            shutil.copytree(source, place)
        else:
            shutil.copy2(source, place)
