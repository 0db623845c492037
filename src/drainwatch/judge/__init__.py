"""Judge: from what was collected to PASS, LEAK, SATURATED or ERROR, with the evidence.

    forensics   the connections still open: pooled, held, in a transaction, active
    attribution which request and statement left each one
    hangups     did the clients' hang-ups reach the server's work?
    load        did the load test what it says?
    probe       what the probe found (run.probe sends it)
    server      the server's own limit
    verdict     the checks and the decision
    diagnosis   the likely cause and fix for each pattern the verdict saw

Pure: no module here opens a file or sends a request (run.evidence reads the run folder,
run.probe asks the service), so tests call every rule on records, without a database.

May import sample, provision and the leaf modules; nothing from report, run or cli.
"""
