"""No Docker engine runs here, so the container files are kept honest against what does run: the
Makefile's build, the CLI's options and the launcher's expectations."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import yaml

from replicator.kcl import launcher
from replicator.cli.main import main

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = (REPO / "docker" / "Dockerfile").read_text()


def makefile_variables() -> dict[str, str]:
    variables = {}
    for line in (REPO / "Makefile").read_text().splitlines():
        if m := re.match(r"^(\w+)\s*:?=\s*(.*)$", line):
            variables[m.group(1)] = m.group(2)
    return variables


def makefile_recipe(target_prefix: str) -> list[str]:
    lines = (REPO / "Makefile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(target_prefix))
    recipe = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip())
    return recipe


def expand(command: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\((\w+)\)", lambda m: variables[m.group(1)], command)


def docker_runs() -> list[str]:
    joined = DOCKERFILE.replace("\\\n", " ")
    return [line[4:].strip() for line in joined.splitlines() if line.startswith("RUN ")]


def test_dockerfile_builds_the_launcher_with_the_makefiles_command() -> None:
    variables = makefile_variables()
    maven = [expand(c, variables) for c in makefile_recipe("$(LAUNCHER):") if c.startswith("$(MVN)")]
    assert maven == ["mvn -q -B -f daemon/pom.xml package"]
    assert maven[0] in docker_runs()


def test_dockerfile_installs_this_project_with_pip_like_the_makefile() -> None:
    assert any("pip install -q -e" in c for c in makefile_recipe("$(VENV)/.installed:"))
    assert any(run.endswith('pip install --no-cache-dir ".${EXTRAS}"') for run in docker_runs())
    assert re.search(r'^ARG EXTRAS=""$', DOCKERFILE, re.M)  # the production image: no local server


def test_everything_the_dockerfile_copies_exists() -> None:
    for line in DOCKERFILE.splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            *sources, _dest = shlex.split(line)[1:]
            for source in sources:
                assert (REPO / source).exists(), source


def test_runtime_matches_the_projects_java_and_python_and_runs_unprivileged() -> None:
    pom = (REPO / "daemon" / "pom.xml").read_text()
    release = re.search(r"<maven.compiler.release>(\d+)<", pom).group(1)
    assert f"temurin-{release}" in DOCKERFILE and f"openjdk-{release}-jre-headless" in DOCKERFILE
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=3.11" and "FROM python:3.11-slim" in DOCKERFILE
    user = re.findall(r"^USER (\S+)", DOCKERFILE, re.M)
    assert user and user[-1] not in ("root", "0")


def test_launcher_finds_the_jar_where_the_image_puts_it(monkeypatch, tmp_path) -> None:
    home = re.search(r"REPLICATOR_DAEMON_HOME=(\S+)", DOCKERFILE).group(1)
    assert "/opt/replicator/daemon/replicator-daemon.jar" in DOCKERFILE and home == "/opt/replicator/daemon"
    (tmp_path / "lib").mkdir()
    (tmp_path / "replicator-daemon.jar").write_bytes(b"")
    monkeypatch.setenv("REPLICATOR_DAEMON_HOME", str(tmp_path))
    assert launcher.classpath().startswith(str(tmp_path / "replicator-daemon.jar"))


def test_compose_runs_the_replicator_with_options_the_cli_accepts() -> None:
    compose = yaml.safe_load((REPO / "docker" / "compose.yaml").read_text())
    service = compose["services"]["replicator"]
    assert service["build"]["dockerfile"] == "docker/Dockerfile"
    command = service["command"]
    assert command[0] == "run"
    ctx = main.commands["run"].make_context("run", list(command[1:]))
    assert ctx.params["source_table"] == "orders" and ctx.params["destination_endpoint"] == "http://local:8000"
    assert ctx.params["source_endpoint"] == "http://local:8000"
    assert int(service["stop_grace_period"].rstrip("s")) > 30


def test_compose_local_service_is_replicator_local_with_the_local_extra() -> None:
    compose = yaml.safe_load((REPO / "docker" / "compose.yaml").read_text())
    local = compose["services"]["local"]
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert local["build"]["args"]["EXTRAS"] == "[local]" and "local" in extras
    assert any(dep.startswith("moto[server]") for dep in extras["local"])
    command = local["command"]
    ctx = main.commands["local"].make_context("local", list(command[1:]))
    assert command[0] == "local" and ctx.params["host"] == "0.0.0.0"
    assert local["ports"] == [f"127.0.0.1:{ctx.params['port']}:{ctx.params['port']}"]
    assert all(s in ("local", "replicator") for s in compose["services"])


def test_dockerfile_trains_the_class_archive_with_the_makefiles_command() -> None:
    variables = makefile_variables()
    training = [expand(c, variables) for c in makefile_recipe("$(CLASS_ARCHIVE):")]
    assert training == [".venv/bin/python -m replicator.local.class_archive"]
    assert any(run.endswith("/opt/replicator/venv/bin/python -m replicator.local.class_archive")
               for run in docker_runs())
    home = re.search(r"REPLICATOR_DAEMON_HOME=(\S+)", DOCKERFILE).group(1)
    assert f"COPY --from=class-archive {home}/replicator-daemon.jsa {home}/replicator-daemon.jsa" in DOCKERFILE


def test_daemon_starts_with_its_class_archive_when_there_is_one(monkeypatch, tmp_path) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "replicator-daemon.jar").write_bytes(b"")
    monkeypatch.setenv("REPLICATOR_DAEMON_HOME", str(tmp_path))
    properties = tmp_path / "path.properties"
    assert not any("SharedArchiveFile" in arg for arg in launcher.command(properties, java="java"))
    (tmp_path / "replicator-daemon.jsa").write_bytes(b"")
    assert f"-XX:SharedArchiveFile={tmp_path / 'replicator-daemon.jsa'}" in launcher.command(properties, java="java")
    monkeypatch.setenv(launcher.CLASS_ARCHIVE_ENV, "none")
    assert not any("SharedArchiveFile" in arg for arg in launcher.command(properties, java="java"))
