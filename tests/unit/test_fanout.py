"""The live-session fan-out (hostd/record/fanout.py): bounded backlog, bounded queues,
a slow watcher dropped and never waited for, the end seen by every watcher."""

from hostd.record.fanout import MODERATOR, OBSERVER, Fanout, Watcher


def out(t: float, data: bytes) -> tuple:
    return ("o", t, data)


def test_a_watcher_gets_what_is_published_after_it_attached_and_is_woken():
    fan = Fanout({"version": 2})
    fan.publish([out(0.1, b"before")])
    woken = []
    w = Watcher("bob", 1001, wake=lambda: woken.append(1))
    fan.attach(w, from_start=False)
    fan.publish([out(0.2, b"after"), ("r", 0.3, (100, 30))])
    assert w.take() == [out(0.2, b"after"), ("r", 0.3, (100, 30))]
    assert woken and w.take() == []


def test_from_start_replays_the_backlog_first():
    fan = Fanout({})
    fan.publish([out(0.1, b"one"), out(0.2, b"two")])
    w = Watcher("bob", 1001)
    fan.attach(w, from_start=True)
    fan.publish([out(0.3, b"three")])
    assert [i[2] for i in w.take()] == [b"one", b"two", b"three"]


def test_the_backlog_is_bounded_and_says_it_was_trimmed():
    fan = Fanout({}, backlog=10)
    for i in range(10):
        fan.publish([out(i, b"abcd")])
    assert fan.backlog_size <= 10 and fan.trimmed
    assert [i[2] for i in fan.backlog] == [b"abcd", b"abcd"]


def test_a_watcher_whose_queue_fills_is_dropped_and_the_others_go_on():
    woken = []
    fan = Fanout({})
    slow = Watcher("slow", 1, limit=8, wake=lambda: woken.append("slow"))
    fast = Watcher("fast", 2, limit=1024)
    fan.attach(slow, False)
    fan.attach(fast, False)
    assert fan.publish([out(0, b"12345")]) == []
    fast.take()  # the fast one reads; the slow one does not
    woken.clear()
    gone = fan.publish([out(1, b"67890")])
    assert gone == [slow] and woken == ["slow"]  # woken to tell its client
    assert "did not keep up" in slow.dropped and slow not in fan.watchers
    assert fast.take() == [out(1, b"67890")]
    fan.publish([out(2, b"x")])  # the dropped one gets nothing more
    assert [i[2] for i in slow.queue] == [b"12345"]


def test_from_start_never_overfills_a_queue():
    fan = Fanout({}, backlog=1000)
    for i in range(100):
        fan.publish([out(i, b"0123456789")])
    w = Watcher("bob", 1, limit=35)
    fan.attach(w, from_start=True)
    got = w.take()
    assert [i[1] for i in got] == [97, 98, 99]  # the newest end of the backlog


def test_counts_by_mode_and_the_end_wakes_everyone():
    fan = Fanout({})
    woken = []
    a = Watcher("a", 1, OBSERVER, wake=lambda: woken.append("a"))
    b = Watcher("b", 2, MODERATOR, wake=lambda: woken.append("b"))
    fan.attach(a, False)
    fan.attach(b, False)
    assert (fan.count(OBSERVER), fan.count(MODERATOR)) == (1, 1)
    fan.notice({"paused": "the moderator left"})
    assert list(a.notices) == [{"paused": "the moderator left"}]
    woken.clear()
    fan.end("exit 0")
    assert fan.ended == "exit 0" and sorted(woken) == ["a", "b"]
    fan.detach(a)
    assert a.dropped == "detached" and fan.count(OBSERVER) == 0


def test_one_person_watching_twice_is_one_moderator():
    fan = Fanout({})
    for _ in range(2):
        fan.attach(Watcher("bob", 1002, MODERATOR), False)
    fan.attach(Watcher("carol", 1003, MODERATOR), False)
    fan.attach(Watcher("root", 0, OBSERVER), False)
    assert (fan.count(MODERATOR), fan.count(OBSERVER)) == (2, 1)
