"""The house rules: no import circle, and no module in the layers too long to read at once."""
from __future__ import annotations

from pathlib import Path

import trialfuse

PACKAGE = Path(trialfuse.__file__).parent
MAX_LINES = 400  # a module past it holds more than one concept (issue: the house before classification)


def test_no_module_of_the_package_imports_itself_back():
    """Import circles (lazy and type-only imports counted) make the house hard to read and to
    split; import-linter's graph finds them."""
    import grimp

    graph = grimp.build_graph("trialfuse", include_external_packages=False)
    circles = sorted({tuple(sorted((module, imported))) for module in graph.modules
                      for imported in graph.find_modules_directly_imported_by(module)
                      if graph.chain_exists(importer=imported, imported=module)})
    assert not circles


def test_no_module_in_the_driver_transport_or_engine_is_over_the_limit():
    long = {str(path.relative_to(PACKAGE)): n for layer in ("driver", "transport", "engine")
            for path in (PACKAGE / layer).rglob("*.py") if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long
