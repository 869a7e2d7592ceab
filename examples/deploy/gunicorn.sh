#!/usr/bin/env bash
# The hub under gunicorn with aiohttp's worker. Configure it with SSE_HUB_* variables;
# give a DSN (workers must share one database server, not each start an embedded one).
#   SSE_HUB_DSN=postgresql://hub@db/hub examples/deploy/gunicorn.sh
# gunicorn is not a dependency of sse_hub: pip install gunicorn.
set -euo pipefail
: "${SSE_HUB_DSN:?set SSE_HUB_DSN to the shared PostgreSQL}"
exec gunicorn 'sse_hub.app:app_from_environment()' \
  --worker-class aiohttp.GunicornWebWorker \
  --bind "${BIND:-127.0.0.1:8080}" \
  --workers "${WORKERS:-2}" \
  --graceful-timeout 15 \
  --timeout 0 \
  "$@"
