"""dockyard: a container engine with Docker's architecture (apid, managerd, shim).

In a source checkout the subpackages live in top-level folders (`shim/`,
`managerd/`, ...); extending ``__path__`` with the checkout root makes
`dockyard.shim` resolve to `<root>/shim` without an install. An installed wheel
has them under this folder already.
"""

import os as _os

__version__ = "0.1.0"

_root = _os.path.dirname(_os.path.dirname(_os.path.dirname(_os.path.abspath(__file__))))
if _os.path.isdir(_os.path.join(_root, "shim")) and _root not in __path__:
    __path__.append(_root)
