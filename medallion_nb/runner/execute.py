"""Execute layer notebooks with papermill: the boundary between the runner and Jupyter.

A :class:`NotebookTask` says what to run: which notebook, with which parameters,
where the executed copy goes and which environment variables its kernel gets.
A :class:`NotebookEngine` turns tasks into :class:`NotebookOutcome`\\ s.

Starting a Jupyter kernel is most of the cost of a small notebook, so the engine
separates the two steps: :meth:`NotebookEngine.prepare` starts kernels in the
background (the runner calls it for the next layer while the current one runs),
and :meth:`NotebookEngine.run` executes tasks, in parallel, on a prepared kernel
or on one it starts right then. Execution itself is papermill's: parameters are
injected by papermill, the executed copy is papermill's document (with its
``injected-parameters`` cell, per-cell metadata and error markers). Only the
kernel comes from us, handed to papermill through an engine registered with
papermill's engine registry.

papermill, nbformat and jupyter_client are imported when the first kernel starts, not
with this module: a run in which every notebook is up to date never needs them, and
importing them (nbformat validates with jsonschema) costs seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from medallion_nb.project import Scalar

ENGINE_NAME = "medallion"
DEFAULT_KERNEL = "python3"
# Run silently in a kernel right after it starts: the imports every layer
# notebook makes anyway (pandas for the tables it shows), so they overlap with
# the previous layer's work.
DEFAULT_PRELOAD = ("import medallion_nb, medallion_nb.lakehouse, medallion_nb.expectations, medallion_nb.quarantine, "
                   "medallion_nb.dedupe, medallion_nb.lineage, croniter, pandas, pyarrow.pandas_compat")


@dataclass(frozen=True)
class NotebookTask:
    """One notebook to execute: input, parameters, executed copy and kernel environment."""

    layer: str
    notebook: Path
    output: Path
    parameters: Mapping[str, Scalar]
    env: Mapping[str, str] = field(default_factory=dict)
    kernel_log: Path | None = None
    # Called as each cell starts: (source cell index, number of cells, label); see cell_label().
    on_cell: Callable[[int, int, str], None] | None = field(default=None, compare=False)

    @property
    def name(self) -> str:
        return self.notebook.stem


@dataclass(frozen=True)
class CellError:
    """Where and why a notebook stopped.

    ``cell_index`` counts cells of the source notebook from 0 (``None`` when the
    failure was not in a cell, e.g. the kernel died or the layer timed out);
    ``execution_count`` is the ``In [n]`` shown in the executed notebook.
    """

    ename: str
    evalue: str
    cell_index: int | None = None
    execution_count: int | None = None
    source: str = ""

    @property
    def first_line(self) -> str:
        return next((line.strip() for line in self.source.splitlines() if line.strip()), "")

    def to_dict(self) -> dict[str, Any]:
        return {"cell_index": self.cell_index, "execution_count": self.execution_count,
                "source": self.first_line, "ename": self.ename, "evalue": self.evalue}


@dataclass(frozen=True)
class NotebookOutcome:
    """What happened to one task."""

    task: NotebookTask
    status: str  # "succeeded" or "failed"
    duration_s: float
    error: CellError | None = None

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"


@functools.cache
def _register_engine() -> None:
    """Register the engine below with papermill (once, when the first notebook runs)."""
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import NBClientEngine, NotebookExecutionManager, papermill_engines
    from papermill.log import logger as papermill_logger

    class _Document(NotebookExecutionManager):
        """papermill's execution state, saving the executed copy once per code cell.

        papermill saves the whole document as every cell starts and as it completes,
        markdown cells included (two JSON validations and writes per cell). Here a
        code cell's start saves it (with the outputs of the cells before it and this
        one marked running), and so do an error and the end of the notebook, which is
        every state a reader or a crash can find. Markdown cells, which run nothing,
        and a cell's completion, which the next save includes, do not.
        """

        _quiet = False

        def save(self, **kwargs: Any) -> None:
            if not self._quiet:
                super().save(**kwargs)

        def cell_start(self, cell: Any, cell_index: int | None = None, **kwargs: Any) -> None:
            self._quietly(cell.get("cell_type") != "code", super().cell_start, cell, cell_index, **kwargs)

        def cell_complete(self, cell: Any, cell_index: int | None = None, **kwargs: Any) -> None:
            self._quietly(True, super().cell_complete, cell, cell_index, **kwargs)

        def _quietly(self, quiet: bool, call: Callable[..., None], *args: Any, **kwargs: Any) -> None:
            self._quiet = quiet
            try:
                call(*args, **kwargs)
            finally:
                self._quiet = False

    class _PreparedKernelEngine(NBClientEngine):
        """papermill's nbclient engine, executing on a kernel the caller already started.

        The caller owns the kernel (passed as ``km``); this engine only opens and
        closes the client channels, so the kernel's start and shutdown stay outside.
        """

        @classmethod
        def execute_notebook(cls, nb, kernel_name, output_path=None, progress_bar=True, log_output=False,
                             autosave_cell_every=30, **kwargs):
            # papermill's Engine.execute_notebook, with the document above.
            nb_man = _Document(nb, output_path=output_path, progress_bar=progress_bar, log_output=log_output,
                               autosave_cell_every=autosave_cell_every)
            nb_man.notebook_start()
            try:
                cls.execute_managed_notebook(nb_man, kernel_name, log_output=log_output, **kwargs)
            finally:
                nb_man.cleanup_pbar()
                nb_man.notebook_complete()
            return nb_man.nb

        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, *, km=None, log_output=False, stdout_file=None,
                                     stderr_file=None, start_timeout=60, execution_timeout=None, on_cell=None,
                                     source_notebook=None, **kwargs):
            hooks = {}
            if on_cell is not None:
                labels = _cell_labels(nb_man.nb, source_notebook)

                def cell_started(cell: Any, cell_index: int) -> None:
                    if cell_index in labels:  # not the cell papermill injected
                        on_cell(*labels[cell_index])

                hooks["on_cell_execute"] = cell_started
            client = PapermillNotebookClient(
                nb_man, km=km, kernel_name=kernel_name, log=papermill_logger, log_output=log_output,
                stdout_file=stdout_file, stderr_file=stderr_file, startup_timeout=start_timeout,
                timeout=execution_timeout, **hooks,
            )
            try:
                return client.execute()
            finally:
                if client.kc is not None:
                    client.kc.stop_channels()


    papermill_engines.register(ENGINE_NAME, _PreparedKernelEngine)


class _Kernel:
    """A started kernel with its log file; started and stopped from worker threads."""

    def __init__(self, task: NotebookTask, *, startup_timeout: float, preload: str | None) -> None:
        from jupyter_client.manager import AsyncKernelManager

        self.name = _kernel_name(task.notebook)
        self.km = AsyncKernelManager(kernel_name=self.name)
        self.log: IO[bytes] | None = None
        self.log_path = task.kernel_log
        self._stopped = False
        self._lock = threading.Lock()
        self._preload = preload
        self._timeout = startup_timeout
        self._warmed = not preload
        self._warming = threading.Lock()
        if task.kernel_log is not None:
            task.kernel_log.parent.mkdir(parents=True, exist_ok=True)
            self.log = task.kernel_log.open("ab")
        # Each kernel gets its own environment (the layer's write log), so
        # notebooks running side by side never share one mutable os.environ.
        env = {**os.environ, **task.env}
        try:
            asyncio.run(self._start(env, str(task.notebook.parent)))
        except BaseException:
            self.shutdown(now=True)
            raise

    async def _start(self, env: dict[str, str], cwd: str) -> None:
        extra = {"preexec_fn": _die_with_parent} if sys.platform.startswith("linux") else {}
        await self.km.start_kernel(env=env, cwd=cwd, stdout=self.log, stderr=self.log, **extra)

    def warm(self) -> None:
        """Run the preload in the kernel, once (a second caller waits for the first)."""
        with self._warming:
            with self._lock:
                if self._warmed or self._stopped:
                    return
            asyncio.run(self._run_preload())
            self._warmed = True

    async def _run_preload(self) -> None:
        kc = self.km.client()
        kc.start_channels()
        try:
            await kc.wait_for_ready(timeout=self._timeout)
            # A silent request leaves no trace in the notebook (no output, no
            # execution count); an error here resurfaces in the notebook itself.
            await kc.execute_interactive(self._preload, silent=True, store_history=False, timeout=self._timeout,
                                         output_hook=_ignore)
        finally:
            kc.stop_channels()

    def shutdown(self, *, now: bool = False) -> None:
        """Stop the kernel (safe to call twice, from any thread)."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        try:
            if self.km.has_kernel:
                asyncio.run(self.km.shutdown_kernel(now=now))
        finally:
            if self.log is not None:
                self.log.close()
                self.log = None

    def discard(self) -> None:
        """Stop a kernel that never ran a notebook, and remove its log."""
        self.shutdown(now=True)
        if self.log_path is not None:
            self.log_path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # the folder holds other files: keep it
                self.log_path.parent.rmdir()


class NotebookEngine:
    """Executes notebook tasks with papermill, each on its own kernel.

    Use it as a context manager: on exit, kernels that were prepared but not
    used (a layer failed, the run was interrupted) are shut down.

    Args:
        startup_timeout: seconds to wait for a kernel to start.
        preload: Python code run silently in each kernel right after it starts,
            to move slow imports off the critical path; ``None`` to run nothing.
    """

    def __init__(self, *, startup_timeout: float = 60, preload: str | None = DEFAULT_PRELOAD) -> None:
        self.startup_timeout = startup_timeout
        self.preload = preload
        self._starting: dict[Path, Future[_Kernel]] = {}
        self._running: dict[Path, _Kernel] = {}
        self._stopped: set[Path] = set()
        self._importing = False
        self._lock = threading.Lock()
        self._starter = ThreadPoolExecutor(max_workers=4, thread_name_prefix="medallion-kernel")
        self._stopper = ThreadPoolExecutor(max_workers=4, thread_name_prefix="medallion-kernel-stop")

    def __enter__(self) -> NotebookEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def prepare(self, tasks: Sequence[NotebookTask], *, warm: bool = True) -> None:
        """Start kernels for ``tasks`` in the background; :meth:`run` will use them.

        With ``warm=False`` the kernels only start (a bare kernel holds ~50 MB; one that ran
        the preload ~200 MB); the preload runs when they are prepared again with ``warm``,
        or before their notebook at the latest. The first call also imports papermill in the
        background, while the kernel starts.
        """
        if tasks:
            # jupyter_client's modules import each other: imported from two threads at once (a
            # kernel's start and papermill's import), one thread can get a half-initialized
            # module ("cannot import name 'AsyncKernelManager'"). Import it here, once, first.
            import jupyter_client.manager  # noqa: F401
        with self._lock:
            if tasks and not self._importing:
                self._importing = True
                self._starter.submit(_register_engine)
            for task in tasks:
                if task.output not in self._starting:
                    self._starting[task.output] = self._starter.submit(self._new_kernel, task, warm)
                elif warm:
                    self._starter.submit(_warm_started, self._starting[task.output])

    def discard(self, task: NotebookTask) -> None:
        """Stop, in the background, the kernel prepared for ``task`` (if any): it will not run."""
        with self._lock:
            future = self._starting.pop(task.output, None)
        if future is not None and not future.cancel():
            self._stopper.submit(_discard_started, future)

    def run(self, tasks: Sequence[NotebookTask], *, timeout: float | None = None) -> list[NotebookOutcome]:
        """Execute ``tasks`` side by side and wait for all of them.

        Args:
            tasks: the notebooks to run; each gets its own kernel.
            timeout: seconds for all of them together; notebooks still running
                then are stopped (their kernel is shut down) and fail.

        Returns:
            One outcome per task, in the order of ``tasks``.
        """
        if not tasks:
            return []
        self.prepare(tasks)
        pool = ThreadPoolExecutor(max_workers=len(tasks), thread_name_prefix="medallion-notebook")
        try:
            futures = [pool.submit(self._execute, task) for task in tasks]
            _, late = wait(futures, timeout=timeout)
            for task, future in zip(tasks, futures, strict=True):
                if future in late:
                    self._stop(task)
        except BaseException:  # Ctrl-C: stop the kernels, or the threads would run the notebooks to the end
            for task in tasks:
                self._stop(task)
            raise
        finally:
            pool.shutdown(wait=True)
        outcomes = [future.result() for future in futures]
        if late:
            outcomes = [
                NotebookOutcome(o.task, "failed", o.duration_s, _interrupted_cell(
                    o.task, "Timeout", f"still running at the layer timeout ({timeout:g}s); stopped"))
                if f in late else o
                for o, f in zip(outcomes, futures, strict=True)
            ]
        return outcomes

    def close(self) -> None:
        """Shut down every kernel this engine started and did not finish with."""
        with self._lock:
            pending = list(self._starting.values())
            self._starting.clear()
            running = list(self._running.values())
        for future in pending:
            future.cancel()
        for kernel in running:
            kernel.shutdown(now=True)
        for future in pending:
            if not future.cancelled() and future.exception() is None:
                future.result().discard()
        self._starter.shutdown(wait=True, cancel_futures=True)
        self._stopper.shutdown(wait=True)

    def stop_all(self) -> None:
        """Stop every running notebook now (their kernels are shut down); used on Ctrl-C."""
        with self._lock:
            running = list(self._running)
            self._stopped.update(self._starting)
        for output in running:
            with self._lock:
                self._stopped.add(output)
                kernel = self._running.get(output)
            if kernel is not None:
                kernel.shutdown(now=True)

    def _new_kernel(self, task: NotebookTask, warm: bool = True) -> _Kernel:
        kernel = _Kernel(task, startup_timeout=self.startup_timeout, preload=self.preload)
        if warm:
            try:
                kernel.warm()
            except BaseException:
                kernel.shutdown(now=True)
                raise
        return kernel

    def _stop(self, task: NotebookTask) -> None:
        with self._lock:
            self._stopped.add(task.output)
            kernel = self._running.get(task.output)
        if kernel is not None:
            kernel.shutdown(now=True)

    def _execute(self, task: NotebookTask) -> NotebookOutcome:
        import papermill
        from papermill.exceptions import PapermillExecutionError

        _register_engine()
        started = time.monotonic()
        task.output.parent.mkdir(parents=True, exist_ok=True)
        kernel: _Kernel | None = None
        error: CellError | None = None
        try:
            with self._lock:
                future = self._starting.pop(task.output)
            kernel = future.result()
            with self._lock:
                if task.output in self._stopped:
                    raise InterruptedError("stopped before it started")
                self._running[task.output] = kernel
            kernel.warm()  # started ahead without the preload: run it now (or wait for it to finish)
            papermill.execute_notebook(
                str(task.notebook), str(task.output), parameters=dict(task.parameters),
                engine_name=ENGINE_NAME, km=kernel.km, kernel_name=kernel.name,
                progress_bar=False, start_timeout=self.startup_timeout,
                on_cell=task.on_cell, source_notebook=task.notebook,
            )
        except PapermillExecutionError as exc:
            error = CellError(exc.ename, exc.evalue, _source_cell_index(task.notebook, exc.cell_index),
                              exc.exec_count, exc.source)
        except Exception as exc:  # a dead kernel or an unreadable notebook fails this notebook, not the runner
            error = _interrupted_cell(task, type(exc).__name__, str(exc).strip())
        finally:
            if kernel is not None:
                with self._lock:
                    self._running.pop(task.output, None)
                # A graceful shutdown takes ~0.5 s; the notebook's work is done
                # (its writes are committed), so the next layer need not wait.
                self._stopper.submit(kernel.shutdown)
        status = "failed" if error else "succeeded"
        return NotebookOutcome(task, status, time.monotonic() - started, error)


def _warm_started(future: Future[_Kernel]) -> None:
    """Run the preload in a kernel started without it (in the background; an error shows when it runs)."""
    future.result().warm()


def _discard_started(future: Future[_Kernel]) -> None:
    if future.exception() is None:
        future.result().discard()


def _kernel_name(notebook: Path) -> str:
    """The kernel a notebook asks for (its ``kernelspec``), read without nbformat.

    Raises:
        OSError, ValueError: the notebook cannot be read or is not JSON.
    """
    metadata = json.loads(notebook.read_text(encoding="utf-8")).get("metadata") or {}
    return (metadata.get("kernelspec") or {}).get("name") or DEFAULT_KERNEL


def _ignore(msg: dict[str, Any]) -> None:
    """Output hook that drops a silent request's messages."""


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the kernel's process, before it runs Python: be killed when the runner dies.

    The kernel runs in its own session (jupyter_client starts it so), so a signal to
    the runner's process group does not reach it; the parent-death signal does, at
    the moment the runner's process (the thread that started the kernel) ends,
    before the kernel could commit anything more.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:  # the runner died before prctl: do not outlive it
        os._exit(1)


def _cell_labels(executed: Any, source: Path | None) -> dict[int, tuple[int, int, str]]:
    """For each code cell of the executed notebook: (source cell index, number of source cells, label).

    The label is the cell's section (the last markdown heading above it) and its
    first line of code, e.g. ``Orders: latest = lake.latest("bronze.orders", ...``.
    """
    import nbformat

    try:
        source_cells = nbformat.read(source, as_version=4).cells if source is not None else None
    except (OSError, ValueError):
        source_cells = None
    index_of = _index_map(source_cells)
    total = len(source_cells) if source_cells is not None else len(executed.cells)
    out = {}
    heading = ""
    for i, cell in enumerate(executed.cells):
        text = cell.get("source", "")
        if cell.get("cell_type") == "markdown":
            heading = next((line.lstrip("#").strip() for line in text.splitlines() if line.startswith("#")), heading)
            continue
        first = next((line.strip() for line in text.splitlines()
                      if line.strip() and not line.strip().startswith("#")), "")
        label = f"{heading}: {first}" if heading and first else heading or first
        index = index_of(i)
        if index is not None:
            out[i] = (index, total, label)
    return out


def _index_map(source_cells: Any) -> Callable[[int], int | None]:
    """Maps papermill's cell index (which counts its injected-parameters cell) to the source notebook's."""
    if source_cells is None:
        return lambda i: i
    tags = [set(cell.get("metadata", {}).get("tags", [])) for cell in source_cells]
    if any("injected-parameters" in t for t in tags):
        return lambda i: i  # papermill replaced that cell in place
    injected = next((i for i, t in enumerate(tags) if "parameters" in t), -1) + 1
    return lambda i: None if i == injected else i - 1 if i > injected else i


def _interrupted_cell(task: NotebookTask, ename: str, evalue: str) -> CellError:
    """An error outside papermill's cell errors, placed at the last cell that started, if any."""
    import nbformat

    try:
        cells = nbformat.read(task.output, as_version=4).cells
    except (OSError, ValueError):
        return CellError(ename, evalue)
    started = [i for i, cell in enumerate(cells) if cell.get("metadata", {}).get("papermill", {}).get("start_time")]
    if not started:
        return CellError(ename, evalue)
    cell = cells[started[-1]]
    return CellError(ename, evalue, _source_cell_index(task.notebook, started[-1]),
                     cell.get("execution_count"), cell.source)


def _source_cell_index(notebook: Path, executed_index: int) -> int | None:
    """Map papermill's cell index (which counts its injected-parameters cell) to the source notebook's."""
    import nbformat

    try:
        cells = nbformat.read(notebook, as_version=4).cells
    except (OSError, ValueError):
        return executed_index
    return _index_map(cells)(executed_index)
