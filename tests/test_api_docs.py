"""
The API documents (docs/api.md, docs/openapi.yaml) list exactly the routes
served.
"""

import os
import re

import yaml
from twisted.trial import unittest

from chatd.web.api import ChatApi

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                    "docs")

# go-chat's routes (../shared/GO-CHAT-PROTOCOL.md) and chatd's additions to
# them: always served.
CORE_ROUTES = {
    ("POST", "/user/register"), ("POST", "/user/login"),
    ("POST", "/user/logout"), ("GET", "/user/{}"), ("PUT", "/user"),
    ("GET", "/user"), ("GET", "/user/name"), ("POST", "/friend"),
    ("DELETE", "/friend"), ("GET", "/message"), ("GET", "/file/{}"),
    ("POST", "/file"), ("GET", "/group/{}"), ("POST", "/group/{}"),
    ("PUT", "/group/{}"), ("DELETE", "/group/{}"),
    ("POST", "/group/join/{}/{}"), ("POST", "/group/leave/{}/{}"),
    ("GET", "/group/user/{}"), ("DELETE", "/group/user/{}/{}"),
}


def served_routes():
    routes = set()
    for rule in ChatApi.app.url_map.iter_rules():
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", "{}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            routes.add((method, path))
    return routes


class DocsTests(unittest.TestCase):
    def test_openapi(self):
        with open(os.path.join(DOCS, "openapi.yaml"), encoding="utf-8") as f:
            spec = yaml.safe_load(f)
        documented = set()
        for path, operations in spec["paths"].items():
            for method in operations:
                documented.add((method.upper(),
                                re.sub(r"\{[A-Za-z]+\}", "{}", path)))
        self.assertEqual(documented, served_routes())
        self.assertEqual(CORE_ROUTES - served_routes(), set())

    def test_api_md_lists_every_route(self):
        with open(os.path.join(DOCS, "api.md"), encoding="utf-8") as f:
            text = f.read()
        headings = set()
        for method, path in re.findall(r"^#### `([A-Z]+) ([^`?]+)", text, re.M):
            path = re.sub(r"^/api/v1(?=/)", "", path)
            headings.add((method, re.sub(r":[A-Za-z]+", "{}", path)))
        self.assertEqual(headings, served_routes())
