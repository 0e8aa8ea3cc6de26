// The rule form's backtest: post the unsaved rule, show how often it would have fired over
// the last week, and chart the busiest sensor with the threshold and clear lines and the
// would-be alert episodes shaded. Plotly loads on first use only.
(function () {
  "use strict";
  var form = document.getElementById("rule-form");
  var button = form && form.querySelector('[data-action="backtest"]');
  var panel = document.getElementById("backtest");
  if (!form || !button || !panel) return;
  var script = document.getElementById("rule-form-script");

  // Show only the inputs the chosen condition and scope use (the server ignores the rest).
  var LEVELS = { above: ["threshold", "clear", "clear_for_minutes"], below: ["threshold", "clear", "clear_for_minutes"],
    outside: ["threshold", "threshold_high", "clear", "clear_high", "clear_for_minutes"], no_data: [], device_offline: [] };
  var ALL_LEVELS = ["threshold", "threshold_high", "clear", "clear_high", "clear_for_minutes"];
  function rowOf(name) {
    var input = form.elements[name];
    return input && input.closest(".form-row");
  }
  function toggle() {
    var kind = form.elements.kind.value;
    var scope = form.elements.scope.value;
    ALL_LEVELS.forEach(function (name) {
      var row = rowOf(name);
      if (row) row.classList.toggle("rule-form-hidden", (LEVELS[kind] || ALL_LEVELS).indexOf(name) < 0 && !row.classList.contains("has-error"));
    });
    ["field", "device", "sensor"].forEach(function (name) {
      var row = rowOf(name);
      if (row) row.classList.toggle("rule-form-hidden", name !== scope && !row.classList.contains("has-error"));
    });
  }
  form.elements.kind.addEventListener("change", toggle);
  form.elements.scope.addEventListener("change", toggle);
  toggle();
  var plotlyLoading = null;

  function loadPlotly() {
    if (window.Plotly) return Promise.resolve(window.Plotly);
    if (!plotlyLoading) {
      plotlyLoading = new Promise(function (resolve, reject) {
        var tag = document.createElement("script");
        tag.src = script.dataset.plotly;
        tag.onload = function () { resolve(window.Plotly); };
        tag.onerror = reject;
        document.head.appendChild(tag);
      });
    }
    return plotlyLoading;
  }

  function duration(seconds) {
    if (seconds < 3600) return Math.round(seconds / 60) + " min";
    if (seconds < 172800) return (seconds / 3600).toFixed(1) + " h";
    return (seconds / 86400).toFixed(1) + " days";
  }

  function line(y, name, dash) {
    return { type: "line", xref: "paper", x0: 0, x1: 1, y0: y, y1: y, line: { color: dash ? "#8a5300" : "#b42318", width: 1.5, dash: dash ? "dot" : "solid" }, name: name };
  }

  function draw(data) {
    var summary = panel.querySelector('[data-role="summary"]');
    var chartBox = panel.querySelector('[data-role="chart"]');
    panel.hidden = false;
    if (!data.supported) {
      summary.textContent = "A backtest replays readings; no-data and device-offline rules depend on silence, so they have none.";
      chartBox.replaceChildren();
      return;
    }
    if (!data.sensors) {
      summary.textContent = "No sensor of this metric in the rule's scope: nothing to replay.";
      chartBox.replaceChildren();
      return;
    }
    summary.textContent = "Over the last " + data.days + " days on " + data.sensors + " sensor" + (data.sensors === 1 ? "" : "s") +
      ", this rule would have fired " + data.firings + " time" + (data.firings === 1 ? "" : "s") +
      (data.firings ? ", " + duration(data.firing_seconds) + " in alarm in total." : ".");
    if (!data.chart) return;
    var levels = data.levels;
    var shapes = [];
    [["threshold", false], ["threshold_high", false], ["clear", true], ["clear_high", true]].forEach(function (pair) {
      var value = levels[pair[0]];
      if (value !== null && (!pair[1] || (value !== levels.threshold && value !== levels.threshold_high))) shapes.push(line(value, pair[0], pair[1]));
    });
    data.chart.episodes.forEach(function (e) {
      shapes.push({ type: "rect", xref: "x", yref: "paper", x0: new Date(e[0]), x1: new Date(e[1]), y0: 0, y1: 1, fillcolor: "rgba(180,35,24,0.12)", line: { width: 0 } });
    });
    loadPlotly().then(function (Plotly) {
      Plotly.react(chartBox, [{ x: data.chart.t.map(function (t) { return new Date(t); }), y: data.chart.v, mode: "lines", name: data.chart.label, line: { color: "#2e7d4f" } }], {
        title: { text: data.chart.label, font: { size: 13 } }, height: 260, margin: { l: 40, r: 10, t: 30, b: 30 }, shapes: shapes, showlegend: false,
        xaxis: { range: [new Date(data.start), new Date(data.end)] }
      }, { displayModeBar: false, responsive: true });
    });
  }

  button.addEventListener("click", function () {
    var body = new FormData(form);
    if (form.dataset.ruleId) body.append("rule_id", form.dataset.ruleId);
    button.disabled = true;
    fetch(form.dataset.backtestUrl, { method: "POST", body: body, credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
      .then(function (response) { return response.json().then(function (data) { return { ok: response.ok, data: data }; }); })
      .then(function (result) {
        if (result.ok) { draw(result.data); return; }
        panel.hidden = false;
        var errors = result.data.errors || {};
        panel.querySelector('[data-role="summary"]').textContent = "Fix the form first: " +
          Object.keys(errors).map(function (k) { return k + ": " + errors[k].join(" "); }).join("; ");
      })
      .catch(function () {
        panel.hidden = false;
        panel.querySelector('[data-role="summary"]').textContent = "The backtest could not run; try again.";
      })
      .finally(function () { button.disabled = false; });
  });
})();
