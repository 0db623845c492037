"""Run: the phases in order, composed in one exit stack.

    execute     provision → warm-up → baseline → load → settle → probe → verdict → outputs
    cycles      --isolate and --sweep-disconnect: the cycle of execute, repeated per kind or delay
    faults      faults injected during the load (pg-restart, terminate-backends, pause-target)
    record      run.json: the plan, phases, processes and versions, saved as they change
    live        the progress display and the printed verdict

May import report, judge, sample, provision and the leaf modules; only the CLI imports it.
"""
