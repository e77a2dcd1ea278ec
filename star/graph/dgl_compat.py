"""The one place that imports dgl (everything else calls `import_dgl()`).

DGL 2.1.0 (the newest Linux wheel) bundles its graphbolt C++ library only for torch 2.0-2.2.1, so a plain
`import dgl` under torch 2.13 fails with "Cannot find DGL C++ graphbolt library". The core (libdgl.so) does not
link torch and works: an empty module registered as `dgl.graphbolt` before the first import lets heterographs,
HeteroGraphConv / GATConv, NeighborSampler and DataLoader work (FIELD-NOTES, "Installing"). graphbolt,
dgl.sparse and distributed DGL stay unavailable.
"""

from __future__ import annotations

import functools
import os
import sys
import types


@functools.cache
def import_dgl():
    """The dgl module, imported once with the graphbolt stub in place."""
    if "dgl" not in sys.modules:
        # graphbolt's loader raises at import time under torch 2.13; nothing we use needs it
        sys.modules.setdefault("dgl.graphbolt", types.ModuleType("dgl.graphbolt"))
        # without it dgl writes ~/.dgl/config.json on first import and prints about it
        os.environ.setdefault("DGLBACKEND", "pytorch")
    import dgl

    return dgl
