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
