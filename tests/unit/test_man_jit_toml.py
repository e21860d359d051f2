"""jit.toml(5) documents every key the config parser reads, and nothing else: the parser
is run over one of each table while every key it asks for is recorded (issue 20)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hostd.policy import config as cfg
from hostd.policy.keys import generate_ed25519

MAN = (Path(__file__).resolve().parents[2] / "packaging/debian/man/jit.toml.5").read_text()

# the parser's tables (prefixes with names and indexes taken out) -> the page's headings
HEADINGS = {"roles.NAME": "[roles.NAME]", "roles.NAME.sudo": "sudo rules",
            "standing.sudo": "sudo rules", "guardrails": "[[guardrails]]",
            "standing": "[[standing]]", "login": "[login]", "requests": "[requests]",
            "sudo": "[sudo]", "notify": "[notify]", "masking": "[masking]",
            "masking.rules": "[masking] rules", "recording": "[recording]",
            "daemon": "[daemon]", "issuer": "issuers.d", "oidc": "issuers.d: OIDC issuers",
            "claims_to_roles": "[[claims_to_roles]]"}

EVERY_TABLE = {
    "roles": {"r": {"sudo": [{"commands": ["ALL"]}]}},
    "guardrails": [{"match": "x"}, {"program": "/usr/bin/rm", "args": ["x"]}],
    "standing": [{"members": ["root"], "sudo": [{"commands": ["ALL"]}]}],
    "login": {}, "requests": {}, "sudo": {}, "notify": {}, "recording": {}, "daemon": {},
    "masking": {"rules": [{"name": "t", "regex": "T-[0-9]{4}"}]},
}


def page() -> dict[str, set[str]]:
    """Heading -> the keys listed under it (`.TP` then `.B key`)."""
    out: dict[str, set[str]] = {}
    heading = ""
    lines = MAN.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(".SS "):
            heading = line[4:].strip().strip('"')
            out[heading] = set()
        elif line == ".TP" and heading and lines[i + 1].startswith(".B "):
            out[heading].add(lines[i + 1][3:].strip())
    return out


def read_keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> set[tuple[str, str]]:
    seen: set[tuple[str, str]] = set()
    real = cfg._Table.get

    def get(self, name, *args, **kwargs):
        prefix = re.sub(r"\[\d+\]", "", self.prefix)
        prefix = re.sub(r"^roles\.[^.]+", "roles.NAME", prefix)
        kind = {".key.toml": "issuer", ".oidc.toml": "oidc"}.get(
            "".join(self.path.suffixes[-2:]), "")
        seen.add((prefix or kind, name))
        return real(self, name, *args, **kwargs)

    monkeypatch.setattr(cfg._Table, "get", get)
    cfg.parse_policy(Path("/etc/jit/jit.toml"), EVERY_TABLE)
    generate_ed25519(tmp_path / "k")
    cfg.parse_issuer(tmp_path / "corp.key.toml", {"name": "corp", "algorithms": ["EdDSA"],
                                                  "public_keys": [str(tmp_path / "k.pub")]})
    cfg.parse_issuer(tmp_path / "idp.oidc.toml", {
        "type": "oidc", "name": "idp", "issuer": "https://idp.example.com", "client_id": "c",
        "algorithms": ["RS256"], "claims_to_roles": [{"value": "/sre", "roles": ["r"]}]})
    return seen


def test_every_key_the_parser_reads_is_on_the_page_and_only_those(monkeypatch, tmp_path):
    seen = read_keys(monkeypatch, tmp_path)
    documented = page()
    sections = {k for p, k in seen if p == ""}  # the top-level tables: one heading each
    assert sections == set(EVERY_TABLE)
    assert {f"[{s}]" for s in sections} - set(documented) == {"[roles]", "[guardrails]",
                                                              "[standing]"}
    assert {"[roles.NAME]", "[[guardrails]]", "[[standing]]"} <= set(documented)
    missing = {(p, k) for p, k in seen if p and k not in documented[HEADINGS[p]]}
    assert missing == set(), "keys the parser reads that jit.toml(5) does not list"
    extra = {(h, k) for h, keys in documented.items() for k in keys
             if not any(HEADINGS.get(p) == h and key == k for p, key in seen)}
    assert extra == set(), "keys jit.toml(5) lists that the parser does not read"
