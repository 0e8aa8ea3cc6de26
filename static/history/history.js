/*
 * The history page: up to 8 sensors on one Plotly chart, one y axis per unit, a min/max band
 * around each mean, rain as daily bars, a range slider, and finer data fetched for a zoomed
 * window. The state is the URL: sensors and range are the form's GET parameters; a zoom adds
 * from/to (epoch ms). Data comes from json_script and the JSON endpoint: no inline script.
 */
(function () {
  "use strict";

  var configNode = document.getElementById("history-config");
  var scriptNode = document.getElementById("history-script");
  if (!configNode || !scriptNode) return;
  var config = JSON.parse(configNode.textContent);
  var plotlyUrl = scriptNode.getAttribute("data-plotly");
  var form = document.getElementById("history-form");
  var chart = document.getElementById("history-chart");
  var note = document.getElementById("history-note");
  var resolutionNote = document.getElementById("history-resolution");
  var exportLink = document.getElementById("history-export");
  var alertNote = document.getElementById("history-alerts");
  var MAX = 8;
  var COLOURS = ["#2e7d4f", "#8a5a2b", "#1f6fb2", "#c0392b", "#7b4fa0", "#d98c1f", "#138a8a", "#5f6b73"];
  var RESOLUTION_TEXT = { raw: "raw readings", hour: "hourly rollups", day: "daily rollups" };

  // --- picker: search, at most 8, submit on change ------------------------------------
  var boxes = Array.prototype.slice.call(form.querySelectorAll('input[name="sensor"]'));
  function limit() {
    var picked = boxes.filter(function (b) { return b.checked; }).length;
    document.getElementById("picked-count").textContent = String(picked);
    boxes.forEach(function (b) { b.disabled = !b.checked && picked >= MAX; });
  }
  boxes.forEach(function (b) {
    b.addEventListener("change", function () { limit(); form.requestSubmit(); });
  });
  limit();
  var search = document.getElementById("sensor-search");
  search.addEventListener("input", function () {
    var words = search.value.toLowerCase().split(/\s+/).filter(Boolean);
    form.querySelectorAll("[data-search]").forEach(function (label) {
      var text = label.getAttribute("data-search");
      label.hidden = !words.every(function (w) { return text.indexOf(w) >= 0; });
    });
    // A device's name, and a field's box, only while one of their sensors is listed.
    form.querySelectorAll("[data-device]").forEach(function (device) {
      var next = device.nextElementSibling, shown = false;
      while (next && next.hasAttribute("data-search")) { shown = shown || !next.hidden; next = next.nextElementSibling; }
      device.hidden = !shown;
    });
    form.querySelectorAll("[data-group]").forEach(function (group) {
      group.hidden = !group.querySelector("[data-search]:not([hidden])");
    });
  });
  // A named range button must not carry stale custom dates.
  form.querySelectorAll('button[name="range"]').forEach(function (button) {
    button.addEventListener("click", function () {
      if (button.value !== "custom") {
        form.querySelector('[name="start"]').value = "";
        form.querySelector('[name="end"]').value = "";
      }
    });
  });

  if (!config.sensors.length) return;

  // --- farm-local wall-clock time (Plotly has no time zones) ----------------------------
  var offsets = {};
  var parts = new Intl.DateTimeFormat("en-GB", {
    timeZone: config.timeZone, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit"
  });
  function offsetAt(ms) {
    var key = Math.floor(ms / 900000); // offsets change on quarter hours only
    if (!(key in offsets)) {
      var p = {};
      parts.formatToParts(new Date(key * 900000)).forEach(function (x) { p[x.type] = x.value; });
      var wall = Date.UTC(+p.year, +p.month - 1, +p.day, +p.hour, +p.minute, +p.second);
      offsets[key] = wall - key * 900000;
    }
    return offsets[key];
  }
  function wall(ms) { return new Date(ms + offsetAt(ms)).toISOString().slice(0, 23).replace("T", " "); }
  function fromWall(text) {
    var asUtc = Date.parse(String(text).replace(" ", "T") + (String(text).length <= 10 ? "T00:00:00Z" : "Z"));
    return asUtc - offsetAt(asUtc - offsetAt(asUtc));
  }
  function localDay(ms) { return wall(ms).slice(0, 10); }

  // --- data and drawing ------------------------------------------------------------------
  var params = new URLSearchParams(window.location.search);
  var window0 = { start: config.start, end: config.end };
  var zoom = params.get("from") && params.get("to") ? { start: +params.get("from"), end: +params.get("to") } : null;
  var plotlyPromise = null;

  function loadPlotly() {
    if (window.Plotly) return Promise.resolve(window.Plotly);
    if (!plotlyPromise) {
      plotlyPromise = new Promise(function (resolve, reject) {
        var tag = document.createElement("script");
        tag.src = plotlyUrl;
        tag.async = true;
        tag.onload = function () { resolve(window.Plotly); };
        tag.onerror = function () { plotlyPromise = null; reject(new Error("could not load the chart library")); };
        document.head.appendChild(tag);
      });
    }
    return plotlyPromise;
  }

  function dataUrl(span) {
    var q = new URLSearchParams();
    config.sensors.forEach(function (s) { q.append("sensor", s.id); });
    q.set("start", new Date(span.start).toISOString());
    q.set("end", new Date(span.end).toISOString());
    q.set("width", String(Math.max(200, Math.min(2000, Math.round(chart.clientWidth || 800)))));
    return config.dataUrl + "?" + q.toString();
  }

  function axes(series) {
    var units = [];
    series.forEach(function (s) { if (units.indexOf(s.unit) < 0) units.push(s.unit); });
    var left = Math.ceil(units.length / 2), right = Math.floor(units.length / 2);
    var step = Math.min(0.25, 64 / Math.max(200, chart.clientWidth || 800)); // ~64 px per extra axis, phones too
    var layout = {};
    units.forEach(function (unit, i) {
      var name = i === 0 ? "yaxis" : "yaxis" + (i + 1);
      var onLeft = i % 2 === 0, rank = Math.floor(i / 2);
      // Each axis in the colour of its unit's first series, so a reader can tell which is whose.
      var colour = COLOURS[series.map(function (s) { return s.unit; }).indexOf(unit) % COLOURS.length];
      layout[name] = {
        // The unit on every tick ("15 mm") rather than a title, which collides with the next axis on a phone.
        ticksuffix: unit ? " " + unit : "", tickfont: { color: colour },
        automargin: true, zeroline: false, fixedrange: true, side: onLeft ? "left" : "right"
      };
      if (series.some(function (s) { return s.unit === unit && s.bars; })) layout[name].rangemode = "tozero";
      if (i > 0) {
        // Axes of the same side stack outwards from the plot: rank 0 on the plot's edge, then one step out each.
        // Round ticks of their own (Plotly would sync them to the first axis's grid: 2.76, 6.62, …).
        layout[name].tickmode = "auto";
        layout[name].showgrid = false;
        layout[name].overlaying = "y";
        layout[name].anchor = rank === 0 ? "x" : "free";
        layout[name].position = onLeft ? (left - 1 - rank) * step : 1 - (right - 1 - rank) * step;
      }
    });
    layout.xDomain = [Math.max(0, left - 1) * step, 1 - Math.max(0, right - 1) * step];
    return { units: units, layout: layout };
  }

  function traces(series, units) {
    var out = [];
    series.forEach(function (s, i) {
      var colour = COLOURS[i % COLOURS.length];
      var axis = units.indexOf(s.unit) === 0 ? "y" : "y" + (units.indexOf(s.unit) + 1);
      var name = s.device + " · " + s.label;
      if (s.bars) {
        out.push({
          type: "bar", name: name + " (daily)", x: (s.days || []).map(function (d) { return d + " 12:00"; }),
          y: s.dayTotals || [], yaxis: axis, marker: { color: colour }, opacity: 0.55, hovertemplate: "%{y:.1f} " + s.unit
        });
        return;
      }
      var x = s.t.map(wall);
      if (s.resolution !== "raw" || s.bucketSeconds > 1) {
        out.push({ x: x, y: s.max, yaxis: axis, mode: "lines", line: { width: 0, color: colour }, hoverinfo: "skip",
                   showlegend: false, type: "scatter" });
        out.push({ x: x, y: s.min, yaxis: axis, mode: "lines", line: { width: 0, color: colour }, fill: "tonexty",
                   fillcolor: colour + "33", hoverinfo: "skip", showlegend: false, type: "scatter" });
      }
      out.push({ x: x, y: s.mean, yaxis: axis, name: name, mode: "lines", line: { width: 1.6, color: colour },
                 hovertemplate: "%{y:.2f} " + s.unit, type: "scatter" });
    });
    return out;
  }

  // --- alert episodes: a tinted band over the chart's height, and a hover naming the rule ----
  var SEVERITY_COLOURS = { critical: "#c0392b", warning: "#b7791f", info: "#6b7680" };
  var SEVERITY_ORDER = ["critical", "warning", "info"];
  function episodeShapes(episodes, span) {
    return episodes.map(function (ep) {
      return {
        type: "rect", xref: "x", yref: "paper", y0: 0, y1: 1, layer: "below", line: { width: 0 },
        x0: wall(Math.max(ep.start, span.start)), x1: wall(ep.end === null ? span.end : Math.min(ep.end, span.end)),
        fillcolor: SEVERITY_COLOURS[ep.severity] || SEVERITY_COLOURS.warning, opacity: 0.14,
        name: "alert-episode-" + ep.episode
      };
    });
  }
  // Shapes have no hover: one invisible marker trace per severity on a hidden axis, its
  // markers a few pixels apart across each band, so "x unified" hover names the rule there.
  function episodeTraces(episodes, span, series, axis) {
    var names = {};
    series.forEach(function (s) { names[s.id] = s.device + " · " + s.label; });
    var step = Math.max(1, (span.end - span.start) / Math.max(100, (chart.clientWidth || 800) / 6));
    return SEVERITY_ORDER.map(function (severity) {
      var x = [], text = [];
      episodes.forEach(function (ep) {
        if (ep.severity !== severity) return;
        var a = Math.max(ep.start, span.start), b = ep.end === null ? span.end : Math.min(ep.end, span.end);
        var label = ep.rule_name + " (" + severity + (ep.end === null ? ", still open" : "") + ") · " + (names[ep.sensor] || "");
        for (var t = a; t <= b; t += step) { x.push(wall(t)); text.push(label); }
        x.push(wall(b)); text.push(label);
      });
      return {
        type: "scatter", mode: "markers", x: x, y: x.map(function () { return 0.5; }), yaxis: axis,
        marker: { size: 1, opacity: 0 }, text: text, hovertemplate: "⚠ %{text}<extra></extra>",
        name: "Alert: " + severity, showlegend: false
      };
    }).filter(function (trace) { return trace.x.length; });
  }

  function exportHref(span, resolution) {
    var q = new URLSearchParams();
    config.sensors.forEach(function (s) { q.append("sensor", s.id); });
    q.set("start", localDay(span.start));
    q.set("end", localDay(span.end - 1));
    q.set("resolution", resolution === "day" ? "day" : resolution === "hour" ? "hour" : "raw");
    return config.exportUrl + "?" + q.toString();
  }

  function alertText(episodes) {
    var counts = {};
    episodes.forEach(function (ep) { counts[ep.severity] = (counts[ep.severity] || 0) + 1; });
    return "Shaded: " + SEVERITY_ORDER.filter(function (sev) { return counts[sev]; }).map(function (sev) {
      return counts[sev] + " " + sev + " alert" + (counts[sev] > 1 ? "s" : "");
    }).join(", ") + " (hover a band for the rule).";
  }

  var drawing = 0;
  function draw(span, keepRange) {
    var ticket = ++drawing;
    note.textContent = "Loading…";
    note.hidden = false;
    return Promise.all([loadPlotly(), fetch(dataUrl(span), { credentials: "same-origin" })])
      .then(function (res) {
        if (!res[1].ok) throw new Error("the server answered " + res[1].status);
        return Promise.all([res[0], res[1].json()]);
      })
      .then(function (res) {
        if (ticket !== drawing) return;
        var Plotly = res[0], body = res[1], ax = axes(body.series);
        var episodes = body.episodes || [];
        var band = Math.max(2, ax.units.length + 1), bandAxis = "y" + band;
        ax.layout["yaxis" + band] = {
          overlaying: "y", range: [0, 1], visible: false, fixedrange: true, showgrid: false
        };
        var layout = Object.assign({
          shapes: episodeShapes(episodes, span),
          margin: { t: 10, r: 10, b: 10, l: 10 }, hovermode: "x unified", dragmode: "zoom",
          legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom" }, uirevision: "history",
          xaxis: { type: "date", domain: ax.layout.xDomain, rangeslider: { visible: true, thickness: 0.08 },
                   range: [wall(span.start), wall(span.end)], autorange: false }
        }, ax.layout);
        delete layout.xDomain;
        note.hidden = true;
        var all = traces(body.series, ax.units).concat(episodeTraces(episodes, span, body.series, bandAxis));
        Plotly.react(chart, all, layout, { responsive: true, displaylogo: false });
        alertNote.textContent = episodes.length ? alertText(episodes) : "";
        alertNote.hidden = !episodes.length;
        var resolution = body.series.length ? body.series.filter(function (s) { return !s.bars; }).map(function (s) {
          return s.resolution; })[0] || "day" : "raw";
        resolutionNote.textContent = localDay(span.start) + " – " + localDay(span.end - 1) + " · " + (RESOLUTION_TEXT[resolution] || "");
        exportLink.href = exportHref(span, resolution);
        exportLink.hidden = false;
        if (!chart.dataset.bound) {
          chart.dataset.bound = "1";
          chart.on("plotly_relayout", onRelayout);
        }
      })
      .catch(function (err) {
        note.textContent = "Could not load the chart: " + err.message;
        note.hidden = false;
      });
  }

  var zoomTimer = null;
  function onRelayout(event) {
    var a = event["xaxis.range[0]"], b = event["xaxis.range[1]"];
    if (event["xaxis.range"]) { a = event["xaxis.range"][0]; b = event["xaxis.range"][1]; }
    var span = null;
    if (event["xaxis.autorange"]) span = window0;
    else if (a && b) span = { start: fromWall(a), end: fromWall(b) };
    if (!span) return;
    clearTimeout(zoomTimer);
    zoomTimer = setTimeout(function () {
      var url = new URL(window.location.href);
      if (span === window0) { url.searchParams.delete("from"); url.searchParams.delete("to"); }
      else { url.searchParams.set("from", String(Math.round(span.start))); url.searchParams.set("to", String(Math.round(span.end))); }
      window.history.replaceState(null, "", url.toString());
      draw(span, true);
    }, 300);
  }

  draw(zoom || window0, false);
})();
