"""The arrows between the product's layers point down (docs/CODE-TOUR.md): foundation <- retrieval
<- chat <- UI <- command line. Read from the import statements, so a lazy import inside a function
counts too: an arrow that runs up is how a 'lightweight' package ends up loading the whole app."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "assistant"
LAYERS = {"retrieval": 1, "chat": 2, "ui": 3, "app": 3, "health": 3, "originals": 3, "cli": 4, "__main__": 4}
NAMES = ["foundation", "retrieval", "chat", "UI", "command line"]


def layer(module: str) -> int:
    """assistant.X.* -> X's layer; everything else in assistant/ (errors, env, config, ...) is the foundation."""
    parts = module.split(".")
    return LAYERS.get(parts[1], 0) if len(parts) > 1 else 0


def imports(path: Path) -> list[tuple[str, int]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node.lineno))
        elif isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
    return [(name, line) for name, line in found if name.startswith("assistant.")]


def test_no_module_imports_a_layer_above_its_own():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        for name, line in imports(path):
            if layer(name) > layer(module):
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line} ({NAMES[layer(module)]}) imports {name}"
                              f" ({NAMES[layer(name)]})")
    assert not upward, "imports that run up a layer:\n" + "\n".join(upward)


def test_the_layer_map_knows_every_top_level_module():
    """A new top-level module is foundation by default: make that a decision, not an accident."""
    known = set(LAYERS) | {"__init__", "errors", "env", "config", "embedding_models", "auth", "app_files",
                           "upstream_compat", "sample_docs", "markdown_syntax", "literal_markdown"}
    present = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
               if (p.suffix == ".py" or (p.is_dir() and not p.name.startswith("__")))}
    assert present <= known, f"place these in tests/test_layers.py's map: {sorted(present - known)}"
