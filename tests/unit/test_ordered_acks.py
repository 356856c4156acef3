"""The in-order acknowledgement pipeline (streams/ordered_acks.py): completions follow the
order of the sends whatever order the acknowledgements arrive in, and stop at the first failure."""

import asyncio

from streams.ordered_acks import InOrderAcks


def run(coro):
    return asyncio.run(coro)


async def pipeline(sends: int):
    """A running pipeline with ``sends`` items put, each behind a send not yet acknowledged;
    returns it, its drainer, the sends, and what was completed and what failed (so far)."""
    done, failures = [], []

    async def complete(item, result):
        done.append((item, result))

    acks = InOrderAcks(complete, failures.append)
    drainer = asyncio.ensure_future(acks.run())
    loop = asyncio.get_running_loop()
    futures = [loop.create_future() for _ in range(sends)]
    for i, sent in enumerate(futures):
        await acks.put(i, sent)
    return acks, drainer, futures, done, failures


def test_items_complete_in_put_order_whatever_order_their_sends_are_acknowledged():
    async def go():
        acks, drainer, sends, done, failures = await pipeline(3)
        await acks.put(3, None)  # nothing sent: waits only for those before it
        sends[2].set_result("c")
        sends[1].set_result("b")
        await asyncio.sleep(0)
        assert done == []  # the first send is not acknowledged yet
        sends[0].set_result("a")
        await acks.join(1.0)
        drainer.cancel()
        assert done == [(0, "a"), (1, "b"), (2, "c"), (3, None)] and failures == []

    run(go())


def test_the_first_failure_stops_everything_after_it():
    async def go():
        _, drainer, sends, done, failures = await pipeline(3)
        sends[0].set_result(None)
        sends[1].set_exception(RuntimeError("refused"))
        sends[2].set_result(None)
        await asyncio.wait_for(drainer, 1.0)  # the drainer ends
        assert [item for item, _ in done] == [0] and [str(e) for e in failures] == ["refused"]

    run(go())


def test_put_waits_while_the_limit_is_in_flight():
    async def go():
        async def complete(item, result):
            pass

        acks = InOrderAcks(complete, lambda exc: None, limit=2)
        loop = asyncio.get_running_loop()
        first = loop.create_future()
        await acks.put(0, first)
        await acks.put(1, loop.create_future())
        third = asyncio.ensure_future(acks.put(2, None))
        await asyncio.sleep(0)
        assert not third.done() and acks.waiting() == 2
        drainer = asyncio.ensure_future(acks.run())
        first.set_result(None)
        await asyncio.wait_for(third, 1.0)  # the drainer took the first: room for the third
        drainer.cancel()

    run(go())
