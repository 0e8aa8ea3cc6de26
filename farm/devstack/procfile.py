"""The Procfile: which app processes the stack supervises, and a check that each can start."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

from honcho.environ import parse_procfile

from farm.devstack.config import DevstackError

_MANAGE_COMMAND = re.compile(r"\bmanage\.py\s+([\w-]+)")
_SHELL_OPERATORS = re.compile(r"[;&|()`\n]")


def load_procfile(path: Path) -> dict[str, str]:
    try:
        processes = parse_procfile(path.read_text()).processes
    except FileNotFoundError:
        raise DevstackError(f"no Procfile at {path}") from None
    if not processes:
        raise DevstackError(f"{path} lists no processes")
    return dict(processes)


def select_processes(processes: dict[str, str], wanted: list[str] | None) -> dict[str, str]:
    if wanted is None:
        return processes
    unknown = [name for name in wanted if name not in processes]
    if unknown:
        raise DevstackError(
            f"FURROW_PROCESSES names {', '.join(unknown)}, which the Procfile does not list "
            f"(it has {', '.join(processes)})"
        )
    return {name: processes[name] for name in wanted}


def exec_form(command: str) -> str:
    """Have the shell honcho starts replace itself with a simple command.

    Otherwise ``sh -c`` stays as the parent, dies first on SIGTERM, and the
    program, orphaned, finishes its shutdown under init. Commands with shell
    operators are left as they are.
    """
    if _SHELL_OPERATORS.search(command) or command.lstrip().startswith("exec "):
        return command
    return f"exec {command}"


def manage_commands(processes: dict[str, str]) -> dict[str, str]:
    """Process name → the Django management command it runs (``python manage.py <command>``)."""
    found = {}
    for name, command in processes.items():
        match = _MANAGE_COMMAND.search(command)
        if match:
            found[name] = match.group(1)
    return found


def missing_programs(processes: dict[str, str], path: str) -> dict[str, str]:
    """Process name → the program it starts that is not on ``path``."""
    missing = {}
    for name, command in processes.items():
        program = shlex.split(command)[0]
        if shutil.which(program, path=path) is None:
            missing[name] = program
    return missing


def explain_missing(missing: dict[str, str], processes: dict[str, str], *, what: str) -> str:
    """One message naming every process that cannot start, and how to run without it."""
    lines = [f"Procfile process {name!r} runs `{processes[name]}`, but {what} {thing!r} does not exist."
             for name, thing in missing.items()]  # fmt: skip
    keep = ",".join(name for name in processes if name not in missing)
    if keep:
        pronoun = "it" if len(missing) == 1 else "them"
        lines.append(f"To start without {pronoun}: FURROW_PROCESSES={keep} make run")
    return "\n".join(lines)
