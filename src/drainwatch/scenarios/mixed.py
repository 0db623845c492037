"""The default chaos mix: ``locust -f scenarios/mixed.py --host http://127.0.0.1:8000``.

Weights come from ``DRAINWATCH_MIX`` (``steady=4,disconnect=2,timeout=2,error=1``).
"""

import os

from drainwatch.scenarios.chaos import ChaosUser, parse_mix

_MIX = parse_mix(os.environ.get("DRAINWATCH_MIX", "steady=4,disconnect=2,timeout=2,error=1"))


class MixedUser(ChaosUser):
    tasks = {getattr(ChaosUser, kind): weight for kind, weight in _MIX.items() if weight > 0}  # type: ignore[assignment]  # Locust takes weights; its annotation says list
