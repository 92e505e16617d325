"""schemathesis over the server's own OpenAPI schema, against a real `digitlab serve`: every
operation fuzzed with schema-valid and schema-breaking requests, under every built-in check."""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.config import SchemathesisConfig

from digitlab.serve.app import create_app, running

EXAMPLES = 50  # per operation: 11 operations, positive and negative cases, in ~25 s on 2 cores

# The schema is read at collection, from the app itself, so that each operation is a test of its
# own (schemathesis' lazy fixture loader does not run under pytest 9); the test below checks that
# the server publishes the same one.
OPENAPI = create_app().openapi()
# Whether bytes are an image, or a tensor's data holds N*784 values, is more than a schema can say:
# schema-valid requests that fail on it get 422 (v1) or 400 (v2) with an error, and are accepted
# as answers to valid data there. Everything else about positive data stays checked.
CONFIG = SchemathesisConfig.from_dict(
    {
        "operations": [
            {
                "include-path-regex": "^/v1/(predict|read)",
                "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "422"]}},
            },
            {
                "include-path-regex": "/infer$",
                "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "400"]}},
            },
        ]
    }
)
schema = schemathesis.openapi.from_dict(OPENAPI, config=CONFIG)
load_all_checks()
ALL_CHECKS = CHECKS.get_all()


@pytest.fixture(scope="module")
def url():
    with running() as base:
        assert httpx.get(base + "/openapi.json").json() == OPENAPI
        yield base


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure is reported as found, in bounded time
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_schema(case, url):
    response = case.call_and_validate(base_url=url, checks=ALL_CHECKS, timeout=30)
    assert response.status_code < 500, response.text
