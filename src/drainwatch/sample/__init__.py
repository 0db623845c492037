"""Sample: what pg_stat_activity shows of the target, over time.

    selector    which backends are the target's (never drainwatch's own connections)
    collector   the sidecar process: a monotonic schedule, one flushed CSV line per sample
    metrics     the latest sample served for Prometheus

May import provision and the leaf modules; nothing from judge, report, run or cli.
"""
