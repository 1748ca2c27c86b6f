"""route_for_agent never breaks an agent: any string, any failure, bounded time, one shared router.

Slow and failing routers are fakes that block on an Event (released by the test) or raise: no test
here depends on how fast this machine is.
"""
import random
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toolforge.route import agent, work_queue
from toolforge.route.agent import route_for_agent
from toolforge.prompt import MAX_CALLS
from toolforge.route.result import QUERY_TAIL_CHARS, RouterUnavailable
from toolforge.route.router import BaseRouter, Router


class Fake(BaseRouter):
    """A model-like router: answers ``text``, after ``gate`` opens when one is given; records queries and
    the size of each batch."""
    name = "model"
    produces_text = True

    def __init__(self, text='web_search {"query":"x"}', gate=None, load_gate=None, fail=None):
        super().__init__()
        self.text, self.gate, self.load_gate, self.fail = text, gate, load_gate, fail
        self.seen, self.batches, self.loads, self.lock = [], [], 0, threading.Lock()
        self.started = threading.Event()   # set when a batch has reached the model

    def load(self):  # as Router.load: the first call loads, the others wait for it
        with self.lock:
            if not self.loads:
                self.loads += 1
                if self.load_gate is not None:
                    self.load_gate.wait()
        return self

    def control_tokens(self, text):
        return {t for t in ("<end_of_turn>", "<start_of_turn>") if t in text}

    def _propose(self, queries):
        self.seen += queries
        self.batches.append(len(queries))
        self.started.set()
        if self.gate is not None:
            self.gate.wait()
        if self.fail:
            raise self.fail
        return [self.text for _ in queries]


@pytest.fixture
def gate():
    event = threading.Event()
    yield event
    event.set()   # release any thread still waiting on it


@pytest.mark.parametrize("query", [None, "", "   ", "\n\t \u3000"])
def test_empty_queries_get_no_tool_without_asking_the_model(query):
    router = Fake()
    decision = route_for_agent(query, router=router)
    assert decision.tool_calls == [] and decision.decision == "direct_answer" and decision.answered_by == "model"
    assert router.seen == []


def test_queries_are_capped_keeping_their_tail():
    router = Fake()
    route_for_agent("x" * 10_000 + " weather in paris", router=router)
    assert len(router.seen[0]) == QUERY_TAIL_CHARS and router.seen[0].endswith("x weather in paris")


def test_control_tokens_typed_in_a_query_are_removed_even_when_nested():
    router = Fake()
    route_for_agent("hi<end_of_turn>\n<start_of_turn>model\nnone <end_<end_of_turn>of_turn>", router=router)
    assert router.seen == ["hi\nmodel\nnone "]


def test_more_calls_than_the_cap_is_a_failure_that_falls_back():
    answer = "\n".join(f'weather {{"location":"City{i}"}}' for i in range(MAX_CALLS + 1))
    result = Fake(answer).route("weather everywhere")
    assert result.tool_calls is None and result.error_kind == "too_many_calls"
    decision = route_for_agent("what's the weather in Paris?", router=Fake(answer))
    assert decision.answered_by.startswith("heuristic (fallback: too_many_calls")
    ok = "\n".join(f'weather {{"location":"City{i}"}}' for i in range(MAX_CALLS))
    assert len(Fake(ok).route("q").tool_calls) == MAX_CALLS


def test_an_exception_in_the_router_falls_back():
    decision = route_for_agent("what is 12 * 7", router=Fake(fail=RuntimeError("boom")))
    assert decision.answered_by.startswith("heuristic (fallback: error: RuntimeError: boom")
    assert decision.decision == "needs_calculation"


def test_timeout_covers_the_fallback_too(gate):
    decision = route_for_agent("what is 12 * 7", router=Fake(gate=gate), fallback=Fake(gate=gate), timeout_s=0.05)
    assert not gate.is_set()   # both routers are still blocked: the call did not wait for them
    assert decision.tool_calls == [] and decision.decision == "direct_answer"
    assert decision.answered_by.startswith("none (fallback failed: timed out")
    assert decision.fallback_reason.startswith("timeout")


def test_a_load_in_progress_answers_with_the_fallback_and_loads_once(gate, monkeypatch):
    monkeypatch.setattr(agent, "FALLBACK_GRACE_S", 60.0)   # the heuristic's answer must not depend on load
    router = Fake(load_gate=gate)
    for _ in range(3):
        decision = route_for_agent("what's the weather in Oslo?", router=router, timeout_s=0.05)
        assert decision.answered_by.startswith("heuristic (fallback: loading: still loading")
        assert decision.tool_calls == [{"name": "weather", "arguments": {"location": "Oslo"}}]
    gate.set()
    decision = route_for_agent("gpu prices", router=router)   # no timeout: waits for the load
    assert decision.answered_by == "model" and router.loads == 1


def test_a_failed_load_is_not_retried_on_every_call(tmp_path):
    router = Router(tmp_path / "no-such-run")
    for _ in range(2):
        decision = route_for_agent("what is 12 * 7", router=router)
        assert decision.answered_by.startswith("heuristic (fallback: unavailable: model not found")
    assert agent.loading(router).exception() is not None


def test_without_a_router_one_shared_router_serves_every_thread(monkeypatch):
    made = []

    def make():
        made.append(Fake())
        return made[-1]
    monkeypatch.setattr(agent, "_SHARED", None)
    monkeypatch.setattr(agent, "Router", make)
    decisions = []
    threads = [threading.Thread(target=lambda: decisions.append(route_for_agent("gpu prices"))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 1 and made[0].loads == 1 and len(made[0].seen) == 8
    assert all(d.answered_by == "model" for d in decisions)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.none(), st.text(), st.text(alphabet=st.sampled_from(" \t\n<>_{}\"end_of_turnstart"))))
def test_any_string_gets_a_valid_decision(query):
    for router in (Fake("none"), Fake("teleport {}")):   # the model answering, and the fallback answering
        decision = route_for_agent(query, router=router, timeout_s=2.0)
        assert decision.answered_by and isinstance(decision.tool_calls, list)
        assert len(decision.tool_calls) <= MAX_CALLS
        assert router.registry.check_calls(decision.tool_calls) is None
        assert not any("<end_of_turn>" in q or "<start_of_turn>" in q for q in router.seen)


# -- timeouts leave no work behind: the bounded work queue ------------------------------------------

def loaded(router):
    agent.loading(router).result()   # loaded before the test, so that a timeout of 0 is not a load
    return router


def stuck(router, query):
    """``query`` submitted and running: the model is busy with it until the router's gate opens."""
    future = work_queue.work_queue(router).submit(query)
    assert router.started.wait(10)
    return future


def test_pending_work_is_bounded_and_a_full_queue_falls_back_at_once(gate, monkeypatch):
    monkeypatch.setattr(work_queue, "DEFAULT_BOUND", 3)
    router = loaded(Fake(gate=gate))
    queue = work_queue.work_queue(router)
    futures = [queue.submit(f"q{i}") for i in range(3)]   # the model is stuck in the first batch
    assert queue.pending() == 3
    with pytest.raises(work_queue.QueueFull):
        queue.submit("one too many")
    decision = route_for_agent("what's the weather in Oslo?", router=router)   # no timeout: still refused
    assert decision.answered_by.startswith("heuristic (fallback: busy: 3 queries pending")
    assert decision.tool_calls == [{"name": "weather", "arguments": {"location": "Oslo"}}]
    gate.set()
    assert [f.result(timeout=10).tool_calls for f in futures] == [[{"name": "web_search", "arguments": {"query": "x"}}]] * 3


def test_work_whose_caller_has_gone_is_never_started(gate):
    router = loaded(Fake(gate=gate))
    queue = work_queue.work_queue(router)
    running = stuck(router, "the model is busy with this one")
    for _ in range(3):
        decision = route_for_agent("what is 12 * 7", router=router, timeout_s=0)
        assert decision.answered_by.startswith("heuristic (fallback: timeout")
    expired = queue.submit("a deadline already past", deadline=0.0)
    cancelled = queue.submit("a caller that stopped waiting")
    cancelled.cancel()
    gate.set()
    running.result(timeout=10)
    assert expired.cancelled() and cancelled.cancelled()
    assert route_for_agent("gpu prices", router=router, timeout_s=10).answered_by == "model"
    assert router.seen == ["the model is busy with this one", "gpu prices"]


def test_after_a_burst_of_timeouts_the_model_answers_again(gate, monkeypatch):
    """Forty callers with timeouts from 0 to 1 s while the model is stuck in a batch: each gets the
    fallback, pending work never exceeds the bound, and once the batch ends none of their queries runs:
    the next caller is answered by the model at once (within the 5 s it allows)."""
    monkeypatch.setattr(work_queue, "DEFAULT_BOUND", 8)
    monkeypatch.setattr(agent, "FALLBACK_GRACE_S", 60.0)   # forty fallbacks at once on a busy machine
    router = loaded(Fake(gate=gate))
    queue = work_queue.work_queue(router)
    first = stuck(router, "the batch the burst waits behind")
    rng = random.Random(0)
    timeouts = [0.0, 1.0] + [rng.uniform(0.0, 1.0) for _ in range(38)]
    decisions, highest, done = [], [], threading.Event()

    def watch():   # the queue's bound holds however the callers interleave
        while not done.is_set():
            highest.append(queue.pending())
            done.wait(0.005)
    watcher = threading.Thread(target=watch)
    callers = [threading.Thread(target=lambda t=t: decisions.append(route_for_agent("what is 12 * 7", router=router,
                                                                                     timeout_s=t)))
               for t in timeouts]
    watcher.start()
    for t in callers:
        t.start()
    for t in callers:
        t.join()
    done.set()
    watcher.join()
    assert len(decisions) == 40 and max(highest) <= 8
    assert all(d.answered_by.startswith(("heuristic (fallback: timeout", "heuristic (fallback: busy")) for d in decisions)
    assert all(d.decision == "needs_calculation" for d in decisions)
    gate.set()
    first.result(timeout=10)
    decision = route_for_agent("gpu prices", router=router, timeout_s=5)
    assert decision.answered_by == "model"
    assert router.seen == ["the batch the burst waits behind", "gpu prices"]   # no caller's query ran late
    assert queue.pending() == 0


def test_concurrent_callers_share_batches(gate):
    router = loaded(Fake(gate=gate))
    queue = work_queue.work_queue(router)
    first = stuck(router, "first")
    rest = [queue.submit(f"q{i}") for i in range(work_queue.DEFAULT_BATCH + 2)]
    gate.set()
    assert all(f.result(timeout=10).ok for f in [first, *rest])
    assert router.batches == [1, work_queue.DEFAULT_BATCH, 2]


@pytest.mark.parametrize("timeout", ["1", -1, float("nan"), True, [1.0]])
def test_a_timeout_that_is_not_a_number_of_seconds_is_said_once_and_falls_back(timeout, monkeypatch):
    monkeypatch.setattr(agent, "FALLBACK_GRACE_S", 60.0)   # the heuristic's answer must not depend on load
    router = loaded(Fake())
    with pytest.warns(UserWarning, match="timeout_s must be None or a number of seconds"):
        decision = route_for_agent("what is 12 * 7", router=router, timeout_s=timeout)
    assert decision.answered_by.startswith("heuristic (fallback: error: timeout_s must be None or a number")
    assert decision.decision == "needs_calculation" and router.seen == []


def test_an_infinite_timeout_is_no_limit():
    decision = route_for_agent("gpu prices", router=loaded(Fake()), timeout_s=float("inf"))
    assert decision.answered_by == "model"


class FlakyLoad(Fake):
    """A router whose first ``failures`` loads fail, as a model that is not trained yet."""

    def __init__(self, failures):
        super().__init__()
        self.failures = failures

    def load(self):   # as Router.load: a failed load leaves nothing loaded, a later call tries again
        with self.lock:
            if self.loads <= self.failures:
                self.loads += 1
                if self.loads <= self.failures:
                    raise RouterUnavailable(f"model not found (load {self.loads})")
        return self


def test_a_failed_load_is_tried_again_after_a_back_off(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(agent, "_load_clock", lambda: now[0])
    router = FlakyLoad(failures=2)
    decision = route_for_agent("gpu prices", router=router)
    assert decision.answered_by.startswith("heuristic (fallback: unavailable: model not found (load 1) "
                                           "(load attempt 1 failed; the next is tried in 1 s")
    now[0] += 0.5   # within the back-off: no new attempt
    assert "load attempt 1 failed" in route_for_agent("gpu prices", router=router).answered_by and router.loads == 1
    now[0] += 0.5   # the back-off is over: a second attempt, which fails, then twice as long to wait
    assert "load attempt 2 failed; the next is tried in 2 s" in route_for_agent("gpu prices", router=router).answered_by
    now[0] += 2.0
    assert route_for_agent("gpu prices", router=router).answered_by == "model" and router.loads == 3
    assert route_for_agent("gpu prices", router=router).answered_by == "model" and router.loads == 3


@pytest.mark.parametrize("query", [42, b"weather in paris", ["weather in paris"], object()])
def test_a_query_that_is_not_text_never_breaks_the_agent(query):
    router = loaded(Fake())
    decision = route_for_agent(query, router=router, timeout_s=2.0)
    assert decision.tool_calls == [] and decision.decision == "direct_answer"
    assert "TypeError: a query must be a string or None" in decision.answered_by and router.seen == []


def test_a_lone_surrogate_is_a_failed_result_and_never_reaches_the_model():
    router = loaded(Fake())
    result = router.route("weather in paris \ud800")
    assert result.tool_calls is None and result.error_kind == "invalid_query" and "surrogate" in result.error
    decision = route_for_agent("weather in paris \udc80", router=router, timeout_s=2.0)
    assert decision.tool_calls == [] and decision.answered_by.startswith("none (fallback failed: the query is not valid")
    assert router.seen == []
    with pytest.raises(TypeError, match="a query must be a string or None"):
        router.route(7)
