"""drainwatch's bootstrap, on the served service's PYTHONPATH: tells drainwatch which stack
the service's process really imported, with no change to the service's code.

Only the standard library, and nothing of drainwatch: the service may run in an environment
drainwatch is not installed in. A daemon thread writes, whenever the set of imported top-level
modules changes, ``$DRAINWATCH_CHANNEL/<pid>.json``: the Python version, ``sys.path`` and the
names of those modules (drainwatch finds their distributions). A fork (gunicorn's workers) starts the thread again
in the child. Any failure here is swallowed: the service must run as it would without us.
A ``sitecustomize`` of the service's own, further along the path, is run after this one.

Unless ``DRAINWATCH_INSTRUMENT=0``, it also hooks the service's pools as their libraries are
imported (``_drainwatch_hooks``), and the same thread writes each process's pool view.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import types

_CHANNEL = os.environ.get("DRAINWATCH_CHANNEL", "")
_hooks: types.ModuleType | None = None
_EVERY = 0.5  # seconds between looks at sys.modules: a len() and a set, nothing more


def _write() -> None:
    # Names only: the thread imports nothing, so a fork (gunicorn's workers) can never catch it
    # holding an import lock the child would wait on forever. drainwatch maps them to distributions.
    path = os.path.join(_CHANNEL, f"stack-{os.getpid()}.json")
    found = {
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "python": ".".join(map(str, sys.version_info[:3])),
        "path": [entry for entry in sys.path if entry],
        "modules": sorted({name.partition(".")[0] for name in list(sys.modules)}),
    }
    with open(f"{path}.part", "w") as handle:
        json.dump(found, handle)
    os.replace(f"{path}.part", path)


def _watch() -> None:
    seen = -1
    stop = threading.Event()
    while not stop.wait(_EVERY if seen >= 0 else 0.05):
        count = len(sys.modules)
        try:
            if count != seen:
                seen = count
                _write()
            if _hooks is not None:
                _hooks.write_view(_CHANNEL)
        except Exception:  # noqa: BLE001 - a full disk, a folder gone: stay silent
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


def _hook() -> None:
    global _hooks
    try:
        import _drainwatch_hooks  # type: ignore[import-not-found]  # beside this file on the service's path

        _drainwatch_hooks.install()
        _hooks = _drainwatch_hooks
        os.register_at_fork(after_in_child=_drainwatch_hooks.after_fork)
    except Exception:  # noqa: BLE001 - without hooks the service runs as it would
        _hooks = None


if _CHANNEL:
    if os.environ.get("DRAINWATCH_INSTRUMENT", "1") != "0":
        _hook()
    _start()
    os.register_at_fork(after_in_child=_start)
_chain()
