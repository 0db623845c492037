"""Only disconnect traffic: `locust -f scenarios/disconnect.py --host http://127.0.0.1:8000`."""

from locust import task

from drainwatch.scenarios.chaos import ChaosUser


class DisconnectUser(ChaosUser):
    @task
    def disconnect(self) -> None:
        super().disconnect()
