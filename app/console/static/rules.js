// The simulation chart of a rule set: points per rule, in force vs this set (Apache ECharts, vendored).
// The data comes from the element's data-chart attribute (JSON), so no inline script is needed.
document.addEventListener("DOMContentLoaded", () => {
  for (const element of document.querySelectorAll("[data-chart]")) {
    const data = JSON.parse(element.getAttribute("data-chart") || "null");
    if (!data || typeof echarts === "undefined") {
      continue;
    }
    element.style.height = "320px";
    const chart = echarts.init(element);
    chart.setOption({
      animation: false,
      tooltip: { trigger: "axis" },
      legend: { top: 0 },
      grid: { left: 8, right: 16, bottom: 8, top: 36, containLabel: true },
      xAxis: { type: "value" },
      yAxis: { type: "category", data: data.rules },
      series: data.series.map((series) => ({ name: series.name, type: "bar", data: series.data })),
    });
    element.setAttribute("data-rendered", "true");
    window.addEventListener("resize", () => chart.resize());
  }
});
