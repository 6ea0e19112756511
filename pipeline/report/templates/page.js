(function () {
  "use strict";
  // Sorts a table by the clicked column: numbers by value (data-v), other cells as text;
  // empty or non-numeric values of a numeric column stay last in either direction.
  function key(td) {
    var v = td ? td.getAttribute("data-v") : "";
    if (v === null) { v = td.textContent; }
    // Number() reads the whole string ("1e-05" too) and gives NaN for any text.
    var f = Number(v);
    return { s: v, f: (v.trim() !== "" && isFinite(f)) ? f : null };
  }
  function sortBy(th) {
    var table = th.closest("table"), body = table.tBodies[0];
    var row = th.parentNode;
    var i = 0;
    for (var k = 0; k < row.children.length && row.children[k] !== th; k++) {
      i += row.children[k].colSpan || 1;
    }
    var asc = th.getAttribute("aria-sort") !== "ascending";
    table.querySelectorAll("thead th").forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", asc ? "ascending" : "descending");
    // Group label rows (no data) keep their place: rows are sorted within each group.
    var groups = [[]], heads = [null];
    Array.prototype.forEach.call(body.rows, function (r) {
      if (r.classList.contains("group-row")) { groups.push([]); heads.push(r); }
      else { groups[groups.length - 1].push(r); }
    });
    groups.forEach(function (rows, g) {
      rows.sort(function (a, b) {
        var x = key(a.cells[i]), y = key(b.cells[i]);
        if (x.f !== null || y.f !== null) {
          if (x.f === null) { return 1; }
          if (y.f === null) { return -1; }
          return asc ? x.f - y.f : y.f - x.f;
        }
        return asc ? x.s.localeCompare(y.s) : y.s.localeCompare(x.s);
      });
      if (heads[g]) { body.appendChild(heads[g]); }
      rows.forEach(function (r) { body.appendChild(r); });
    });
  }
  document.querySelectorAll("table.sortable thead tr:last-child th").forEach(function (th) {
    th.tabIndex = 0;
    th.addEventListener("click", function () { sortBy(th); });
    th.addEventListener("keydown", function (e) {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortBy(th); }
    });
  });
  document.querySelectorAll("table.sortable thead tr:not(:last-child) th").forEach(function (th) {
    th.tabIndex = -1;
  });

  // Filters: an element carrying data-<key> is hidden when the select for <key> has a value
  // its attribute does not match (data-method holds space-separated tokens); an element that
  // lacks the attribute is never hidden by that select. Sections with no visible row hide too.
  var KEYS = ["task", "case", "restorer", "method"];
  var selects = KEYS.map(function (k) { return document.getElementById("filter-" + k); });
  function matches(el, k, value) {
    if (!value || !el.hasAttribute("data-" + k)) { return true; }
    var v = el.getAttribute("data-" + k);
    return k === "method" ? v.split(" ").indexOf(value) >= 0 : v === value;
  }
  function apply() {
    var chosen = {};
    KEYS.forEach(function (k, j) { chosen[k] = selects[j] ? selects[j].value : ""; });
    var sel = "[data-task],[data-case],[data-restorer],[data-method]";
    document.querySelectorAll("main " + sel).forEach(function (el) {
      if (el.tagName === "SELECT" || el.tagName === "OPTION" || el.matches("section.detail")) {
        return;
      }
      var ok = KEYS.every(function (k) { return matches(el, k, chosen[k]); });
      if (ok) { el.removeAttribute("hidden"); } else { el.setAttribute("hidden", ""); }
    });
    document.querySelectorAll("section.detail").forEach(function (s) {
      var ok = KEYS.every(function (k) { return matches(s, k, chosen[k]); });
      var rows = s.querySelectorAll("tr[data-task]");
      var visible = Array.prototype.some.call(rows, function (r) { return !r.hidden; });
      if (ok && (rows.length === 0 || visible)) { s.removeAttribute("hidden"); }
      else { s.setAttribute("hidden", ""); }
    });
    document.querySelectorAll("main .filtered-block").forEach(function (b) {
      var rows = b.querySelectorAll("tbody tr[data-task],tbody tr[data-method],figure[data-case]");
      var visible = Array.prototype.some.call(rows, function (r) { return !r.hidden; });
      if (rows.length === 0 || visible) { b.removeAttribute("hidden"); }
      else { b.setAttribute("hidden", ""); }
    });
    // A task's group header spans the visible case columns under it.
    document.querySelectorAll("table.overview thead th.task[data-task]").forEach(function (th) {
      var t = th.getAttribute("data-task");
      var cols = th.closest("thead").querySelectorAll("tr:last-child th[data-task]");
      var n = Array.prototype.filter.call(cols, function (c) {
        return c.getAttribute("data-task") === t && !c.hidden;
      }).length;
      th.colSpan = Math.max(1, n);
    });
    var n = document.querySelectorAll("tr.detail-row:not([hidden])").length;
    var out = document.getElementById("filter-count");
    if (out) { out.textContent = n + " detailed row(s) shown"; }
  }
  selects.forEach(function (s) { if (s) { s.addEventListener("change", apply); } });
  apply();
  // A drill-down link into a hidden section clears the filters first.
  document.querySelectorAll("a.drill,a.to-gallery").forEach(function (a) {
    a.addEventListener("click", function () {
      var t = document.getElementById(a.getAttribute("href").slice(1));
      if (t && t.closest("[hidden]")) {
        selects.forEach(function (s) { if (s) { s.value = ""; } });
        apply();
      }
    });
  });
  document.documentElement.setAttribute("data-ready", "1");
})();
