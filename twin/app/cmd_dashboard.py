"""`twin dashboard`: the Streamlit dashboard started on 127.0.0.1, and kept up until Ctrl-C."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Annotated, Optional

import typer

from twin.app.cmd_models import load_models
from twin.app.options import broker_url, fail, out_console, stop_signals


def start_dashboard(runs: Path, port: int | None = None, store: str | None = None, broker: str | None = None,
                    models: Path | None = None, reports: Path | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """Start the Streamlit dashboard on 127.0.0.1 (a free port unless given); returns the process and its URL."""
    import os
    import sys
    import tempfile

    from sensors.bus.broker import free_port, wait_port

    port = port or free_port()
    env = {**os.environ, "LINETWIN_RUNS": str(runs.resolve())}
    for key, value in (("LINETWIN_STORE", store), ("LINETWIN_BROKER", broker), ("LINETWIN_MODELS", models),
                       ("LINETWIN_REPORTS", reports)):
        if value is not None:
            env[key] = str(Path(value).resolve()) if isinstance(value, Path) else value
    app_file = Path(__file__).resolve().parents[2] / "dashboard" / "app.py"
    # Streamlit's log goes to an unnamed file: a pipe nobody reads fills up and stalls the dashboard
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(app_file), "--server.address",
                                 "127.0.0.1", "--server.port", str(port), "--server.headless", "true",
                                 "--browser.gatherUsageStats", "false"], env=env, stdout=subprocess.DEVNULL,
                                stderr=log)
        try:
            wait_port(port, timeout=60)
        except Exception:
            proc.kill()
            proc.wait()
            log.seek(0)
            err = log.read().decode(errors="replace")[-1500:]
            fail(f"the dashboard did not start on 127.0.0.1:{port}: {err or 'no output'}", code=3)
    return proc, f"http://127.0.0.1:{port}"


def serve_until_stopped(proc: subprocess.Popen[bytes], notice: str) -> None:
    """Print `notice` once Ctrl-C and SIGTERM are handled (a signal sent on reading it stops cleanly), keep a started
    server process up until one arrives (or until it exits), then stop it."""
    with stop_signals() as stop:
        out_console.print(notice, highlight=False)
        try:
            while proc.poll() is None and not stop.wait(0.2):
                pass
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def dashboard(
    runs: Annotated[Path, typer.Option(help="folder of run folders (as `twin run` writes them)")] = Path("runs"),
    store: Annotated[Optional[str], typer.Option(help="read readings from this store instead of each run's own")]
    = None,
    broker: Annotated[Optional[str], typer.Option(help="MQTT broker for live machine states, KPIs and alerts")]
    = None,
    models: Annotated[Optional[Path], typer.Option(help="models from `twin train`: forecasts on machine pages")]
    = None,
    reports: Annotated[Path, typer.Option(help="folder of evaluation and comparison reports")] = Path("reports"),
    port: Annotated[Optional[int], typer.Option(min=1, max=65535, help="default: a free port")] = None,
) -> None:
    """Start the live twin dashboard on 127.0.0.1 (prints its URL); Ctrl-C stops it."""
    if broker is not None:
        broker_url(broker, None, None, None)  # a clear error now for a malformed URL
    if models is not None:
        load_models(models)
    proc, url = start_dashboard(runs, port, store, broker, models, reports)
    serve_until_stopped(proc, f"dashboard: [bold]{url}[/] (runs in {runs}); Ctrl-C to stop")
