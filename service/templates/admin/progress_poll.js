// Included inside the script element of the pages with a live progress bar (campaign, import).
// pollProgress(url, percentId, update): GET url as JSON, show p.percent on #progress-bar
// and #<percentId> and p.status on the #status badge, then call update(p) for the rest of
// the page; it returns the milliseconds to the next poll, or nothing to stop. A failed
// request (or a body that is not JSON) is retried after 3 s.
function pollProgress(url, percentId, update) {
  function poll() {
    fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) { return r.json(); })
      .then(function (p) {
        var bar = document.getElementById("progress-bar");
        bar.style.width = p.percent + "%";
        bar.setAttribute("aria-valuenow", p.percent);
        document.getElementById(percentId).textContent = p.percent;
        var status = document.getElementById("status");
        status.textContent = p.status;
        status.className = "badge " + p.status;
        var next = update(p);
        if (next) { setTimeout(poll, next); }
      }, function () { setTimeout(poll, 3000); });
  }
  poll();
}
