"""The container's health check: GET /healthz on this host's web server, named as the site's own host.

Django refuses a Host header it does not serve (400), so a probe of ``localhost`` fails once
``ALLOWED_HOSTS`` names the real domain; this asks with the first host the site serves. No Django
import: it runs every few seconds. Exit 0 when the answer is 200, 1 otherwise.

    python -m inventory_site.healthcheck            # http://127.0.0.1:8000/healthz
    HEALTHCHECK_URL=http://127.0.0.1:9000/healthz python -m inventory_site.healthcheck
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

DEFAULT_URL = "http://127.0.0.1:8000/healthz"


def served_host(allowed_hosts: str) -> str | None:
    """The first concrete host of ALLOWED_HOSTS (".example.com" serves "example.com"; "*" names none)."""
    for host in (h.strip() for h in allowed_hosts.split(",")):
        if host and host != "*":
            return host.lstrip(".")
    return None


def main() -> int:
    url = os.environ.get("HEALTHCHECK_URL", DEFAULT_URL)
    request = urllib.request.Request(url)
    host = served_host(os.environ.get("ALLOWED_HOSTS", ""))
    if host:
        request.add_header("Host", host)
    try:
        with urllib.request.urlopen(request, timeout=float(os.environ.get("HEALTHCHECK_TIMEOUT_S", "5"))) as answer:
            return 0 if answer.status == 200 else 1
    except (urllib.error.URLError, OSError) as err:
        print(f"healthcheck: {url} as {host or 'localhost'}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
