"""The package layout in ``docs/development.md``, rendered from the layer map of ``test_layers``.

The layer of each module is the one ``tests/test_layers.py`` enforces; what a
module does is the first sentence of its own docstring. So the docs cannot name
a layer the test does not check, nor miss a module::

    python -m tests.docs_layout --write docs/development.md   # (part of make docs)
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Sequence

from sse_hub.config_reference import write_or_print
from tests.test_layers import LAYERS, MODULES, PACKAGE

SOURCE = "python -m tests.docs_layout"
# test_layers checks no third-party import of the wiring layer.
UNCHECKED_LAYER = "wiring"


def summary(module: str) -> str:
    """The first paragraph of ``sse_hub/<module>.py``'s docstring, on one line."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    docstring = ast.get_docstring(tree)
    if not docstring:
        raise ValueError(f"sse_hub/{module}.py has no docstring to describe it in the layout")
    return " ".join(docstring.split("\n\n")[0].split()).replace("|", "\\|")


def render() -> str:
    lines = ["| layer | its modules may import |", "|---|---|"]
    below: list[str] = []
    packages: set[str] = set()
    for name, _, third_party in LAYERS:
        packages |= third_party  # a layer may import what the layers below it may
        if name == UNCHECKED_LAYER:
            allowed = "anything"
        else:
            parts = ["the standard library", *(f"`{layer}`" for layer in below)]
            parts += [f"`{package}`" for package in sorted(packages)]
            allowed = ", ".join(parts)
        lines.append(f"| {name} | {allowed} |")
        below.append(name)
    lines += ["", "| module | layer | what it does |", "|---|---|---|"]
    for name, modules, _ in LAYERS:
        for module in sorted(set(modules) & set(MODULES)):
            link = f"[`{module}`](../sse_hub/{module}.py)"
            lines.append(f"| {link} | {name} | {summary(module)} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    return write_or_print(render(), SOURCE, (__doc__ or "").split("\n\n")[0], argv)


if __name__ == "__main__":
    sys.exit(main())
