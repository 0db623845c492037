"""Which client backends are the target's: the SQL that selects them, never drainwatch's own."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from drainwatch.plan import Match
from drainwatch.provision.postgres import HARNESS_APP_NAME

COLLECTOR_APP_NAME = "drainwatch-collector"
OWN_APP_NAMES = (COLLECTOR_APP_NAME, HARNESS_APP_NAME)


def match_clause(match: Match, ports: Sequence[int] | None = None) -> tuple[str, dict[str, Any]]:
    """SQL that is true for the target's backends, with its parameters.

    ``ports`` are the client ports of the service's own sockets (``client_ports``), when
    it is selected by its process.
    """
    parts = ["coalesce(application_name, '') <> ALL(%(own)s)"]
    params: dict[str, Any] = {"own": list(OWN_APP_NAMES)}
    if match.client_pid_file is not None:
        parts.append("client_port = ANY(%(ports)s)")
        params["ports"] = list(ports or [])
    if match.application_name:
        parts.append("application_name LIKE %(app)s")
        params["app"] = match.application_name
    if match.usename:
        parts.append("usename = %(usename)s")
        params["usename"] = match.usename
    if match.datname:
        parts.append("datname = %(datname)s")
        params["datname"] = match.datname
    if match.client_addr:
        parts.append("host(client_addr) = %(client_addr)s")
        params["client_addr"] = match.client_addr
    return " AND ".join(parts), params


def server_port(dsn: str) -> int:
    """The TCP port of the PostgreSQL in ``dsn`` (URL or key=value form)."""
    import psycopg.conninfo

    if "://" in dsn:
        return urlsplit(dsn).port or 5432
    return int(str(psycopg.conninfo.conninfo_to_dict(dsn).get("port") or 5432).split(",")[0])


def pid_in(path: str) -> int | None:
    try:
        return int(Path(path).read_text().strip())
    except (OSError, ValueError):
        return None


def _tree_connections(root_pid: int | None) -> list[Any]:
    """The TCP connections held by ``root_pid`` and its children (those we may see), now."""
    import psutil

    if root_pid is None:
        return []
    try:
        root = psutil.Process(root_pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return []
    conns = []
    for proc in procs:
        try:
            conns += proc.net_connections(kind="tcp")
        except psutil.Error:
            continue
    return conns


def client_ports(root_pid: int | None, port: int) -> list[int]:
    """Local ports of the TCP connections to PostgreSQL's ``port`` held by ``root_pid`` and its children."""
    return [c.laddr.port for c in _tree_connections(root_pid) if c.raddr and c.raddr.port == port]


def resolve(match: Match, dsn: str) -> tuple[str, dict[str, Any]]:
    """``match_clause`` with the service's sockets looked up now, when it is selected by process."""
    if match.client_pid_file is None:
        return match_clause(match)
    return match_clause(match, client_ports(pid_in(match.client_pid_file), server_port(dsn)))


def remote_endpoints(root_pid: int | None) -> list[tuple[str, int]]:
    """Where ``root_pid`` and its children hold TCP connections to (address, port), for hints."""
    return sorted({(c.raddr.ip, c.raddr.port) for c in _tree_connections(root_pid) if c.raddr})
