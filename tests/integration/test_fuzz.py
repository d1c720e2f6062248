"""Property-based fuzzing of the running gateway from its published OpenAPI document.

Schemathesis generates requests from the document the gateway serves at /openapi.json, both
valid (positive) and invalid (negative) ones. Some image items get a real tiny PNG in place of
random base64, so that a good share of the requests embed something. Every response must be
documented, well typed and not a 5xx.
"""

from __future__ import annotations

import base64
import io
from collections import Counter

import httpx
import numpy as np
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from PIL import Image
from schemathesis import GenerationMode
from schemathesis import checks as st_checks

pytestmark = pytest.mark.integration

EXAMPLES = 500
MIN_OK_RATIO = 0.2
MIN_IMAGES_EMBEDDED = 25  # image items answered with a vector, across all the requests
REQUEST_TIMEOUT_S = 30
CHECKS = [
    st_checks.not_a_server_error,
    st_checks.status_code_conformance,
    st_checks.content_type_conformance,
    st_checks.response_schema_conformance,
]


def _png(size: tuple[int, int], colour: tuple[int, int, int]) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


PNGS = [_png((8, 8), (200, 30, 30)), _png((16, 9), (30, 200, 30)), _png((1, 1), (0, 0, 255))]


def _substitute_images(data: st.DataObject, body: object) -> object:
    """Give some image items of `body` a real PNG, in whichever of the three shapes they use."""
    if not isinstance(body, dict) or not isinstance(body.get("input"), list):
        return body
    for item in body["input"]:
        # Hypothesis favours 0, so 0..6 mean "substitute": most image items get a real PNG.
        if not isinstance(item, dict) or data.draw(st.integers(0, 7), label="keep") == 7:
            continue  # this one keeps its generated (mostly invalid) payload
        png = data.draw(st.sampled_from(PNGS), label="png")
        uri = f"data:image/png;base64,{png}"
        if item.get("type") == "image" and isinstance(item.get("image"), str):
            item["image"] = png
        elif item.get("type") == "image" and isinstance(item.get("image_url"), str):
            item["image_url"] = uri
        elif item.get("type") == "image_url" and isinstance(item.get("image_url"), dict):
            item["image_url"]["url"] = uri
    return body


def test_fuzz_embeddings_from_the_published_schema(base_url: str) -> None:
    document = httpx.get(f"{base_url}/openapi.json", timeout=REQUEST_TIMEOUT_S).json()
    schema = schemathesis.openapi.from_dict(document)
    operation = schema["/v1/embeddings"]["POST"]
    cases = st.one_of(
        operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
        operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
    )
    statuses: Counter[int] = Counter()
    embedded: Counter[str] = Counter()
    session = requests.Session()

    @given(data=st.data())
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        # No shrinking: a failure reports the generated request as is, within the time budget.
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(data: st.DataObject) -> None:
        case = data.draw(cases, label="case")
        case.body = _substitute_images(data, case.body)
        try:
            response = case.call(base_url=base_url, session=session, timeout=REQUEST_TIMEOUT_S)
        except requests.Timeout:
            pytest.fail(f"no answer in {REQUEST_TIMEOUT_S} s to:\n{case.as_curl_command()}")
        statuses[response.status_code] += 1
        case.validate_response(response, checks=CHECKS)
        if response.status_code == 200:
            embedded["images"] += sum(item["type"] == "image" for item in response.json()["data"])

    fuzz()
    total = sum(statuses.values())
    print(f"\nfuzz statuses: {dict(sorted(statuses.items()))}, embedded: {dict(embedded)}")
    assert total >= EXAMPLES
    assert not [status for status in statuses if status >= 500]
    assert statuses[200] / total >= MIN_OK_RATIO, dict(statuses)
    assert embedded["images"] >= MIN_IMAGES_EMBEDDED, dict(embedded)

    for path in ("/v1/models", "/health/live", "/health/ready"):
        get = schema[path]["GET"]
        get.Case().call_and_validate(base_url=base_url, checks=CHECKS, timeout=REQUEST_TIMEOUT_S)

    # The gateway still embeds correctly after the fuzzing.
    response = httpx.post(
        f"{base_url}/v1/embeddings",
        json={"model": "epithre-embed", "input": ["kucing oren tidur di kasur"]},
        timeout=REQUEST_TIMEOUT_S,
    )
    assert response.status_code == 200, response.text
    (item,) = response.json()["data"]
    vector = np.asarray(item["embedding"], dtype=np.float64)
    assert vector.shape == (384,)
    assert np.isfinite(vector).all()
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-4)
