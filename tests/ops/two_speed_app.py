"""A WSGI app for tests/ops/test_web_worker.py: `/slow` holds its thread for a second, `/pid` and
`/` answer at once; every reply names the worker process that served it."""

import os
import time


def app(environ, start_response):
    if environ["PATH_INFO"] == "/slow":
        time.sleep(1.0)
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
