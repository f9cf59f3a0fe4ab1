"""Which model the daemon serves at start: a model whenever one exists.

``<state_dir>/models/current`` (the version an update installed) comes first. When it
points nowhere, or at a file that does not load as an image model, the daemon does not
give up and does not quietly serve something else: it tries the other stored versions,
newest first, then ``model.path``, and reports the fallback (the log here; ``model/state``
and an event on ``model/events`` once connected, see ``app``). Only when no candidate
loads does the start fail, with one line naming each.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from edge_runtime.errors import EdgeError, ModelError
from edge_runtime.update.store import CURRENT, SUFFIX

log = logging.getLogger(__name__)

E = TypeVar("E")


@dataclass(frozen=True)
class Candidate:
    label: str  # how the log names it
    path: Path


@dataclass(frozen=True)
class Fallback:
    """``models/current`` could not be served: why, and what is served instead."""

    wanted: str  # what models/current named
    why: str
    serving: Candidate


def candidates(state_dir: Path, model_path: Path) -> list[Candidate]:
    """``models/current`` (when there is one), the other stored versions newest first,
    then ``model.path``."""
    folder = state_dir / "models"
    current = folder / CURRENT
    found: list[Candidate] = []
    target: Path | None = None
    if current.is_symlink() or current.exists():
        target = current.resolve()
        found.append(Candidate(f"models/current ({_name(current)})", current))
    try:
        stored = [p for p in folder.glob(f"*{SUFFIX}") if p.is_file() and p.resolve() != target]
        stored.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError as exc:
        log.warning("cannot list the stored model versions in %s: %s", folder, exc)
        stored = []
    found += [Candidate(f"stored version {p.name}", p) for p in stored]
    found.append(Candidate(f"model.path ({model_path})", model_path))
    return found


def load_first(
    choices: list[Candidate], load: Callable[[Path], E]
) -> tuple[E, Candidate, Fallback | None]:
    """The first candidate ``load`` accepts (it loads, checks and warms a model up,
    raising EdgeError or OSError, having freed what it made, when it cannot), which one
    it is, and the fallback taken, if the first candidate was ``models/current`` and did
    not load.

    Raises:
        ModelError: no candidate loads (one line naming each and why); the error of
            the only candidate as it is when there was only one.
    """
    failures: list[tuple[Candidate, Exception]] = []
    for choice in choices:
        try:
            engine = load(choice.path)
        except (EdgeError, OSError) as exc:
            if len(choices) == 1:
                raise
            log.error("%s cannot be served: %s", choice.label, _why(exc))
            failures.append((choice, exc))
            continue
        fallback = None
        if failures and failures[0][0].path.name == CURRENT:
            first, error = failures[0]
            fallback = Fallback(first.label, _why(error), choice)
            log.error(
                "falling back: %s cannot be served (%s); serving %s instead",
                first.label,
                fallback.why,
                choice.label,
            )
        return engine, choice, fallback
    raise ModelError(
        "no model can be served: " + "; ".join(f"{c.label}: {_why(e)}" for c, e in failures)
    )


def _why(exc: Exception) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc)


def _name(link: Path) -> str:
    """What the link names ("-> X"), or the file's own name."""
    try:
        return "-> " + str(link.readlink()) if link.is_symlink() else link.name
    except OSError:
        return link.name
