"""drainwatch's bootstrap, on the served service's PYTHONPATH: tells drainwatch which stack
the service's process really imported, with no change to the service's code.

Only the standard library, and nothing of drainwatch: the service may run in an environment
drainwatch is not installed in. A daemon thread writes, whenever the set of imported top-level
modules changes, ``$DRAINWATCH_CHANNEL/<pid>.json``: the Python version and the distributions
behind those modules with their versions. A fork (gunicorn's workers) starts the thread again
in the child. Any failure here is swallowed: the service must run as it would without us.
A ``sitecustomize`` of the service's own, further along the path, is run after this one.
"""

from __future__ import annotations

import json
import os
import sys
import threading

_CHANNEL = os.environ.get("DRAINWATCH_CHANNEL", "")
_EVERY = 0.5  # seconds between looks at sys.modules: a len() and a set, nothing more


def _imported() -> dict[str, str]:
    import importlib.metadata as metadata
    import platform

    tops = {name.partition(".")[0] for name in list(sys.modules)}
    found = {"python": platform.python_version()}
    for top, dists in metadata.packages_distributions().items():
        if top in tops:
            for dist in dists:
                try:
                    found[dist.lower().replace("_", "-")] = metadata.version(dist)
                except metadata.PackageNotFoundError:
                    pass
    return found


def _write(found: dict[str, str]) -> None:
    path = os.path.join(_CHANNEL, f"{os.getpid()}.json")
    part = f"{path}.part"
    with open(part, "w") as handle:
        json.dump({"pid": os.getpid(), "ppid": os.getppid(), "imported": found}, handle)
    os.replace(part, path)


def _watch() -> None:
    seen = -1
    stop = threading.Event()
    while not stop.wait(_EVERY if seen >= 0 else 0.05):
        count = len(sys.modules)
        if count != seen:
            seen = count
            try:
                _write(_imported())
            except Exception:  # noqa: BLE001 - a full disk or a broken distribution: stay silent
                return


def _start() -> None:
    try:
        os.makedirs(_CHANNEL, exist_ok=True)
        threading.Thread(target=_watch, name="drainwatch-bootstrap", daemon=True).start()
    except Exception:  # noqa: BLE001 - never break the service
        pass


def _chain() -> None:
    """Run the service's own sitecustomize, if one is further along the path."""
    import importlib.machinery
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    rest = [entry for entry in sys.path if os.path.abspath(entry or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules[__name__] = module
    spec.loader.exec_module(module)


if _CHANNEL:
    _start()
    os.register_at_fork(after_in_child=_start)
_chain()
