"""`hearth --self-test`: the check CI also runs against the packaged bundle."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from backend import __version__, self_test


@pytest.mark.slow
def test_self_test_loads_generates_and_serves() -> None:
    # The entry point: it hands the self-test the HTTP server and the window's modules.
    result = subprocess.run([sys.executable, "-m", "app.launcher", "--self-test"],
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert report["versions"]["hearth"] == __version__
    assert report["versions"]["frozen"] is False
    assert report["model"]["id"] == "smollm2:135m"
    assert 0 < report["generation"]["tokens"] <= self_test.GENERATE_TOKENS
    assert report["generation"]["tokens_per_s"] > 0
    server = report["server"]
    assert server["url"].startswith("http://127.0.0.1:")
    assert not server["url"].endswith(":0")  # port 0 asked for a free port; the real one shows
    assert server["request_status"] == 200
    assert 0 < server["completion_tokens"] <= self_test.HTTP_MAX_TOKENS
    assert server["stopped"] is True
    for step in ("find_model", "load_model", "generate", "start_server", "http_request",
                 "stop_server", "gui_modules", "total"):
        assert report["timings_s"][step] >= 0


def test_a_missing_model_fails_with_the_step_and_reason(monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    monkeypatch.setattr(self_test, "starter_model", lambda models: None)
    printed: list[str] = []
    assert self_test.run_self_test(None, emit=printed.append) == 1
    report = json.loads(printed[0])
    assert report["ok"] is False
    assert report["failed_step"] == "find_model"
    assert "starter model" in report["error"]
    assert "traceback" not in report  # an expected failure reads as a sentence, not a trace
