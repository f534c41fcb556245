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
