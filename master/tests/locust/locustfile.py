"""The run master/tests/it/locust.rs has Locust make: the same two requests as the
Barrage scenario in that test, against its in-test target (one answers 200, one 503),
so both tools write every CSV file with rows of both kinds."""

from locust import HttpUser, constant, task


class Caller(HttpUser):
    wait_time = constant(0.05)

    @task(3)
    def ok(self):
        self.client.get("/ok")

    @task(1)
    def fail(self):
        self.client.get("/fail")
