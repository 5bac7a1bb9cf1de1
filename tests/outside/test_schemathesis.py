"""An outside client in the suite: schemathesis reads the published OpenAPI description
and sends what it generates from it (and what it should refuse) to the app, on SQLite and
PostgreSQL. Fixed seed and bounded examples, so a run is repeatable and short.

What a refused-but-valid request looks like here: an address at a domain the letter does
not allow is 422, a repeat over the rate limit is 429, an unknown letter is 404. Those are
documented answers, so the status-code check accepts them; what it does not accept is a
5xx, an undocumented status, a body that does not match its schema, or a request the
description calls invalid being accepted.
"""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

import hypothesis
import hypothesis.errors
import schemathesis
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.testclient import TestClient

from tests.conftest import make_letter

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


EXAMPLES = hypothesis.settings(
    max_examples=25,
    derandomize=True,  # a fixed seed: the same examples every run
    deadline=None,
    database=None,
    suppress_health_check=list(hypothesis.HealthCheck),
)


def run_examples(operation: Any, mode: GenerationMode, statuses: Counter[int]) -> None:
    """Send the operation's examples in one mode, counting the answers by status."""

    @EXAMPLES
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def check(case: Any) -> None:
        if mode is GenerationMode.POSITIVE:
            if "slug" in (case.path_parameters or {}):
                case.path_parameters["slug"] = "test-letter"
            if isinstance(case.body, dict) and "email" in case.body:
                # Half the addresses at a domain the letter allows, to reach signing.
                number = sum(statuses.values())
                if number % 2:
                    case.body["email"] = f"person{number}@corp.example"
        response = case.call_and_validate(checks=CHECKS)
        statuses[response.status_code] += 1

    check()


def test_the_api_answers_as_its_description_says(app: Any, engine: Any) -> None:
    # A published letter under the slug the examples use, so operations reach past the 404.
    make_letter(engine, "test-letter")
    with TestClient(app):  # runs the lifespan: the engine and the caches
        schema = schemathesis.openapi.from_asgi("/api/openapi.json", app)
        # The live event stream runs for minutes by design (tests/web/test_api.py covers it).
        operations = [
            operation
            for operation in (result.ok() for result in schema.get_all_operations())
            if not operation.path.endswith("/events")
        ]
        assert len(operations) >= 8
        statuses: Counter[int] = Counter()
        for operation, mode in itertools.product(operations, GenerationMode):
            try:
                run_examples(operation, mode, statuses)
            except hypothesis.errors.Unsatisfiable:
                # No parameter or body to make invalid: nothing negative to send.
                assert mode is GenerationMode.NEGATIVE, operation.label
    # The examples reached the letter, not only 404s and refusals.
    assert statuses[200] > 20 and statuses[202] > 0, statuses
