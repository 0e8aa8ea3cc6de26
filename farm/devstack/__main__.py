"""Entry point: ``python -m farm.devstack run | test [-- pytest args] | prepare``.

Thin on purpose: parse the arguments, own the signal handling, turn expected
failures into one readable message, and call the plain functions in
``farm.devstack.stack``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from farm.devstack.config import ConfigError, DevstackError


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # SIGTERM takes the same way out as Ctrl-C, so started servers are stopped.
    raise KeyboardInterrupt


def _hang_up(signum: int, frame: FrameType | None) -> None:
    # A closed terminal: stop like SIGTERM (honcho replaces the SIGTERM handler while it runs).
    os.kill(os.getpid(), signal.SIGTERM)


def _parse(argv: list[str]) -> argparse.Namespace:
    if argv[:1] == ["test"]:
        # Everything after "test" (and an optional "--") belongs to pytest, options included.
        rest = argv[1:]
        return argparse.Namespace(command="test", pytest_args=rest[1:] if rest[:1] == ["--"] else rest)
    parser = argparse.ArgumentParser(
        prog="python -m farm.devstack",
        description="Run Furrow (make run) or its tests (make test), on embedded services where no URL is set.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="run the whole app (make run)")
    test = sub.add_parser("test", help="run the test suite (make test); arguments after -- go to pytest")
    test.add_argument("pytest_args", nargs=argparse.REMAINDER)
    prepare = sub.add_parser("prepare", help="internal: migrate, collect static files, seed the demo")
    prepare.add_argument("--processes", required=True, help="comma-separated Procfile process names to check")
    prepare.add_argument("--password-file", type=Path, required=True)
    return parser.parse_args(argv)


def _prepare(args: argparse.Namespace) -> None:
    import django

    django.setup()
    from farm.devstack.prepare import prepare
    from farm.devstack.procfile import load_procfile, select_processes
    from farm.devstack.stack import BASE_DIR

    names = [name for name in args.processes.split(",") if name]
    processes = select_processes(load_procfile(BASE_DIR / "Procfile"), names)
    prepare(processes=processes, password_file=args.password_file)


def main(argv: list[str] | None = None) -> int:
    started = time.monotonic()
    args = _parse(sys.argv[1:] if argv is None else argv)
    # Explicitly: a shell starts background jobs with SIGINT ignored, and Ctrl-C / SIGINT must always stop the stack.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _hang_up)
    try:
        if args.command == "prepare":
            _prepare(args)
            return 0
        from farm.devstack import stack

        if args.command == "test":
            return stack.run_tests(os.environ, args.pytest_args)
        return stack.run(os.environ, started=started)
    except (DevstackError, ConfigError) as exc:
        _complain(str(exc))
        return 1
    except KeyboardInterrupt:
        _complain("interrupted; everything started was stopped")
        return 130


def _complain(message: str) -> None:
    with contextlib.suppress(OSError, ValueError):  # the terminal may be gone
        print(f"furrow: {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
