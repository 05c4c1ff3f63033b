// The live parts of the site: the real address and port, the requests this page made,
// and, on the front page, the request head the browser sent for the echo path.
(function () {
  "use strict";

  var ECHO_PATH = "/.well-known/tinyhttp/echo";
  var loadedAt = new Date();

  function byId(id) {
    return document.getElementById(id);
  }

  function setText(id, text) {
    var el = byId(id);
    if (el) {
      el.textContent = text;
    }
  }

  // Every element marked data-fill="host|hostname|port" shows this server's real
  // address, so the commands on the pages work as typed whatever port tinyhttp got.
  function fillAddress() {
    if (!location.host) {
      return; // opened as a file, not from a server
    }
    var values = {
      host: location.host,
      hostname: location.hostname,
      port: location.port || (location.protocol === "https:" ? "443" : "80")
    };
    var marked = document.querySelectorAll("[data-fill]");
    Array.prototype.forEach.call(marked, function (el) {
      var value = values[el.getAttribute("data-fill")];
      if (value) {
        el.textContent = value;
      }
    });
  }

  // Turn a full URL into a short name like "/style.css".
  function shortName(url) {
    try {
      var u = new URL(url, location.href);
      return u.host === location.host ? u.pathname + u.search : u.href;
    } catch (e) {
      return String(url);
    }
  }

  function showRequests() {
    var list = byId("requests");
    var perf = window.performance;
    if (!list || !perf || typeof perf.getEntriesByType !== "function") {
      return;
    }
    var entries = perf.getEntriesByType("navigation")
      .concat(perf.getEntriesByType("resource"));
    if (entries.length === 0) {
      entries = [{ name: location.href, initiatorType: "navigation" }];
    }

    list.textContent = "";
    entries.forEach(function (entry) {
      var item = document.createElement("li");
      var code = document.createElement("code");
      code.textContent = shortName(entry.name);
      item.appendChild(code);
      var kind = entry.entryType === "navigation" ? "the page itself" : entry.initiatorType;
      if (kind) {
        item.appendChild(document.createTextNode(" \u2014 " + kind));
      }
      list.appendChild(item);
    });

    setText(
      "loaded",
      "Loaded from " + (location.host || "a local file") + " at " +
        loadedAt.toLocaleTimeString() + ". The browser reports " +
        entries.length + (entries.length === 1 ? " request:" : " requests:")
    );
  }

  // The page's own size, as the server's Content-Length header told the browser.
  function showLength() {
    var perf = window.performance;
    var nav = perf && perf.getEntriesByType ? perf.getEntriesByType("navigation")[0] : null;
    if (nav && nav.decodedBodySize) {
      setText("length", String(nav.decodedBodySize));
    }
  }

  function echoOff(reason) {
    var pre = byId("echo");
    pre.className += " off";
    pre.textContent =
      "The echo is off on this server" + reason + ", so there is nothing to show here. " +
      "tinyhttp answers it only while it listens on a loopback address such as 127.0.0.1 " +
      "(or a Unix socket), and not when started with --no-echo. To see a request anyway, " +
      "run curl -v against this server, or start tinyhttp with --trace and watch it " +
      "print every request it receives.";
  }

  // Ask for the echo path; tinyhttp answers with the head of this very request.
  function showEcho() {
    if (!byId("echo")) {
      return;
    }
    if (!window.fetch || !location.host) {
      echoOff(" (or this browser cannot fetch it)");
      return;
    }
    setText("echo", "Asking tinyhttp\u2026");
    fetch(ECHO_PATH, { cache: "no-store", credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("status " + response.status);
        }
        return response.text();
      })
      .then(function (text) {
        // Line ends are CRLF, as on the wire; the <pre> shows them as plain line breaks.
        setText("echo", text.replace(/\r\n/g, "\n").replace(/\n+$/, "\n"));
      })
      .catch(function (error) {
        echoOff(" (" + error.message + ")");
      })
      .then(showRequests); // the echo is one more request for the list
  }

  fillAddress();
  showLength();
  showEcho();

  // Wait for the images and everything else, so the list is complete.
  if (document.readyState === "complete") {
    showRequests();
  } else {
    window.addEventListener("load", showRequests);
  }
})();
