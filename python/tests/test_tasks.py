"""@broker.task, defer, options and eager mode."""

import asyncio

import pytest

import taskbroker as tb
from taskbroker.tasks import decode_call, handler_name


def make(broker, **kw):
    @broker.task(name="noop", **kw)
    def add(a: int, b: int = 2, *, scale: int = 1) -> int:
        return (a + b) * scale

    return add


def test_calling_runs_in_process(broker):
    add = make(broker)
    assert add(1, 2, scale=3) == 9
    assert add.__name__ == "add" and add.name == "noop"


def test_default_name_is_module_qualname():
    assert handler_name(test_calling_runs_in_process) == \
        f"{__name__}:test_calling_runs_in_process"
    b = tb.Broker(eager=True)

    def local() -> None:
        pass

    with pytest.raises(ValueError, match="module level"):
        b.task(local)  # a worker could not import it
    assert b.task(name="given")(local).name == "given"


def test_defer_submits_args_and_kwargs(broker):
    add = make(broker, queue="t", priority=4)
    h = add.defer(1, scale=5)
    t = h.status()
    assert t.handler == "noop" and t.queue == "t" and t.priority == 4
    assert h.wait(5).ok and h.result(5) is None
    assert broker.list(queue="t")[0].id == h.id


def test_payload_is_args_kwargs_map():
    from taskbroker.tasks import encode_call
    import inspect

    def f(a, *, k=None):
        pass

    p = encode_call("f", inspect.signature(f), (1,), {"k": [1, 2]})
    assert decode_call(p) == ([1], {"k": [1, 2]})
    assert tb.unpack(p) == {"args": [1], "kwargs": {"k": [1, 2]}}


def test_defer_checks_the_signature(broker):
    add = make(broker)
    with pytest.raises(tb.ArgumentError, match="missing a required"):
        add.defer()
    with pytest.raises(TypeError, match="unexpected keyword"):
        add.defer(1, nope=2)
    with pytest.raises(tb.ArgumentError, match="too many"):
        add.defer(1, 2, 3)
    assert broker.stats().submitted == 0


def test_defer_rejects_unserialisable_arguments(broker):
    add = make(broker)
    with pytest.raises(tb.ArgumentError, match="positional argument 0 "
                       r"\(object"):
        add.defer(object())
    with pytest.raises(tb.ArgumentError, match="argument 'scale'"):
        add.defer(1, scale={1, 2})
    assert broker.stats().submitted == 0


def test_options_override_per_call(broker):
    add = make(broker, queue="base")
    h = add.options(queue="other", delay=0.2, key="k1").defer(1)
    t = h.status()
    assert t.queue == "other" and t.key == "k1" and t.state == "pending"
    h2 = add.options(queue="other").options(key="k1").defer(2)
    assert h2.id == h.id
    with pytest.raises(TypeError, match="unknown task option"):
        add.options(colour="red")


def test_failing_task_handle(broker):
    @broker.task(name="fail", max_attempts=2)
    def boom() -> None:
        raise RuntimeError

    h = boom.defer()
    with pytest.raises(tb.TaskFailed):
        h.result(5)
    assert h.status().attempts == 2


@pytest.mark.asyncio
async def test_adefer_and_aresult(broker):
    add = make(broker)
    hs = await asyncio.gather(*(add.adefer(i) for i in range(50)))
    assert len({h.id for h in hs}) == 50
    assert await hs[0].aresult(5) is None
    with pytest.raises(tb.ArgumentError):
        await add.adefer()


def test_lambda_and_closure_names_are_refused():
    b = tb.Broker(eager=True)
    with pytest.raises(ValueError, match="module level"):
        b.task(lambda: None)


# ---- eager mode --------------------------------------------------------

eb = tb.Broker(eager=True)


@eb.task
def double(xs: list) -> list:
    return [x * 2 for x in xs]


@eb.task(max_attempts=3)
def explode(msg: str) -> None:
    raise ValueError(msg)


@eb.task
async def aupper(s: str) -> str:
    await asyncio.sleep(0)
    return s.upper()


@eb.task
def who() -> str:
    ctx = tb.current_task()
    return f"{ctx.handler}:{ctx.cancelled}"


def test_eager_runs_in_process_after_a_msgpack_round_trip():
    h = double.defer((1, 2))  # a tuple arrives as a list, as from a worker
    assert h.result() == [2, 4] and h.status().state == "done"
    assert double.name == f"{__name__}:double"


def test_eager_failure_keeps_the_traceback():
    h = explode.defer("bad input")
    with pytest.raises(tb.TaskFailed) as ei:
        h.result()
    assert "ValueError: bad input" in ei.value.error
    assert "Traceback" in ei.value.error and h.status().state == "dead"


def test_eager_checks_arguments_too():
    with pytest.raises(tb.ArgumentError):
        double.defer(object())
    with pytest.raises(tb.ArgumentError):
        double.defer()


def test_eager_async_task_and_context():
    assert aupper.defer("a").result() == "A"
    assert who.defer().result() == f"{__name__}:who:False"
    assert tb.current_task() is None


@pytest.mark.asyncio
async def test_eager_adefer_async_task():
    h = await aupper.adefer("b")
    assert await h.aresult() == "B"
    with pytest.raises(RuntimeError, match="adefer"):
        aupper.defer("c")


def test_eager_context_manager(broker):
    from taskbroker.testing import eager

    add = make(broker)
    with eager(broker):
        assert add.defer(1, 2, scale=2).result() == 6
    assert broker.stats().submitted == 0
