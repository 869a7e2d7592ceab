"""Debian's nginx before a hub, on its defaults unless told otherwise.

On its defaults nginx speaks HTTP/1.0 to the upstream and buffers responses;
the hub's ``X-Accel-Buffering: no`` turns the buffering off for streams.
``location_extra`` adds directives to the one location, e.g.
``proxy_ignore_headers X-Accel-Buffering;`` for a proxy that buffers anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

from sse_hub.embedded_pg import free_port

START_TIMEOUT_S = 60.0

NGINX_CONF = """
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{ proxy_pass http://127.0.0.1:{upstream}; {location_extra}}}
    }}
}}
"""


@contextlib.asynccontextmanager
async def nginx_before(
    upstream_port: int | None, folder: Path, *, location_extra: str = ""
) -> AsyncIterator[str]:
    """nginx proxying to ``127.0.0.1:upstream_port``, its files in ``folder``; yields its URL."""
    assert upstream_port is not None
    binary = shutil.which("nginx", path=f"{os.defpath}:/usr/sbin")
    assert binary, "nginx is needed (make test installs it)"
    port = free_port()
    (folder / "nginx.conf").write_text(
        NGINX_CONF.format(
            dir=folder, port=port, upstream=upstream_port, location_extra=location_extra
        )
    )
    process = await asyncio.create_subprocess_exec(
        binary, "-p", str(folder), "-c", str(folder / "nginx.conf"), "-g", "daemon off;"
    )
    try:
        async with asyncio.timeout(START_TIMEOUT_S):
            while True:
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    await asyncio.sleep(0.05)  # polling nginx's listen socket
                    continue
                writer.close()
                break
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        await process.wait()
