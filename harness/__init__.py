"""drainwatch: does an async service give its PostgreSQL connections back after the traffic stops?"""

__version__ = "0.1.0"
