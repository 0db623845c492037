"""The report: ``report.html`` rendered from a run directory alone.

    load.py     run directory → pandas (every file optional, problems become notes)
    figures.py  pandas → the timeline PNG (matplotlib, Agg)
    html.py     both → one self-contained page (inline style, base64 image)

A report can be re-rendered at any time from the folder: ``render_report(run_dir)``.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from harness.rundir import REPORT_HTML

log = logging.getLogger(__name__)

__all__ = ["render_report"]


def render_report(run_dir: Path) -> Path:
    """Write ``run_dir/report.html`` and return its path.

    Missing or unreadable files in ``run_dir`` are named in the report, not raised.
    Raises FileNotFoundError when ``run_dir`` does not exist, OSError when the report
    cannot be written.
    """
    # Imported here, not at the top: pandas and matplotlib cost most of a second, and the
    # CLI imports this package on every start, report or not.
    from harness.report.figures import timeline
    from harness.report.html import render_html
    from harness.report.load import load_run

    run_dir = Path(run_dir)
    data = load_run(run_dir)
    page = render_html(data, timeline(data))
    target = run_dir / REPORT_HTML
    # Written beside and moved into place: a reader never sees half a report.
    fd, tmp = tempfile.mkstemp(dir=run_dir, prefix=f".{REPORT_HTML}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(page)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    log.info("report written to %s", target)
    return target
