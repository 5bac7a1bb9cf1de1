// Live counts: keeps the count on a letter or tally page current without a reload.
// The page is complete without this script; it only refreshes the numbers. It listens to
// Server-Sent Events and falls back to polling the JSON API where those are unavailable.
(function () {
  "use strict";
  var box = document.querySelector("[data-live-events]");
  if (!box) { return; }

  // Numbers and words as the page has them, in the reader's language (<html lang>).
  var language = document.documentElement.lang || "en";
  function format(number) { return number.toLocaleString(language); }

  // The count sits in a polite live region: read it out whole ("2 verified signatures",
  // not "2"), and only when it changed, so opening the page announces nothing.
  var count = box.querySelector("[data-live-count]");
  if (count) { count.setAttribute("aria-atomic", "true"); }

  function showCount(number) {
    var strong = count && count.querySelector("strong");
    if (!strong || strong.textContent === format(number)) { return false; }
    strong.textContent = format(number);
    // The words after the number, for one and for more, as the page gives them translated.
    var words = strong.nextSibling;
    var one = count.getAttribute("data-live-one");
    var other = count.getAttribute("data-live-other");
    if (words && words.nodeType === 3 && one && other) {
      var text = words.nodeValue;
      var now = number === 1 ? one : other;
      words.nodeValue = text.indexOf(other) >= 0 ? text.replace(other, now) : text.replace(one, now);
    }
    return true;
  }

  function showOrganizations(organizations) {
    var body = box.querySelector("[data-live-orgs] tbody");
    if (!body) { return; }
    var rows = document.createDocumentFragment();
    organizations.forEach(function (org) {
      var row = document.createElement("tr");
      [org.name, format(org.count)].forEach(function (text) {
        row.appendChild(document.createElement("td")).textContent = text;
      });
      rows.appendChild(row);
    });
    while (body.firstChild) { body.removeChild(body.firstChild); }
    body.appendChild(rows);
  }

  function show(data) {
    if (!showCount(data.verified_count)) { return; }
    showOrganizations(data.organizations);
    var asOf = document.querySelector("[data-live-as-of]");
    if (asOf) {
      var now = new Date();
      asOf.setAttribute("datetime", now.toISOString().slice(0, 19) + "Z");
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
