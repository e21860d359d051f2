"""Server is made of mixins (server_sudo, server_pam, server_sessions, server_record):
a name two of them define is silently taken from the first in the MRO, so the other's
callers get the wrong method (RecordOps._fields was shadowed by SessionEnding's, and
every record.open failed with an internal error)."""

from __future__ import annotations

from hostd.server import Server


def test_no_two_mixins_of_server_define_the_same_name():
    owners: dict[str, list[str]] = {}
    for cls in Server.__mro__[1:]:
        if cls is object:
            continue
        for name in vars(cls):
            if not (name.startswith("__") and name.endswith("__")):
                owners.setdefault(name, []).append(cls.__name__)
    clashes = {n: c for n, c in owners.items() if len(c) > 1}
    assert clashes == {}
