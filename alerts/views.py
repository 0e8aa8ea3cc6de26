"""The alerts pages: a farm's alerts, acknowledging one, and its rules. Access is decided by ``farm.permissions``."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from alerts import selectors, services
from alerts.backtest import BACKTEST_DAYS, backtest_run
from alerts.forms import AcknowledgeForm, AlertRuleForm, initial_of
from alerts.models import AlertEpisode, AlertRule, Severity
from alerts.panels import episode_panels
from alerts.presets import PRESETS
from farm.models import Farm, Field
from farm.permissions import Action, can, farm_for


def _filters(request: HttpRequest, fields: list[Field]) -> selectors.EpisodeFilters:
    severity = request.GET.get("severity", "")
    state = request.GET.get("state", "")
    field = request.GET.get("field", "")
    field_id = int(field) if field.isdigit() and any(f.pk == int(field) for f in fields) else None
    return selectors.EpisodeFilters(
        severity=severity if severity in Severity.values else "",
        field_id=field_id,
        state=state if state in ("firing", "acknowledged", "resolved") else "",
    )


@require_GET
@login_required
def alerts_page(request: HttpRequest, farm_ref: str) -> HttpResponse:
    farm = farm_for(request.user, farm_ref, Action.VIEW_FARM)
    fields = list(Field.objects.filter(farm=farm).order_by("name"))
    filters = _filters(request, fields)
    context: dict[str, Any] = {
        "farm": farm,
        "alerts": selectors.farm_alerts(farm, now=timezone.now(), filters=filters),
        "filters": filters,
        "fields": fields,
        "severities": Severity.choices,
        "can_write": can(request.user, farm, Action.ACKNOWLEDGE_ALERTS),
    }
    return render(request, "alerts/alerts.html", context)


@require_GET
@login_required
def episode_page(request: HttpRequest, farm_ref: str, episode_id: int) -> HttpResponse:
    """One alert: its facts, acknowledgement, audit trail, and the panels other apps add (who was told)."""
    farm = farm_for(request.user, farm_ref, Action.VIEW_FARM)
    episode = _episode(farm, episode_id, detail=True)
    context: dict[str, Any] = {
        "farm": farm,
        "e": episode,
        "audit": selectors.episode_audit(episode),
        "panels": episode_panels(request, episode),
        "can_write": can(request.user, farm, Action.ACKNOWLEDGE_ALERTS),
        "can_edit_rules": can(request.user, farm, Action.EDIT_RULES),
    }
    return render(request, "alerts/episode.html", context)


@require_POST
@login_required
def acknowledge(request: HttpRequest, farm_ref: str, episode_id: int) -> HttpResponse:
    farm = farm_for(request.user, farm_ref, Action.ACKNOWLEDGE_ALERTS)
    episode = _episode(farm, episode_id)
    form = AcknowledgeForm(request.POST)
    if form.is_valid() and services.episode_acknowledge(
        episode=episode,
        actor=request.user,  # type: ignore[arg-type]  # login_required: a real user
        comment=form.cleaned_data["comment"],
    ):
        messages.success(request, f"Acknowledged “{episode.rule.name}”.")
    elif form.is_valid():
        messages.info(request, "That alert was already acknowledged.")
    else:
        messages.error(request, "The comment is too long.")
    if request.POST.get("back") == "episode":  # the alert's own page
        return redirect("alerts-episode", farm_ref=farm.slug, episode_id=episode.pk)
    return redirect("alerts-page", farm_ref=farm.slug)


@require_GET
@login_required
def rules_page(request: HttpRequest, farm_ref: str) -> HttpResponse:
    farm = farm_for(request.user, farm_ref, Action.VIEW_FARM)
    context = {
        "farm": farm,
        "rules": selectors.farm_rules(farm),
        "presets": PRESETS,
        "can_write": can(request.user, farm, Action.EDIT_RULES),
        "now": timezone.now(),
    }
    return render(request, "alerts/rules.html", context)


@require_http_methods(["GET", "POST"])
@login_required
def rule_new(request: HttpRequest, farm_ref: str) -> HttpResponse:
    farm = farm_for(request.user, farm_ref, Action.EDIT_RULES)
    preset = PRESETS.get(request.GET.get("preset", ""), {})
    initial = {"enabled": True, "scope": "farm", "for_minutes": 0, "clear_for_minutes": 0, **preset}
    form = AlertRuleForm(request.POST or None, farm=farm, initial=initial)
    if request.method == "POST" and form.is_valid() and form.spec is not None:
        rule = services.rule_create(farm=farm, spec=form.spec, actor=request.user)  # type: ignore[arg-type]
        messages.success(request, f"Rule “{rule.name}” created.")
        return redirect("alerts-rules", farm_ref=farm.slug)
    return render(request, "alerts/rule_form.html", {"farm": farm, "form": form, "rule": None, "presets": PRESETS})


@require_http_methods(["GET", "POST"])
@login_required
def rule_edit(request: HttpRequest, farm_ref: str, rule_id: int) -> HttpResponse:
    farm = farm_for(request.user, farm_ref, Action.EDIT_RULES)
    rule = _rule(farm, rule_id)
    form = AlertRuleForm(request.POST or None, farm=farm, initial=initial_of(rule))
    if request.method == "POST" and form.is_valid() and form.spec is not None:
        changed = services.rule_update(rule=rule, spec=form.spec, actor=request.user)  # type: ignore[arg-type]
        messages.success(request, f"Rule “{rule.name}” saved." if changed else "Nothing changed.")
        return redirect("alerts-rules", farm_ref=farm.slug)
    context = {"farm": farm, "form": form, "rule": rule, "audit": selectors.rule_audit(rule)}
    return render(request, "alerts/rule_form.html", context)


@require_POST
@login_required
def rule_delete(request: HttpRequest, farm_ref: str, rule_id: int) -> HttpResponse:
    farm = farm_for(request.user, farm_ref, Action.EDIT_RULES)
    rule = _rule(farm, rule_id)
    services.rule_delete(rule=rule, actor=request.user)  # type: ignore[arg-type]
    messages.success(request, f"Rule “{rule.name}” deleted.")
    return redirect("alerts-rules", farm_ref=farm.slug)


@require_POST
@login_required
def rule_backtest(request: HttpRequest, farm_ref: str) -> JsonResponse:
    """What the posted (unsaved) rule would have done over the last week; the rule form's errors otherwise."""
    farm = farm_for(request.user, farm_ref, Action.EDIT_RULES)
    rule_id = request.POST.get("rule_id", "")
    initial = {"id": int(rule_id)} if rule_id.isdigit() else {}
    form = AlertRuleForm(request.POST, farm=farm, initial=initial)
    if not form.is_valid() or form.spec is None:
        return JsonResponse({"errors": {k: [str(e) for e in v] for k, v in form.errors.items()}}, status=400)
    result = backtest_run(farm=farm, spec=form.spec, now=timezone.now())
    if result is None:
        return JsonResponse({"supported": False, "days": BACKTEST_DAYS})
    chart = result.chart
    spec = form.spec
    return JsonResponse(
        {
            "supported": True,
            "days": BACKTEST_DAYS,
            "sensors": result.sensors,
            "firings": result.firings,
            "firing_seconds": result.firing_seconds,
            "start": result.start_ms,
            "end": result.end_ms,
            "chart": None
            if chart is None
            else {"label": chart.label, "t": result.chart_t, "v": result.chart_v, "episodes": chart.episodes},
            "levels": {
                "threshold": spec.threshold,
                "threshold_high": spec.threshold_high,
                "clear": spec.clear,
                "clear_high": spec.clear_high,
            },
        }
    )


def _rule(farm: Farm, rule_id: int) -> AlertRule:
    try:
        return selectors.farm_rule(farm, rule_id)
    except AlertRule.DoesNotExist:
        raise Http404("No such rule.") from None


def _episode(farm: Farm, episode_id: int, *, detail: bool = False) -> AlertEpisode:
    """One of the farm's episodes (404 for another farm's); ``detail``: with everything its page shows."""
    lookup = selectors.farm_episode_detail if detail else selectors.farm_episode
    try:
        return lookup(farm, episode_id)
    except AlertEpisode.DoesNotExist:
        raise Http404("No such alert.") from None
