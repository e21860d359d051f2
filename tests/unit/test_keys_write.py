"""keys.write_public: whoever can write the key's directory must not get root to write or
chmod another file through a planted PATH.pub.tmp (or PATH.pub) symlink."""

from __future__ import annotations

import os
import signal
import stat

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from hostd.policy.keys import public_pem, write_public


@pytest.fixture
def key():
    return ed25519.Ed25519PrivateKey.generate()


def test_public_key_write_does_not_follow_a_planted_tmp_symlink(tmp_path, key):
    victim = tmp_path / "shadow"
    victim.write_text("secret\n")
    os.chmod(victim, 0o600)
    (tmp_path / "host.key.pub.tmp").symlink_to(victim)
    write_public(tmp_path / "host.key", key)
    assert victim.read_text() == "secret\n"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o600
    pub = tmp_path / "host.key.pub"
    assert pub.read_bytes() == public_pem(key) and not pub.is_symlink()
    assert stat.S_IMODE(pub.stat().st_mode) == 0o644
    assert not (tmp_path / "host.key.pub.tmp").exists()


def test_public_key_write_replaces_a_symlink_rather_than_writing_through_it(tmp_path, key):
    victim = tmp_path / "shadow"
    victim.write_text("secret\n")
    os.chmod(victim, 0o600)
    (tmp_path / "host.key.pub").symlink_to(victim)
    write_public(tmp_path / "host.key", key)
    assert victim.read_text() == "secret\n"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o600
    assert not (tmp_path / "host.key.pub").is_symlink()


def test_public_key_is_0644_whatever_the_umask(tmp_path, key):
    old = os.umask(0o077)
    try:
        write_public(tmp_path / "host.key", key)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "host.key.pub").stat().st_mode) == 0o644


def test_public_key_write_over_a_fifo_does_not_block(tmp_path, key):
    def hung(*_):
        raise TimeoutError("write_public blocked reading a FIFO")

    os.mkfifo(tmp_path / "host.key.pub")
    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(5)
    try:
        write_public(tmp_path / "host.key", key)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert (tmp_path / "host.key.pub").read_bytes() == public_pem(key)


def test_unchanged_public_key_is_left_alone(tmp_path, key):
    write_public(tmp_path / "host.key", key)
    before = (tmp_path / "host.key.pub").stat().st_ino
    write_public(tmp_path / "host.key", key)
    assert (tmp_path / "host.key.pub").stat().st_ino == before
