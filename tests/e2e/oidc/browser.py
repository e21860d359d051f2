"""The person at the provider's verification page, for the e2e tests: enter the user
code, log in through oidc-provider's development login form, consent (or abort). Plain
HTTP with a cookie jar (python3-requests), run inside the container next to the provider.

    python3 browser.py VERIFICATION_URI USER_CODE LOGIN [--deny]
"""

from __future__ import annotations

import sys
from html.parser import HTMLParser
from urllib.parse import urljoin

import requests


class Forms(HTMLParser):
    """Every <form>: its action and its inputs' names and values."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form":
            self.forms.append({"action": a.get("action") or "", "fields": {}})
        elif tag == "input" and self.forms and a.get("name"):
            self.forms[-1]["fields"][a["name"]] = a.get("value") or ""


def forms(page: requests.Response) -> list[dict]:
    parser = Forms()
    parser.feed(page.text)
    return parser.forms


def submit(s: requests.Session, page: requests.Response, **fields: str) -> requests.Response:
    form = forms(page)[0]
    data = {**form["fields"], **fields}
    return s.post(urljoin(page.url, form["action"]), data=data, timeout=10)


def approve(uri: str, user_code: str, login: str, deny: bool = False) -> str:
    """Walk the pages; return the last page's text (the provider's verdict). Denying is
    the confirmation page's Abort button (the provider then answers access_denied)."""
    s = requests.Session()
    page = s.get(uri, timeout=10)
    page = submit(s, page, user_code=user_code)  # the code form
    for _ in range(6):
        found = forms(page)
        fields = found[0]["fields"] if found else {}
        if {"confirm", "user_code"} <= set(fields):  # "Continue" for this device?
            page = submit(s, page, **({"abort": "yes"} if deny else {}))
        elif fields.get("prompt") == "login":
            page = submit(s, page, login=login, password="any")
        elif fields.get("prompt") == "consent":
            page = submit(s, page)
        else:
            break
    return page.text


if __name__ == "__main__":
    args = sys.argv[1:]
    print(approve(args[0], args[1], args[2], deny="--deny" in args))
