"""`twin dashboard`: the Streamlit dashboard (127.0.0.1 unless told otherwise, then only with sign-in), kept up until
Ctrl-C; `twin passwd`: a bcrypt hash for the dashboard's users file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from twin.app.cmd_models import load_models
from twin.app.options import broker_url, fail, out_console, stop_signals

if TYPE_CHECKING:
    from sensors.bus.broker import BrokerURL

LOOPBACK = ("127.0.0.1", "localhost", "::1")
MAX_UPLOAD_MB = 200  # what Streamlit takes in one upload (dashboard.data.MAX_LOG_UPLOAD, a plant's log for a what-if)


def start_dashboard(runs: Path, port: int | None = None, store: str | None = None,
                    broker: str | BrokerURL | None = None,
                    models: Path | None = None, reports: Path | None = None, *, address: str = "127.0.0.1",
                    auth: Path | None = None, auth_header: str | None = None, theme: str = "light",
                    cwd: Path | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """Start the Streamlit dashboard (a free port unless given); returns the process and its URL. Anything but
    loopback needs sign-in (`auth`); a proxy's user header is trusted only on loopback. A BrokerURL's credentials
    reach the dashboard in its environment."""
    import os
    import sys
    import tempfile

    from sensors.bus.broker import BrokerURL, credentials_env, free_port, wait_port

    if address not in LOOPBACK and auth is None:
        fail(f"--address {address}: the dashboard would be reachable by anyone on the network without signing in. "
             "Give --auth USERS.yaml (users with hashed passwords and roles, see docs/security.md), or keep the "
             "default 127.0.0.1 for a single user.")
    if auth_header and address not in LOOPBACK:
        fail(f"--auth-header {auth_header}: a user header is trusted only from a reverse proxy on the same host; "
             "bind the dashboard to 127.0.0.1 (the default) and let the proxy listen on the network.")
    if auth is not None:
        from dashboard.access import AccessError, load_users

        try:
            load_users(auth)
        except AccessError as e:
            fail(str(e))
    _check_listen(address, port)
    port = port or free_port()
    env = {**os.environ, "LINETWIN_RUNS": str(runs.resolve())}
    if isinstance(broker, BrokerURL):
        env |= credentials_env(broker)
        broker = str(broker)
    for key, value in (("LINETWIN_STORE", store), ("LINETWIN_BROKER", broker), ("LINETWIN_MODELS", models),
                       ("LINETWIN_REPORTS", reports), ("LINETWIN_AUTH", auth), ("LINETWIN_AUTH_HEADER", auth_header)):
        if value is not None:
            env[key] = str(Path(value).resolve()) if isinstance(value, Path) else value
    app_file = Path(__file__).resolve().parents[2] / "dashboard" / "app.py"
    # a plant's status log for a what-if (a month of a line: megabytes); a scenario file is held to 1 MB by the page
    # Streamlit's log goes to an unnamed file: a pipe nobody reads fills up and stalls the dashboard. -P: the user's
    # folder is not put on the path (a dashboard.py or twin.py of theirs there was imported in place of ours)
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen([sys.executable, "-P", "-m", "streamlit", "run", str(app_file), "--server.address",
                                 address, "--server.port", str(port), "--server.headless", "true",
                                 "--browser.gatherUsageStats", "false", "--client.toolbarMode", "viewer",
                                 "--theme.base", theme, "--server.maxUploadSize", str(MAX_UPLOAD_MB)], env=env,
                                stdout=subprocess.DEVNULL, stderr=log, cwd=cwd)
        try:
            wait_port(port, host="127.0.0.1" if address in ("0.0.0.0", "::") else address, timeout=60, process=proc)
        except Exception:
            proc.kill()
            proc.wait()
            log.seek(0)
            err = log.read().decode(errors="replace")[-1500:]
            fail(f"the dashboard did not start on {address}:{port}: {err or 'no output'}", code=3)
    host = "127.0.0.1" if address in ("0.0.0.0", "::") else address
    return proc, f"http://{f'[{host}]' if ':' in host else host}:{port}"


def _check_listen(address: str, port: int | None) -> None:
    """--address that is not one of this host's, or --port taken by another program: named now. (Streamlit would
    have failed after the minute's wait for its port; a taken port would have shown the other program's address as
    the dashboard's, and the dashboard would have exited unseen.)"""
    import errno
    import socket

    with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the dashboard's server binds
        try:
            s.bind((address, port or 0))
        except OSError as e:
            if port and e.errno == errno.EADDRINUSE:
                fail(f"--port {port}: cannot listen on {address}:{port} ({e.strerror}); another program may hold it. "
                     "Choose another port, or leave --port out for a free one.", code=3)
            fail(f"--address {address}: cannot listen there ({e.strerror}); give an address of this host: 127.0.0.1 "
                 "(the default), ::1, one of its network addresses, or 0.0.0.0 for every interface (with --auth)")


def serve_until_stopped(proc: subprocess.Popen[bytes], notice: str) -> None:
    """Print `notice` once Ctrl-C and SIGTERM are handled (a signal sent on reading it stops cleanly), keep a started
    server process up until one arrives (or until it exits), then stop it."""
    with stop_signals() as stop:
        out_console.print(notice, highlight=False)
        try:
            while proc.poll() is None and not stop.wait(0.2):
                pass
            if not stop.is_set() and proc.returncode:
                fail(f"the server stopped by itself (exit code {proc.returncode})", code=3)
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def dashboard(
    runs: Annotated[Path, typer.Option(help="folder of run folders (runs written elsewhere are found through the "
                                            "runs index)")] = Path("runs"),
    store: Annotated[Optional[str], typer.Option(help="read readings from this store instead of each run's own")]
    = None,
    broker: Annotated[Optional[str], typer.Option(help="MQTT broker for live machine states, KPIs and alerts")]
    = None,
    models: Annotated[Optional[Path], typer.Option(help="models from `twin train`: forecasts on machine pages")]
    = None,
    reports: Annotated[Path, typer.Option(help="folder of evaluation and comparison reports")] = Path("reports"),
    port: Annotated[Optional[int], typer.Option(min=1, max=65535, help="default: a free port")] = None,
    address: Annotated[str, typer.Option(help="address to listen on; anything but 127.0.0.1 needs --auth")]
    = "127.0.0.1",
    auth: Annotated[Optional[Path], typer.Option(help="users file: sign-in with hashed passwords and roles "
                                                      "(docs/security.md)")] = None,
    auth_header: Annotated[Optional[str], typer.Option(help="trust this header of a reverse proxy on the same "
                                                             "host for the user name (e.g. X-Forwarded-User)")]
    = None,
    theme: Annotated[str, typer.Option(help="light, or dark for shop-floor screens (kiosk: add ?kiosk=1 to the "
                                             "address)")] = "light",
) -> None:
    """Start the live twin dashboard (prints its URL); Ctrl-C stops it."""
    if theme not in ("light", "dark"):
        fail(f"--theme {theme}: write light or dark.")
    for option, folder in (("--runs", runs), ("--reports", reports)):  # a folder not there yet is fine: runs come
        if folder.exists() and not folder.is_dir():
            fail(f"{option}: {folder} is a file, not a folder; give the folder that holds them")
    if broker is not None:
        broker_url(broker, None, None, None)  # a clear error now for a malformed URL
    if store is not None:  # and for a store URL (the dashboard's pages open it later, in their own process)
        from sensors.store import StoreError, check_store_url

        try:
            check_store_url(store)
        except StoreError as e:
            fail(str(e))
    if models is not None:
        load_models(models)
    proc, url = start_dashboard(runs, port, store, broker, models, reports, address=address, auth=auth,
                                auth_header=auth_header, theme=theme)
    serve_until_stopped(proc, f"dashboard: {url} (runs in {runs}); Ctrl-C to stop")


def passwd(
    user: Annotated[str, typer.Argument(help="user name, as in the users file")],
    role: Annotated[str, typer.Option(help="viewer, operator or engineer")] = "viewer",
) -> None:
    """Ask for a password (twice, not echoed) and print the users-file entry with its bcrypt hash."""
    import bcrypt

    from dashboard.access import ROLES, USER_NAME_FIX, user_key

    if role not in ROLES:
        fail(f"--role {role}: write one of {', '.join(ROLES)}.")
    key = user_key(user)
    if key is None:
        fail(f"user name {user!r}: {USER_NAME_FIX}; choose another.")
    if sys.stdin.isatty():
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True, err=True)  # stdout: the entry
    else:  # piped in by a provisioning script: the first line (and the second, if given, must match), without the
        # terminal prompts and getpass's warnings about echo that a pipe gave, with their file paths
        lines = sys.stdin.read().splitlines()
        if not lines or (len(lines) > 1 and lines[1] != lines[0]):
            fail("give the password on the first line of the input (a second line, if any, the same)")
        password = lines[0]
    if len(password) < 8:
        fail("the password is shorter than 8 characters; choose a longer one.")
    if password != password.strip():
        fail("the password has spaces at either end, which the sign-in form drops (it could never match); "
             "leave them out.")
    digest = bcrypt.hashpw(password.encode(), bcrypt.gensalt(12)).decode()
    out_console.print(f'  {key}: {{name: "{user}", role: {role}, password: "{digest}"}}', highlight=False,
                      soft_wrap=True)
