"""Built-in models, each referable from the config as ``phasemake.models:<name>``.

- :data:`kingman` — Kingman's coalescent (lineage count).
- :data:`block_counting` — block-counting coalescent (site frequency spectrum).
- :data:`two_deme` — two-deme structured coalescent with migration (cyclic).
- :data:`rabbits` — the rabbits model from phasic's documentation.
"""

from .block_counting import block_counting
from .kingman import kingman
from .rabbits import rabbits
from .two_deme import two_deme

__all__ = ["block_counting", "kingman", "rabbits", "two_deme"]
