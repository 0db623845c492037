"""drainwatch: does an async Python service give its PostgreSQL connections back after the traffic stops?

The package is laid out by the phases of a run; each layer imports only those to its right:

    cli → run → report → judge → sample → provision → leaves

    leaves      plan (the frozen run plan), units (durations), errors (the exception tree),
                rundir (the run folder's files), configfile (drainwatch.toml), instrument
                (the pool view a service mounts)
    scenarios   the Locust files (``locust -f``), importing nothing else of drainwatch
    demo_service  the bundled target, importing only ``drainwatch.instrument``

``tests/test_layers.py`` checks the rule on every import. See docs/architecture.md.
"""

__version__ = "0.1.0"
