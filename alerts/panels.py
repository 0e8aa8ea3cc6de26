"""Panels other apps add to an alert's page: a seam like ``alerts/signals.py`` (docs/architecture.md §1).

Alerts never import a delivery app, yet an alert's page shows who was told about it. The
``notifications`` app registers its delivery log here from its ``AppConfig.ready``
(dependencies go notifications → alerts); the page renders every registered panel, in
registration order, below the alert's own facts.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest
from django.utils.safestring import SafeString

from alerts.models import AlertEpisode

EpisodePanel = Callable[[HttpRequest, AlertEpisode], SafeString]
"""Renders one section of an alert's page (a template's output: already escaped)."""

_panels: list[EpisodePanel] = []


def register_episode_panel(panel: EpisodePanel) -> None:
    if panel not in _panels:
        _panels.append(panel)


def episode_panels(request: HttpRequest, episode: AlertEpisode) -> list[SafeString]:
    """Every registered panel for ``episode``; the caller has already checked that the user may see it."""
    return [panel(request, episode) for panel in _panels]
