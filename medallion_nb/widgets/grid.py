"""Two small anywidget controls: a paged data grid and a download button that streams to the browser.

Both keep the data in DuckDB: the grid shows the one page the kernel sends
(sorting, paging and column widths are model state the app observes), and the
download button sends the bytes a provider yields, chunk by chunk, to a Blob in
the browser, so nothing is written on the server.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import anywidget
import traitlets as t

from medallion_nb.errors import MedallionError
from medallion_nb.widgets.render import format_value

STATIC = Path(__file__).parent / "static"
CHUNK_BYTES = 4 * 1024 * 1024  # one comm message per chunk


class DataGrid(anywidget.AnyWidget):
    """One page of a table with click-to-sort headers, a page box, page sizes and resizable columns.

    The app sets ``columns``, ``rows`` (cells already formatted as text, None for null),
    ``first_row``, ``pages`` and ``info``; people change ``page``, ``page_size``,
    ``sort_column``/``sort_desc`` and ``widths``, which the app observes.
    """

    _esm = STATIC / "grid.js"
    _css = STATIC / "grid.css"
    columns = t.List(t.Dict()).tag(sync=True)
    rows = t.List(t.List()).tag(sync=True)
    first_row = t.Int(1).tag(sync=True)
    page = t.Int(0).tag(sync=True)
    pages = t.Int(1).tag(sync=True)
    page_size = t.Int(20).tag(sync=True)
    page_sizes = t.List(t.Int(), default_value=[10, 20, 50, 100, 500]).tag(sync=True)
    sort_column = t.Unicode("").tag(sync=True)
    sort_desc = t.Bool(False).tag(sync=True)
    widths = t.Dict().tag(sync=True)
    info = t.Unicode("").tag(sync=True)
    empty_text = t.Unicode("no rows").tag(sync=True)

    def show(self, columns: Sequence[tuple[str, str, bool]], rows: Sequence[Sequence[Any]], *, first_row: int,
             pages: int, info: str = "") -> None:
        """Put a page on screen: ``columns`` as (name, type, numeric), ``rows`` as Python values."""
        with self.hold_sync():
            self.columns = [{"name": n, "type": ty, "numeric": num} for n, ty, num in columns]
            self.rows = [[cell_text(v) for v in row] for row in rows]
            self.first_row, self.pages, self.info = first_row, max(1, pages), info


def cell_text(value: Any) -> str | None:
    """A cell as text for the grid (None stays None so the grid shows it as null)."""
    if value is None:
        return None
    if isinstance(value, float | int | decimal.Decimal | dt.date | bool):
        return format_value(value)
    return format_value(value, max_chars=500)


# A provider returns (file name, MIME type, the bytes in pieces, a summary shown after the download).
Provider = Callable[[], tuple[str, str, Iterable[bytes], Callable[[], str]]]


class DownloadButton(anywidget.AnyWidget):
    """A button that asks ``provider`` for a file and streams it to the browser, which saves it.

    Errors the provider raises (:class:`MedallionError`) are reported to ``on_error`` and
    shown next to the button.
    """

    _esm = STATIC / "download.js"
    _css = STATIC / "grid.css"
    label = t.Unicode("Download CSV").tag(sync=True)

    def __init__(self, provider: Provider, *, on_error: Callable[[str], None] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.provider = provider
        self.on_error = on_error
        self.sent: list[dict[str, Any]] = []  # what the last download sent (file name, bytes, summary)
        self.on_msg(self._handle)

    def _handle(self, _widget: Any, content: dict[str, Any], _buffers: list[bytes]) -> None:
        if isinstance(content, dict) and content.get("event") == "request":
            self.download()

    def download(self) -> None:
        """Run the provider and stream its bytes to the browser."""
        try:
            filename, mime, pieces, summary = self.provider()
            self.send({"event": "begin", "filename": filename, "mime": mime})
            size = 0
            pending: list[bytes] = []
            pending_size = 0
            for piece in pieces:
                pending.append(piece)
                pending_size += len(piece)
                if pending_size >= CHUNK_BYTES:
                    self.send({"event": "chunk"}, [b"".join(pending)])
                    size += pending_size
                    pending, pending_size = [], 0
            if pending:
                self.send({"event": "chunk"}, [b"".join(pending)])
                size += pending_size
            text = f"{summary()}, {size / 1024:,.1f} KiB, saved by your browser as {filename}"
            self.send({"event": "end", "text": text})
            self.sent = [{"filename": filename, "bytes": size, "text": text}]
        except Exception as exc:  # reported next to the button and in the app, never a traceback
            message = str(exc) if isinstance(exc, MedallionError) else f"download failed: {type(exc).__name__}: {exc}"
            self.send({"event": "error", "text": "download failed"})
            self.sent = [{"error": message}]
            if self.on_error:
                self.on_error(message)
