"""Moderated roles (hostd/policy/moderation.py): the rule as a pure state machine, and
the role key it is read from."""

from pathlib import Path

import pytest

from hostd.errors import ConfigError
from hostd.policy import config
from hostd.policy.moderation import (
    ENDED,
    PAUSE,
    PAUSED,
    RESUME,
    RUNNING,
    START,
    TERMINATE,
    WAITING,
    Moderation,
    step,
)

PAUSING = Moderation(watchers=1, on_leave="pause", join_timeout=300)


def test_waits_for_enough_moderators_then_starts():
    two = Moderation(watchers=2)
    assert step(two, WAITING, 0, 0, 10)[:2] == (WAITING, None)
    assert step(two, WAITING, 1, 0, 10)[:2] == (WAITING, None)
    assert step(two, WAITING, 2, 0, 10)[:2] == (RUNNING, START)


def test_join_timeout_ends_a_wait_and_a_pause():
    state, action, why = step(PAUSING, WAITING, 0, 0, 300)
    assert (state, action) == (ENDED, TERMINATE) and "300s" in why
    assert step(PAUSING, PAUSED, 0, 100, 399)[:2] == (PAUSED, None)
    assert step(PAUSING, PAUSED, 0, 100, 400)[:2] == (ENDED, TERMINATE)


def test_a_moderator_leaving_pauses_or_terminates_per_on_leave():
    assert step(PAUSING, RUNNING, 0, 0, 5)[:2] == (PAUSED, PAUSE)
    ending = Moderation(on_leave="terminate")
    assert step(ending, RUNNING, 0, 0, 5)[:2] == (ENDED, TERMINATE)
    assert step(PAUSING, RUNNING, 1, 0, 5)[:2] == (RUNNING, None)


def test_a_pause_resumes_when_a_moderator_returns():
    assert step(PAUSING, PAUSED, 1, 0, 5)[:2] == (RUNNING, RESUME)


def test_an_ended_session_stays_ended():
    assert step(PAUSING, ENDED, 5, 0, 5)[:2] == (ENDED, None)


def role(**moderation):
    return config._role(Path("jit.toml"), "ops", {"record": "always",
                                                  "moderation": moderation})


def test_the_role_key_and_its_defaults():
    assert role().moderation == Moderation(1, "pause", 300)
    assert role(watchers=2, on_leave="terminate", join_timeout="30s").moderation == \
        Moderation(2, "terminate", 30)
    assert config._role(Path("jit.toml"), "ops", {}).moderation is None


@pytest.mark.parametrize("table, message", [
    ({"watchers": 0}, "between 1 and 10"),
    ({"on_leave": "ignore"}, "must be one of pause, terminate"),
    ({"join_timeout": "soon"}, "join_timeout"),
    ({"observers": 1}, "unknown key"),
])
def test_bad_moderation_is_a_named_config_error(table, message):
    with pytest.raises(ConfigError, match=message):
        role(**table)


def test_moderation_needs_every_session_recorded_and_terminated_without_a_recording():
    with pytest.raises(ConfigError, match='record = "always"'):
        config._role(Path("jit.toml"), "ops", {"moderation": {}})
    with pytest.raises(ConfigError, match="record_failure"):
        config._role(Path("jit.toml"), "ops", {"record": "always",
                                               "record_failure": "continue",
                                               "moderation": {}})
