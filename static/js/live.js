// Live counts: keeps the count on a letter or tally page current without a reload.
// The page is complete without this script; it only refreshes the numbers. It listens to
// Server-Sent Events and falls back to polling the JSON API where those are unavailable.
(function () {
  "use strict";
  var box = document.querySelector("[data-live-events]");
  if (!box) { return; }

  function format(number) { return number.toLocaleString("en-US"); }

  function show(data) {
    var count = box.querySelector("[data-live-count] strong");
    if (count) { count.textContent = format(data.verified_count); }
    var rows = box.querySelectorAll("[data-live-orgs] tbody tr");
    data.organizations.forEach(function (org) {
      Array.prototype.forEach.call(rows, function (row) {
        if (row.cells[0].textContent === org.name) { row.cells[1].textContent = format(org.count); }
      });
    });
    var asOf = document.querySelector("[data-live-as-of]");
    if (asOf) {
      var now = new Date();
      asOf.setAttribute("datetime", now.toISOString());
      asOf.textContent = now.toISOString().replace("T", " ").slice(0, 19) + " UTC";
    }
  }

  var polling = false;
  function poll() {
    if (polling) { return; }
    polling = true;
    var again = function () { window.setTimeout(function () { polling = false; poll(); }, 5000); };
    window.fetch(box.getAttribute("data-live-poll"), { headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) { if (data) { show(data); } })
      .catch(function () {})
      .then(again);
  }

  if (window.EventSource) {
    var source = new window.EventSource(box.getAttribute("data-live-events"));
    source.addEventListener("count", function (event) { show(JSON.parse(event.data)); });
    source.onerror = function () {
      // The browser reconnects by itself after a normal end of stream; if it gave up
      // (an error status, a proxy that buffers), poll instead.
      if (source.readyState === window.EventSource.CLOSED) { poll(); }
    };
  } else if (window.fetch) {
    poll();
  }
}());
