"""`make demo` sees the same data whatever day it runs: its calendar always starts on a
Saturday and ends before today, so the generator's weekday rhythm falls on the same days."""

from datetime import date, timedelta

from hypothesis import given
from hypothesis import strategies as st

from refinery.demo import Plan, demo_start


@given(st.dates(min_value=date(2001, 1, 1), max_value=date(2100, 1, 1)))
def test_demo_calendar_starts_on_a_saturday_and_ends_before_today(today):
    plan = Plan()
    start = demo_start(plan, today)
    last_live_day = start + timedelta(days=plan.history_days + plan.live_days - 1)
    assert start.weekday() == 5
    assert last_live_day < today
    # never more than the week it takes to reach the previous Saturday
    assert (today - last_live_day).days <= 7
