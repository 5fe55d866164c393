"""The one place the demo reads Gradio's internals: whether the client of the running event has gone.

When a client's event stream closes, Gradio marks its events ``alive = False`` (``Queue.clean_events``) but lets
a running function go on to the end. `client_gone` reads that flag for the event the current thread runs, from
Gradio's ``LocalContext`` (how ``gr.Progress`` finds its event too), the queue's ``active_jobs`` and each event's
``_id`` and ``alive``. None of these is public API: `INTERNALS` names them, and
``tests/test_demo.py::test_the_gradio_internals_the_demo_reads_exist`` fails on a Gradio that renames them.
"""

from __future__ import annotations

# (object, attribute) pairs `client_gone` reads; the test checks each exists in the installed Gradio.
INTERNALS = (
    ("gradio.context.LocalContext", "blocks"),
    ("gradio.context.LocalContext", "event_id"),
    ("gradio.queueing.Queue", "active_jobs"),
    ("gradio.queueing.Event", "alive"),
    ("gradio.queueing.Event", "_id"),
    ("gradio.blocks.Blocks", "_queue"),
)


def client_gone() -> bool:
    """Whether the client of the queued event that this thread is running has disconnected (`False` outside one)."""
    from gradio.context import LocalContext

    blocks, event_id = LocalContext.blocks.get(None), LocalContext.event_id.get(None)
    if blocks is None or event_id is None or blocks._queue is None:
        return False
    for job in blocks._queue.active_jobs:
        for event in job or ():
            if event._id == event_id:
                return not event.alive
    return False
