"""`llamasc top`: a live view of a daemon's sidecars and queue, fed by ``/api/events``."""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

import typer

from llamasc.cli.ps import DEFAULT_DAEMON, ApiKeyOpt, DaemonOpt

if TYPE_CHECKING:
    from rich.console import RenderableType

    from llamasc.observe.view import LiveView


def render(view: LiveView, daemon: str) -> RenderableType:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, header_style="bold", expand=True)
    for col in ("HASH", "MODEL", "STATE", "IN FLIGHT", "SERVED", "TTFT", "TOK/S"):
        table.add_column(col, no_wrap=True)
    table.add_column("FLAGS", overflow="fold")
    for s in sorted(view.sidecars.values(), key=lambda s: s.get("started") or 0):
        timings = s.get("last_timings") or {}
        ttft = s.get("last_ttft")
        if ttft is None and isinstance(timings.get("prompt_ms"), int | float):
            ttft = timings["prompt_ms"] / 1000
        tps = s.get("last_tps") or timings.get("predicted_per_second")
        table.add_row(
            str(s.get("hash", ""))[:8],
            str(s.get("model", "")),
            str(s.get("state", "")),
            str(s.get("in_flight", view.in_flight.get(str(s.get("model")), 0))),
            str(s.get("requests_served", 0)),
            f"{ttft * 1000:.0f}ms" if isinstance(ttft, int | float) else "-",
            f"{tps:.1f}" if isinstance(tps, int | float) else "-",
            " ".join(s.get("flags") or []) or "-",
        )
    waiting = ", ".join(f"{m}: {n}" for m, n in sorted(view.waiting.items()) if n) or "nobody"
    in_flight = sum(view.in_flight.values())
    head = Text(
        f"llamasc {daemon}  {len(view.sidecars)} sidecar(s), {in_flight} in flight  (q to quit)",
        style="bold",
    )
    parts: list[RenderableType] = [head, table, Text(f"waiting: {waiting}")]
    if not view.sidecars:
        parts.insert(1, Text("no sidecars running", style="dim"))
    if view.dropped:
        parts.append(Text(f"({view.dropped} events dropped: this terminal was slow)", style="dim"))
    return Group(*parts)


@contextlib.contextmanager
def _keys_pressed(on_quit: threading.Event) -> Iterator[None]:
    """Set ``on_quit`` when q is pressed (a terminal only; otherwise Ctrl-C alone)."""
    if not sys.stdin.isatty():
        yield
        return
    if sys.platform == "win32":
        import msvcrt

        def win_loop() -> None:
            while not on_quit.is_set():
                if msvcrt.kbhit() and msvcrt.getwch().lower() == "q":
                    on_quit.set()
                on_quit.wait(0.1)

        threading.Thread(target=win_loop, daemon=True).start()
        yield
        return
    import select
    import termios
    import tty

    fd = sys.stdin.fileno()
    old = termios.tcgetattr(fd)
    tty.setcbreak(fd)

    def loop() -> None:
        while not on_quit.is_set():
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready and sys.stdin.read(1).lower() == "q":
                on_quit.set()

    threading.Thread(target=loop, daemon=True).start()
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, old)


def top(
    *,
    daemon: DaemonOpt = DEFAULT_DAEMON,
    api_key: ApiKeyOpt = None,
    once: Annotated[
        bool, typer.Option("--once", help="Print the current state once and exit.")
    ] = False,
) -> None:
    """A live view of the daemon's sidecars and waiting requests (q or Ctrl-C quits)."""
    import httpx
    from rich.live import Live

    from llamasc.cli._output import console
    from llamasc.client.daemon import daemon_request
    from llamasc.errors import DaemonUnreachableError
    from llamasc.observe.view import LiveView, parse_sse

    base = daemon.rstrip("/")
    daemon_request("GET", "/sidecars", daemon, api_key)  # one clear line if it is not there
    view = LiveView()
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    quit_ = threading.Event()
    failure: list[BaseException] = []
    changed = threading.Event()

    def reader() -> None:
        try:
            with httpx.stream(
                "GET", base + "/api/events", headers=headers, timeout=httpx.Timeout(30, read=None)
            ) as resp:
                if resp.status_code != 200:
                    raise DaemonUnreachableError(f"{base}/api/events answered {resp.status_code}")
                for type_, data in parse_sse(resp.iter_lines()):
                    view.apply(type_, data)
                    changed.set()
                    if quit_.is_set() or (once and type_ == "state"):
                        break
        except httpx.HTTPError as exc:
            failure.append(DaemonUnreachableError(f"lost the daemon at {base}: {exc}"))
        except BaseException as exc:
            failure.append(exc)
        finally:
            quit_.set()
            changed.set()

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    if once:
        thread.join(30)
        if failure:
            raise failure[0]
        console().print(render(view, base))
        return
    try:
        with (
            _keys_pressed(quit_),
            Live(render(view, base), console=console(), screen=False) as live,
        ):
            while not quit_.is_set():
                changed.wait(1.0)
                changed.clear()
                live.update(render(view, base))
    except KeyboardInterrupt:
        return
    if failure and not isinstance(failure[0], KeyboardInterrupt):
        raise failure[0]
