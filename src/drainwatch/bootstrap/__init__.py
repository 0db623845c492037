"""What drainwatch puts on a served service's PYTHONPATH (see sitecustomize.py)."""
