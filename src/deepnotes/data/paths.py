"""Where downloaded and built datasets live on disk.

One root folder holds one sub-folder per dataset (``<root>/fashion-mnist/``, ``<root>/mnist/``, ...).
The root is ``$DEEPNOTES_DATA`` when that variable is set and non-empty, else the user's cache
folder from :func:`platformdirs.user_cache_path` (``$XDG_CACHE_HOME/deepnotes``, by default
``~/.cache/deepnotes`` on Linux, ``~/Library/Caches/deepnotes`` on macOS).
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

#: Environment variable that overrides the data root.
DATA_ENV = "DEEPNOTES_DATA"


def data_root() -> Path:
    """Return the folder that holds downloaded and built datasets (it is not created here).

    Returns:
        ``Path($DEEPNOTES_DATA)`` (``~`` expanded) if the variable is set and non-empty, else
        ``platformdirs.user_cache_path("deepnotes")``, which honours ``$XDG_CACHE_HOME``.

    Example::

        >>> data_root() / "fashion-mnist"          # doctest: +SKIP
        PosixPath('/home/me/.cache/deepnotes/fashion-mnist')
    """
    env = os.environ.get(DATA_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_path("deepnotes"))
