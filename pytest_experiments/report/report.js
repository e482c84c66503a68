/* The pytest-experiments report: builds the page from the JSON data embedded in it.
 * Written for pytest-experiments (MIT). No network, no library. Every value from the data is
 * put into the page with textContent or setAttribute, never parsed as HTML. */
(function () {
  "use strict";
  var DATA = JSON.parse(document.getElementById("xp-data").textContent);
  var RUNS = DATA.runs;
  var BY_ID = {};
  RUNS.forEach(function (run, index) { run.index = index; BY_ID[run.id] = run; });
  var EXPERIMENTS = {};
  DATA.experiments.forEach(function (exp) { EXPERIMENTS[exp.key] = exp; });
  var STATUSES = ["passed", "failed", "error", "skipped", "xfailed", "xpassed", "paused", "interrupted", "running"];
  var PAGE = 100;
  var SVG = "http://www.w3.org/2000/svg";
  var COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"];

  // -- small helpers --------------------------------------------------------------------------
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    setAll(node, attrs);
    (children || []).forEach(function (child) {
      if (child === null || child === undefined) return;
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }
  function sv(tag, attrs) {
    var node = document.createElementNS(SVG, tag);
    setAll(node, attrs);
    return node;
  }
  function setAll(node, attrs) {
    Object.keys(attrs || {}).forEach(function (key) {
      var value = attrs[key];
      if (value === null || value === undefined || value === false) return;
      if (key === "text") node.textContent = String(value);
      else if (key.slice(0, 2) === "on") node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, String(value));
    });
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }
  function num(value) {
    if (typeof value === "number") return value;
    if (value === "nan") return NaN;
    if (value === "inf") return Infinity;
    if (value === "-inf") return -Infinity;
    return NaN;
  }
  function isNumeric(value) { return typeof value === "number" || value === "nan" || value === "inf" || value === "-inf"; }
  function fmt(value) {
    if (value === null || value === undefined) return "";
    if (typeof value === "number") {
      if (Number.isInteger(value)) return String(value);
      var abs = Math.abs(value);
      return abs !== 0 && (abs < 1e-3 || abs >= 1e6) ? value.toExponential(3) : String(+value.toPrecision(5));
    }
    if (typeof value === "string") return value;
    return JSON.stringify(value);
  }
  function when(seconds) {
    if (seconds === null || seconds === undefined) return "";
    return new Date(seconds * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC";
  }
  function took(seconds) {
    if (seconds === null || seconds === undefined) return "";
    if (seconds < 60) return (+seconds.toPrecision(3)) + " s";
    var minutes = Math.round(seconds / 60);
    return minutes < 60 ? minutes + " min" : Math.floor(minutes / 60) + " h " + (minutes % 60) + " min";
  }
  function statusBadge(status) {
    var known = STATUSES.indexOf(status) >= 0 ? status : "other";
    return el("span", { "class": "status status-" + known, text: status });
  }
  function shortNode(node) { var at = node.indexOf("::"); return at >= 0 ? node.slice(at + 2) : node; }
  function runLink(run) { return el("a", { href: "#run=" + encodeURIComponent(run.id), title: run.node, text: shortNode(run.node) }); }
  function flatten(value, prefix, out) {
    if (value !== null && typeof value === "object" && !Array.isArray(value) && Object.keys(value).length) {
      Object.keys(value).forEach(function (key) { flatten(value[key], prefix ? prefix + "." + key : key, out); });
    } else if (prefix) {
      out[prefix] = value;
    }
    return out;
  }
  function table(caption, headers, rows, attrs) {
    var head = el("tr", {}, headers.map(function (name) { return el("th", { scope: "col", text: name }); }));
    var body = el("tbody", {}, rows.map(function (cells) {
      return el("tr", {}, cells.map(function (cell, index) {
        var content = cell instanceof Node ? [cell] : [fmt(cell)];
        return el(index === 0 ? "th" : "td", index === 0 ? { scope: "row" } : {}, content);
      }));
    }));
    return el("table", attrs || {}, [el("caption", { text: caption }), el("thead", {}, [head]), body]);
  }
  function keyValueTable(caption, mapping) {
    var keys = Object.keys(mapping || {});
    if (!keys.length) return el("p", { "class": "empty", text: caption + ": none" });
    return table(caption, ["name", "value"], keys.map(function (key) { return [key, mapping[key]]; }), { "class": "kv" });
  }
  function sessionOf(run) { return DATA.sessions[run.session] || {}; }

  // -- the tooltip (hover shows the run) -------------------------------------------------------
  var tooltip = el("div", { id: "tooltip", role: "tooltip", hidden: "hidden" });
  document.body.appendChild(tooltip);
  function showTip(event, lines) {
    clear(tooltip);
    lines.forEach(function (line, index) { tooltip.appendChild(el(index ? "div" : "strong", { text: line })); });
    tooltip.hidden = false;
    tooltip.style.left = (event.pageX + 12) + "px";
    tooltip.style.top = (event.pageY + 12) + "px";
  }
  function hideTip() { tooltip.hidden = true; }

  // -- plots (inline SVG) ----------------------------------------------------------------------
  var W = 440, H = 270, M = { left: 58, right: 12, top: 14, bottom: 40 };
  function ticks(lo, hi, count) {
    if (!(hi > lo)) return [lo];
    var step = Math.pow(10, Math.floor(Math.log10((hi - lo) / count)));
    var err = (hi - lo) / count / step;
    step *= err >= 7.5 ? 10 : err >= 3.5 ? 5 : err >= 1.5 ? 2 : 1;
    var out = [];
    for (var t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) out.push(+t.toPrecision(12));
    return out;
  }
  function scale(values, from, to, log) {
    var finite = values.filter(function (v) { return isFinite(v) && (!log || v > 0); });
    var lo = Math.min.apply(null, finite), hi = Math.max.apply(null, finite);
    if (!finite.length) { lo = 0; hi = 1; }
    if (log) { lo = Math.log10(lo); hi = Math.log10(hi); }
    if (lo === hi) { lo -= 0.5; hi += 0.5; } else { var pad = (hi - lo) * 0.05; lo -= pad; hi += pad; }
    var map = function (v) { var x = log ? Math.log10(v) : v; return from + (x - lo) / (hi - lo) * (to - from); };
    map.ticks = log
      ? ticks(lo, hi, 5).filter(function (t) { return Number.isInteger(t); }).map(function (t) { return Math.pow(10, t); })
      : ticks(lo, hi, 5);
    if (log && map.ticks.length < 2) map.ticks = [Math.pow(10, lo), Math.pow(10, hi)];
    return map;
  }
  function frame(title, xLabel, yLabel) {
    var svg = sv("svg", { viewBox: "0 0 " + W + " " + H, width: W, height: H, role: "img", "class": "plot" });
    svg.appendChild(sv("title", { text: title }));
    svg.appendChild(sv("rect", { x: M.left, y: M.top, width: W - M.left - M.right, height: H - M.top - M.bottom, "class": "area" }));
    var xl = sv("text", { x: (M.left + W - M.right) / 2, y: H - 6, "class": "label", "text-anchor": "middle", text: xLabel });
    var yl = sv("text", { x: 12, y: (M.top + H - M.bottom) / 2, "class": "label", "text-anchor": "middle",
      transform: "rotate(-90 12 " + (M.top + H - M.bottom) / 2 + ")", text: yLabel });
    svg.appendChild(xl); svg.appendChild(yl);
    return svg;
  }
  function axes(svg, x, y, xCategories) {
    var bottom = H - M.bottom;
    (xCategories || x.ticks).forEach(function (t, i) {
      var px = xCategories ? x(i) : x(t);
      svg.appendChild(sv("line", { x1: px, x2: px, y1: bottom, y2: bottom + 4, "class": "tick" }));
      svg.appendChild(sv("text", { x: px, y: bottom + 15, "text-anchor": "middle", "class": "tick", text: xCategories ? t : fmt(t) }));
    });
    y.ticks.forEach(function (t) {
      var py = y(t);
      svg.appendChild(sv("line", { x1: M.left, x2: W - M.right, y1: py, y2: py, "class": "grid" }));
      svg.appendChild(sv("text", { x: M.left - 4, y: py + 4, "text-anchor": "end", "class": "tick", text: fmt(t) }));
    });
  }
  function hoverable(svg) {
    svg.addEventListener("mouseover", function (event) {
      var index = event.target.getAttribute && event.target.getAttribute("data-run");
      if (index === null || index === undefined) return;
      var run = RUNS[+index];
      var lines = [run.node, "status: " + run.status];
      var extra = event.target.getAttribute("data-tip");
      if (extra) lines.push(extra);
      showTip(event, lines);
    });
    svg.addEventListener("mouseout", hideTip);
    svg.addEventListener("click", function (event) {
      var index = event.target.getAttribute && event.target.getAttribute("data-run");
      if (index !== null && index !== undefined) location.hash = "run=" + encodeURIComponent(RUNS[+index].id);
    });
    return svg;
  }
  var T95 = [12.71, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.16, 2.145, 2.131];
  function meanInterval(values) {
    var n = values.length, mean = values.reduce(function (a, b) { return a + b; }, 0) / n;
    if (n < 2) return { mean: mean, low: mean, high: mean, n: n };
    var sd = Math.sqrt(values.reduce(function (a, v) { return a + (v - mean) * (v - mean); }, 0) / (n - 1));
    var half = (n - 1 <= T95.length ? T95[n - 2] : 1.96) * sd / Math.sqrt(n);
    return { mean: mean, low: mean - half, high: mean + half, n: n };
  }

  /* Each metric against one varied parameter: a point per run; with a seed-like axis, the mean
   * and 95% interval of each group of runs that differ only in it. */
  function paramPlot(exp, runs, param, metric) {
    var points = runs.filter(function (r) { return r.params[param] !== undefined && isNumeric(r.metrics[metric]); })
      .filter(function (r) { return isFinite(num(r.metrics[metric])); });
    var numericX = points.every(function (r) { return typeof r.params[param] === "number"; });
    var categories = null, xs;
    if (numericX) {
      xs = points.map(function (r) { return r.params[param]; });
    } else {
      categories = [];
      points.forEach(function (r) { var c = fmt(r.params[param]); if (categories.indexOf(c) < 0) categories.push(c); });
      xs = points.map(function (r) { return categories.indexOf(fmt(r.params[param])); });
    }
    var positive = numericX && xs.length && xs.every(function (v) { return v > 0; });
    var log = positive && Math.max.apply(null, xs) / Math.min.apply(null, xs) >= 100;
    var x = categories ? scale([-0.5, categories.length - 0.5], M.left, W - M.right, false) : scale(xs, M.left, W - M.right, log);
    var ys = points.map(function (r) { return num(r.metrics[metric]); });
    var groups = exp.seed && exp.seed !== param ? seedGroups(points, exp, param, metric) : [];
    groups.forEach(function (g) { ys.push(g.stats.low, g.stats.high); });
    var y = scale(ys, H - M.bottom, M.top, false);
    var svg = frame(metric + " against " + param, param + (log ? " (log)" : ""), metric);
    axes(svg, x, y, categories);
    points.forEach(function (r, i) {
      var cx = x(xs[i]) + (exp.seed ? jitter(r.index) : 0);
      svg.appendChild(sv("circle", { cx: cx, cy: y(ys[i]), r: 3.5, "class": "point", "data-run": r.index,
        "data-tip": param + " = " + fmt(r.params[param]) + ", " + metric + " = " + fmt(r.metrics[metric]) }));
    });
    groups.forEach(function (g) {
      var gx = categories ? x(categories.indexOf(fmt(g.x))) : x(g.x), s = g.stats;
      svg.appendChild(sv("line", { x1: gx, x2: gx, y1: y(s.low), y2: y(s.high), "class": "interval" }));
      svg.appendChild(sv("rect", { x: gx - 4, y: y(s.mean) - 4, width: 8, height: 8, "class": "mean",
        "data-run": g.first, "data-tip": "mean " + fmt(s.mean) + " [" + fmt(s.low) + ", " + fmt(s.high) + "] over " + s.n + " " + exp.seed + " values" }));
    });
    return hoverable(svg);
  }
  function jitter(index) { return ((index * 7919) % 11 - 5) * 0.8; }
  function seedGroups(points, exp, param, metric) {
    var groups = {};
    points.forEach(function (r) {
      var key = JSON.stringify(exp.varied.filter(function (p) { return p !== exp.seed; }).map(function (p) { return r.params[p]; }));
      (groups[key] = groups[key] || { x: r.params[param], first: r.index, values: [] }).values.push(num(r.metrics[metric]));
    });
    return Object.keys(groups).map(function (key) { return groups[key]; })
      .filter(function (g) { return g.values.length > 1; })
      .map(function (g) { g.stats = meanInterval(g.values); return g; });
  }

  /* Series over steps: one line per run, at most `limit` runs drawn. */
  function seriesPlot(title, runs, metric, limit, coloured) {
    var drawn = runs.filter(function (r) { return r.series && r.series[metric]; }).slice(0, limit);
    var xs = [], ys = [];
    drawn.forEach(function (r) { r.series[metric].forEach(function (p) { xs.push(num(p[0])); ys.push(num(p[1])); }); });
    var x = scale(xs, M.left, W - M.right, false), y = scale(ys, H - M.bottom, M.top, false);
    var svg = frame(title, "step", metric);
    axes(svg, x, y, null);
    drawn.forEach(function (r, i) {
      var d = r.series[metric].filter(function (p) { return isFinite(num(p[1])); })
        .map(function (p, j) { return (j ? "L" : "M") + x(num(p[0])).toFixed(1) + " " + y(num(p[1])).toFixed(1); }).join("");
      var last = r.series[metric][r.series[metric].length - 1];
      var path = sv("path", { d: d, "class": "line", "data-run": r.index, "data-tip": metric + " at step " + fmt(last[0]) + ": " + fmt(last[1]) });
      if (coloured) path.style.stroke = COLOURS[i % COLOURS.length]; // a style: the class's stroke would win over an attribute
      svg.appendChild(path);
    });
    var figure = el("figure", {}, [hoverable(svg)]);
    var total = runs.filter(function (r) { return r.series && r.series[metric]; }).length;
    if (total > drawn.length) figure.appendChild(el("figcaption", { text: "the first " + drawn.length + " of " + total + " runs" }));
    return figure;
  }

  // -- the overview ----------------------------------------------------------------------------
  function overview() {
    var rows = DATA.experiments.map(function (exp) {
      var counts = STATUSES.filter(function (s) { return exp.counts[s]; })
        .map(function (s) { return exp.counts[s] + " " + s; }).join(", ");
      return [exp.key, exp.runs, counts, took(exp.time), exp.commits.map(function (c) { return c.slice(0, 12); }).join(", ") || "unknown"];
    });
    return el("section", { id: "overview", "aria-labelledby": "overview-h" }, [
      el("h2", { id: "overview-h", text: "Experiments" }),
      table("Runs per experiment by status, their total time and the git commits of their sessions",
        ["experiment", "runs", "by status", "total time", "commit"], rows, { "class": "summary" })
    ]);
  }

  // -- the results table -----------------------------------------------------------------------
  function columnsOf() {
    var params = {}, metrics = {};
    RUNS.forEach(function (r) {
      Object.keys(r.params).forEach(function (k) { params[k] = params[k] || isNumeric(r.params[k]) || r.params[k] === null; });
      Object.keys(r.metrics).forEach(function (k) { metrics[k] = true; });
    });
    RUNS.forEach(function (r) {
      Object.keys(params).forEach(function (k) { if (r.params[k] !== undefined && r.params[k] !== null && !isNumeric(r.params[k])) params[k] = false; });
    });
    var cols = [
      { name: "run", get: function (r) { return r.node; }, cell: runLink },
      { name: "experiment", get: function (r) { return r.exp; }, cell: function (r) { return el("span", { title: r.exp, text: EXPERIMENTS[r.exp].name }); } },
      { name: "status", get: function (r) { return r.status; }, cell: function (r) { return statusBadge(r.status); } }
    ];
    Object.keys(params).forEach(function (k) { cols.push({ name: k, group: "parameter", numeric: params[k], get: function (r) { return r.params[k]; } }); });
    Object.keys(metrics).forEach(function (k) { cols.push({ name: k, group: "metric", numeric: true, get: function (r) { return r.metrics[k]; } }); });
    cols.push({ name: "duration", numeric: true, get: function (r) { return r.duration; }, cell: function (r) { return took(r.duration); } });
    cols.push({ name: "started", numeric: true, get: function (r) { return r.started; }, cell: function (r) { return when(r.started); } });
    return cols;
  }
  var COLUMNS = columnsOf();
  var state = { sort: null, descending: false, shown: PAGE, order: RUNS.slice(), selected: {} };
  var SEARCH = RUNS.map(function (r) {
    return [r.node, r.id, r.status, r.exp, JSON.stringify(r.params), JSON.stringify(r.tags), r.error || ""].join(" ").toLowerCase();
  });

  function resultsSection() {
    var filter = el("input", { id: "filter", type: "search", placeholder: "node id, parameter, status, error...", oninput: refresh });
    var status = el("select", { id: "status-filter", onchange: refresh }, [el("option", { value: "", text: "any" })]
      .concat(STATUSES.filter(function (s) { return RUNS.some(function (r) { return r.status === s; }); })
        .map(function (s) { return el("option", { value: s, text: s }); })));
    var experiment = el("select", { id: "experiment-filter", onchange: refresh }, [el("option", { value: "", text: "any" })]
      .concat(DATA.experiments.map(function (e) { return el("option", { value: e.key, text: e.key }); })));
    var compare = el("button", { id: "compare-selected", type: "button", disabled: "disabled", text: "Compare selected (0)",
      onclick: function () { location.hash = "compare=" + Object.keys(state.selected).map(encodeURIComponent).join(","); } });
    var controls = el("div", { "class": "controls" }, [
      el("label", { "for": "filter", text: "Filter " }), filter,
      el("label", { "for": "status-filter", text: " Status " }), status,
      el("label", { "for": "experiment-filter", text: " Experiment " }), experiment, " ", compare
    ]);
    var head = el("tr", {}, [el("th", { scope: "col", text: "select" })].concat(COLUMNS.map(function (col, i) {
      var button = el("button", { type: "button", "class": "sort", "data-col": i, text: col.name,
        title: (col.group ? col.group + " " : "") + col.name + ": sort", onclick: function () { sortBy(i); } });
      return el("th", { scope: "col", "aria-sort": "none", "class": col.group || "" }, [button]);
    })));
    var results = el("table", { id: "results-table", "class": "results" }, [
      el("caption", { text: "Runs: parameters and metrics as columns. Sort with the column buttons." }),
      el("thead", {}, [head]), el("tbody", { id: "results-body" })]);
    var more = el("button", { id: "show-more", type: "button", text: "Show more", onclick: function () { state.shown += PAGE; renderRows(); } });
    return el("section", { id: "results", "aria-labelledby": "results-h" }, [
      el("h2", { id: "results-h", text: "Results" }), controls,
      el("p", { id: "results-count", role: "status", "aria-live": "polite" }),
      el("div", { "class": "scroll" }, [results]), more]);
  }
  function matching() {
    var text = document.getElementById("filter").value.trim().toLowerCase();
    var status = document.getElementById("status-filter").value;
    var experiment = document.getElementById("experiment-filter").value;
    return state.order.filter(function (r) {
      return (!status || r.status === status) && (!experiment || r.exp === experiment) && (!text || SEARCH[r.index].indexOf(text) >= 0);
    });
  }
  function refresh() { state.shown = PAGE; renderRows(); }
  function sortBy(index) {
    state.descending = state.sort === index ? !state.descending : false;
    state.sort = index;
    var col = COLUMNS[index], sign = state.descending ? -1 : 1;
    var keyed = RUNS.map(function (r) { var v = col.get(r); return { r: r, v: col.numeric ? num(v) : fmt(v) }; });
    keyed.sort(function (a, b) {
      if (col.numeric) {
        var an = isNaN(a.v), bn = isNaN(b.v);
        if (an || bn) return an === bn ? a.r.index - b.r.index : an ? 1 : -1; // missing last, either way
        return a.v === b.v ? a.r.index - b.r.index : (a.v < b.v ? -1 : 1) * sign;
      }
      return a.v === b.v ? a.r.index - b.r.index : (a.v < b.v ? -1 : 1) * sign;
    });
    state.order = keyed.map(function (k) { return k.r; });
    document.querySelectorAll("#results-table thead th[aria-sort]").forEach(function (th, i) {
      th.setAttribute("aria-sort", i === index ? (state.descending ? "descending" : "ascending") : "none");
    });
    renderRows();
  }
  function renderRows() {
    var body = clear(document.getElementById("results-body"));
    var rows = matching(), fragment = document.createDocumentFragment();
    rows.slice(0, state.shown).forEach(function (r) {
      var box = el("input", { type: "checkbox", "aria-label": "select " + r.node + " for comparison", "data-id": r.id,
        onchange: function (event) {
          if (event.target.checked) state.selected[r.id] = true; else delete state.selected[r.id];
          var count = Object.keys(state.selected).length, button = document.getElementById("compare-selected");
          button.textContent = "Compare selected (" + count + ")";
          button.disabled = count < 2;
        } });
      if (state.selected[r.id]) box.checked = true;
      var cells = [el("td", {}, [box])];
      COLUMNS.forEach(function (col, i) {
        var content = col.cell ? col.cell(r) : fmt(col.get(r));
        var attrs = col.numeric ? { "class": "num" } : {};
        if (i === 0) { attrs.scope = "row"; cells.push(el("th", attrs, [content])); } else cells.push(el("td", attrs, [content]));
      });
      fragment.appendChild(el("tr", { "data-id": r.id, "class": "status-row-" + (STATUSES.indexOf(r.status) >= 0 ? r.status : "other") }, cells));
    });
    body.appendChild(fragment);
    var shown = Math.min(state.shown, rows.length);
    document.getElementById("results-count").textContent =
      "Showing " + shown + " of " + rows.length + " matching runs (" + RUNS.length + " in all).";
    document.getElementById("show-more").hidden = shown >= rows.length;
  }

  // -- the plots of each experiment -----------------------------------------------------------
  function plotsSection() {
    var section = el("section", { id: "plots", "aria-labelledby": "plots-h" }, [el("h2", { id: "plots-h", text: "Plots" }),
      el("p", { text: "Each metric against each varied parameter, and each metric's series over steps. Hover a point or line for its run; click to open it." })]);
    DATA.experiments.forEach(function (exp, i) {
      var details = el("details", { "class": "experiment", "data-exp": exp.key }, [el("summary", { text: exp.key + " (" + exp.runs + " runs)" })]);
      var drawn = false;
      details.addEventListener("toggle", function () { if (details.open && !drawn) { drawn = true; drawPlots(details, exp); } });
      if (i === 0 && exp.runs <= 2000) details.open = true;
      section.appendChild(details);
    });
    return section;
  }
  function drawPlots(container, exp) {
    var runs = RUNS.filter(function (r) { return r.exp === exp.key; });
    var grid = el("div", { "class": "plots" });
    var axesShown = exp.varied.filter(function (p) { return p !== exp.seed || exp.varied.length === 1; });
    exp.metrics.forEach(function (metric) {
      axesShown.forEach(function (param) { grid.appendChild(el("figure", {}, [paramPlot(exp, runs, param, metric)])); });
      if (runs.some(function (r) { return r.series && r.series[metric]; })) grid.appendChild(seriesPlot(metric + " over steps", runs, metric, 200, false));
    });
    if (exp.seed) container.appendChild(el("p", { text: "Squares: the mean over " + exp.seed + " with its 95% interval." }));
    if (!grid.firstChild) grid.appendChild(el("p", { "class": "empty", text: "Nothing to plot: no parameter varies and no metric has a series." }));
    container.appendChild(grid);
  }

  // -- one run -------------------------------------------------------------------------------
  function runView(id) {
    var run = BY_ID[id];
    if (!run) return el("section", { id: "run" }, [el("h2", { text: "Unknown run" }), el("p", { text: "No run " + id + " in this report." })]);
    var session = sessionOf(run);
    var summary = {
      "run id": run.id, experiment: run.exp, status: run.status, started: when(run.started), duration: took(run.duration),
      session: run.session, commit: session.commit || "unknown", host: run.host, worker: run.worker
    };
    var parts = [el("h2", { id: "run-h", text: run.node }), el("p", {}, [el("a", { href: "#results", text: "back to the results" })]),
      keyValueTable("Run", summary), keyValueTable("Parameters", run.params), keyValueTable("Metrics", run.metrics),
      keyValueTable("Tags", run.tags)];
    if (run.notes && run.notes.length) {
      parts.push(table("Notes", ["added", "note"], run.notes.map(function (n) { return [when(n.at), n.text]; }), { "class": "notes" }));
    }
    if (run.error || run.traceback) {
      parts.push(el("h3", { text: "Error" }), el("p", { "class": "error", text: run.error || "" }));
      if (run.traceback) parts.push(el("pre", { "class": "traceback", text: run.traceback }));
    }
    parts.push(keyValueTable("Metadata", flatten(run.meta, "", {})));
    parts.push(filesPart(run));
    var series = Object.keys(run.series || {});
    if (series.length) parts.push(el("div", { "class": "plots" }, series.map(function (m) { return seriesPlot(m + " over steps", [run], m, 1, true); })));
    return el("section", { id: "run", "aria-labelledby": "run-h" }, parts);
  }
  function filesPart(run) {
    var part = el("div", { "class": "files" }, [el("h3", { text: "Files" })]);
    if (!run.files.length) { part.appendChild(el("p", { "class": "empty", text: "No files in the run folder." })); return part; }
    var rows = run.files.map(function (f) {
      return [f.name, f.size === null ? "" : f.size + " bytes", f.type, f.kind ? ({ file: "xp.log_artifact", figure: "xp.log_figure", image: "xp.log_image", text: "xp.log_text", dict: "xp.log_dict" }[f.kind] || f.kind) : "written to xp.dir",
        f.omitted ? "not embedded: " + f.omitted : f.data ? "shown below" : ""];
    });
    part.appendChild(table("Files in the run folder", ["file", "size", "type", "logged as", "note"], rows));
    run.files.filter(function (f) { return f.data; }).forEach(function (f) {
      var image = el("img", { alt: f.name, loading: "lazy" });
      image.src = "data:" + f.type + ";base64," + f.data; // type from the report's own list of image types
      part.appendChild(el("figure", { "class": "artefact" }, [image, el("figcaption", { text: f.name })]));
    });
    return part;
  }

  // -- side by side --------------------------------------------------------------------------
  function compareView(ids) {
    var runs = ids.map(function (id) { return BY_ID[id]; }).filter(Boolean);
    var unknown = ids.filter(function (id) { return !BY_ID[id]; });
    var parts = [el("h2", { id: "compare-h", text: "Comparison of " + runs.length + " runs" }),
      el("p", {}, [el("a", { href: "#results", text: "back to the results" })])];
    if (unknown.length) parts.push(el("p", { "class": "error", text: "Not in this report: " + unknown.join(", ") }));
    if (runs.length < 2) {
      parts.push(el("p", { text: "Select two or more runs in the results table and press Compare selected." }));
      return el("section", { id: "compare", "aria-labelledby": "compare-h" }, parts);
    }
    var fields = [];
    function add(group, key, get) { fields.push({ label: group + key, values: runs.map(get) }); }
    add("", "experiment", function (r) { return r.exp; });
    add("", "status", function (r) { return r.status; });
    add("", "duration", function (r) { return r.duration; });
    add("", "commit", function (r) { return sessionOf(r).commit; });
    var flat = runs.map(function (r) { return flatten(r.meta, "", {}); });
    [["params.", "params"], ["metrics.", "metrics"], ["tags.", "tags"], ["metadata.", null]].forEach(function (spec) {
      var keys = {};
      runs.forEach(function (r, i) { Object.keys(spec[1] ? r[spec[1]] || {} : flat[i]).forEach(function (k) { keys[k] = true; }); });
      Object.keys(keys).sort().forEach(function (k) {
        add(spec[0], k, function (r) { var i = runs.indexOf(r); return spec[1] ? (r[spec[1]] || {})[k] : flat[i][k]; });
      });
    });
    var differs = 0;
    var only = el("input", { type: "checkbox", id: "only-differing", onchange: function (event) {
      document.getElementById("compare-table").classList.toggle("only-differing", event.target.checked);
    } });
    var head = el("tr", {}, [el("th", { scope: "col", text: "field" })].concat(runs.map(function (r) {
      return el("th", { scope: "col" }, [runLink(r), el("div", { "class": "id", text: r.id })]);
    })));
    var body = el("tbody", {}, fields.map(function (f) {
      var first = JSON.stringify(f.values[0]);
      var differ = f.values.some(function (v) { return JSON.stringify(v) !== first; });
      if (differ) differs += 1;
      var label = el("th", { scope: "row" }, differ ? [el("span", { "class": "marker", "aria-hidden": "true", text: "≠ " }), f.label,
        el("span", { "class": "visually-hidden", text: " (differs)" })] : [f.label]);
      return el("tr", { "class": differ ? "differs" : "same" }, [label].concat(f.values.map(function (v) { return el("td", { text: fmt(v) }); })));
    }));
    parts.push(el("p", { id: "compare-count", text: differs + " of " + fields.length + " fields differ (marked ≠)." }),
      el("p", {}, [only, el("label", { "for": "only-differing", text: " only the fields that differ" })]),
      el("div", { "class": "scroll" }, [el("table", { id: "compare-table", "class": "compare" }, [
        el("caption", { text: "The selected runs side by side; rows marked ≠ differ." }), el("thead", {}, [head]), body])]));
    var metrics = {};
    runs.forEach(function (r) { Object.keys(r.series || {}).forEach(function (m) { metrics[m] = true; }); });
    var legend = el("ul", { "class": "legend" }, runs.map(function (r, i) {
      return el("li", {}, [el("span", { "class": "swatch", style: "background:" + COLOURS[i % COLOURS.length] }), r.node]);
    }));
    if (Object.keys(metrics).length) {
      parts.push(el("h3", { text: "Series, overlaid" }), legend,
        el("div", { "class": "plots", id: "compare-series" }, Object.keys(metrics).map(function (m) { return seriesPlot(m + " over steps", runs, m, runs.length, true); })));
    }
    return el("section", { id: "compare", "aria-labelledby": "compare-h" }, parts);
  }

  // -- views ---------------------------------------------------------------------------------
  var main = document.getElementById("main");
  var home = el("div", { id: "home" }, [overview(), resultsSection(), plotsSection()]);
  var detail = el("div", { id: "detail", hidden: "hidden" });
  clear(main).appendChild(home);
  main.appendChild(detail);
  function route() {
    var hash = decodeURIComponent(location.hash.replace(/^#/, ""));
    hideTip();
    if (hash.indexOf("run=") === 0 || hash.indexOf("compare") === 0) {
      var view = hash.indexOf("run=") === 0 ? runView(hash.slice(4))
        : compareView(hash.slice(8).split(",").filter(Boolean));
      clear(detail).appendChild(view);
      home.hidden = true; detail.hidden = false;
      window.scrollTo(0, 0);
    } else {
      home.hidden = false; detail.hidden = true;
      var target = hash && document.getElementById(hash);
      if (target) target.scrollIntoView();
    }
  }
  document.getElementById("subtitle").textContent = RUNS.length + " runs from " + DATA.store + ", " + when(DATA.generated);
  if (DATA.compare.length) document.getElementById("compare-link").setAttribute("href", "#compare=" + DATA.compare.map(encodeURIComponent).join(","));
  window.addEventListener("hashchange", route);
  renderRows();
  // --compare RUN RUN: the page opens on the comparison (the hash is set synchronously; its event comes later).
  if (!location.hash && DATA.compare.length) location.hash = "compare=" + DATA.compare.map(encodeURIComponent).join(",");
  route();
  // The ready marker the benchmark and the browser tests wait for.
  window.xpReadyAt = performance.now();
  document.body.setAttribute("data-ready", "true");
})();
