# SPDX-License-Identifier: GPL-2.0-or-later
"""Schema-based fuzz: schemathesis generates requests from the agent's own /openapi.json, valid
(positive) and invalid (negative) ones, with the token, against the real loaded data plane.
No answer may be a 5xx, and every error answer is JSON with a message."""

import os
import subprocess
import unittest

import pytest

schemathesis = pytest.importorskip("schemathesis",
                                   reason="needs schemathesis in the test venv (scripts/venv-requirements.txt)")
hypothesis = pytest.importorskip("hypothesis", reason="needs hypothesis (scripts/venv-requirements.txt)")
from hypothesis import HealthCheck, Phase, settings  # noqa: E402
from schemathesis import DataGenerationMethod  # noqa: E402
import schemathesis.exceptions  # noqa: E402

METRICS = subprocess.run(["/usr/bin/python3", "-c", "import prometheus_client"], check=False).returncode == 0
EXAMPLES = int(os.environ.get("NETXFW_FUZZ_EXAMPLES", "40"))


def _operations(lab, method):
    status, doc, dummy = lab.request("GET", "/openapi.json")
    assert status == 200
    schema = schemathesis.from_dict(doc, base_url=lab.url, data_generation_methods=[method])
    for result in schema.get_all_operations():
        yield result.ok()


@pytest.mark.parametrize("method", [DataGenerationMethod.positive, DataGenerationMethod.negative],
                         ids=["positive", "negative"])
def test_openapi_fuzz_finds_no_5xx(clean, method):
    lab = clean
    seen = {"requests": 0, "statuses": {}}
    failures = []
    for operation in _operations(lab, method):
        try:
            strategy = operation.as_strategy(data_generation_method=method)
        except Exception as exc:  # e.g. nothing to negate in an operation without inputs
            print("skip %s %s: %s" % (operation.method, operation.path, exc))
            continue

        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @hypothesis.given(case=strategy)
        def check(case):
            response = case.call(headers={"Authorization": "Bearer " + lab.token}, timeout=60)
            seen["requests"] += 1
            seen["statuses"][response.status_code] = seen["statuses"].get(response.status_code, 0) + 1
            if response.status_code == 503 and case.path == "/metrics" and not METRICS:
                pass  # python3-prometheus-client is not installed: a plain 503 that says so
            elif response.status_code >= 500:
                failures.append("%s %s -> %d %s" % (case.method, case.formatted_path, response.status_code,
                                                    response.text[:200]))
            if response.status_code >= 400:
                assert response.headers["Content-Type"].startswith("application/json")
                assert response.json()["error"]

        try:
            check()
        except hypothesis.errors.Unsatisfiable:
            print("unsatisfiable: %s %s" % (operation.method, operation.path))
        except (unittest.SkipTest, schemathesis.exceptions.SkipTest) as exc:
            # schemathesis: nothing to negate (no parameters, no body)
            print("skip: %s" % exc)
    print("fuzz %s: %d requests, statuses %s" % (method.name, seen["requests"], sorted(seen["statuses"].items())))
    assert not failures, "\n".join(failures[:20]) + "\nagent log:\n" + lab.agent_log_text()
    assert seen["requests"] >= EXAMPLES
    assert lab.request("GET", "/health", token=None)[0] == 200
    lab.assert_in_step()
