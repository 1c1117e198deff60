"""JSON over real HTTP for the end-to-end tests of experiments and canaries."""

import json
import urllib.request


def get_json(url: str) -> dict:
    """GET `url`; the answer must be a 200."""
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.status == 200
        return json.loads(r.read())


def post_json(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as r:
        return json.loads(r.read())
