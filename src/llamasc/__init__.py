"""llamasc: a pool of llama-server processes behind one OpenAI endpoint.

The library is usable on its own; the ``llamasc`` command is a thin shell over it.
"""

from llamasc._version import __version__
from llamasc.errors import LlamascError

__all__ = ["LlamascError", "__version__"]
