// The explorer's data grid: one page of rows from the kernel, click-to-sort headers,
// resizable columns and a page box. Sorting, paging and page size are model state:
// the kernel observes them and sends the next page.
function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function render({ model, el: root }) {
  root.classList.add("mnb-grid");
  const bar = el("div", "mnb-grid-bar");
  const first = el("button", "mnb-grid-btn", "\u00ab"), prev = el("button", "mnb-grid-btn", "\u2039");
  const next = el("button", "mnb-grid-btn", "\u203a"), last = el("button", "mnb-grid-btn", "\u00bb");
  first.title = "first page"; prev.title = "previous page"; next.title = "next page"; last.title = "last page";
  const pageBox = el("input", "mnb-page-input");
  pageBox.type = "number"; pageBox.min = "1"; pageBox.title = "go to page (Enter)";
  const pages = el("span", "mnb-grid-pages"), info = el("span", "mnb-grid-info");
  const size = el("select", "mnb-page-size");
  for (const n of model.get("page_sizes")) {
    const opt = el("option", "", `${n} rows`); opt.value = String(n); size.appendChild(opt);
  }
  bar.append(first, prev, el("span", "mnb-grid-label", "page"), pageBox, pages, next, last, size, info);
  const scroll = el("div", "mnb-grid-scroll");
  root.append(bar, scroll);

  const setPage = (p) => {
    const count = Math.max(1, model.get("pages"));
    model.set("page", Math.min(Math.max(0, p), count - 1));
    model.save_changes();
  };
  first.onclick = () => setPage(0);
  prev.onclick = () => setPage(model.get("page") - 1);
  next.onclick = () => setPage(model.get("page") + 1);
  last.onclick = () => setPage(model.get("pages") - 1);
  pageBox.onkeydown = (e) => { if (e.key === "Enter") setPage(parseInt(pageBox.value, 10) - 1); };
  pageBox.onchange = () => setPage(parseInt(pageBox.value, 10) - 1);
  size.onchange = () => { model.set("page_size", parseInt(size.value, 10)); model.set("page", 0); model.save_changes(); };

  function sortBy(name) {
    // Cycle: ascending, descending, table order.
    if (model.get("sort_column") !== name) { model.set("sort_column", name); model.set("sort_desc", false); }
    else if (!model.get("sort_desc")) { model.set("sort_desc", true); }
    else { model.set("sort_column", ""); model.set("sort_desc", false); }
    model.set("page", 0);
    model.save_changes();
  }

  function startResize(event, th, name) {
    event.preventDefault(); event.stopPropagation();
    const x0 = event.clientX, w0 = th.getBoundingClientRect().width;
    const move = (e) => { th.style.width = th.style.minWidth = th.style.maxWidth = `${Math.max(40, w0 + e.clientX - x0)}px`; };
    const up = () => {
      document.removeEventListener("mousemove", move); document.removeEventListener("mouseup", up);
      model.set("widths", { ...model.get("widths"), [name]: Math.round(th.getBoundingClientRect().width) });
      model.save_changes();
    };
    document.addEventListener("mousemove", move); document.addEventListener("mouseup", up);
  }

  function draw() {
    const columns = model.get("columns"), rows = model.get("rows"), widths = model.get("widths");
    const sortColumn = model.get("sort_column"), desc = model.get("sort_desc");
    const table = el("table", "mnb-table mnb-grid-table");
    const head = el("tr");
    head.appendChild(el("th", "mnb-rownum", "#"));
    for (const col of columns) {
      const th = el("th", "mnb-sortable" + (col.numeric ? " num" : ""));
      th.dataset.column = col.name;
      th.title = `${col.name} (${col.type}): click to sort`;
      const label = el("span", "mnb-th-name", col.name);
      const arrow = el("span", "mnb-sort-arrow", sortColumn === col.name ? (desc ? " \u25bc" : " \u25b2") : "");
      const type = el("div", "mnb-th-type", col.type);
      const grip = el("span", "mnb-resize");
      grip.onmousedown = (e) => startResize(e, th, col.name);
      grip.onclick = (e) => e.stopPropagation();
      th.append(label, arrow, type, grip);
      if (widths[col.name]) th.style.width = th.style.minWidth = th.style.maxWidth = `${widths[col.name]}px`;
      th.onclick = () => sortBy(col.name);
      head.appendChild(th);
    }
    const thead = el("thead"); thead.appendChild(head);
    const tbody = el("tbody");
    const firstRow = model.get("first_row");
    rows.forEach((row, i) => {
      const tr = el("tr");
      tr.appendChild(el("td", "num mnb-rownum", (firstRow + i).toLocaleString("en-US")));
      row.forEach((value, j) => {
        const numeric = columns[j] && columns[j].numeric;
        const td = el("td", value === null ? "null" : numeric ? "num" : "", value === null ? "null" : value);
        if (value !== null && value.length > 40) td.title = value;
        tr.appendChild(td);
      });
      tbody.appendChild(tr);
    });
    if (!rows.length) {
      const tr = el("tr"), td = el("td", "null", model.get("empty_text"));
      td.colSpan = columns.length + 1; tr.appendChild(td); tbody.appendChild(tr);
    }
    table.append(thead, tbody);
    scroll.replaceChildren(table);
    const page = model.get("page"), count = Math.max(1, model.get("pages"));
    pageBox.value = String(page + 1); pageBox.max = String(count);
    pages.textContent = `of ${count.toLocaleString("en-US")}`;
    first.disabled = prev.disabled = page <= 0;
    next.disabled = last.disabled = page >= count - 1;
    size.value = String(model.get("page_size"));
    info.textContent = model.get("info");
  }
  for (const name of ["columns", "rows", "widths", "sort_column", "sort_desc", "page", "pages", "page_size", "info", "first_row"]) {
    model.on(`change:${name}`, draw);
  }
  draw();
}

export default { render };
