"""Trust files (policy, issuers.d, issuer keys, the host key) are root's alone, as sshd's
StrictModes wants, and are read only if they are regular files, without blocking.

The tests run as root in a pytest tmp dir used as a sandbox root (Paths.sandboxed): its
ancestors (/tmp) are not checked, the sandbox root and everything below it are.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from hostd.errors import ConfigError
from hostd.paths import Paths
from hostd.policy import config as cfg
from hostd.policy import trust
from hostd.policy.keys import generate_ed25519, load_private

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")

USER = 1000
ISSUER = 'name = "corp"\npublic_keys = ["/etc/jit/keys/corp.pub"]\nalgorithms = ["EdDSA"]\n'
JWKS_ISSUER = 'name = "corp"\njwks = "/etc/jit/keys/corp.jwks"\nalgorithms = ["EdDSA"]\n'
POLICY = '[roles.docker]\ngroups = ["docker"]\nissuers = ["corp", "host"]\n'


def _pem(private_key) -> str:
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def write(path: Path, text: str, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, mode)
    return path


@pytest.fixture
def box(tmp_path, pki) -> Paths:
    """A sandbox root with a good configuration: policy, one issuer, its key, host key."""
    os.chmod(tmp_path, 0o755)
    paths = Paths.for_root(tmp_path)
    write(paths.config, POLICY)
    write(paths.issuers_dir / "corp.toml", ISSUER)
    write(paths.root / "etc/jit/keys/corp.pub", _pem(pki.corp))
    generate_ed25519(paths.host_key)
    assert sorted(cfg.load(paths).issuers) == ["corp", "host"]  # good as written
    return paths


def refused(paths: Paths) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        cfg.load(paths)
    return info.value


def key_file(paths: Paths) -> Path:
    return paths.root / "etc/jit/keys/corp.pub"


# --- finding 1: writable trust files ----------------------------------------------------


def test_issuer_key_writable_by_group_is_refused(box):
    os.chmod(key_file(box), 0o664)
    err = refused(box)
    assert (err.path, err.key) == (str(key_file(box)), "")
    assert err.message == f"{key_file(box)}: writable by group or others (mode 0664)"


def test_issuer_key_writable_by_others_is_refused(box):
    os.chmod(key_file(box), 0o646)
    assert refused(box).problem == "writable by group or others (mode 0646)"


def test_issuer_key_owned_by_a_user_is_refused(box):
    os.chown(key_file(box), USER, USER)
    err = refused(box)
    assert err.message == f"{key_file(box)}: owned by uid {USER}, must be owned by root"


def test_issuer_key_symlink_to_user_owned_file_is_refused(box, pki):
    mine = write(box.root / "home/alice/corp.pub", _pem(pki.stranger))
    os.chown(mine, USER, USER)
    key_file(box).unlink()
    key_file(box).symlink_to(mine)
    err = refused(box)
    assert err.path == str(key_file(box))
    assert err.problem == (f"{mine} (its symlink target) is owned by uid {USER}, "
                           "must be owned by root")


def test_issuer_key_symlink_into_user_writable_directory_is_refused(box, pki):
    home = box.root / "home/alice"
    target = write(home / "corp.pub", _pem(pki.corp))  # root's file, in alice's directory
    os.chown(home, USER, USER)
    key_file(box).unlink()
    key_file(box).symlink_to(target)
    assert refused(box).problem == f"directory {home} is owned by uid {USER}, must be owned by root"


def test_issuer_key_through_a_symlink_in_a_user_directory_is_refused(box, pki):
    """keys/corp.pub -> home/alice/link -> a root-owned key: alice can re-point the link."""
    home = box.root / "home/alice"
    real = write(box.root / "etc/jit/real/corp.pub", _pem(pki.corp))
    home.mkdir(parents=True)
    (home / "link").symlink_to(real)
    os.chmod(home, 0o777)
    key_file(box).unlink()
    key_file(box).symlink_to(home / "link")
    assert refused(box).problem == (f"directory {home} is writable by group or others "
                                    "(mode 0777)")


def test_issuer_key_in_group_writable_directory_is_refused(box):
    os.chmod(key_file(box).parent, 0o775)
    err = refused(box)
    assert err.path == str(key_file(box))
    assert err.problem == (f"directory {key_file(box).parent} is writable by group or others "
                           "(mode 0775)")


def test_issuer_key_in_sticky_world_writable_directory_is_refused(box):
    os.chmod(key_file(box).parent, 0o1777)
    assert "writable by group or others (mode 1777)" in refused(box).problem


def test_issuer_jwks_writable_is_refused(box, pki):
    import json

    import jwt

    jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(pki.corp.public_key()))
    jwks = write(box.root / "etc/jit/keys/corp.jwks", json.dumps({"keys": [dict(jwk, kid="k")]}),
                 0o666)
    write(box.issuers_dir / "corp.toml", JWKS_ISSUER)
    err = refused(box)
    assert (err.path, err.problem) == (str(jwks), "writable by group or others (mode 0666)")


def test_policy_writable_by_group_is_refused(box):
    os.chmod(box.config, 0o664)
    err = refused(box)
    assert (err.path, err.problem) == (str(box.config), "writable by group or others (mode 0664)")


def test_policy_owned_by_a_user_is_refused(box):
    os.chown(box.config, USER, USER)
    assert refused(box).problem == f"owned by uid {USER}, must be owned by root"


def test_issuers_d_writable_by_group_is_refused(box):
    os.chmod(box.issuers_dir, 0o775)
    err = refused(box)
    assert (err.path, err.problem) == (str(box.issuers_dir),
                                       "writable by group or others (mode 0775)")


def test_issuers_d_owned_by_a_user_is_refused(box):
    os.chown(box.issuers_dir, USER, USER)
    assert refused(box).path == str(box.issuers_dir)


def test_issuer_file_writable_is_refused(box):
    os.chmod(box.issuers_dir / "corp.toml", 0o666)
    assert refused(box).path == str(box.issuers_dir / "corp.toml")


def test_issuer_file_symlink_to_user_owned_file_is_refused(box):
    mine = write(box.root / "home/alice/evil.toml", ISSUER.replace('"corp"', '"evil"'))
    os.chown(mine, USER, USER)
    (box.issuers_dir / "evil.toml").symlink_to(mine)
    assert refused(box).path == str(box.issuers_dir / "evil.toml")


def test_host_issuer_public_key_writable_is_refused(box):
    os.chmod(box.host_key_pub, 0o666)
    err = refused(box)
    assert (err.path, err.problem) == (str(box.host_key_pub),
                                       "writable by group or others (mode 0666)")


def test_host_issuer_private_key_owned_by_a_user_is_refused(box):
    box.host_key_pub.unlink()  # then the private file is read for its public half
    os.chown(box.host_key, USER, USER)
    assert refused(box).path == str(box.host_key)


def test_directory_above_the_trust_files_writable_is_refused(box):
    os.chmod(box.root / "etc", 0o777)
    assert refused(box).problem == (f"directory {box.root / 'etc'} is writable by group or "
                                    "others (mode 0777)")


def test_sandbox_root_itself_is_checked(box):
    os.chmod(box.root, 0o777)
    assert refused(box).problem.startswith(f"directory {box.root} is writable")


def test_root_owned_symlink_to_root_owned_file_is_accepted(box, pki):
    write(box.root / "etc/jit/real/corp.pub", _pem(pki.corp))
    key_file(box).unlink()
    key_file(box).symlink_to("../real/corp.pub")
    assert cfg.load(box).issuers["corp"].keys[0].kid


def test_outside_a_sandbox_every_directory_from_slash_is_checked(tmp_path):
    """In production (top = /) a key under sticky, world-writable /tmp is refused."""
    key = write(tmp_path / "corp.pub", "x")
    with pytest.raises(ConfigError) as info:
        trust.check(key)
    assert info.value.problem == "directory /tmp is writable by group or others (mode 1777)"


def test_symlink_loop_is_refused(box):
    key_file(box).unlink()
    key_file(box).symlink_to(key_file(box).name)
    assert "symbolic links" in refused(box).problem


def test_parse_issuer_checks_keys_when_load_asks(tmp_path, pki):
    os.chmod(tmp_path, 0o755)
    write(tmp_path / "corp.pub", _pem(pki.corp), 0o666)
    data = {"name": "corp", "public_keys": ["corp.pub"], "algorithms": ["EdDSA"]}
    with pytest.raises(ConfigError):
        cfg.parse_issuer(tmp_path / "corp.toml", data, trusted_from=tmp_path)


# --- finding 3: a FIFO (or anything but a regular file) must not hang the reader ---------


@pytest.fixture
def no_hang():
    """Fail, rather than hang the whole run, if a read blocks (the old behaviour)."""
    def hung(*_):
        raise TimeoutError("the configuration read blocked")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(5)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def test_fifo_in_issuers_d_is_refused_without_blocking(box, no_hang):
    fifo = box.issuers_dir / "evil.toml"
    os.mkfifo(fifo, 0o644)
    err = refused(box)
    assert (err.path, err.problem) == (str(fifo), "not a regular file")


def test_fifo_as_policy_is_refused_without_blocking(box, no_hang):
    box.config.unlink()
    os.mkfifo(box.config, 0o644)
    err = refused(box)
    assert (err.path, err.problem) == (str(box.config), "not a regular file")


def test_fifo_as_issuer_key_is_refused_without_blocking(box, no_hang):
    key_file(box).unlink()
    os.mkfifo(key_file(box), 0o644)
    err = refused(box)
    assert (err.path, err.problem) == (str(key_file(box)), "not a regular file")


def test_fifo_as_host_key_is_refused_without_blocking(box, no_hang):
    box.host_key_pub.unlink()
    os.mkfifo(box.host_key_pub, 0o644)
    err = refused(box)
    assert (err.path, err.problem) == (str(box.host_key_pub), "not a regular file")


def test_directory_named_toml_in_issuers_d_is_refused(box):
    (box.issuers_dir / "dir.toml").mkdir()
    assert refused(box).problem == "not a regular file"


def test_fifo_as_private_key_is_refused_without_blocking(tmp_path, no_hang):
    os.mkfifo(tmp_path / "key")
    with pytest.raises(ConfigError) as info:
        load_private(tmp_path / "key")
    assert info.value.problem == "not a regular file"


def test_read_file_reads_a_regular_file(tmp_path):
    assert trust.read_file(write(tmp_path / "f", "hello")) == b"hello"


def test_host_issuer_private_key_writable_is_refused_even_with_a_good_pub(box):
    """hostd signs with the private key and rewrites the .pub from it at start."""
    os.chmod(box.host_key, 0o660)
    err = refused(box)
    assert (err.path, err.problem) == (str(box.host_key), "writable by group or others (mode 0660)")


def test_load_private_checks_trust_when_asked(tmp_path):
    os.chmod(tmp_path, 0o755)
    generate_ed25519(tmp_path / "host.key")
    assert load_private(tmp_path / "host.key", tmp_path)
    os.chown(tmp_path / "host.key", USER, USER)
    with pytest.raises(ConfigError, match="owned by uid 1000"):
        load_private(tmp_path / "host.key", tmp_path)
