"""A device-flow client other than `jit login`, for the e2e refusal tests: it gets a
genuine ID token from the provider for any registered client (e.g. `other-app`, whose
tokens carry the wrong audience for this host), the person approving through browser.py.
The code is approved before the token endpoint is asked, so one token request suffices.

    python3 device.py ISSUER CLIENT_ID LOGIN      (prints the ID token)
"""

from __future__ import annotations

import sys

import requests
from browser import approve

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def id_token(issuer: str, client_id: str, login: str) -> str:
    conf = requests.get(f"{issuer}/.well-known/openid-configuration", timeout=10).json()
    device = requests.post(conf["device_authorization_endpoint"], timeout=10, data={
        "client_id": client_id, "scope": "openid profile"}).json()
    page = approve(device["verification_uri"], device["user_code"], login)
    if "Sign-in Success" not in page:
        raise SystemExit(f"the provider did not approve the device code: {page[:200]}")
    answer = requests.post(conf["token_endpoint"], timeout=10, data={
        "grant_type": DEVICE_GRANT, "device_code": device["device_code"],
        "client_id": client_id}).json()
    if "id_token" not in answer:
        raise SystemExit(f"no ID token from the token endpoint: {answer}")
    return answer["id_token"]


if __name__ == "__main__":
    print(id_token(*sys.argv[1:4]))
