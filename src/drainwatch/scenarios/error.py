"""Only error traffic: `locust -f scenarios/error.py --host http://127.0.0.1:8000`."""

from locust import task

from drainwatch.scenarios.chaos import ChaosUser


class ErrorUser(ChaosUser):
    @task
    def error(self) -> None:
        super().error()
