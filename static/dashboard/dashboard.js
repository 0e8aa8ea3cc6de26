/*
 * Farm dashboard: live cards over /ws/farms/<id>/ and a Plotly chart per sensor.
 *
 * Protocol (README, "Live protocol"): the server sends a "snapshot" on connect and on request,
 * then an "update" per ingest batch, each carrying the farm's sequence number. A gap in the
 * numbers means the channel layer dropped something: ask for a snapshot. The socket reconnects
 * with backoff and catches up from the snapshot it gets on connect.
 *
 * window.furrow exposes the connection state, the last sequence number and counters for tests
 * and benchmarks (read-only use, please).
 *
 * The state rules and number formats mirror dashboard/cards.py and dashboard/formatting.py.
 */
(function () {
  "use strict";

  var configNode = document.getElementById("dashboard-config");
  var root = document.getElementById("farm-dashboard");
  if (!configNode || !root) {
    return;
  }
  var config = JSON.parse(configNode.textContent);
  var scriptNode = document.getElementById("dashboard-script");
  var plotlyUrl = scriptNode ? scriptNode.getAttribute("data-plotly") : null;

  var PING_MS = 25000;
  var SNAPSHOT_TIMEOUT_MS = 10000;
  var BACKOFF_MIN_MS = 1000;
  var BACKOFF_MAX_MS = 30000;
  var SEQ_REORDER_WINDOW = 50;
  var CHART_FLUSH_MS = 250;
  var CHART_MAX_POINTS = 4000;

  var DEVICE_STATE_LABELS = {
    ok: "",
    stale: "Stale",
    offline: "Offline",
    out_of_range: "Out of range",
    never_seen: "Never seen",
  };
  var DEVICE_STATE_BADGES = {
    ok: "badge-online",
    stale: "badge-warn",
    offline: "badge-offline",
    out_of_range: "badge-range",
    never_seen: "badge-never",
  };

  var live = {
    state: "connecting",
    seq: null,
    socket: null,
    attempts: 0,
    everLive: false,
    clockOffset: config.now - Date.now(),
    snapshotPending: false,
    snapshotTimer: null,
    reconnectTimer: null,
    pingTimer: null,
    lastMessageAt: null,
    stats: { updates: 0, snapshots: 0, gaps: 0, reconnects: 0, ignored: 0 },
  };
  var listeners = [];

  function serverNow() {
    return Date.now() + live.clockOffset;
  }

  function num(value) {
    return value === "" || value === null || value === undefined ? null : Number(value);
  }

  // ---- Formatting (mirrors dashboard/formatting.py) --------------------------------------

  var WHOLE_UNITS = { "°": true, "W/m²": true };

  function formatValue(value, unit) {
    if (value === null || value === undefined) {
      return "—";
    }
    var magnitude = Math.abs(value);
    var whole = magnitude >= 1000 || WHOLE_UNITS[unit] === true;
    var decimals = whole ? 0 : magnitude >= 1 || value === 0 ? 1 : 2;
    return value.toLocaleString("en-GB", { minimumFractionDigits: decimals, maximumFractionDigits: decimals });
  }

  function formatAge(ts, now) {
    if (ts === null) {
      return "never";
    }
    var seconds = Math.max(0, Math.floor((now - ts) / 1000));
    if (seconds < 5) {
      return "just now";
    }
    if (seconds < 60) {
      return seconds + " s ago";
    }
    var minutes = Math.floor(seconds / 60);
    if (minutes < 60) {
      return minutes + " min ago";
    }
    var hours = Math.floor(minutes / 60);
    if (hours < 24) {
      return hours + " h " + (minutes % 60) + " min ago";
    }
    return Math.floor(hours / 24) + " d " + (hours % 24) + " h ago";
  }

  function rangeText(low, high) {
    if (low === null || high === null) return "—";
    var a = formatValue(low);
    var b = formatValue(high);
    return a === b ? a : a + "–" + b;
  }

  function attentionText(count) {
    if (count === 0) return "All devices fine";
    return count === 1 ? "1 device needs attention" : count + " devices need attention";
  }

  function signalBars(rssi) {
    if (rssi === null || rssi === undefined) {
      return 0;
    }
    return rssi >= -90 ? 4 : rssi >= -105 ? 3 : rssi >= -115 ? 2 : 1;
  }

  // ---- Devices and their metrics -----------------------------------------------------------
  //
  // A card is one metric of a device (an .metric element, keyed by sensor id); a row is one
  // device (.device, keyed by device id); a section is one field. Updates mark cards dirty;
  // one animation frame redraws them, their devices' rows and those rows' sections.

  var cards = {}; // sensor id -> card model
  var cardsByDevice = {}; // device id -> [card model]
  var rows = {}; // device id -> row model
  var sections = []; // section models
  var devices = config.devices || {}; // device id -> {status, last_seen, battery, rssi, snr}
  var openAlerts = {}; // episode id -> open alert (the snapshot's "alerts.open" entry shape)
  (config.alerts || []).forEach(function (entry) {
    openAlerts[String(entry.episode)] = entry;
  });
  var dirty = new Set();
  var frameRequested = false;

  function readCards() {
    var nodes = root.querySelectorAll(".metric[data-sensor-id]");
    for (var i = 0; i < nodes.length; i++) {
      var el = nodes[i];
      var card = {
        id: el.getAttribute("data-sensor-id"),
        deviceId: el.getAttribute("data-device-id"),
        key: el.getAttribute("data-key"),
        el: el,
        value: num(el.getAttribute("data-value")),
        ts: num(el.getAttribute("data-ts")),
        min: num(el.getAttribute("data-min")),
        max: num(el.getAttribute("data-max")),
        interval: Number(el.getAttribute("data-interval")) || 900,
        span: num(el.getAttribute("data-span")) || 0,
        unit: el.getAttribute("data-unit") || "",
        label: el.getAttribute("data-label"),
        deviceName: el.getAttribute("data-device-name"),
        spark: (config.sparks && config.sparks[el.getAttribute("data-sensor-id")]) || [],
        state: el.getAttribute("data-state"),
        alert: el.getAttribute("data-alert") || "",
        parts: {
          alert: el.querySelector('[data-role="alert-badge"]'),
          value: el.querySelector('[data-role="value"]'),
          spark: el.querySelector('[data-role="spark"]'),
        },
      };
      cards[card.id] = card;
      (cardsByDevice[card.deviceId] = cardsByDevice[card.deviceId] || []).push(card);
    }
  }

  function readRows() {
    root.querySelectorAll("section[data-section]").forEach(function (sectionEl) {
      var section = {
        el: sectionEl,
        key: sectionEl.getAttribute("data-section"),
        rows: [],
        attention: sectionEl.querySelector('[data-role="attention"]'),
        chip: root.querySelector('[data-chip="' + sectionEl.getAttribute("data-section") + '"] [data-role="chip-attention"]'),
        metrics: Array.prototype.map.call(sectionEl.querySelectorAll("[data-summary-key]"), function (el) {
          return { key: el.getAttribute("data-summary-key"), range: el.querySelector('[data-role="range"]') };
        }),
      };
      sectionEl.querySelectorAll(".device[data-device-id]").forEach(function (el) {
        var row = {
          id: el.getAttribute("data-device-id"),
          el: el,
          section: section,
          state: el.getAttribute("data-state"),
          parts: {
            age: el.querySelector('[data-role="age"]'),
            badge: el.querySelector('[data-role="badge"]'),
            stateLabel: el.querySelector('[data-role="state-label"]'),
            battery: el.querySelector('[data-role="battery"]'),
            batteryFill: el.querySelector('[data-role="battery-fill"]'),
            batteryText: el.querySelector('[data-role="battery-text"]'),
            signal: el.querySelector('[data-role="signal"]'),
            signalText: el.querySelector('[data-role="signal-text"]'),
          },
        };
        rows[row.id] = row;
        section.rows.push(row);
      });
      sections.push(section);
    });
  }

  function cardState(card, now) {
    var device = devices[card.deviceId];
    if (device && device.status === "offline") {
      return "offline";
    }
    if (card.value === null || card.ts === null) {
      return "no_data";
    }
    if ((card.min !== null && card.value < card.min) || (card.max !== null && card.value > card.max)) {
      return "out_of_range";
    }
    if (now - card.ts > card.interval * 1000 * config.staleAfterIntervals) {
      return "stale";
    }
    return "fresh";
  }

  // Mirrors dashboard/cards.py device_state.
  function deviceState(row) {
    var device = devices[row.id];
    if (device && device.status === "offline") {
      return "offline";
    }
    var states = (cardsByDevice[row.id] || [])
      .map(function (card) {
        return card.state;
      })
      .filter(function (state) {
        return state !== "no_data";
      });
    if (!states.length) return "never_seen";
    if (states.indexOf("out_of_range") >= 0) return "out_of_range";
    if (states.indexOf("stale") >= 0) return "stale";
    return "ok";
  }

  function markDirty(card) {
    dirty.add(card);
    scheduleFrame();
  }

  function scheduleFrame() {
    if (!frameRequested) {
      frameRequested = true;
      window.requestAnimationFrame(flushCards);
    }
  }

  function flushCards() {
    frameRequested = false;
    var now = serverNow();
    var flashing = [];
    var touched = new Set();
    dirty.forEach(function (card) {
      renderCard(card, now, true);
      if (rows[card.deviceId]) touched.add(rows[card.deviceId]);
      if (card.flash) {
        card.flash = false;
        card.el.classList.remove("is-flash");
        flashing.push(card.el);
      }
    });
    dirty.clear();
    if (flashing.length) {
      void root.offsetWidth; // one reflow restarts every metric's glow
      flashing.forEach(function (el) {
        el.classList.add("is-flash");
      });
    }
    renderRows(touched, now);
    renderSummary(now);
  }

  function renderRows(touched, now) {
    var touchedSections = new Set();
    touched.forEach(function (row) {
      renderRow(row, now);
      touchedSections.add(row.section);
    });
    touchedSections.forEach(renderSection);
  }

  function renderCard(card, now, full) {
    var state = cardState(card, now);
    if (state !== card.state) {
      card.state = state;
      card.el.setAttribute("data-state", state);
    }
    if (!full) {
      return;
    }
    card.parts.value.textContent = formatValue(card.value, card.unit);
    card.el.setAttribute("data-value", card.value === null ? "" : String(card.value));
    card.el.setAttribute("data-ts", card.ts === null ? "" : String(card.ts));
    renderSpark(card, now);
  }

  function lastReport(row) {
    var device = devices[row.id];
    var last = device && device.last_seen !== null && device.last_seen !== undefined ? device.last_seen : null;
    (cardsByDevice[row.id] || []).forEach(function (card) {
      if (card.ts !== null && (last === null || card.ts > last)) last = card.ts;
    });
    return last;
  }

  function renderRow(row, now) {
    var state = deviceState(row);
    if (state !== row.state) {
      row.state = state;
      row.el.setAttribute("data-state", state);
      row.parts.badge.className = "badge dv-badge " + DEVICE_STATE_BADGES[state];
      row.parts.stateLabel.textContent = DEVICE_STATE_LABELS[state];
      row.parts.badge.hidden = state === "ok";
    }
    var last = lastReport(row);
    row.parts.age.textContent = last === null ? "never reported" : formatAge(last, now);
    renderDeviceHealth(row);
  }

  function renderDeviceHealth(row) {
    var device = devices[row.id];
    if (!device) {
      return;
    }
    var battery = device.battery;
    var hasBattery = battery !== null && battery !== undefined;
    row.parts.battery.hidden = !hasBattery;
    row.parts.batteryText.textContent = hasBattery ? Math.round(battery) + "%" : "";
    row.parts.batteryFill.setAttribute("width", hasBattery ? Math.max(0, Math.min(17, (battery / 100) * 17)) : 0);
    row.parts.battery.classList.toggle("is-low", hasBattery && battery < 20);
    var hasSignal = device.rssi !== null && device.rssi !== undefined;
    row.parts.signal.hidden = !hasSignal;
    row.parts.signal.setAttribute("data-bars", String(signalBars(device.rssi)));
    row.parts.signalText.textContent = hasSignal ? Math.round(device.rssi) + " dBm" : "";
    row.parts.signal.title =
      "Signal: RSSI" + (device.snr !== null && device.snr !== undefined ? " · SNR " + device.snr.toFixed(1) + " dB" : "");
  }

  // Mirrors dashboard/cards.py Section.summary and .attention.
  function renderSection(section) {
    var attention = section.rows.filter(function (row) {
      return row.state !== "ok";
    }).length;
    section.attention.setAttribute("data-count", String(attention));
    section.attention.textContent = attentionText(attention);
    if (section.chip) {
      section.chip.textContent = String(attention);
      section.chip.hidden = attention === 0;
    }
    section.metrics.forEach(function (metric) {
      var low = null;
      var high = null;
      section.rows.forEach(function (row) {
        (cardsByDevice[row.id] || []).forEach(function (card) {
          if (card.key !== metric.key || card.value === null) return;
          low = low === null ? card.value : Math.min(low, card.value);
          high = high === null ? card.value : Math.max(high, card.value);
        });
      });
      metric.range.textContent = rangeText(low, high);
    });
  }

  // Mirrors dashboard/charts.py y_window: at least `span` wide, inside the plausible range where it fits.
  function yWindow(low, high, span, min, max) {
    if (high - low >= span) return [low, high];
    var middle = (low + high) / 2;
    low = middle - span / 2;
    high = middle + span / 2;
    if (min !== null && low < min) return [min, min + span];
    if (max !== null && high > max) return [max - span, max];
    return [low, high];
  }

  // Same arithmetic as dashboard/charts.py sparkline_paths (120 × 32 box).
  function sparkPaths(points, startMs, endMs, card) {
    if (!points.length) {
      return { line: "", area: "" };
    }
    var low = Infinity;
    var high = -Infinity;
    for (var i = 0; i < points.length; i++) {
      low = Math.min(low, points[i][1]);
      high = Math.max(high, points[i][1]);
    }
    var window_ = yWindow(low, high, card.span, card.min, card.max);
    low = window_[0];
    high = window_[1];
    var span = Math.max(1, endMs - startMs);
    var coords = points.map(function (p) {
      var x = Math.min(Math.max(((p[0] - startMs) / span) * 120, 0), 120);
      var y = high === low ? 16 : 32 - 2 - ((p[1] - low) / (high - low)) * 28;
      return x.toFixed(1) + "," + y.toFixed(1);
    });
    var line = "M" + coords.join(" L");
    var first = coords[0].split(",")[0];
    var last = coords[coords.length - 1].split(",")[0];
    return { line: line, area: line + " L" + last + ",32 L" + first + ",32 Z" };
  }

  function renderSpark(card, now) {
    var start = now - config.sparkSeconds * 1000;
    while (card.spark.length && card.spark[0][0] < start) {
      card.spark.shift();
    }
    if (!card.parts.spark) return;
    var paths = sparkPaths(card.spark, start, now, card);
    var svgPaths = card.parts.spark.querySelectorAll("path");
    svgPaths[0].setAttribute("d", paths.area);
    svgPaths[1].setAttribute("d", paths.line);
  }

  function applyPoints(card, points) {
    var changed = false;
    var lastSpark = card.spark.length ? card.spark[card.spark.length - 1][0] : -Infinity;
    for (var i = 0; i < points.length; i++) {
      var t = points[i][0];
      var v = points[i][1];
      if (t > lastSpark) {
        card.spark.push([t, v]);
        lastSpark = t;
      }
      // A device flushing its buffer sends old readings: they never replace a newer value.
      if (card.ts === null || t >= card.ts) {
        card.ts = t;
        card.value = v;
        changed = true;
      }
    }
    card.flash = card.flash || changed;
    markDirty(card);
  }

  function applyDevice(entry) {
    var id = String(entry.id);
    var isNew = !devices[id];
    devices[id] = entry;
    if (cardsByDevice[id]) {
      cardsByDevice[id].forEach(markDirty);
    } else if (rows[id] && entry.last_seen === null) {
      renderRows(new Set([rows[id]]), serverNow());
    } else if (isNew || entry.last_seen !== null) {
      // A device this page has no metrics for: newly registered, or reporting for the first time.
      showBanner("A device has new sensors reporting. Reload to see them.");
    }
    scheduleFrame();
  }

  function renderSummary(now) {
    var counts = { online: 0, offline: 0, never: 0 };
    var last = null;
    Object.keys(devices).forEach(function (id) {
      var d = devices[id];
      if (d.status === "online") counts.online++;
      else if (d.status === "offline") counts.offline++;
      else counts.never++;
      if (d.last_seen !== null && (last === null || d.last_seen > last)) last = d.last_seen;
    });
    ["online", "offline", "never"].forEach(function (key) {
      var valueNode = root.querySelector('[data-summary="' + key + '"]');
      if (valueNode) valueNode.textContent = String(counts[key]);
      var seg = root.querySelector('[data-seg="' + key + '"]');
      if (seg) {
        seg.setAttribute("data-count", String(counts[key]));
        seg.style.flexGrow = String(counts[key]);
        seg.hidden = counts[key] === 0;
      }
    });
    var offlineBox = root.querySelector('[data-summary-box="offline"]');
    if (offlineBox) offlineBox.classList.toggle("stat-offline", counts.offline > 0);
    var bar = document.getElementById("summary-bar");
    if (bar) {
      bar.setAttribute(
        "aria-label",
        counts.online + " online, " + counts.offline + " offline, " + counts.never + " never seen"
      );
    }
    var lastNode = root.querySelector('[data-summary="last-update"]');
    if (lastNode) {
      lastNode.setAttribute("data-ts", last === null ? "" : String(last));
      lastNode.textContent = formatAge(last, now);
    }
  }

  function tick() {
    var now = serverNow();
    Object.keys(cards).forEach(function (id) {
      renderCard(cards[id], now, false);
    });
    renderRows(
      new Set(
        Object.keys(rows).map(function (id) {
          return rows[id];
        })
      ),
      now
    );
    renderSummary(now);
  }

  function showBanner(text) {
    var banner = document.getElementById("dash-banner");
    if (!banner) return;
    banner.querySelector('[data-role="banner-text"]').textContent = text;
    banner.hidden = false;
  }

  // ---- Alerts: the header count, metrics in alert, the critical notice --------------------

  // Worst first, as dashboard/cards.py SEVERITY_RANK.
  var SEVERITY_RANK = { critical: 0, warning: 1, info: 2 };
  var criticalShown = null; // the episode the critical notice names

  function severityRank(severity) {
    return severity in SEVERITY_RANK ? SEVERITY_RANK[severity] : 9;
  }

  function renderAlertCount(firing, acknowledged) {
    var link = document.getElementById("alert-count");
    if (!link) return;
    link.setAttribute("data-firing", firing);
    link.setAttribute("data-acknowledged", acknowledged);
    link.classList.toggle("is-firing", firing > 0);
    link.querySelector('[data-role="alerts-firing"]').textContent = firing;
    link.querySelector('[data-role="alerts-acknowledged"]').textContent = acknowledged;
    link.querySelector('[data-role="alerts-ack-box"]').hidden = acknowledged === 0;
  }

  // Each card shows the severity of its sensor's worst open alert (cards.py sensor_alert_severities).
  function renderAlertBadges() {
    var worst = {};
    Object.keys(openAlerts).forEach(function (id) {
      var entry = openAlerts[id];
      var current = worst[entry.sensor];
      if (current === undefined || severityRank(entry.severity) < severityRank(current)) {
        worst[entry.sensor] = entry.severity;
      }
    });
    Object.keys(cards).forEach(function (id) {
      var card = cards[id];
      var severity = worst[id] || "";
      if (severity === card.alert) return;
      card.alert = severity;
      card.el.setAttribute("data-alert", severity);
      card.el.classList.toggle("in-alert", severity !== "");
      var badge = card.parts.alert;
      if (badge) {
        badge.className = "metric-alert sev-" + (severity || "none");
        badge.textContent = severity ? severity.charAt(0).toUpperCase() + severity.slice(1) : "";
        badge.hidden = severity === "";
      }
    });
  }

  function showCritical(transition, more) {
    var banner = document.getElementById("critical-banner");
    if (!banner) return;
    var card = cards[String(transition.sensor)];
    var where = card ? card.deviceName + " · " + card.label : "sensor " + transition.sensor;
    var value = transition.value === null ? "" : ": " + formatValue(transition.value, card ? card.unit : "") +
      (card && card.unit ? " " + card.unit : "");
    banner.querySelector('[data-role="critical-text"]').textContent =
      "Critical alert: " + transition.rule_name + " — " + where + value + (more ? " (and " + more + " more)" : "");
    banner.setAttribute("data-episode", transition.episode);
    criticalShown = String(transition.episode);
    banner.hidden = false;
  }

  function hideCritical() {
    var banner = document.getElementById("critical-banner");
    if (banner) banner.hidden = true;
    criticalShown = null;
  }

  function applyAlerts(message) {
    var gap = takeSeq(message);
    if (gap === null) return;
    live.stats.updates++;
    var fired = [];
    message.transitions.forEach(function (t) {
      var id = String(t.episode);
      if (t.transition === "resolved") {
        delete openAlerts[id];
      } else {
        openAlerts[id] = {
          episode: t.episode, rule: t.rule, rule_name: t.rule_name, severity: t.severity, sensor: t.sensor,
          device: t.device, started: t.started, value: t.value, worst: t.worst,
          acknowledged: t.transition === "acknowledged", by: t.by,
        };
        if (t.transition === "fired" && t.severity === "critical") fired.push(t);
      }
      // Someone dealt with the alert the notice names: it has said what it had to.
      if (t.transition !== "fired" && id === criticalShown) hideCritical();
      if (chart.sensorId === String(t.sensor) && chart.ready) loadSeries(); // redraw its shading
    });
    if (fired.length) showCritical(fired[fired.length - 1], fired.length - 1);
    renderAlertCount(message.firing, message.acknowledged);
    renderAlertBadges();
    if (gap) {
      live.stats.gaps++;
      requestSnapshot();
    }
  }

  function applySnapshotAlerts(alerts) {
    openAlerts = {};
    alerts.open.forEach(function (entry) {
      openAlerts[String(entry.episode)] = entry;
    });
    if (criticalShown !== null && !(openAlerts[criticalShown] && !openAlerts[criticalShown].acknowledged)) {
      hideCritical();
    }
    renderAlertCount(alerts.firing, alerts.acknowledged);
    renderAlertBadges();
  }

  // ---- Live socket -----------------------------------------------------------------------

  function setLive(state, label) {
    live.state = state;
    root.setAttribute("data-live", state);
    var pill = document.getElementById("live-status");
    if (!pill) return;
    pill.setAttribute("data-state", state);
    var labelNode = pill.querySelector('[data-role="live-label"]');
    if (state === "signed_out") {
      labelNode.textContent = "Signed out · ";
      var link = document.createElement("a");
      link.href = config.loginUrl + "?next=" + encodeURIComponent(location.pathname);
      link.textContent = "sign in";
      labelNode.appendChild(link);
    } else {
      labelNode.textContent = label;
    }
  }

  function socketUrl() {
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + config.wsPath;
  }

  function connect() {
    window.clearTimeout(live.reconnectTimer);
    if (!live.everLive) {
      setLive("connecting", "Connecting…");
    }
    live.opened = false;
    var socket = new WebSocket(socketUrl());
    live.socket = socket;
    socket.onopen = function () {
      live.opened = true;
      startPing();
    };
    socket.onmessage = function (event) {
      if (socket === live.socket) {
        // A frame holds one message, or an array of them when the server had several waiting.
        var data = JSON.parse(event.data);
        (Array.isArray(data) ? data : [data]).forEach(onMessage);
      }
    };
    socket.onclose = function (event) {
      if (socket === live.socket) {
        onClose(event, socket);
      }
    };
  }

  function send(message) {
    if (live.socket && live.socket.readyState === WebSocket.OPEN) {
      live.socket.send(JSON.stringify(message));
    }
  }

  function requestSnapshot() {
    if (live.snapshotPending) return;
    live.snapshotPending = true;
    send({ type: "snapshot" });
    live.snapshotTimer = window.setTimeout(function () {
      live.snapshotPending = false;
    }, SNAPSHOT_TIMEOUT_MS);
  }

  function onMessage(message) {
    live.lastMessageAt = Date.now();
    if (message.type === "snapshot") {
      applySnapshot(message);
    } else if (message.type === "update") {
      applyUpdate(message);
    } else if (message.type === "alerts") {
      applyAlerts(message);
    } else if (message.type === "pong") {
      live.clockOffset = message.now - Date.now();
      if (live.seq !== null && message.seq > live.seq) {
        live.stats.gaps++;
        requestSnapshot();
      }
    }
    for (var i = 0; i < listeners.length; i++) {
      try {
        listeners[i](message);
      } catch (err) {
        console.error(err);
      }
    }
  }

  function applySnapshot(message) {
    live.stats.snapshots++;
    live.snapshotPending = false;
    window.clearTimeout(live.snapshotTimer);
    live.clockOffset = message.now - Date.now();
    live.seq = message.seq;
    message.devices.forEach(function (entry) {
      devices[String(entry.id)] = entry;
    });
    if (message.alerts) applySnapshotAlerts(message.alerts);
    message.sensors.forEach(function (entry) {
      var card = cards[String(entry.sensor)];
      if (!card) {
        showBanner("New sensors are reporting on this farm. Reload to see them.");
        return;
      }
      if (entry.ts !== null && (card.ts === null || entry.ts >= card.ts)) {
        card.ts = entry.ts;
        card.value = entry.value;
      }
      markDirty(card);
    });
    Object.keys(cards).forEach(function (id) {
      markDirty(cards[id]);
    });
    var catchingUp = live.everLive;
    live.everLive = true;
    live.attempts = 0;
    setLive("live", "Live");
    if (catchingUp) {
      refreshSparklines();
      chartCatchUp();
    }
  }

  // An update or alerts message's place in the farm's sequence: null to ignore it, else
  // whether messages were missed before it (then the caller asks for a snapshot).
  function takeSeq(message) {
    if (live.seq === null) {
      return null; // the snapshot that starts every connection is still on its way
    }
    if (message.seq <= live.seq) {
      if (live.seq - message.seq > SEQ_REORDER_WINDOW) {
        // The counter restarted (Redis was reset): only a snapshot tells us where we are.
        live.stats.gaps++;
        requestSnapshot();
      } else {
        live.stats.ignored++;
      }
      return null;
    }
    var gap = message.seq > live.seq + 1;
    live.seq = message.seq;
    return gap;
  }

  function applyUpdate(message) {
    var gap = takeSeq(message);
    if (gap === null) return;
    live.stats.updates++;
    message.devices.forEach(applyDevice);
    message.readings.forEach(function (entry) {
      var card = cards[String(entry.sensor)];
      if (!card) {
        showBanner("New sensors are reporting on this farm. Reload to see them.");
        return;
      }
      applyPoints(card, entry.points);
      chartExtend(String(entry.sensor), entry.points, entry.n > entry.points.length);
    });
    if (gap) {
      live.stats.gaps++;
      requestSnapshot();
    }
  }

  function onClose(event, socket) {
    window.clearInterval(live.pingTimer);
    live.socket = null;
    live.seq = null;
    live.snapshotPending = false;
    if (event.code === 4403) {
      setLive("forbidden", "No access to this farm");
      return;
    }
    if (event.code === 4401 || !live.opened) {
      // Signed out, or the handshake was refused (anonymous sockets are never accepted):
      // ask the server over HTTP whether the session is still good before retrying.
      sessionStillValid().then(function (valid) {
        if (valid === false) {
          setLive("signed_out", "Signed out");
        } else {
          scheduleReconnect();
        }
      });
      return;
    }
    scheduleReconnect();
  }

  function scheduleReconnect() {
    live.attempts++;
    live.opened = false;
    live.stats.reconnects++;
    var ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * Math.pow(2, live.attempts - 1));
    var delay = Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
    var due = Date.now() + delay;
    var update = function () {
      var left = Math.max(0, Math.ceil((due - Date.now()) / 1000));
      setLive("reconnecting", left > 1 ? "Reconnecting in " + left + " s…" : "Reconnecting…");
    };
    update();
    var countdown = window.setInterval(update, 1000);
    live.reconnectTimer = window.setTimeout(function () {
      window.clearInterval(countdown);
      connect();
    }, delay);
  }

  // true: signed in and allowed; false: signed out or no access; null: cannot tell (offline).
  function sessionStillValid() {
    return fetch(config.sparklinesUrl, { credentials: "same-origin", redirect: "manual" })
      .then(function (response) {
        if (response.type === "opaqueredirect" || response.status === 302 || response.status === 403) {
          return false;
        }
        if (response.status === 404) {
          setLive("forbidden", "No access to this farm");
          return false;
        }
        return response.ok ? true : null;
      })
      .catch(function () {
        return null;
      });
  }

  function refreshSparklines() {
    fetch(config.sparklinesUrl, { credentials: "same-origin" })
      .then(function (response) {
        return response.ok ? response.json() : null;
      })
      .then(function (data) {
        if (!data) return;
        Object.keys(data.lines).forEach(function (id) {
          var card = cards[id];
          if (card) {
            card.spark = data.lines[id];
            markDirty(card);
          }
        });
      })
      .catch(function () {});
  }

  function startPing() {
    window.clearInterval(live.pingTimer);
    live.pingTimer = window.setInterval(function () {
      send({ type: "ping" });
    }, PING_MS);
  }

  // ---- Chart dialog ------------------------------------------------------------------------

  var dialog = document.getElementById("chart-dialog");
  var plotNode = document.getElementById("chart-plot");
  var chart = { sensorId: null, range: "6h", pending: [], flushTimer: null, userZoomed: false, ready: false };
  var plotlyPromise = null;
  var RANGE_MS = { "1h": 3600e3, "6h": 6 * 3600e3, "24h": 24 * 3600e3, "7d": 7 * 24 * 3600e3 };

  function loadPlotly() {
    if (window.Plotly) return Promise.resolve(window.Plotly);
    if (!plotlyPromise) {
      plotlyPromise = new Promise(function (resolve, reject) {
        var tag = document.createElement("script");
        tag.src = plotlyUrl;
        tag.async = true;
        tag.onload = function () {
          resolve(window.Plotly);
        };
        tag.onerror = function () {
          plotlyPromise = null;
          reject(new Error("could not load the chart library"));
        };
        document.head.appendChild(tag);
      });
    }
    return plotlyPromise;
  }

  // Plotly.js is large (4.6 MB): fetch and compile it once the page is idle after its first
  // paint, so the first chart opened does not wait for it (the browser caches it after that).
  function preloadPlotly() {
    var start = function () {
      loadPlotly().then(warmPlotly).catch(function () {});
    };
    if (window.requestIdleCallback) window.requestIdleCallback(start, { timeout: 1500 });
    else window.setTimeout(start, 500);
  }

  // Plotly's first plot on a page sets up its fonts, defs and layout machinery: about as long
  // again as loading it on a busy machine. Draw one date chart off-screen while idle, so the
  // first real chart does not pay for it.
  function warmPlotly(Plotly) {
    if (chart.sensorId !== null) return;
    var node = document.createElement("div");
    node.setAttribute("aria-hidden", "true");
    node.style.position = "fixed";
    node.style.left = "-10000px";
    node.style.width = "600px";
    node.style.height = "300px";
    document.body.appendChild(node);
    var x = [farmTime(0), farmTime(3600e3)];
    var traces = [
      { x: x, y: [0, 1], mode: "lines" },
      { x: x, y: [0, 1], fill: "tonexty" },
    ];
    var layout = { xaxis: { type: "date" }, hovermode: "x unified" };
    Plotly.newPlot(node, traces, layout, { displayModeBar: false })
      .then(function () {
        Plotly.purge(node);
        node.remove();
      })
      .catch(function () {
        node.remove();
      });
  }

  // Plotly has no time zones: hand it wall-clock strings in the farm's zone. Offsets change
  // only on quarter hours (DST), so one Intl lookup per 15 minutes of data is enough.
  var tzFormat = new Intl.DateTimeFormat("en-GB", {
    timeZone: config.timeZone,
    hourCycle: "h23",
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
  });
  var offsetCache = {};

  function zoneOffset(ms) {
    var key = Math.floor(ms / 900000);
    if (offsetCache[key] === undefined) {
      var parts = {};
      tzFormat.formatToParts(new Date(key * 900000)).forEach(function (p) {
        parts[p.type] = p.value;
      });
      var wall = Date.UTC(+parts.year, +parts.month - 1, +parts.day, +parts.hour, +parts.minute, +parts.second);
      offsetCache[key] = wall - key * 900000;
    }
    return offsetCache[key];
  }

  function farmTime(ms) {
    return new Date(ms + zoneOffset(ms)).toISOString().slice(0, 23).replace("T", " ");
  }

  function openChart(sensorId, range) {
    var card = cards[String(sensorId)];
    if (!card || !dialog) return;
    sensorId = String(sensorId);
    if (range && RANGE_MS[range]) setRange(range);
    chart.sensorId = sensorId;
    chart.userZoomed = false;
    chart.ready = false;
    document.getElementById("chart-title").textContent = card.label;
    document.getElementById("chart-sub").textContent = card.deviceName;
    renderChartNow(card);
    if (typeof dialog.showModal === "function") {
      dialog.showModal();
    } else {
      dialog.setAttribute("open", "");
    }
    chartUrlSet();
    loadSeries();
  }

  // The open chart lives in the URL (?chart=<sensor id>&range=<range>): a reload reopens it and
  // the address can be shared.
  function chartUrlSet() {
    var url = new URL(location.href);
    if (chart.sensorId === null) {
      url.searchParams.delete("chart");
      url.searchParams.delete("range");
    } else {
      url.searchParams.set("chart", chart.sensorId);
      url.searchParams.set("range", chart.range);
    }
    if (url.href !== location.href) history.replaceState(history.state, "", url.href);
  }

  function chartFromUrl() {
    var params = new URLSearchParams(location.search);
    var sensorId = params.get("chart");
    if (sensorId && cards[sensorId]) openChart(sensorId, params.get("range"));
  }

  function setRange(range) {
    chart.range = range;
    chart.userZoomed = false;
    dialog.querySelectorAll("[data-range]").forEach(function (b) {
      b.setAttribute("aria-pressed", b.getAttribute("data-range") === range ? "true" : "false");
    });
  }

  function closeChart() {
    if (window.Plotly && chart.ready) {
      window.Plotly.purge(plotNode);
    }
    chart.sensorId = null;
    chart.pending = [];
    chart.ready = false;
    chartUrlSet();
    if (dialog.open) dialog.close();
  }

  function renderChartNow(card) {
    var node = document.getElementById("chart-now");
    node.innerHTML = "";
    node.appendChild(document.createTextNode(formatValue(card.value, card.unit)));
    if (card.unit) {
      var unit = document.createElement("small");
      unit.textContent = card.unit;
      node.appendChild(unit);
    }
  }

  function seriesUrl(sensorId) {
    var width = Math.max(200, Math.round(plotNode.clientWidth || 800));
    return (
      config.seriesUrl.replace(/\/0\/series$/, "/" + sensorId + "/series") +
      "?range=" + encodeURIComponent(chart.range) + "&width=" + width
    );
  }

  function loadSeries() {
    var sensorId = chart.sensorId;
    var range = chart.range;
    chart.pending = [];
    plotNode.classList.add("is-loading");
    Promise.all([loadPlotly(), fetch(seriesUrl(sensorId), { credentials: "same-origin" })])
      .then(function (results) {
        var response = results[1];
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (data) {
        if (chart.sensorId !== sensorId || chart.range !== range) return;
        drawSeries(data);
      })
      .catch(function (err) {
        plotNode.classList.remove("is-loading");
        document.getElementById("chart-foot").textContent = "Could not load the chart: " + err.message;
      });
  }

  function axisTitle(sensor) {
    return sensor.unit ? sensor.label + " (" + sensor.unit + ")" : sensor.label;
  }

  // The min/max of a bucket only says something when it holds more than one reading.
  function bandNote(min, max, count, unit) {
    if (count < 2) return "";
    return "<br>min " + formatValue(min) + unit + " · max " + formatValue(max) + unit + " · " + count + " readings";
  }

  function drawSeries(data) {
    var x = data.t.map(farmTime);
    var unit = data.sensor.unit ? " " + data.sensor.unit : "";
    var notes = data.t.map(function (_, i) {
      return bandNote(data.min[i], data.max[i], data.count[i], unit);
    });
    var accent = "#2e7d4f";
    var traces = [
      { x: x, y: data.max, customdata: notes, name: "max", mode: "lines", line: { width: 0, color: accent }, hoverinfo: "skip" },
      {
        x: x, y: data.min, customdata: notes, name: "min", mode: "lines", line: { width: 0, color: accent },
        fill: "tonexty", fillcolor: "rgba(46,125,79,0.18)", hoverinfo: "skip",
      },
      {
        x: x, y: data.avg, customdata: notes, name: "mean", mode: "lines", line: { width: 2, color: accent },
        hovertemplate: "<b>%{y:,.2~f}" + unit + "</b>%{customdata}<extra></extra>",
      },
    ];
    var end = serverNow();
    var layout = {
      // No mode bar over the plot: zoom by dragging, reset and save from the dialog's own toolbar.
      margin: { l: 8, r: 12, t: 8, b: 8 },
      paper_bgcolor: "rgba(0,0,0,0)",
      plot_bgcolor: "rgba(0,0,0,0)",
      font: { family: getComputedStyle(document.body).fontFamily, size: 12, color: "#526058" },
      hovermode: "x unified",
      hoverlabel: { bgcolor: "#ffffff", bordercolor: "#c9cfc2", font: { color: "#17211b" } },
      xaxis: {
        type: "date",
        range: [farmTime(end - RANGE_MS[chart.range]), farmTime(end)],
        title: { text: "Time (" + data.time_zone + ")", standoff: 8 },
        automargin: true,
        hoverformat: "%a %-d %b, %H:%M:%S",
        gridcolor: "#eef0ea", linecolor: "#c9cfc2", showspikes: true, spikecolor: "#c9cfc2", spikethickness: 1,
      },
      yaxis: {
        title: { text: axisTitle(data.sensor), standoff: 6 },
        gridcolor: "#eef0ea", zeroline: false, automargin: true, fixedrange: false,
        range: chartYRange(data),
      },
      shapes: alertShapes(data.alerts, end),
      showlegend: false,
      dragmode: window.matchMedia("(pointer: coarse)").matches ? false : "zoom",
    };
    chart.filename = (data.sensor.label + "-" + data.range).replace(/\s+/g, "-").toLowerCase();
    var plotConfig = { displaylogo: false, responsive: true, displayModeBar: false, doubleClick: "reset" };
    window.Plotly.react(plotNode, traces, layout, plotConfig).then(function () {
      plotNode.classList.remove("is-loading");
      chart.ready = true;
      if (!plotNode._furrowBound) {
        plotNode._furrowBound = true;
        plotNode.on("plotly_relayout", function (event) {
          if (event["xaxis.autorange"]) chart.userZoomed = false;
          else if (event["xaxis.range[0]"] !== undefined && !chart.sliding) chart.userZoomed = true;
          dialog.querySelector('[data-action="reset-zoom"]').hidden = !chart.userZoomed;
        });
      }
    });
    var total = data.count.reduce(function (a, b) { return a + b; }, 0);
    document.getElementById("chart-foot").textContent =
      total.toLocaleString("en-GB") + " readings in " + data.t.length + " points (" +
      (data.bucket_seconds > 1 ? "one per " + humanSeconds(data.bucket_seconds) : "raw") +
      "); shaded band: min–max in each point. Live updates extend the chart." +
      (data.alerts.rules.length ? " Lines: alert thresholds (solid) and where they clear (dashed)." : "") +
      (data.alerts.episodes.length ? " Tinted spans: alerts." : "");
  }

  var SEVERITY_COLOURS = { critical: "#c0392b", warning: "#b7791f", info: "#6b7680" };

  // The rules' levels: [{y, clear, rule}], a band's two edges each; a clear level equal to
  // its threshold (or unset: the threshold) draws no second line.
  function alertLevels(alerts) {
    var levels = [];
    ((alerts && alerts.rules) || []).forEach(function (rule) {
      var edges = [[rule.threshold, rule.clear]];
      if (rule.kind === "outside") edges.push([rule.threshold_high, rule.clear_high]);
      edges.forEach(function (edge) {
        if (edge[0] === null) return;
        levels.push({ y: edge[0], clear: false, rule: rule });
        if (edge[1] !== null && edge[1] !== edge[0]) levels.push({ y: edge[1], clear: true, rule: rule });
      });
    });
    return levels;
  }

  // Threshold lines (solid), clear lines (dashed) and each alert episode shaded over the
  // chart's height; an episode still open runs past the window's end, so it stays shaded
  // while live updates slide the window.
  function alertShapes(alerts, end) {
    var shapes = [];
    ((alerts && alerts.episodes) || []).forEach(function (ep) {
      var colour = SEVERITY_COLOURS[ep.severity] || SEVERITY_COLOURS.warning;
      shapes.push({
        type: "rect", xref: "x", yref: "paper", x0: farmTime(ep.start),
        x1: farmTime(ep.end === null ? end + RANGE_MS["7d"] : ep.end), y0: 0, y1: 1,
        fillcolor: colour, opacity: 0.1, line: { width: 0 }, layer: "below",
        name: "alert-episode-" + ep.episode,
      });
    });
    alertLevels(alerts).forEach(function (level) {
      var colour = SEVERITY_COLOURS[level.rule.severity] || SEVERITY_COLOURS.warning;
      shapes.push({
        type: "line", xref: "paper", yref: "y", x0: 0, x1: 1, y0: level.y, y1: level.y,
        line: { color: colour, width: level.clear ? 1 : 1.5, dash: level.clear ? "dash" : "solid" },
        label: {
          text: level.clear ? "clears " + formatValue(level.y) : level.rule.name + " " + formatValue(level.y),
          textposition: "end", yanchor: "bottom", font: { size: 10, color: colour },
        },
        name: (level.clear ? "alert-clear-" : "alert-threshold-") + level.rule.id,
      });
    });
    return shapes;
  }

  // The y-axis never magnifies noise: at least the metric's span (dashboard/charts.py min_span).
  // It also takes in the alert rules' levels, so their lines are on the chart.
  function chartYRange(data) {
    var low = Infinity;
    var high = -Infinity;
    alertLevels(data.alerts).forEach(function (level) {
      low = Math.min(low, level.y);
      high = Math.max(high, level.y);
    });
    [data.min, data.max, data.avg].forEach(function (column) {
      column.forEach(function (v) {
        if (v !== null) {
          low = Math.min(low, v);
          high = Math.max(high, v);
        }
      });
    });
    chart.yData = low <= high ? [low, high] : null;
    chart.yMeta = data.sensor;
    return yRangeOf(chart.yData);
  }

  function yRangeOf(extent) {
    if (!extent) return undefined;
    var meta = chart.yMeta;
    var w = yWindow(extent[0], extent[1], meta.span || 0, meta.min, meta.max);
    var pad = (w[1] - w[0]) * 0.06 || 1;
    return [w[0] - pad, w[1] + pad];
  }

  function chartZoomReset() {
    if (!window.Plotly || !chart.ready) return;
    var end = serverNow();
    chart.userZoomed = false;
    dialog.querySelector('[data-action="reset-zoom"]').hidden = true;
    window.Plotly.relayout(plotNode, {
      "xaxis.range": [farmTime(end - RANGE_MS[chart.range]), farmTime(end)],
      "yaxis.range": yRangeOf(chart.yData),
    });
  }

  function humanSeconds(s) {
    if (s < 120) return s + " s";
    if (s < 7200) return Math.round(s / 60) + " min";
    return (s / 3600).toFixed(1).replace(/\.0$/, "") + " h";
  }

  function chartExtend(sensorId, points, partial) {
    if (chart.sensorId !== sensorId) return;
    renderChartNow(cards[sensorId]);
    if (partial) {
      loadSeries(); // the update carried only the newest of many points: redraw from the server
      return;
    }
    Array.prototype.push.apply(chart.pending, points);
    if (!chart.flushTimer) {
      chart.flushTimer = window.setTimeout(flushChart, CHART_FLUSH_MS);
    }
  }

  function flushChart() {
    chart.flushTimer = null;
    if (!chart.ready || !chart.pending.length) return;
    var points = chart.pending.sort(function (a, b) { return a[0] - b[0]; });
    chart.pending = [];
    var xs = points.map(function (p) { return farmTime(p[0]); });
    var ys = points.map(function (p) { return p[1]; });
    var Plotly = window.Plotly;
    var notes = points.map(function () {
      return "";
    });
    Plotly.extendTraces(
      plotNode,
      { x: [xs, xs, xs], y: [ys, ys, ys], customdata: [notes, notes, notes] },
      [0, 1, 2],
      CHART_MAX_POINTS
    );
    if (!chart.userZoomed) {
      var end = serverNow();
      var extent = chart.yData || [ys[0], ys[0]];
      chart.yData = [Math.min.apply(null, [extent[0]].concat(ys)), Math.max.apply(null, [extent[1]].concat(ys))];
      chart.sliding = true;
      Plotly.relayout(plotNode, {
        "xaxis.range": [farmTime(end - RANGE_MS[chart.range]), farmTime(end)],
        "yaxis.range": yRangeOf(chart.yData),
      }).then(
        function () {
          chart.sliding = false;
        }
      );
    }
  }

  function chartCatchUp() {
    if (chart.sensorId !== null) loadSeries();
  }

  function bindChartControls() {
    root.addEventListener("click", function (event) {
      var opener = event.target.closest('[data-action="open-chart"]');
      if (opener) {
        openChart(opener.closest(".metric").getAttribute("data-sensor-id"));
      }
    });
    if (!dialog) return;
    dialog.addEventListener("click", function (event) {
      if (event.target === dialog) {
        closeChart(); // a click on the backdrop
        return;
      }
      if (event.target.closest('[data-action="close-chart"]')) {
        closeChart();
        return;
      }
      if (event.target.closest('[data-action="reset-zoom"]')) {
        chartZoomReset();
        return;
      }
      if (event.target.closest('[data-action="download-chart"]')) {
        if (window.Plotly && chart.ready) {
          window.Plotly.downloadImage(plotNode, { format: "png", filename: chart.filename, width: 1200, height: 600 });
        }
        return;
      }
      var button = event.target.closest("[data-range]");
      if (button) {
        setRange(button.getAttribute("data-range"));
        chartUrlSet();
        loadSeries();
      }
    });
    dialog.addEventListener("close", function () {
      if (chart.sensorId !== null) closeChart();
    });
  }

  // ---- Start -----------------------------------------------------------------------------

  readCards();
  readRows();
  bindChartControls();
  var dismissButton = root.querySelector('[data-action="dismiss-critical"]');
  if (dismissButton) dismissButton.addEventListener("click", hideCritical);
  var reloadButton = root.querySelector('[data-action="reload"]');
  if (reloadButton) {
    reloadButton.addEventListener("click", function () {
      location.reload();
    });
  }
  window.setInterval(tick, 1000);
  window.addEventListener("online", function () {
    if (live.state === "reconnecting") connect();
  });
  connect();
  tick();
  chartFromUrl();
  preloadPlotly();

  window.furrow = {
    get state() {
      return live.state;
    },
    get seq() {
      return live.seq;
    },
    get lastMessageAt() {
      return live.lastMessageAt;
    },
    get socket() {
      return live.socket;
    },
    farm: config.farm,
    stats: live.stats,
    onMessage: function (fn) {
      listeners.push(fn);
    },
    openChart: openChart,
    closeChart: closeChart,
    card: function (sensorId) {
      var card = cards[String(sensorId)];
      return card ? { value: card.value, ts: card.ts, state: card.state, alert: card.alert } : null;
    },
    chartShapes: function () {
      return chart.ready && plotNode.layout ? (plotNode.layout.shapes || []).map(function (s) { return s.name; }) : [];
    },
  };
})();
