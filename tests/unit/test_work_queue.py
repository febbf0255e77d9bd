import threading
import time

from dockyard.controllers.queue import WorkQueue


def test_key_added_twice_is_queued_once() -> None:
    q = WorkQueue()
    q.add("a")
    q.add("a")
    q.add("b")
    assert q.get(0.1) == "a"
    assert q.get(0.1) == "b"
    assert q.get(0.05) is None


def test_key_added_while_processing_runs_again_after_done_not_in_parallel() -> None:
    q = WorkQueue()
    q.add("a")
    assert q.get(0.1) == "a"
    q.add("a")
    assert q.get(0.05) is None  # not handed to a second worker while the first holds it
    q.done("a")
    assert q.get(0.1) == "a"


def test_delayed_add_arrives_after_delay() -> None:
    q = WorkQueue()
    t0 = time.monotonic()
    q.add("a", delay=0.2)
    assert q.get(1.0) == "a"
    assert time.monotonic() - t0 >= 0.19


def test_close_wakes_waiting_worker() -> None:
    q = WorkQueue()
    got = []
    t = threading.Thread(target=lambda: got.append(q.get()))
    t.start()
    q.close()
    t.join(1)
    assert got == [None]


def test_a_key_waits_in_one_delay_however_often_it_fails() -> None:
    # a key that keeps failing is retried with a delay after each run; extra runs (resyncs, events)
    # must not leave one more delayed retry behind each time, or its retries multiply without bound
    q = WorkQueue()
    for _ in range(50):
        q.add("k", delay=0.05)
        q.add("k")
        assert q.get(timeout=1) == "k"
        q.done("k")
    assert q.depth() == 1
    time.sleep(0.1)
    assert q.get(timeout=1) == "k"
    q.done("k")
    assert q.get(timeout=0.2) is None


def test_a_sooner_delay_replaces_a_later_one() -> None:
    q = WorkQueue()
    q.add("k", delay=30)
    q.add("k", delay=0.05)
    q.add("k", delay=20)
    assert q.depth() == 1
    assert q.get(timeout=1) == "k"
