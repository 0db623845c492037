"""Only steady traffic: `locust -f scenarios/steady.py --host http://127.0.0.1:8000`."""

from locust import task

from drainwatch.scenarios.chaos import ChaosUser


class SteadyUser(ChaosUser):
    @task
    def steady(self) -> None:
        super().steady()
