/* Daily summaries: two small charts (rain bars, cumulative GDD) from json_script data. */
(function () {
  "use strict";
  var dataNode = document.getElementById("summary-chart");
  var scriptNode = document.getElementById("summary-script");
  if (!dataNode || !scriptNode) return;
  var data = JSON.parse(dataNode.textContent);
  var tag = document.createElement("script");
  tag.src = scriptNode.getAttribute("data-plotly");
  tag.async = true;
  tag.onload = function () {
    var layout = { margin: { t: 6, r: 6, b: 30, l: 40 }, xaxis: { type: "date" }, showlegend: false };
    var options = { responsive: true, displayModeBar: false, staticPlot: false };
    window.Plotly.newPlot("mini-rain", [{ type: "bar", x: data.days, y: data.rain, marker: { color: "#1f6fb2" } }],
      layout, options);
    window.Plotly.newPlot("mini-gdd", [{ type: "scatter", mode: "lines", x: data.days, y: data.gddSum,
      line: { color: "#2e7d4f" } }], layout, options);
  };
  document.head.appendChild(tag);
})();
