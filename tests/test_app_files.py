"""Where the app's non-code files are found: the checkout's root, or an installed wheel's copy."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant import app_files
from assistant.chat import PROMPTS_DIR, load_prompts

ENTRIES = ("prompts/system.md", "public/doc-assistant.js", ".chainlit/config.toml", "chainlit.md", "chainlit_en-US.md")


def test_a_checkout_reads_its_own_top_level_files() -> None:
    repo = Path(__file__).resolve().parents[1]
    assert app_files.source_root() == repo and PROMPTS_DIR == repo / "prompts"
    assert app_files.chainlit_root(Path("/nonexistent")) == repo  # Chainlit runs in the checkout itself


@pytest.fixture
def wheel_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A package folder as a wheel installs it: the app files in assistant/app_files/."""
    bundled = tmp_path / "site-packages" / "assistant" / "app_files"
    for name in ENTRIES:
        (bundled / name).parent.mkdir(parents=True, exist_ok=True)
        (bundled / name).write_text(f"from the wheel: {name}\n", encoding="utf-8")
    monkeypatch.setattr(app_files, "BUNDLED", bundled)
    return bundled


def test_an_installed_package_runs_chainlit_in_the_data_folder_linked_to_its_copy(wheel_copy: Path,
                                                                                  tmp_path: Path) -> None:
    assert app_files.source_root() == wheel_copy
    data = tmp_path / "data"
    root = app_files.chainlit_root(data)
    assert root == data / "chainlit-app"
    for name in ENTRIES[1:]:
        assert (root / name).read_text(encoding="utf-8") == f"from the wheel: {name}\n", name
    assert not (root / "prompts").exists()  # read in place, not by Chainlit
    (root / ".files").mkdir()  # Chainlit writes here, and in .chainlit/translations/: a real folder
    (root / ".chainlit" / "translations").mkdir()
    assert not (wheel_copy / ".files").exists() and not (wheel_copy / ".chainlit" / "translations").exists()
    assert app_files.chainlit_root(data) == root  # again: nothing to do, what Chainlit wrote stays
    assert (root / ".files").is_dir()


def test_what_an_older_install_left_is_replaced(wheel_copy: Path, tmp_path: Path) -> None:
    root = tmp_path / "data" / "chainlit-app"
    (root / "public").mkdir(parents=True)
    (root / "public" / "old.js").write_text("old", encoding="utf-8")
    (root / "chainlit.md").write_text("old readme", encoding="utf-8")
    (root / "chainlit_en-US.md").symlink_to(tmp_path / "gone.md")  # a dangling link
    app_files.chainlit_root(tmp_path / "data")
    assert not (root / "public" / "old.js").exists()
    assert (root / "public" / "doc-assistant.js").is_file()
    assert (root / "chainlit.md").read_text(encoding="utf-8") == "from the wheel: chainlit.md\n"
    assert (root / "chainlit_en-US.md").read_text(encoding="utf-8") == "from the wheel: chainlit_en-US.md\n"


def test_where_links_are_refused_the_files_are_copied(wheel_copy: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: Path, target: Path, target_is_directory: bool = False) -> None:
        raise OSError("symbolic links are not allowed here")

    monkeypatch.setattr(Path, "symlink_to", refuse)
    root = app_files.chainlit_root(tmp_path / "data")
    assert not (root / "public").is_symlink()
    assert (root / "public" / "doc-assistant.js").read_text(encoding="utf-8").startswith("from the wheel")


def test_the_wheels_prompts_load(wheel_copy: Path) -> None:
    real = Path(__file__).resolve().parents[1] / "prompts"
    for md in real.glob("*.md"):
        (wheel_copy / "prompts" / md.name).write_text(md.read_text(encoding="utf-8"), encoding="utf-8")
    assert load_prompts(app_files.source_root() / "prompts").system
