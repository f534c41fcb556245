"use strict";
// Sorting: a click on a header sorts the table by that column, a second click
// reverses it. Numeric cells carry their value in data-sort ("50.53 ± 0.41"
// sorts as 50.53); empty values always go last.
function sortBy(header) {
  const table = header.closest("table");
  const column = Array.from(header.parentNode.children).indexOf(header);
  const ascending = header.getAttribute("aria-sort") !== "ascending";
  for (const other of header.parentNode.children) other.removeAttribute("aria-sort");
  header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  const body = table.tBodies[0];
  const key = (row) => {
    const cell = row.children[column];
    const raw = cell.dataset.sort !== undefined ? cell.dataset.sort : cell.textContent.trim();
    const number = parseFloat(raw);
    return { empty: raw === "" || raw === "-", number, text: raw, numeric: cell.dataset.sort !== undefined };
  };
  const rows = Array.from(body.rows);
  rows.sort((a, b) => {
    const x = key(a), y = key(b);
    if (x.empty !== y.empty) return x.empty ? 1 : -1;
    const order = x.numeric && y.numeric ? x.number - y.number : x.text.localeCompare(y.text);
    return ascending ? order : -order;
  });
  for (const row of rows) body.appendChild(row);
}

document.addEventListener("DOMContentLoaded", () => {
  for (const header of document.querySelectorAll("table.sortable thead th")) {
    header.addEventListener("click", () => sortBy(header));
  }
  // A figure that fails to load is reported on the console (and marked), so a
  // broken site is visible to a reader's devtools and to the browser test.
  for (const img of document.querySelectorAll("img")) {
    const loaded = () => { img.dataset.loaded = img.naturalWidth > 0 ? "yes" : "no"; };
    const failed = () => {
      img.dataset.loaded = "no";
      console.error("clbench: figure failed to load: " + img.getAttribute("src"));
    };
    if (img.complete) {
      if (img.naturalWidth > 0) loaded(); else failed();
    } else {
      img.addEventListener("load", loaded);
      img.addEventListener("error", failed);
    }
  }
});

// Interactive charts: each .chart holds a plotly spec (JSON) and a static PNG.
// With plotly loaded (bundled in assets/, no network) the chart replaces the
// PNG; without it the PNG stays. Clicking a legend entry hides or shows a series.
function drawCharts() {
  if (typeof window.Plotly === "undefined") return;
  for (const chart of document.querySelectorAll(".chart")) {
    const spec = JSON.parse(chart.querySelector("script.spec").textContent);
    const plot = chart.querySelector(".plot");
    window.Plotly.newPlot(plot, spec.data, spec.layout, { displaylogo: false, responsive: true })
      .then(() => chart.classList.add("interactive"))
      .catch((error) => console.error("clbench: chart failed: " + error));
  }
}

// Front page: show the table of the chosen convention and setting, then apply
// the filters (backbone hides rows; protocol and scorer hide scenario columns).
function applyView(form) {
  const value = (name) => {
    const field = form.elements[name];
    return field ? field.value : "";
  };
  const convention = value("convention"), setting = value("setting");
  for (const view of document.querySelectorAll(".overview-view")) {
    view.hidden = !(view.dataset.convention === convention && view.dataset.setting === setting);
  }
  const backbone = value("backbone"), kind = value("kind"), scorer = value("scorer");
  for (const row of document.querySelectorAll("tr[data-backbone]")) {
    row.hidden = backbone !== "" && row.dataset.backbone !== backbone;
  }
  for (const table of document.querySelectorAll("table.overview")) {
    const headers = Array.from(table.tHead.rows[0].cells);
    const hide = headers.map((th) =>
      th.dataset.kind !== undefined &&
      ((kind !== "" && th.dataset.kind !== kind) || (scorer !== "" && th.dataset.scorer !== scorer)));
    for (const row of table.rows) {
      Array.from(row.cells).forEach((cell, i) => { cell.hidden = hide[i]; });
    }
  }
}

document.addEventListener("DOMContentLoaded", () => {
  for (const form of document.querySelectorAll("form.controls")) {
    form.addEventListener("change", () => applyView(form));
    applyView(form);
  }
  drawCharts();
});
