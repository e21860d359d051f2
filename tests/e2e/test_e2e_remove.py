"""Removing the package takes temporary memberships away and leaves standing ones;
purging it leaves no state and no host key."""

from __future__ import annotations

from jithost import Host, grants, groups_of, issue


def test_remove_revokes_grants_but_keeps_standing_members_then_purge_cleans(
        own_host: Host) -> None:
    box = own_host.box
    box.run(["gpasswd", "-a", "bob", "docker"])  # standing membership, before any grant
    for user in ("alice", "bob"):
        box.run(["jit", "activate", issue(box, user, "docker", "1h")], user=user)
    assert {g["user"] for g in grants(box)} == {"alice", "bob"}
    assert "docker" in groups_of(box, "alice")

    box.run(["apt-get", "remove", "-y", "jitaccess"], timeout=120)
    for timer in ("jit-idp-refresh.timer", "jit-revocations-fetch.timer"):
        assert box.run(["systemctl", "is-active", timer], check=False).stdout.strip() \
            != "active"
    assert "docker" not in groups_of(box, "alice")
    assert "docker" in groups_of(box, "bob")
    assert box.run(["systemctl", "is-active", "jit-hostd.service"],
                   check=False).stdout.strip() != "active"

    box.run(["apt-get", "purge", "-y", "jitaccess"], timeout=120)
    assert not box.path("/var/lib/jit").exists()
    assert not box.path("/var/cache/jit").exists()  # the fetcher's public IdP endpoints
    assert not box.path("/etc/jit/host-issuer.key").exists()
    assert "docker" in groups_of(box, "bob")
    status = box.run(["dpkg-query", "-W", "-f=${db:Status-Status}", "jitaccess"],
                     check=False).stdout
    assert status in ("", "not-installed")
