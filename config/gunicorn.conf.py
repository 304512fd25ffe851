"""gunicorn settings for `web: gunicorn --config config/gunicorn.conf.py wsgi:app`.

Sized for a 2-core machine: one worker process per core plus one, a few threads each (the
request path waits on PostgreSQL and Redis, not on the CPU). Every value can be overridden
from the environment (WEB_CONCURRENCY, WEB_THREADS, PORT).
"""

import gc
import multiprocessing
import os
import tempfile

# Prometheus counts from every worker, summed at /metrics (set before the app is imported).
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="leadsvc-metrics-"))

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() + 1))
threads = int(os.environ.get("WEB_THREADS", "4"))
# Threads per worker: the request path waits on PostgreSQL, not on the CPU.
worker_class = "gthread"
timeout = 30
graceful_timeout = 20
keepalive = 5
max_requests = 10000
max_requests_jitter = 1000
accesslog = None  # request logging is the app's (no personal data in it)
preload_app = True


def when_ready(server):
    """Load the ZIP directory and routing table in the master, before the first fork: workers
    start with them (and share their pages) instead of loading them on their first signup."""
    import wsgi
    from leadsvc.dealers.routing import preload_routing

    try:
        table = preload_routing(wsgi.app)
    except Exception as error:  # the workers load them on first use, as without this hook
        server.log.warning("routing table not preloaded (%s)", type(error).__name__)
        return
    server.log.info(
        "routing table preloaded: %d ZIP codes routed, version %d", len(table), table.version
    )


def pre_fork(server, worker):
    """Move everything the preloaded app made into the permanent generation: the cyclic garbage
    collector stops re-scanning it (a full collection of the loaded app stalled every thread of
    a worker for ~75 ms), and the workers keep sharing those pages with the master."""
    gc.freeze()


def post_fork(server, worker):
    """Each worker opens its own database connections: drop the pool inherited from the master."""
    import wsgi
    from leadsvc.extensions import db

    db.engine(wsgi.app).dispose(close=False)


def child_exit(server, worker):
    """A worker's gauges leave /metrics with it."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
