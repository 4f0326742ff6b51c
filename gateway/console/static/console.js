// Casegate console: the kill-switch table refreshes itself (polls every 1.5 s).
// Loaded as a file (the Content-Security-Policy allows no inline script).
"use strict";

(function () {
  const live = document.querySelector("[data-live]");
  if (!live) return;
  const url = live.getAttribute("data-live");
  const table = document.getElementById("switches");
  let busy = false;

  async function poll() {
    if (busy || document.hidden) return;
    busy = true;
    try {
      const resp = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (resp.status === 401) { window.location.assign("/console/login"); return; }
      if (!resp.ok) return;
      const state = await resp.json();
      const version = String(state.version);
      // the rows hold no text fields, so replacing them never loses typing
      if (table.getAttribute("data-version") !== version) {
        document.getElementById("switch-rows").innerHTML = state.rows;
        table.setAttribute("data-version", version);
      }
      document.getElementById("switch-acks").innerHTML = state.acks;
      live.classList.remove("stale");
    } catch (err) {
      live.classList.add("stale");
    } finally {
      busy = false;
    }
  }

  window.setInterval(poll, 1500);
})();
