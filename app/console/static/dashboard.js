// Draws each dashboard chart from the JSON block next to it (the same numbers as its CSV).
(function () {
  "use strict";

  function axisSeries(data, type, stacked) {
    var names = data.rows.map(function (row) { return row[0]; });
    var right = data.right || [];
    var series = data.columns.slice(1).map(function (column, index) {
      var position = index + 1;
      var onRight = right.indexOf(position) >= 0;
      return {
        name: column,
        type: onRight ? "line" : type,
        stack: stacked && !onRight ? "total" : undefined,
        yAxisIndex: onRight ? 1 : 0,
        smooth: false,
        data: data.rows.map(function (row) { return row[position]; })
      };
    });
    var yAxes = [{ type: "value" }];
    if (right.length) {
      yAxes.push({ type: "value", splitLine: { show: false } });
    }
    return {
      tooltip: { trigger: "axis" },
      legend: { top: 0 },
      grid: { left: 48, right: right.length ? 56 : 16, top: 36, bottom: 28, containLabel: true },
      xAxis: { type: "category", data: names },
      yAxis: yAxes,
      series: series
    };
  }

  function horizontal(data) {
    var rows = data.rows.slice().reverse();
    return {
      tooltip: { trigger: "axis" },
      grid: { left: 16, right: 24, top: 16, bottom: 16, containLabel: true },
      xAxis: { type: "value" },
      yAxis: { type: "category", data: rows.map(function (row) { return row[0]; }) },
      series: [{ name: data.columns[1], type: "bar", data: rows.map(function (row) { return row[1]; }) }]
    };
  }

  function named(data, type) {
    var items = data.rows.map(function (row) { return { name: row[0], value: row[1] }; });
    var series = { name: data.columns[1], type: type, data: items };
    if (type === "pie") {
      series.radius = ["35%", "65%"];
    } else {
      series.sort = "none";
      series.left = "10%";
      series.width = "80%";
    }
    return { tooltip: { trigger: "item" }, legend: { top: 0 }, series: [series] };
  }

  function option(data) {
    var built;
    if (data.kind === "pie" || data.kind === "funnel") {
      built = named(data, data.kind);
    } else if (data.kind === "hbar") {
      built = horizontal(data);
    } else {
      built = axisSeries(data, data.kind === "line" ? "line" : "bar", data.kind === "stacked");
    }
    if (!data.rows.length) {
      built.title = { text: data.empty, left: "center", top: "middle", textStyle: { color: "#7b8794", fontSize: 13 } };
    }
    built.animation = false;
    return built;
  }

  function draw() {
    var charts = [];
    document.querySelectorAll(".chart-canvas").forEach(function (element) {
      var source = document.getElementById(element.getAttribute("data-source"));
      var chart = window.echarts.init(element, null, { renderer: "canvas" });
      chart.setOption(option(JSON.parse(source.textContent)));
      element.setAttribute("data-rendered", "true");
      charts.push(chart);
    });
    window.addEventListener("resize", function () {
      charts.forEach(function (chart) { chart.resize(); });
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();
