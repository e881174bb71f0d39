"""Replay a compressed trading day against Stockroom and the naive baseline; write a report."""

from __future__ import annotations

import contextlib
import multiprocessing
import shlex
import signal
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from sandbox.demo.simulation.engine import Engine, Outcome
from sandbox.demo.simulation.events import generate
from sandbox.demo.simulation.naive import NaiveSystem
from sandbox.demo.simulation.report import markdown, write
from sandbox.demo.simulation.stockroom import SAFETY_MODES, StockroomSystem
from sandbox.demo.simulation.transport import Http, InProcess, LocalServer, Transport
from sandbox.demo.simulation.world import build_world


class Command(BaseCommand):
    help = (
        "Simulate a trading day (online orders through the API, till sales, late/inflated/broken supplier feeds) "
        "and compare Stockroom with the naive baseline. Writes var/reports/simulation-*.md and .html."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--hours", type=float, default=24.0, help="simulated hours (default 24)")
        parser.add_argument("--start-hour", type=float, default=0.0, help="hour of the day the run starts at")
        parser.add_argument("--seed", type=int, default=1, help="random seed; the same seed replays the same day")
        parser.add_argument("--orders", type=int, default=100_000, help="online orders over the run")
        parser.add_argument("--items", type=int, default=40, help="items in the simulated catalog")
        parser.add_argument("--tick", type=float, default=10.0, help="simulated seconds per tick (sync latency)")
        parser.add_argument("--threads", type=int, default=8, help="concurrent shoppers and tills per tick")
        parser.add_argument(
            "--baseline", choices=["naive", "none"], default="naive", help="also run the naive baseline"
        )
        parser.add_argument("--naive-sync-minutes", type=float, default=15.0, help="the baseline's full-sync period")
        parser.add_argument(
            "--safety",
            default="dynamic,fixed",
            help=f"Stockroom runs: comma list of {', '.join(SAFETY_MODES)}",
        )
        parser.add_argument("--service-level", type=float, default=0.95)
        parser.add_argument("--exposure-minutes", type=float, default=70.0, help="till demand window to cover")
        parser.add_argument(
            "--server",
            default="auto",
            help="auto: start gunicorn on a free port; inprocess: no sockets; or the base URL of a running server",
        )
        parser.add_argument("--web-workers", type=int, default=4, help="gunicorn workers when --server auto")
        parser.add_argument(
            "--parallel",
            action="store_true",
            help="run the systems side by side, each in its own process (they share only the server)",
        )
        parser.add_argument("--out", default=str(Path(settings.VAR_DIR) / "reports"), help="report folder")

    def handle(self, *args: Any, **options: Any) -> None:
        # A stopped run still stops the web server it started (the context managers unwind).
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        modes = [mode.strip() for mode in options["safety"].split(",") if mode.strip()]
        unknown = sorted(set(modes) - set(SAFETY_MODES))
        if unknown:
            raise CommandError(f"Unknown --safety mode {', '.join(unknown)}: use {', '.join(SAFETY_MODES)}.")
        world = build_world(seed=options["seed"], items=options["items"])
        stream = generate(
            world,
            seed=options["seed"],
            hours=options["hours"],
            orders=options["orders"],
            start_hour=options["start_hour"],
        )
        self.stdout.write(
            f"Simulating {options['hours']:g} h, seed {options['seed']}: {len(stream.events):,} events, "
            f"{stream.online_orders:,} online orders"
        )
        command = "python manage.py simulate " + shlex.join(sys.argv[2:])
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")

        def report(done: list[Outcome]) -> tuple[Path, Path]:
            # Written again as each run ends, so a day cut short keeps the runs that finished.
            return write(
                done,
                seed=options["seed"],
                hours=options["hours"],
                command=command,
                directory=Path(options["out"]),
                stamp=stamp,
            )

        outcomes: list[Outcome] = []
        with contextlib.ExitStack() as stack:
            work = stack.enter_context(tempfile.TemporaryDirectory(prefix="stockroom-sim-"))
            transport: Transport
            if options["server"] == "inprocess":
                transport = InProcess()
            elif options["server"] == "auto":
                server = stack.enter_context(LocalServer(workers=options["web_workers"]))
                transport = Http(server.url)
                self.stdout.write(f"web server for the simulation: {server.url} ({options['web_workers']} workers)")
            else:
                transport = Http(options["server"])
            systems: list[Any] = [
                StockroomSystem(
                    tick_s=options["tick"],
                    safety=mode,
                    service_level=options["service_level"],
                    exposure_minutes=options["exposure_minutes"],
                    work_dir=Path(work),
                    transport=transport,
                )
                for mode in modes
            ]
            if options["baseline"] == "naive":
                systems.append(NaiveSystem(sync_minutes=options["naive_sync_minutes"]))
            if options["parallel"]:
                outcomes = self._run_side_by_side(world, stream, systems, options, report)
            else:
                for system in systems:
                    self.stdout.write(f"\n{system.name}")
                    outcomes.append(self._run_one(world, stream, system, options, self._progress()))
                    self.stdout.write("\r" + self._done(outcomes[-1]))
                    if len(outcomes) < len(systems):  # the whole day's report is written below
                        report(outcomes)
        md, html = report(outcomes)
        self.stdout.write("\n" + markdown(outcomes, seed=options["seed"], hours=options["hours"], command=command))
        self.stdout.write(f"report: {md}\n        {html}")

    def _run_one(self, world: Any, stream: Any, system: Any, options: dict[str, Any], progress: Any) -> Outcome:
        engine = Engine(
            world=world,
            stream=stream,
            system=system,
            tick_s=options["tick"],
            threads=options["threads"],
            progress=progress,
        )
        outcome = engine.run()
        if isinstance(system, NaiveSystem):
            system.cleanup()
        return outcome

    def _done(self, outcome: Outcome) -> str:
        return (
            f"  {outcome.system} done in {outcome.wall_seconds:,.0f} s: {outcome.accepted:,} accepted, "
            f"{outcome.oversold_orders:,} beyond stock ({outcome.oversell_rate:.3%})".ljust(100)
        )

    def _run_side_by_side(
        self, world: Any, stream: Any, systems: list[Any], options: dict[str, Any], report: Any
    ) -> list[Outcome]:
        """Each system in a forked process of its own; outcomes come back in the order given.

        The runs share nothing but the web server and the database (every run has its own codes),
        so on a machine with idle cores the day's runs take about as long as the slowest one.
        Children only send messages (a progress line per simulated hour, then the outcome or the
        error); this process prints them.
        """
        context = multiprocessing.get_context("fork")
        messages = context.Queue()
        connections.close_all()  # children open their own; a forked socket must not be shared

        def child(n: int, system: Any) -> None:
            printed = -1

            def progress(hour: float, outcome: Outcome) -> None:
                nonlocal printed
                if int(hour) > printed:
                    printed = int(hour)
                    messages.put(("progress", n, f"  {system.name}: {self._figures(hour, outcome)}"))

            try:
                messages.put(("outcome", n, self._run_one(world, stream, system, options, progress)))
            except BaseException as err:  # the parent reports it; a child must never hang the run
                messages.put(("error", n, f"{type(err).__name__}: {err}"))
            finally:
                connections.close_all()

        processes = [context.Process(target=child, args=(n, system), daemon=True) for n, system in enumerate(systems)]
        for process in processes:
            process.start()
        self.stdout.write(f"\n{len(processes)} runs side by side: " + ", ".join(s.name for s in systems))
        found: dict[int, Outcome] = {}
        failures: list[str] = []
        while len(found) + len(failures) < len(processes):
            kind, n, payload = messages.get()
            if kind == "progress":
                self.stdout.write(payload)
            elif kind == "outcome":
                found[n] = payload
                self.stdout.write(self._done(payload))
                if len(found) < len(processes):  # the whole day's report is written by the caller
                    report([found[k] for k in sorted(found)])
            else:
                failures.append(f"{systems[n].name}: {payload}")
        for process in processes:
            process.join()
        if failures:
            raise CommandError("simulation run failed: " + "; ".join(failures))
        return [found[n] for n in range(len(systems))]

    def _progress(self) -> Any:
        """On a terminal one line rewritten in place; into a file or pipe a line per simulated hour."""
        if self.stdout.isatty():

            def in_place(hour: float, outcome: Outcome) -> None:
                self.stdout.write(f"\r  {self._figures(hour, outcome)}", ending="")
                self.stdout.flush()

            return in_place
        printed = -1

        def hourly(hour: float, outcome: Outcome) -> None:
            nonlocal printed
            if int(hour) > printed:
                printed = int(hour)
                self.stdout.write(f"  {self._figures(hour, outcome)}")

        return hourly

    @staticmethod
    def _figures(hour: float, outcome: Outcome) -> str:
        return (
            f"hour {hour:5.2f}: {outcome.accepted:,} accepted, {outcome.refused:,} refused, "
            f"{outcome.oversold_total:,} units oversold"
        )
