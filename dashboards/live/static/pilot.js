/* tingbao pilot evaluation (/pilot): ECharts charts over the page's JSON (#pilot-data):
   a forest plot of the rates of one period (point, 95 % interval bar, one-sided lower bound
   tick) with the milestone of the period's year and the 2020 baseline as lines, the rates of
   the groups over the periods with their intervals, and the difference in differences with
   its four cells. Text from the store is never put into HTML: tooltips are escaped. */
"use strict";
function tingbaoPilot() {
  var data = JSON.parse(document.getElementById("pilot-data").textContent);
  var texts = {};
  document.getElementById("pilot-texts").content.querySelectorAll("[data-text]")
    .forEach(function (s) { texts[s.dataset.text] = s.textContent; });
  function esc(s) {
    return String(s === null || s === undefined ? "" : s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  function f1(v) { return (v === null || v === undefined) ? "—" : Number(v).toFixed(1); }
  var milestoneOf = {};
  data.milestones.forEach(function (m) { milestoneOf[m[0]] = m[1]; });
  var kindSel = document.getElementById("pilot-kind");
  var periodSel = document.getElementById("pilot-period");
  var forest = echarts.init(document.getElementById("pilot-forest"));
  var timeline = echarts.init(document.getElementById("pilot-timeline"));
  var SCOPE_ORDER = { all: 0, group: 1, industry: 2, enterprise: 3 };

  function periods(kind) {
    var seen = {};
    data.rates.forEach(function (r) { if (r.kind === kind) seen[r.period] = true; });
    return Object.keys(seen).sort();
  }

  // an interval bar [lo, hi] on row y (horizontal), or at category x (vertical)
  function intervalSeries(name, points, horizontal, color) {
    return {
      type: "custom", name: name, silent: true, z: 1,
      renderItem: function (params, api) {
        var a, b, cap = 5;
        if (horizontal) {
          a = api.coord([api.value(0), api.value(2)]); b = api.coord([api.value(1), api.value(2)]);
          return { type: "group", children: [
            { type: "line", shape: { x1: a[0], y1: a[1], x2: b[0], y2: b[1] }, style: { stroke: color, lineWidth: 2 } },
            { type: "line", shape: { x1: a[0], y1: a[1] - cap, x2: a[0], y2: a[1] + cap }, style: { stroke: color, lineWidth: 1.5 } },
            { type: "line", shape: { x1: b[0], y1: b[1] - cap, x2: b[0], y2: b[1] + cap }, style: { stroke: color, lineWidth: 1.5 } }] };
        }
        a = api.coord([api.value(0), api.value(1)]); b = api.coord([api.value(0), api.value(2)]);
        return { type: "group", children: [
          { type: "line", shape: { x1: a[0], y1: a[1], x2: b[0], y2: b[1] }, style: { stroke: color, lineWidth: 1.5 } },
          { type: "line", shape: { x1: a[0] - cap, y1: a[1], x2: a[0] + cap, y2: a[1] }, style: { stroke: color, lineWidth: 1 } },
          { type: "line", shape: { x1: b[0] - cap, y1: b[1], x2: b[0] + cap, y2: b[1] }, style: { stroke: color, lineWidth: 1 } }] };
      },
      data: points
    };
  }

  function referenceLines(milestone, axis) {
    var lines = [{ name: texts.baseline, lineStyle: { color: "#868e96", type: "dashed" },
                   label: { position: axis === "yAxis" ? "insideStartTop" : "end", formatter: texts.baseline + " " + data.baseline.value_pct + " %" } }];
    lines[0][axis] = data.baseline.value_pct;
    if (milestone !== undefined && milestone !== null) {
      var m = { name: texts.milestone, lineStyle: { color: "#2b8a3e", width: 2 },
                label: { formatter: texts.milestone + " " + milestone + " %" } };
      m[axis] = milestone;
      lines.push(m);
    }
    return { symbol: "none", silent: true, data: lines };
  }

  function drawForest(period) {
    var rows = data.rates.filter(function (r) { return r.period === period && r.rate !== null; });
    rows.sort(function (a, b) {
      return (SCOPE_ORDER[b.scope] - SCOPE_ORDER[a.scope]) || (a.label < b.label ? 1 : -1) ||
             (a.source < b.source ? 1 : -1);
    });
    var cats = rows.map(function (r) { return r.label + " · " + (texts["source_" + r.source] || r.source); });
    var year = parseInt(period.slice(0, 4), 10);
    var colour = { met: "#2b8a3e", not_yet_shown: "#e67700", not_met: "#c92a2a" };
    forest.setOption({
      animation: false,
      grid: { left: 220, right: 60, top: 30, bottom: 40 },
      tooltip: { trigger: "item", formatter: function (p) {
        var r = rows[p.dataIndex];
        if (!r) return "";
        return esc(r.label) + " · " + esc(r.period) + "<br>" + esc(texts.rate) + ": " + f1(r.rate) +
          " [" + f1(r.lo95) + ", " + f1(r.hi95) + "]<br>" + esc(texts.lower) + ": " + f1(r.lower95) +
          "<br>n = " + esc(r.n) + (r.verdict ? "<br>" + esc(texts["verdict_" + r.verdict]) : "");
      } },
      xAxis: { type: "value", name: "%", min: function (v) { return Math.max(0, Math.floor(Math.min(v.min, data.baseline.value_pct) / 10) * 10 - 5); },
               max: function (v) { return Math.min(100, Math.ceil(v.max / 10) * 10 + 5); } },
      yAxis: { type: "category", data: cats, axisLabel: { width: 210, overflow: "truncate" } },
      series: [
        intervalSeries(texts.ci, rows.map(function (r, i) { return [r.lo95, r.hi95, i]; }), true, "#495057"),
        { type: "scatter", name: texts.rate, symbolSize: 10, z: 3,
          data: rows.map(function (r, i) {
            return { value: [r.rate, i], itemStyle: { color: colour[r.verdict] || "#1971c2" } };
          }),
          markLine: referenceLines(milestoneOf[year], "xAxis") },
        { type: "scatter", name: texts.lower, symbol: "rect", symbolSize: [2, 14], z: 2, silent: true,
          itemStyle: { color: "#000" },
          data: rows.filter(function (r) { return r.lower95 !== null; })
                    .map(function (r) { return [r.lower95, rows.indexOf(r)]; }) }
      ]
    }, true);
  }

  function drawTimeline(kind) {
    var ps = periods(kind);
    var bySeries = {};
    data.rates.forEach(function (r) {
      if (r.kind !== kind || r.scope === "enterprise" || r.rate === null) return;
      var k = r.label + " · " + (texts["source_" + r.source] || r.source);
      (bySeries[k] = bySeries[k] || []).push(r);
    });
    var palette = ["#1971c2", "#c92a2a", "#2b8a3e", "#e67700", "#6741d9", "#0c8599", "#5c940d", "#862e9c"];
    var series = [];
    Object.keys(bySeries).sort().forEach(function (k, i) {
      var c = palette[i % palette.length];
      var rs = bySeries[k];
      series.push({ type: "line", name: k, color: c, symbolSize: 7,
                    data: rs.map(function (r) { return [r.period, r.rate]; }) });
      series.push(intervalSeries(k, rs.map(function (r) { return [r.period, r.lo95, r.hi95]; }), false, c));
    });
    var steps = ps.map(function (p) {
      var m = milestoneOf[parseInt(p.slice(0, 4), 10)];
      return [p, m === undefined ? null : m];
    });
    series.push({ type: "line", name: texts.milestone, step: "middle", symbol: "none", color: "#2b8a3e",
                  lineStyle: { type: "dashed", width: 2 }, data: steps,
                  markLine: referenceLines(null, "yAxis") });
    timeline.setOption({
      animation: false, legend: { type: "scroll", top: 0 },
      grid: { left: 50, right: 30, top: 40, bottom: 30 },
      tooltip: { trigger: "axis", formatter: function (items) {
        return items.filter(function (it) { return it.seriesType === "line"; }).map(function (it) {
          return esc(it.seriesName) + ": " + f1(it.value[1]);
        }).join("<br>");
      } },
      xAxis: { type: "category", data: ps },
      yAxis: { type: "value", name: "%", min: function (v) { return Math.max(0, Math.floor(Math.min(v.min, data.baseline.value_pct) / 10) * 10 - 5); }, max: 100 },
      series: series
    }, true);
  }

  function drawDid() {
    var box = document.getElementById("pilot-did-chart");
    if (!box || !data.did.length) return;
    var d = data.did[data.did.length - 1];
    var cells = ["pilot_base", "pilot_follow", "comparison_base", "comparison_follow"];
    echarts.init(box).setOption({
      animation: false,
      title: { text: d.baseline + " → " + d.followup + ": DiD " + f1(d.did_pp) + " pp [" +
               f1(d.lo_pp) + ", " + f1(d.hi_pp) + "]", textStyle: { fontSize: 13 } },
      grid: { left: 50, right: 20, top: 40, bottom: 30 },
      tooltip: { trigger: "item" },
      xAxis: { type: "category", data: cells.map(function (c) { return texts[c]; }) },
      yAxis: { type: "value", name: "%", max: 100 },
      series: [{ type: "bar", data: cells.map(function (c, i) {
        return { value: d[c], itemStyle: { color: i < 2 ? "#1971c2" : "#adb5bd" } };
      }), label: { show: true, position: "top", formatter: function (p) { return f1(p.value); } },
      markLine: referenceLines(null, "yAxis") }]
    });
  }

  function fillPeriods() {
    var ps = periods(kindSel.value);
    while (periodSel.firstChild) periodSel.firstChild.remove();
    ps.forEach(function (p) {
      var o = document.createElement("option"); o.value = p; o.textContent = p; periodSel.appendChild(o);
    });
    // open on the latest period with spot checks (the indicator itself); a later period that
    // holds only wear time measured at the ear stays one click away
    var observed = ps.filter(function (p) {
      return data.rates.some(function (r) {
        return r.kind === kindSel.value && r.period === p && r.source === "observed";
      });
    });
    if (ps.length) periodSel.value = (observed.length ? observed : ps)[(observed.length ? observed : ps).length - 1];
    drawForest(periodSel.value || "");
    drawTimeline(kindSel.value);
  }

  // start with years when any are stored, else quarters, else months
  ["year", "quarter", "month"].some(function (k) {
    if (periods(k).length) { kindSel.value = k; return true; }
    return false;
  });
  kindSel.addEventListener("change", fillPeriods);
  periodSel.addEventListener("change", function () { drawForest(periodSel.value); });
  fillPeriods();
  drawDid();
  window.addEventListener("resize", function () { forest.resize(); timeline.resize(); });
}
