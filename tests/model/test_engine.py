from hypothesis import given, settings
from hypothesis import strategies as st

from model.engine import Engine


def test_events_at_the_same_instant_run_in_scheduling_order():
    engine = Engine()
    seen: list[str] = []
    for name in "abcde":
        engine.at(10, seen.append, name)
    engine.run(10)
    assert seen == list("abcde")


def test_cancelled_event_does_not_run_and_clock_stops_at_until():
    engine = Engine()
    seen: list[int] = []
    keep = engine.after(5, seen.append, 1)
    drop = engine.after(7, seen.append, 2)
    engine.cancel(drop)
    engine.after(50, seen.append, 3)
    engine.run(20)
    assert seen == [1] and engine.now == 20 and keep[2] is not None
    engine.run(60)
    assert seen == [1, 3]


def test_scheduling_in_the_past_is_refused():
    engine = Engine()
    engine.run(100)
    try:
        engine.at(50, print)
    except ValueError as exc:
        assert "past" in str(exc)
    else:
        raise AssertionError("no error")


# -- the re-armable timer -------------------------------------------------------------

def test_a_timer_moved_later_pushes_nothing_and_fires_once_at_its_latest_deadline():
    engine = Engine()
    seen: list[int] = []
    t = engine.timer(lambda: seen.append(engine.now))
    t.arm(100)
    for deadline in range(200, 10_200, 100):
        t.arm(deadline)
    assert len(engine._heap) == 1 and engine.pushes == 1
    engine.run(20_000)
    assert seen == [10_100] and not t.armed
    assert engine.processed == 1  # the re-filing pop is not an event
    assert engine.pushes == 2  # the first entry, then one re-filing at 10_100


def test_a_timer_moved_earlier_pushes_and_leaves_one_dead_entry():
    engine = Engine()
    seen: list[int] = []
    t = engine.timer(lambda: seen.append(engine.now))
    t.arm(1_000)
    t.arm(500)
    assert engine.pushes == 2 and len(engine.pending()) == 1
    engine.run(2_000)
    assert seen == [500] and engine.processed == 1 and not engine._heap


def test_a_cancelled_timer_never_fires_and_its_entry_is_dropped():
    engine = Engine()
    seen: list[int] = []
    t = engine.timer(seen.append, 1)
    t.arm(100)
    engine.cancel(t)
    assert not t.armed and engine.pending() == []
    engine.run(1_000)
    assert seen == [] and engine.processed == 0 and not engine._heap
    t.arm(1_500)  # re-armed after the drop: a fresh entry
    engine.run(2_000)
    assert seen == [1]


def test_a_timer_re_armed_at_the_same_instant_runs_after_events_scheduled_before_that_arm():
    """FIFO by the latest arm's seq: as if the timer had been cancelled and scheduled anew."""
    engine = Engine()
    seen: list[str] = []
    t = engine.timer(seen.append, "timer")
    t.arm(50)
    engine.at(50, seen.append, "event")
    t.arm(50)
    engine.run(50)
    assert seen == ["event", "timer"]


class _Reference:
    """A timer as the model used to write it: cancel the old event, schedule a new one."""

    def __init__(self, engine, handler, *args):
        self.engine, self.handler, self.args, self.entry = engine, handler, args, None

    def arm(self, time_ns):
        self.engine.cancel(self.entry)
        self.entry = self.engine.at(time_ns, self._fire)

    def cancel(self):
        self.engine.cancel(self.entry)
        self.entry = None

    def _fire(self):
        self.entry = None
        self.handler(*self.args)


_OP = st.tuples(st.sampled_from(["arm", "cancel", "event", "run"]), st.integers(0, 2), st.integers(0, 40))


@settings(max_examples=300, deadline=None)
@given(st.lists(_OP, max_size=60))
def test_timers_fire_exactly_where_cancel_and_reschedule_would_put_them(ops):
    """Same firing order, same times, same seq numbers for the other events, same processed count."""
    def replay(make_timer):
        engine = Engine()
        log: list = []
        timers = [make_timer(engine, k, log) for k in range(3)]
        for op, k, x in ops:
            if op == "arm":
                timers[k].arm(engine.now + x)
            elif op == "cancel":
                timers[k].cancel()
            elif op == "event":
                entry = engine.after(x, lambda k=k: log.append(("event", k, engine.now)))
                log.append(("seq", entry[1]))
            else:
                engine.run(engine.now + x)
        engine.run(engine.now + 100)
        return log, engine.processed

    def timer(engine, k, log):
        return engine.timer(lambda: log.append(("timer", k, engine.now)))

    def reference(engine, k, log):
        return _Reference(engine, lambda: log.append(("timer", k, engine.now)))

    assert replay(timer) == replay(reference)
