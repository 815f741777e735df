"""The httpx-sse client of the client matrix (clients.test.mjs starts it).

Subscribes to the URL given as the only argument with httpx + httpx-sse, the way their README
shows, and reconnects as an application using them has to (httpx-sse does not): after the
stream ends it waits the reconnection time the server advised (the `retry` httpx-sse reports
on an event; 1 s until one arrives) and resumes with `Last-Event-ID`.

Everything it sees goes to stdout, one JSON object per line, for the test to judge:
{"kind": "open"|"close"|"error"|"event"|"retry", "t": wall-clock ms, ...}. It runs until killed.
"""

import json
import sys
import time

import httpx
from httpx_sse import connect_sse


def emit(kind, **fields):
    print(json.dumps({"kind": kind, "t": time.time() * 1000, **fields}), flush=True)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: httpx_sse_client.py SUBSCRIBE_URL")
    url = sys.argv[1]
    last_id = ""
    retry_ms = 1000
    # Heartbeats arrive well within the read timeout; a stalled stream fails instead of hanging.
    timeout = httpx.Timeout(10.0, read=20.0)
    with httpx.Client(timeout=timeout) as client:
        while True:
            headers = {"Last-Event-ID": last_id} if last_id else {}
            try:
                with connect_sse(client, "GET", url, headers=headers) as source:
                    source.response.raise_for_status()
                    emit("open")
                    for sse in source.iter_sse():
                        if sse.retry is not None:
                            retry_ms = sse.retry
                            emit("retry", value=sse.retry)
                        last_id = sse.id
                        emit("event", type=sse.event or "message", data=sse.data, id=sse.id)
                emit("close")
            except httpx.HTTPError as err:
                emit("error", message=f"{type(err).__name__}: {err}")
            time.sleep(retry_ms / 1000)


if __name__ == "__main__":
    main()
