#!/usr/bin/python3
"""Revocation lists (issue 22 §1): what a list costs a host.

1. Verifying a list (hostd.policy.revocations.verify: bounded parse, signature, every
   entry checked) of 1,000, 10,000 and 20,000 jti entries (20,000 is about the 1 MiB
   bound), plus building its index once.
2. The sweep's re-check of every live grant (Revocations.enforce) over 10,000 live grants
   in a real SQLite store with a 1,000-entry list that names none of them, beside the
   same re-check reading whole rows through Store.grants (the first version). The goal
   is the sweep's: well under its 30 s default interval, and short enough not to hold
   up the ordered worker.
Prints, asserts nothing.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE.parents[1] / "tests"))

from cryptography.hazmat.primitives.asymmetric import ed25519  # noqa: E402
from fakes import Clock, FakeAccounts  # noqa: E402

from hostd.core.lifecycle import Core  # noqa: E402
from hostd.core.revocations import Revocations  # noqa: E402
from hostd.paths import Paths  # noqa: E402
from hostd.policy import revocations as rev  # noqa: E402
from hostd.policy.config import Config, Issuer  # noqa: E402
from hostd.policy.hostmatch import HostFacts  # noqa: E402
from hostd.policy.keys import PublicKey, thumbprint  # noqa: E402
from hostd.state.journal import Events  # noqa: E402
from hostd.state.store import Store  # noqa: E402

NOW = int(time.time())
GRANTS = 10_000


def timed(fn, rounds: int = 5) -> float:
    """Median seconds of `rounds` calls."""
    out = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def verification(key, config: Config) -> None:
    for n in (1_000, 10_000, 20_000):
        lst = rev.RevocationList("corp", 1, NOW, NOW + 3600,
                                 tuple(rev.Entry("jti", f"grant-{i:08d}") for i in range(n)))
        token = rev.sign(key, lst)
        took = timed(lambda token=token: rev.verify(token, config, NOW), 3)
        verified = rev.verify(token, config, NOW)
        index = timed(lambda v=verified: rev.RevocationList.index.func(v), 3)
        print(f"verify {n:>6} entries ({len(token) // 1024} KiB): {took * 1000:7.1f} ms, "
              f"index {index * 1000:5.1f} ms")


def seeded_store(tmp: Path) -> Store:
    store = Store(tmp / "state.db")
    with store.transaction() as db:
        db.executemany(
            "INSERT INTO grants (id, jti, issuer, user, uid, role, groups, not_before, exp, "
            "state, activated_at, kid) VALUES (?, ?, 'corp', ?, ?, 'docker', '[\"docker\"]', "
            "?, ?, 'active', ?, 'k')",
            [(f"g{i}", f"j{i}", f"u{i}", 2000 + i, NOW, NOW + 3600, NOW)
             for i in range(GRANTS)])
    return store


def sweep(key, config: Config) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="jit-bench-"))
    store = seeded_store(tmp)
    core = Core(config, store, FakeAccounts(), Events(tmp / "events.jsonl", journal=False),
                HostFacts("web-01"), clock=Clock(NOW))
    lists = Revocations(core, Paths(tmp))
    lists.lists = {"corp": rev.RevocationList(
        "corp", 1, NOW, NOW + 3600, tuple(rev.Entry("jti", f"x{i}") for i in range(1000)))}
    now_ = core.clock()
    cfgs = lists.configured()

    def whole_rows() -> None:  # the first version: every row decoded
        for g in store.grants("active"):
            lists._decide(g, now_, cfgs)

    ours = timed(lists.enforce)
    base = timed(whole_rows)
    print(f"sweep re-check over {GRANTS:,} live grants, 1,000-entry list: {ours * 1000:.1f} ms"
          f" (whole rows: {base * 1000:.1f} ms, ratio {ours / base:.2f})")
    lists.lists = {}
    print(f"same with no entry and no strict issuer: {timed(lists.enforce) * 1000:.3f} ms")
    store.close()


def main() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    pub = PublicKey(thumbprint(key.public_key()), "EdDSA", key.public_key())
    config = Config(issuers={"corp": Issuer("corp", (pub,), ("EdDSA",))})
    verification(key, config)
    sweep(key, config)


if __name__ == "__main__":
    main()
