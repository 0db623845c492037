"""Judge: from what was collected to PASS, LEAK or ERROR, with the evidence.

    forensics   the connections still open: pooled, held, in a transaction, active
    probe       after settle, does the service still serve?
    verdict     the checks and the decision (a pure function: tests call it without a database)
    diagnosis   the likely cause and fix for each pattern the verdict saw

May import sample, provision and the leaf modules; nothing from report, run or cli.
"""
