"""`hearth pull` → `hearth run` → `hearth list` → `hearth rm`, against the loopback Hub."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from backend.cli import main
from tests.library.hub_server import GATED_REPO, SMOLLM2_REPO, HubServer

pytest_plugins = ["tests.library.hub_server"]


def hearth(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "backend.cli", *args], capture_output=True,
                          text=True, timeout=300, env=dict(os.environ))


def test_pull_then_run_then_list_then_rm(hub_server: HubServer,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    name = f"{SMOLLM2_REPO}:Q4_1"
    assert main(["pull", name]) == 0
    out = capsys.readouterr()
    assert "100.0%" in out.err and f"hearth run {name}" in out.out

    reply = hearth("run", name, "Hello!", "--max-tokens", "8", "--threads", "2")
    assert reply.returncode == 0, reply.stderr
    assert reply.stdout.strip()

    listed = json.loads(hearth("list", "--json").stdout)
    entry = next(m for m in listed if m["id"] == name)
    assert entry["source"] == "library" and entry["quant"] == "Q4_1"

    assert main(["rm", name]) == 0
    assert name not in hearth("list").stdout


def test_pull_names_what_is_wrong(hub_server: HubServer,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pull", f"{SMOLLM2_REPO}:Q8_0"]) == 1
    assert "has no Q8_0 file" in capsys.readouterr().err
    assert main(["pull", GATED_REPO]) == 1
    assert "licence" in capsys.readouterr().err.lower()
    assert main(["pull", "not-a-repo"]) == 1
    assert "neither a catalog name" in capsys.readouterr().err
