/*
 * Furrow — small shared helpers for every page (no dependencies).
 *
 *   <time datetime="2025-11-21T10:04:00+00:00" data-relative>4 minutes ago</time>
 *
 * The server renders the text once; this keeps it true while the page stays open (a
 * dashboard on a wall screen). Pages that change times live call
 * Furrow.refreshRelativeTimes(root) after updating the datetime attribute.
 *
 *   <span class="statusbar-seg is-online" data-count="7"></span>
 *
 * A status bar segment's share is set here (el.style) rather than in a style="" attribute,
 * which the Content-Security-Policy would have to allow.
 */
(function () {
  "use strict";

  var STEPS = [
    ["year", 365 * 24 * 3600],
    ["month", 30 * 24 * 3600],
    ["week", 7 * 24 * 3600],
    ["day", 24 * 3600],
    ["hour", 3600],
    ["minute", 60],
  ];
  var format = new Intl.RelativeTimeFormat(document.documentElement.lang || undefined, { numeric: "auto" });

  function relativeTime(date, now) {
    var seconds = Math.round((date.getTime() - (now || Date.now())) / 1000);
    if (Math.abs(seconds) < 45) {
      return "just now";
    }
    for (var i = 0; i < STEPS.length; i++) {
      var unit = STEPS[i][0];
      var size = STEPS[i][1];
      if (Math.abs(seconds) >= size || unit === "minute") {
        return format.format(Math.round(seconds / size), unit);
      }
    }
    return format.format(seconds, "second");
  }

  function refreshRelativeTimes(root) {
    var nodes = (root || document).querySelectorAll("time[data-relative][datetime]");
    for (var i = 0; i < nodes.length; i++) {
      var when = new Date(nodes[i].getAttribute("datetime"));
      if (!isNaN(when.getTime())) {
        nodes[i].textContent = relativeTime(when);
        nodes[i].title = when.toLocaleString();
      }
    }
  }

  function sizeStatusBars(root) {
    var segments = (root || document).querySelectorAll(".statusbar-seg[data-count]");
    for (var i = 0; i < segments.length; i++) {
      segments[i].style.flexGrow = segments[i].getAttribute("data-count");
    }
  }

  window.Furrow = {
    relativeTime: relativeTime,
    refreshRelativeTimes: refreshRelativeTimes,
    sizeStatusBars: sizeStatusBars,
  };
  document.addEventListener("DOMContentLoaded", function () {
    sizeStatusBars();
    refreshRelativeTimes();
    window.setInterval(refreshRelativeTimes, 30000);
  });
})();
