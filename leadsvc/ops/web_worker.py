"""The web worker class (`config/gunicorn.conf.py`): gthread, accepting only with a free thread.

gunicorn's gthread workers all wait on the one listening socket, and each accepts every
connection it is woken for, busy or not. A burst of new connections (a client pool opening, a
proxy reconnecting) can so land on one worker, whose requests then queue for its threads and
its interpreter lock while its siblings sit idle; the connections stay there for as long as
they are kept alive. Measured under wrk's 8 kept-alive connections: 8/0/0 across three workers
gave 537 req/s, 6/1/1 gave 679-895.

This worker stops accepting while all its threads are busy and starts again when one is free,
as gunicorn's sync workers do by construction: a new connection waits in the kernel's queue for
the first worker with a free thread, instead of in a busy worker's queue. Connections it already
holds are served as before (kept alive, queued for a thread when readable); `worker_connections`
still caps how many it holds.
"""

from __future__ import annotations

from gunicorn.workers.gthread import ThreadWorker


class BalancedThreadWorker(ThreadWorker):
    """gthread that leaves new connections to its siblings while every thread is busy."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Requests handed to the thread pool and not yet finished. Only the worker's main
        # thread (its event loop) changes it: in enqueue_req and in finish_request, which the
        # pool's threads hand back to that loop.
        self.busy_threads = 0

    def has_free_thread(self) -> bool:
        return self.busy_threads < self.cfg.threads

    def set_accept_enabled(self, enabled):
        super().set_accept_enabled(enabled and self.has_free_thread())

    def enqueue_req(self, conn):
        self.busy_threads += 1
        super().enqueue_req(conn)
        if not self.has_free_thread():
            self.set_accept_enabled(False)

    def finish_request(self, conn, fs):
        self.busy_threads -= 1
        super().finish_request(conn, fs)
        # The event loop re-enables accepting on its next turn (set_accept_enabled above), once
        # it has also checked worker_connections.
