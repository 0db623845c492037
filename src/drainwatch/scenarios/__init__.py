"""Locust scenarios for drainwatch. Each module is a plain locustfile (``locust -f``).

``scenarios.chaos.ChaosUser`` is the reusable part: a user class with helpers that
deliver each chaos kind (steady, disconnect, timeout, error) and tag every request with
its scenario and an ``X-Request-ID``. Import it from your own locustfile.
"""
