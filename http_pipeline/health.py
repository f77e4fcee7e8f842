"""`python -m http_pipeline.health`: exit 0 if this container's server answers GET /health.

The compose healthcheck: it asks the port of HTTP_BIND on 127.0.0.1, and says in one line why
not when it cannot.
"""

from __future__ import annotations

import sys
import urllib.request

from common.settings import Env
from http_pipeline.app import HEALTH_PATH
from http_pipeline.settings import DEFAULT_BIND, port_of

TIMEOUT = 2.0  # seconds: a serving process answers at once, whatever its workers are doing


def main() -> int:
    port = port_of(Env().text("HTTP_BIND", DEFAULT_BIND))
    url = f"http://127.0.0.1:{port}{HEALTH_PATH}"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            response.read()
    except OSError as error:
        print(f"{url}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
