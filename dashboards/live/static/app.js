/* tingbao live page: applies Server-Sent Events to the DOM by text changes only (textContent,
   never innerHTML with data), and draws ECharts charts on demand (one chart, for the meter
   chosen). */
"use strict";
var tingbao = (function () {
  function fmt(v) { return (v === null || v === undefined) ? "—" : Number(v).toFixed(1); }
  function setText(el, text) { if (el && el.textContent !== text) el.textContent = text; }
  // A server-sent stream that closes when the page is left and opens again when it comes
  // back from the back-forward cache: a cached page must not keep its connection, or after a
  // few page views the browser's six connections per host are all taken.
  function stream(url, event, onData) {
    var src = null;
    function open() {
      src = new EventSource(url);
      src.addEventListener(event, function (ev) { onData(JSON.parse(ev.data)); });
    }
    window.addEventListener("pagehide", function () { if (src) { src.close(); src = null; } });
    window.addEventListener("pageshow", function (ev) { if (ev.persisted && !src) open(); });
    open();
  }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // ------------------------------------------------------------------- floor
  function floor() {
    var root = document.getElementById("floor");
    var ent = root.dataset.enterprise;
    var tiles = {};
    root.querySelectorAll(".tile").forEach(function (t) {
      tiles[t.dataset.meter + ":" + t.dataset.channel] = t;
    });
    var badgeText = {};
    document.getElementById("badge-texts").content.querySelectorAll("[data-badge]")
      .forEach(function (b) { badgeText[b.dataset.badge] = b.textContent; });
    var chart = null, chartKey = null, chartData = [];

    function badge(tile, name, on) {
      var box = tile.querySelector(".badges");
      var b = box.querySelector(".badge." + name);
      if (on && !b) box.appendChild(el("span", "badge " + name, badgeText[name]));
      if (!on && b) b.remove();
    }

    function apply(snap) {
      snap.meters.forEach(function (m) {
        var t = tiles[m.meter + ":" + m.channel];
        if (!t) return;
        setText(t.querySelector(".laeq"), fmt(m.laeq));
        setText(t.querySelector(".lafmax"), fmt(m.lafmax));
        setText(t.querySelector(".lcpeak"), fmt(m.lcpeak));
        setText(t.querySelector(".dose"), fmt(m.dose_pct));
        setText(t.querySelector(".projected"), fmt(m.projected_lex_8h));
        var g = "grade-" + (m.grade || "none");
        if (!t.classList.contains(g)) {
          t.className = t.className.replace(/\bgrade-\S+/g, "").trim() + " " + g;
        }
        badge(t, "offline", m.offline);
        badge(t, "uncalibrated", m.uncalibrated);
        badge(t, "overload", m.overload);
        if (chart && chartKey === m.meter + ":" + m.channel && m.laeq !== null) {
          updateRunning(snap.time_ns, m.laeq);
        }
      });
    }

    function updateRunning(timeNs, laeq) {
      // the running minute: the newest 1 s level stands for it until its rollup arrives
      var minute = Math.floor(timeNs / 6e10) * 60000;
      var last = chartData[chartData.length - 1];
      if (last && last[0] === minute) last[1] = laeq; else chartData.push([minute, laeq]);
      while (chartData.length && chartData[0][0] < minute - 3600000) chartData.shift();
      chart.setOption({ series: [{ data: chartData }] });
    }

    function openChart(meter, channel) {
      var panel = document.getElementById("chart-panel");
      panel.hidden = false;
      chartKey = meter + ":" + channel;
      setText(document.getElementById("chart-title"), root.dataset.labelChart + " · " + chartKey);
      if (!chart) chart = echarts.init(document.getElementById("chart"));
      fetch("/api/floor/" + encodeURIComponent(ent) + "/history?meter=" +
            encodeURIComponent(meter) + "&channel=" + channel + "&minutes=60")
        .then(function (r) { return r.json(); })
        .then(function (h) {
          chartData = h.points.filter(function (p) { return p[1] !== null; });
          chart.setOption({
            animation: false, tooltip: { trigger: "axis" },
            xAxis: { type: "time" }, yAxis: { type: "value", name: "dB(A)", scale: true },
            series: [{ type: "line", name: "LAeq,1min", showSymbol: false, data: chartData }]
          });
        });
    }

    root.addEventListener("click", function (ev) {
      var b = ev.target.closest(".chart-btn");
      if (b) openChart(b.dataset.meter, b.dataset.channel);
    });
    apply(JSON.parse(document.getElementById("snapshot").textContent));
    stream("/events/floor/" + encodeURIComponent(ent), "floor", apply);
  }

  // ------------------------------------------------------------------- alerts
  function alerts() {
    var table = document.getElementById("alerts");
    var body = table.tBodies[0];
    var d = table.dataset;
    var inspector = d.inspector === "yes";
    var lang = d.lang;
    var errorBox = document.getElementById("alert-error");

    function stateText(s) { return d["state" + s.charAt(0).toUpperCase() + s.slice(1)] || s; }

    function actions(row, a) {
      var cell = row.querySelector("td.actions");
      if (!inspector || !cell) return;
      if (a.state === "resolved") { while (cell.firstChild) cell.firstChild.remove(); return; }
      if (!cell.querySelector("textarea.note")) {
        var ta = el("textarea", "note"); ta.dataset.id = a.id; ta.placeholder = d.textNote;
        cell.appendChild(ta);
      }
      var ack = cell.querySelector("button.ack");
      if (a.state === "open" && !ack) {
        ack = el("button", "ack", d.textAck); ack.type = "button"; ack.dataset.id = a.id;
        cell.appendChild(ack);
      } else if (a.state !== "open" && ack) ack.remove();
      if (!cell.querySelector("button.resolve")) {
        var res = el("button", "resolve", d.textResolve); res.type = "button"; res.dataset.id = a.id;
        cell.appendChild(res);
      }
    }

    function newRow(a) {
      var tr = el("tr", "alert");
      tr.dataset.id = a.id;
      tr.appendChild(el("td", "state"));
      tr.appendChild(el("td", "rule", a.rule));
      tr.appendChild(el("td", "meter", (a.meter || a.job || "") +
                        (a.channel === null ? "" : ":" + a.channel)));
      tr.appendChild(el("td", "shift-date", a.shift_date));
      tr.appendChild(el("td", "severity", a.severity));
      var text = el("td", "text", lang === "en" ? a.text_en : a.text_zh);
      if (lang !== "en") { text.appendChild(el("br")); text.appendChild(el("small", "", a.text_en)); }
      tr.appendChild(text);
      var wn = el("td", "who-note");
      wn.appendChild(el("span", "who")); wn.appendChild(document.createTextNode(" "));
      wn.appendChild(el("span", "note-text"));
      tr.appendChild(wn);
      if (inspector) tr.appendChild(el("td", "actions"));
      return tr;
    }

    function apply(list) {
      var seen = {};
      list.forEach(function (a, i) {
        seen[a.id] = true;
        var row = body.querySelector('tr.alert[data-id="' + a.id + '"]');
        if (!row) {
          row = newRow(a);
          body.insertBefore(row, body.rows[i] || null);
        }
        if (row.dataset.state !== a.state) row.dataset.state = a.state;
        setText(row.querySelector("td.state"), stateText(a.state));
        setText(row.querySelector(".who"), a.who || "");
        setText(row.querySelector(".note-text"), a.note || "");
        actions(row, a);
      });
      Array.prototype.slice.call(body.rows).forEach(function (r) {
        if (!seen[r.dataset.id]) r.remove();
      });
      document.getElementById("alerts-empty").hidden = list.length > 0;
    }

    table.addEventListener("click", function (ev) {
      var b = ev.target.closest("button.ack, button.resolve");
      if (!b) return;
      var id = b.dataset.id;
      var ta = table.querySelector('textarea.note[data-id="' + id + '"]');
      var action = b.classList.contains("ack") ? "ack" : "resolve";
      fetch("/alerts/" + encodeURIComponent(id) + "/" + action, {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "Accept": "application/json",
                   "X-CSRF-Token": d.csrf },
        body: JSON.stringify({ note: ta ? ta.value : "" })
      }).then(function (r) {
        return r.json().then(function (j) {
          if (!r.ok) { errorBox.hidden = false; setText(errorBox, j.error || String(r.status)); return; }
          errorBox.hidden = true;
          var row = body.querySelector('tr.alert[data-id="' + id + '"]');
          if (row) {
            row.dataset.state = j.state;
            setText(row.querySelector("td.state"), stateText(j.state));
            actions(row, { id: id, state: j.state });
          }
        });
      });
    });

    var q = d.query ? "?" + d.query : "";
    stream("/events/alerts" + q, "alerts", apply);
  }

  // ------------------------------------------------------------------- exposure
  function exposure() {
    var data = JSON.parse(document.getElementById("exposure-data").textContent);
    var box = document.getElementById("exposure-chart");
    var bySubject = {};
    data.rows.forEach(function (r) {
      if (r.lex_8h === null) return;
      var k = r.kind + " " + r.subject;
      (bySubject[k] = bySubject[k] || []).push([r.date, r.lex_8h]);
    });
    var series = Object.keys(bySubject).map(function (k, i) {
      var s = { type: "line", name: k, data: bySubject[k] };
      if (i === 0) {
        s.markLine = { symbol: "none", lineStyle: { color: "#c92a2a" },
                       label: { formatter: box.dataset.limitLabel },
                       data: [{ yAxis: data.limit }] };
      }
      return s;
    });
    if (!series.length) {
      series = [{ type: "line", data: [], markLine: { symbol: "none", data: [{ yAxis: data.limit }],
                  label: { formatter: box.dataset.limitLabel } } }];
    }
    echarts.init(box).setOption({
      animation: false, tooltip: { trigger: "axis" }, legend: { type: "scroll" },
      xAxis: { type: "category" }, yAxis: { type: "value", name: "dB(A)", scale: true },
      series: series
    });
    var sp = document.getElementById("spectra-chart");
    if (!data.spectra.length) { sp.hidden = true; return; }
    var labels = data.spectra[0].bands.map(function (b) { return b[0]; });
    echarts.init(sp).setOption({
      animation: false, tooltip: { trigger: "axis" }, legend: { type: "scroll" },
      xAxis: { type: "category", data: labels, name: "Hz" },
      yAxis: { type: "value", name: "dB (Z)", scale: true },
      series: data.spectra.map(function (s) {
        return { type: "bar", name: s.meter + ":" + s.channel,
                 data: s.bands.map(function (b) { return b[1]; }) };
      })
    });
  }

  return { floor: floor, alerts: alerts, exposure: exposure };
})();
