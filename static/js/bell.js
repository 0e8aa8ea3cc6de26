/*
 * The bell in the header of every signed-in page (templates/base.html):
 *
 *   <a class="bell" data-bell data-bell-socket="/ws/inbox/"> … <span data-bell-count>3</span></a>
 *
 * The server renders the count; this keeps it live over /ws/inbox/ (dashboard/inbox_consumer.py),
 * which sends {"type": "inbox", "unread": N} on connect and whenever the person's notifications
 * change. Each (re)connect brings the current count, so a message missed while offline costs
 * nothing. The socket reconnects with jittered backoff; signed out (4401), it stops.
 */
(function () {
  "use strict";

  var BACKOFF_MIN_MS = 1000;
  var BACKOFF_MAX_MS = 60000;
  var SIGNED_OUT = 4401;

  function start(bell) {
    var countNode = bell.querySelector("[data-bell-count]");
    var path = bell.getAttribute("data-bell-socket");
    var attempts = 0;

    function show(unread) {
      countNode.textContent = unread > 99 ? "99+" : String(unread);
      countNode.hidden = unread === 0;
      bell.setAttribute("aria-label", "Notifications, " + unread + " unread");
      bell.setAttribute("data-unread", String(unread));
    }

    function connect() {
      var socket = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + path);
      socket.onopen = function () {
        attempts = 0;
        bell.setAttribute("data-live", "1");
      };
      socket.onmessage = function (event) {
        var message = JSON.parse(event.data);
        if (message.type === "inbox" && typeof message.unread === "number") {
          show(message.unread);
        }
      };
      socket.onclose = function (event) {
        bell.removeAttribute("data-live");
        if (event.code === SIGNED_OUT) {
          return;
        }
        attempts++;
        var ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * Math.pow(2, attempts - 1));
        window.setTimeout(connect, Math.round(ceiling / 2 + (Math.random() * ceiling) / 2));
      };
    }

    connect();
  }

  document.addEventListener("DOMContentLoaded", function () {
    var bell = document.querySelector("[data-bell]");
    if (bell && "WebSocket" in window) {
      start(bell);
    }
  });
})();
