"""The compose stack (compose/) checked against the code it runs, with no Docker engine.

compose/docker-compose.yml writes every ``command`` and healthcheck ``test`` as a JSON
array (valid YAML), so this module reads it without a YAML parser (PyYAML is not a
dependency). Each ``drainwatch`` command line is parsed by the real Click command, each
``locust`` option is looked up in ``locust --help``, each scenario file is loaded by
Locust, and each path the stack names must exist in the repository: renaming a CLI
option, an environment variable or a scenario file fails here, not in someone's
container. With ``docker-compose`` on PATH, ``docker-compose config`` validates the file.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

import psycopg.conninfo
import pytest

from drainwatch import cli as cli_module
from drainwatch.cli import run_options
from drainwatch.plan import validate

REPO = Path(__file__).resolve().parent.parent
COMPOSE_DIR = REPO / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
DOCKERIGNORE = REPO / ".dockerignore"
EXPECTED_SERVICES = {"postgres", "demo", "collector", "locust-master", "locust-worker", "drainwatch"}
DSN_ENV_NAMES = ("DRAINWATCH_DSN", "DRAINWATCH_DEMO_DSN")

_VARIABLE = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


# --- reading the compose file ---------------------------------------------------------------


@dataclass
class Service:
    name: str
    text: str  # the service's block, as written
    command: list[str] = field(default_factory=list)  # ${VAR:-default} already replaced by the default
    healthcheck: list[str] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)  # raw values, as written
    volumes: list[str] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        """The environment the container gets with no variable set on the host."""
        return {key: interpolate(value) for key, value in self.environment.items()}

    def option(self, flag: str) -> str:
        """The value after ``flag`` in the command."""
        assert flag in self.command, f"{self.name}: its command has no {flag}"
        return self.command[self.command.index(flag) + 1]


def interpolate(value: str) -> str:
    """What compose substitutes for ``${VAR:-default}`` when VAR is not set."""
    return _VARIABLE.sub(lambda m: m.group(2) or "", value)


def _array(block: str, key: str, service: str) -> list[str]:
    match = re.search(rf"^\s+{key}:\s*(\[[^\]]*\])", block, re.MULTILINE)
    if not match:
        return []
    try:
        return [interpolate(str(item)) for item in json.loads(match.group(1))]
    except json.JSONDecodeError as exc:
        raise AssertionError(f"{service}: write `{key}` as a JSON array of strings ({exc})") from None


def read_services() -> dict[str, Service]:
    """The blocks under ``services:`` (two-space indent), with what the tests need from each."""
    text = COMPOSE_FILE.read_text()
    assert "\nservices:\n" in text, "compose/docker-compose.yml has no top-level `services:`"
    body = text.split("\nservices:\n", 1)[1]
    body = re.split(r"^[^\s#]", body, maxsplit=1, flags=re.MULTILINE)[0]  # up to the next top-level key
    heads = list(re.finditer(r"^  ([a-z][\w-]*):\s*$", body, re.MULTILINE))
    services = {}
    for head, following in zip(heads, [*heads[1:], None]):
        name, block = head.group(1), body[head.end() : following.start() if following else len(body)]
        services[name] = Service(
            name=name,
            text=block,
            command=_array(block, "command", name),
            healthcheck=_array(block, "test", name),
            environment=dict(
                re.findall(r"^\s+([A-Z][A-Z0-9_]*):\s*(\S.*?)\s*$", _section(block, "environment"), re.MULTILINE)
            ),
            volumes=re.findall(r"^\s+- \"?([^\"\s]+)\"?", _section(block, "volumes"), re.MULTILINE),
        )
    return services


def _section(block: str, key: str) -> str:
    """The lines nested under ``key:`` in a service's block (comment lines included)."""
    match = re.search(rf"^    {key}:\s*\n((?:      .*\n|\s*#.*\n)*)", block, re.MULTILINE)
    return match.group(1) if match else ""


SERVICES = read_services()
DRAINWATCH_SERVICES = [s for s in SERVICES.values() if s.command[:1] == ["drainwatch"]]
LOCUST_SERVICES = [s for s in SERVICES.values() if s.command[:1] == ["locust"]]


def dockerfile() -> Path:
    """The Dockerfile the stack builds, from its build context and dockerfile keys."""
    text = COMPOSE_FILE.read_text()
    context = re.search(r"^\s+context:\s*(\S+)", text, re.MULTILINE)
    name = re.search(r"^\s+dockerfile:\s*(\S+)", text, re.MULTILINE)
    assert context and name, "the stack builds no image (no build context/dockerfile)"
    return (COMPOSE_DIR / context.group(1)).resolve() / name.group(1)


def in_repo(container_path: str) -> Path:
    """Where a path under the image's WORKDIR comes from (the Dockerfile does `COPY . .`)."""
    workdir = re.search(r"^WORKDIR\s+(\S+)", dockerfile().read_text(), re.MULTILINE)
    assert workdir, "the Dockerfile sets no WORKDIR"
    assert container_path.startswith(workdir.group(1) + "/"), f"{container_path} is not under {workdir.group(1)}"
    return REPO / container_path[len(workdir.group(1)) + 1 :]


@functools.cache
def locust_help() -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "locust", "--help"], check=False, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", proc.stdout))


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


# --- docker-compose itself, when it is installed --------------------------------------------

DOCKER_COMPOSE = shutil.which("docker-compose")
needs_docker_compose = pytest.mark.skipif(
    DOCKER_COMPOSE is None,
    reason="docker-compose is not on PATH (apt-get install docker-compose); the checks without it still run",
)


@needs_docker_compose
@pytest.mark.parametrize("profiles", [[], ["load"], ["run"], ["load", "run"]], ids=lambda p: "+".join(p) or "default")
def test_docker_compose_config_accepts_the_file(profiles: list[str]) -> None:
    argv = [DOCKER_COMPOSE, "-f", str(COMPOSE_FILE), *(arg for p in profiles for arg in ("--profile", p)), "config"]
    proc = subprocess.run([*argv, "-q"], check=False, capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "WARNING" not in proc.stderr, proc.stderr  # e.g. a variable with no default
    listed = subprocess.run([*argv, "--services"], check=False, capture_output=True, text=True, timeout=60, cwd=REPO)
    assert set(listed.stdout.split()) == set(SERVICES), "docker-compose and this module read different services"


# --- the file read without docker -----------------------------------------------------------


def test_the_stack_has_its_services() -> None:
    assert set(SERVICES) == EXPECTED_SERVICES
    for service in SERVICES.values():
        assert service.command or service.name == "postgres", f"{service.name}: no command found"


def test_agrees_with_a_yaml_parser() -> None:
    """The reading above sees what a real YAML parser sees (where PyYAML happens to be installed)."""
    yaml = pytest.importorskip("yaml")
    data = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    assert set(data) == set(SERVICES)
    for name, service in SERVICES.items():
        assert [interpolate(str(a)) for a in data[name].get("command", [])] == service.command, name
        assert [
            interpolate(str(a)) for a in data[name].get("healthcheck", {}).get("test", [])
        ] == service.healthcheck, name
        assert {k: str(v) for k, v in data[name].get("environment", {}).items()} == service.environment, name
        assert data[name].get("volumes", []) == service.volumes, name


def test_every_variable_has_a_default() -> None:
    """Plain `docker-compose up` works with nothing set on the host."""
    for match in re.finditer(r"\$\{[^}]*\}", COMPOSE_FILE.read_text()):
        assert _VARIABLE.fullmatch(match.group()) and ":-" in match.group(), f"{match.group()} has no default"


@pytest.mark.parametrize("service", DRAINWATCH_SERVICES, ids=lambda s: s.name)
def test_drainwatch_command_parses_with_the_real_cli(service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    """Subcommand, options, values and required options (from the container's environment)."""
    sub, args = service.command[1], service.command[2:]
    command = cli_module.cli.commands.get(sub)
    assert command is not None, (
        f"{service.name}: drainwatch has no subcommand {sub!r} (it has {sorted(cli_module.cli.commands)})"
    )
    known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    unknown = [arg for arg in args if arg.startswith("-") and arg.split("=")[0] not in known]
    assert not unknown, f"{service.name}: `drainwatch {sub}` has no option {unknown} (it has {sorted(known)})"

    for name in [n for n in os.environ if n.startswith("DRAINWATCH_")]:
        monkeypatch.delenv(name)  # the developer's shell must not fill in what the container lacks
    for name, value in service.env().items():
        monkeypatch.setenv(name, value)
    args = [
        str(REPO) + arg.removeprefix("/app") if arg.startswith("/app/") else arg for arg in args
    ]  # the image's /app
    ctx = command.make_context(f"drainwatch {sub}", list(args))  # raises on a missing or bad option
    if sub == "run":  # the checks `drainwatch run` makes before starting anything (out: /reports is not here)
        config = ctx.params.pop("config_path")
        validate(replace(run_options.plan_from(ctx, config, dict(ctx.params)), out=REPO / "reports"))


def test_drainwatch_is_the_installed_command() -> None:
    assert pyproject()["project"]["scripts"]["drainwatch"] == "drainwatch.cli:main"
    assert {"demo-service", "collect", "run"} <= {s.command[1] for s in DRAINWATCH_SERVICES}


def test_the_demo_serves_where_everyone_looks() -> None:
    """One port for the demo's command, its healthcheck, the published port and every URL to it."""
    from drainwatch.demo_service.app import create_app

    demo = SERVICES["demo"]
    port = demo.option("--port")
    assert demo.option("--host") == "0.0.0.0", "demo: other containers cannot reach a loopback-only service"
    health = re.search(r"http://localhost:(\d+)(/[\w/]*)", " ".join(demo.healthcheck))
    assert health and health.group(1) == port, f"demo: the healthcheck does not ask port {port}"
    routes = create_app("leaky", "postgresql://u@h/d").openapi()["paths"]  # builds the app, connects nothing
    assert health.group(2) in routes, f"demo: no route {health.group(2)} for the healthcheck"
    published = re.findall(r'^\s+- "?(\d+):(\d+)"?\s*$', demo.text, re.MULTILINE)
    assert published and all(inner == port for _, inner in published), f"demo: published ports {published}"
    urls = re.findall(r"http://demo:(\d+)", COMPOSE_FILE.read_text())
    assert urls and set(urls) == {port}, f"URLs to the demo use ports {set(urls)}, the demo listens on {port}"


def test_the_app_name_pattern_selects_the_demo() -> None:
    from drainwatch.demo_service import app_name

    for service in DRAINWATCH_SERVICES:
        if "--app-name" in service.command:
            pattern = service.option("--app-name")
            like = re.compile(".*".join(re.escape(part).replace("_", ".") for part in pattern.split("%")))
            for variant in ("leaky", "fixed"):
                for pool in ("sa", "raw"):
                    assert like.fullmatch(f"{app_name(variant)}:{pool}"), f"{service.name}: {pattern!r} misses the demo"


def test_dsns_hold_no_password_and_point_at_postgres() -> None:
    password = SERVICES["postgres"].environment["POSTGRES_PASSWORD"]
    assert _VARIABLE.fullmatch(password), "postgres: take POSTGRES_PASSWORD from the environment"
    for service in SERVICES.values():
        dsns = [v for k, v in service.env().items() if k in DSN_ENV_NAMES]
        dsns += [service.option("--dsn")] if "--dsn" in service.command else []
        for dsn in dsns:
            parts = psycopg.conninfo.conninfo_to_dict(dsn)
            assert "password" not in parts, f"{service.name}: a password in a DSN; use PGPASSWORD"
            assert parts.get("host") in SERVICES and SERVICES[parts["host"]].name == "postgres", (
                f"{service.name}: {dsn}"
            )
        if dsns:
            assert service.environment.get("PGPASSWORD") == password, f"{service.name}: PGPASSWORD must be {password}"


@pytest.mark.parametrize("service", LOCUST_SERVICES, ids=lambda s: s.name)
def test_locust_command_uses_real_options_and_scenarios(service: Service) -> None:
    unknown = [arg for arg in service.command[1:] if arg.startswith("-") and arg.split("=")[0] not in locust_help()]
    assert not unknown, f"{service.name}: locust has no option {unknown}"
    locustfile = in_repo(service.option("-f"))
    assert locustfile.is_file(), f"{service.name}: {locustfile.relative_to(REPO)} does not exist"
    listed = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(locustfile), "--list"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={**os.environ, **service.env()},
    )
    assert listed.returncode == 0 and "User" in listed.stdout, f"{service.name}: {listed.stdout}{listed.stderr}"


def test_locust_master_and_workers_meet() -> None:
    master, worker = SERVICES["locust-master"], SERVICES["locust-worker"]
    assert "--master" in master.command and "--worker" in worker.command
    assert worker.option("--master-host") == master.name
    assert master.option("-f") == worker.option("-f")
    assert master.environment.get("DRAINWATCH_MIX") == worker.environment.get("DRAINWATCH_MIX")
    # One variable sets how many workers run and how many the master waits for.
    scale = re.search(r"^\s+scale:\s*(\S+)", worker.text, re.MULTILINE)
    raw_expect = re.search(r'"--expect-workers",\s*"([^"]+)"', master.text)
    assert scale and raw_expect and scale.group(1) == raw_expect.group(1)


def test_report_paths_are_mounted_from_the_repo() -> None:
    for service in SERVICES.values():
        writes = [arg for arg in service.command if arg.startswith("/reports")]
        if writes:
            assert any(v.split(":")[1] == "/reports" for v in service.volumes), f"{service.name}: {writes} not mounted"
        for volume in service.volumes:
            source = (COMPOSE_DIR / volume.split(":")[0]).resolve()
            assert source.is_dir() and source == REPO / "reports", f"{service.name}: mounts {source}"
    assert "reports/*" in (REPO / ".gitignore").read_text().splitlines()


def test_the_image_installs_the_repo() -> None:
    path = dockerfile()
    assert path.is_file(), f"{path} does not exist"
    text = path.read_text()
    base = re.search(r"^FROM python:(\d+)\.(\d+)-slim", text, re.MULTILINE)
    needed = re.fullmatch(r">=\s*(\d+)\.(\d+)", pyproject()["project"]["requires-python"])
    assert base and needed and (int(base[1]), int(base[2])) >= (int(needed[1]), int(needed[2]))
    assert re.search(r"^COPY \. \.$", text, re.MULTILINE) and re.search(r"pip install \.$", text, re.MULTILINE)


def _dockerignored(path: str, patterns: list[str]) -> bool:
    """Approximately Docker's rule: the last pattern matching the path or a parent wins.

    fnmatch's ``*`` also crosses ``/``, so this errs towards "ignored".
    """
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negate, pattern = pattern.startswith("!"), pattern.lstrip("!").strip("/")
        tail = pattern[3:] if pattern.startswith("**/") else None
        for candidate in candidates:
            name = candidate.rsplit("/", 1)[-1]
            if fnmatch.fnmatchcase(candidate, pattern) or (tail and fnmatch.fnmatchcase(name, tail)):
                ignored = not negate
                break
    return ignored


def test_dockerignore_keeps_what_the_image_needs() -> None:
    lines = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()]
    patterns = [line for line in lines if line and not line.startswith("#")]
    project = pyproject()
    needed = ["pyproject.toml", project["project"]["readme"], str(dockerfile().relative_to(REPO))]
    needed += project["tool"]["setuptools"]["packages"]["find"]["where"]  # the folders drainwatch installs from
    needed.append("examples/demo-service.toml")  # the compose run's config
    needed += [str(in_repo(s.option("-f")).relative_to(REPO)) for s in LOCUST_SERVICES]
    for path in needed:
        assert (REPO / path).exists(), path
        assert not _dockerignored(path, patterns), f".dockerignore leaves {path} out of the image"
    assert _dockerignored("reports/run-1/samples.csv", patterns)
