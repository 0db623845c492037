"""Only timeout traffic: `locust -f scenarios/timeout.py --host http://127.0.0.1:8000`."""

from locust import task

from drainwatch.scenarios.chaos import ChaosUser


class TimeoutUser(ChaosUser):
    @task
    def timeout(self) -> None:
        super().timeout()
