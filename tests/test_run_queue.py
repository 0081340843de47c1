"""lrmsafety.run_queue: notebooks started side by side take the free slots in the order of their ranks."""

import multiprocessing
import time

import pytest

from lrmsafety import run_queue

FORK = multiprocessing.get_context("fork")


def _take_turn(folder, slots, rank, log, hold):
    with run_queue.turn(folder, slots, rank, poll=0.02, settle=0):
        with open(log, "a") as f:
            f.write(f"{rank}\n")
        time.sleep(hold)


def _wait_for_tickets(folder, n, timeout=10.0):
    deadline = time.monotonic() + timeout
    while len(run_queue.waiting(folder)) < n:
        assert time.monotonic() < deadline, "the waiting notebooks never queued"
        time.sleep(0.02)


def _hold_until(folder, released):
    with run_queue.turn(folder, 1, 0, poll=0.02, settle=0):
        while not released.exists():
            time.sleep(0.02)


def _wait_for(path, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.02)


def test_a_freed_slot_goes_to_the_best_ranked_waiting_notebook(tmp_path):
    # (each side in a process of its own, as make starts them: a forked child would share its parent's lock)
    log, released = tmp_path / "order.txt", tmp_path / "released"
    holder = FORK.Process(target=_hold_until, args=(tmp_path / "queue", released))
    holder.start()
    _wait_for(tmp_path / "queue" / "slot-0.lock")
    time.sleep(0.2)
    waiters = []
    for i, rank in enumerate([7, 3, 5]):  # the one slot is busy while the others queue, worst rank first
        waiters.append(FORK.Process(target=_take_turn, args=(tmp_path / "queue", 1, rank, log, 0.05)))
        waiters[-1].start()
        _wait_for_tickets(tmp_path / "queue", i + 1)
    released.touch()
    for process in [holder] + waiters:
        process.join(10)
        assert process.exitcode == 0
    assert log.read_text().split() == ["3", "5", "7"]
    assert run_queue.waiting(tmp_path / "queue") == [] and not list((tmp_path / "queue").glob("ticket-*"))


def test_slots_run_side_by_side_and_no_more(tmp_path):
    log = tmp_path / "order.txt"
    started = time.monotonic()
    workers = [FORK.Process(target=_take_turn, args=(tmp_path, 2, rank, log, 0.5)) for rank in range(4)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(10)
    elapsed = time.monotonic() - started
    assert sorted(log.read_text().split()) == ["0", "1", "2", "3"]
    assert 1.0 <= elapsed < 1.5 + 1.0  # two at a time: two rounds of 0.5 s (not one, not four)


def test_a_ticket_whose_process_is_gone_neither_blocks_nor_stays(tmp_path):
    dead = FORK.Process(target=time.sleep, args=(0,))
    dead.start()
    dead.join()
    (tmp_path / f"ticket-0-{dead.pid}").touch()  # a better rank than ours, but its notebook was killed
    with run_queue.turn(tmp_path, slots=1, rank=5, settle=0):
        assert not (tmp_path / f"ticket-0-{dead.pid}").exists()


def test_a_slot_is_released_when_its_holder_dies(tmp_path):
    holder = FORK.Process(target=_take_turn, args=(tmp_path, 1, 0, tmp_path / "log", 60))
    holder.start()
    _wait_for(tmp_path / "log")
    holder.kill()
    holder.join()
    with run_queue.turn(tmp_path, slots=1, rank=1, poll=0.02, settle=0):  # the kernel released the dead holder's lock
        pass


def test_slots_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="slots"):
        with run_queue.turn(tmp_path, slots=0, rank=0, settle=0):
            pass


def test_notebooks_started_in_one_burst_run_best_rank_first(tmp_path):
    log = tmp_path / "order.txt"
    workers = [FORK.Process(target=_burst, args=(tmp_path / "queue", rank, log)) for rank in (9, 4, 6, 1)]
    for process in workers:  # the worst rank is started first and could otherwise take the slot at once
        process.start()
        time.sleep(0.05)
    for process in workers:
        process.join(20)
        assert process.exitcode == 0
    assert log.read_text().split() == ["1", "4", "6", "9"]


def _burst(folder, rank, log):
    with run_queue.turn(folder, 1, rank, poll=0.02, settle=0.5):
        with open(log, "a") as f:
            f.write(f"{rank}\n")
        time.sleep(0.05)


def test_a_released_slot_waits_for_the_notebooks_its_holder_made_ready(tmp_path):
    # 09 becomes ready only when 05 ends: make starts it then, and 07 (ranked below, waiting already) must not take
    # the slot in the moment before 09 has queued
    log, queue = tmp_path / "order.txt", tmp_path / "queue"
    first = FORK.Process(target=_take_turn_settled, args=(queue, 5, log, 1.5))  # 10 polls meanwhile
    first.start()
    _wait_for(log)
    waiting_low = FORK.Process(target=_take_turn_settled, args=(queue, 10, log, 0.0))
    waiting_low.start()
    _wait_for_tickets(queue, 1)
    first.join(10)  # the slot is released now; the notebook it made ready starts a moment later
    time.sleep(0.2)
    ready_high = FORK.Process(target=_take_turn_settled, args=(queue, 5, log, 0.0))
    ready_high.start()
    for process in (waiting_low, ready_high):
        process.join(20)
        assert process.exitcode == 0
    assert log.read_text().split() == ["5", "5", "10"]


def _take_turn_settled(folder, rank, log, hold):
    with run_queue.turn(folder, 1, rank, poll=0.02, settle=1.0):
        with open(log, "a") as f:
            f.write(f"{rank}\n")
        time.sleep(hold)
