// Show where this page came from and which requests it took to load it.
(function () {
  "use strict";

  var loadedAt = new Date();

  function setText(id, text) {
    var el = document.getElementById(id);
    if (el) {
      el.textContent = text;
    }
  }

  // The address in the address bar, e.g. "127.0.0.1:8000".
  if (location.host) {
    setText("host", location.host);
    setText("port", location.port || (location.protocol === "https:" ? "443" : "80"));
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
    var list = document.getElementById("requests");
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
  showLength();

  // Wait for the image and everything else, so the list is complete.
  if (document.readyState === "complete") {
    showRequests();
  } else {
    window.addEventListener("load", showRequests);
  }
})();
