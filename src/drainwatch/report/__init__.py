"""Report: everything written from a run directory alone, so it can be re-rendered, compared and attached to CI.

    rundata     run directory → pandas (every file optional, problems become notes)
    figures     pandas → the timeline PNG (matplotlib, Agg)
    html, page  both → one self-contained page (inline style, base64 image)
    outputs     summary.json and junit.xml
    compare     two runs side by side (drainwatch compare)
    forecast    when production's pool runs out, from a run's leak rates

A report can be re-rendered at any time from the folder: ``render_report(run_dir)``.
May import judge, sample, provision and the leaf modules; nothing from run or cli.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from drainwatch.rundir import REPORT_HTML

log = logging.getLogger(__name__)

__all__ = ["render_report", "write_page"]


def render_report(run_dir: Path) -> Path:
    """Write ``run_dir/report.html`` and return its path.

    Missing or unreadable files in ``run_dir`` are named in the report, not raised.
    Raises FileNotFoundError when ``run_dir`` does not exist, OSError when the report
    cannot be written.
    """
    # Imported here, not at the top: pandas and matplotlib cost most of a second, and the
    # CLI imports this package on every start, report or not.
    from drainwatch.report.figures import timeline
    from drainwatch.report.html import render_html
    from drainwatch.report.rundata import load_run

    run_dir = Path(run_dir)
    data = load_run(run_dir)
    target = write_page(run_dir / REPORT_HTML, render_html(data, timeline(data)))
    log.info("report written to %s", target)
    return target


def write_page(target: Path, page: str) -> Path:
    """Write ``page`` to ``target`` beside and move it into place: a reader never sees half a page.

    Raises OSError when it cannot be written.
    """
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(page)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
