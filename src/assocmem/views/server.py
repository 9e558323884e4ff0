"""The explorer: a local web page to edit a graph, a sentence, a probe and the
temperatures, and see the logits, the heat maps and PASS/FAIL update.

``assocmem serve [FILE]`` runs :func:`create_app` under uvicorn. The app

- reads no file: the optional experiment is parsed once by the command and handed
  in; requests carry text only (no path parameters, no static folder);
- bounds every input (:class:`Limits`): too large → 413, malformed → 422, always a
  JSON ``{"error": {"kind", "message", ...}}`` the page shows, never a traceback;
  a graph error carries its ``line`` and ``column`` (of the graph text box);
- accepts only ``application/json`` posts, so another site cannot post to it
  without a CORS preflight, which it does not answer.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from html import escape
from importlib import resources
from string import Template
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, StrictFloat, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.middleware.trustedhost import TrustedHostMiddleware

from assocmem.config import BANKS
from assocmem.errors import AssocmemError
from assocmem.experiment import Case, Experiment, parse_experiment, run_case, unknown_token
from assocmem.graph import GraphSyntaxError, parse_graph
from assocmem.views.assets import CSS, VIEWER_JS
from assocmem.views.figures import figure_bytes, graph_figure
from assocmem.views.report import (
    case_figures,
    case_html,
    script_json,
    settings_text,
    svg_data_uri,
    temp_text,
)

__all__ = ["Limits", "ApiError", "RunRequest", "Explorer", "create_app", "DEFAULT_EXPERIMENT"]

log = logging.getLogger(__name__)

# Used when `assocmem serve` is given no file: the seed experiment, shipped once as package
# data (assocmem/data/masha.toml; examples/masha.toml is the same file, a test checks), with
# the settings docs/seed.md chose (the library's defaults get the first sentence wrong).
DEFAULT_EXPERIMENT = resources.files("assocmem.data").joinpath("masha.toml").read_text("utf-8")


@dataclass(frozen=True)
class Limits:
    """Bounds on one request: each keeps a run to well under a second."""

    body_bytes: int = 64_000
    graph_bytes: int = 20_000
    graph_lines: int = 200
    sentence_tokens: int = 64
    token_chars: int = 64
    temp_min: float = 1e-3  # below this the softmax saturates to NaN-prone extremes
    temp_max: float = 1e3
    temp_layers: int = 16
    graph_figure_tokens: int = 60
    # the case figures (heat maps, logit lens) of a graph with more distinct tokens are not
    # drawn: 20,000 bytes hold thousands of tokens, and drawing them failed (MemoryError)
    figure_tokens: int = 400


class ApiError(Exception):
    """An error the page shows: HTTP ``status`` and a JSON body ``{"error": {...}}``."""

    def __init__(self, status: int, kind: str, message: str, **extra: Any):
        super().__init__(message)
        self.status, self.kind, self.message, self.extra = status, kind, message, extra

    def body(self) -> dict[str, Any]:
        return {"error": {"kind": self.kind, "message": self.message, **self.extra}}


class RunRequest(BaseModel):
    """One run: the graph text, the sentence, the probe, optionally the expected top
    token and temperatures (per bank: a number, or one per layer)."""

    model_config = ConfigDict(extra="forbid")

    graph: str
    sentence: str
    probe: str
    expect: str | None = None
    name: str = "explorer"
    # strict: JSON true is not a temperature of 1.0, nor "0.5" one of 0.5
    temp: dict[str, StrictFloat | list[StrictFloat]] = {}
    figures: bool = True


class Explorer:
    """Runs requests against a base experiment (its model settings and embedding)."""

    def __init__(self, base: Experiment, limits: Limits | None = None):
        self.base = base
        self.limits = limits or Limits()
        self._draw = threading.Lock()  # matplotlib's text and font caches are shared
        self._graphs: OrderedDict[str, str] = OrderedDict()  # graph text -> figure URI
        # a run's figures by what decides them: going back to an earlier input (or a
        # reload) shows them at once instead of drawing them again (seconds each)
        self._figures: OrderedDict[tuple, dict[str, str]] = OrderedDict()

    def initial_state(self) -> dict[str, Any]:
        """What the page starts with: the file's graph, cases and temperatures."""
        cfg = self.base.config
        return {
            "source": self.base.file,
            "graph": "\n".join(str(s) for s in self.base.graph.slots),
            "cases": [
                {
                    "name": c.name,
                    "sentence": " ".join(c.sentence),
                    "probe": c.probe,
                    "expect": c.expect or "",
                }
                for c in self.base.cases
            ],
            "banks": list(BANKS),
            "temp": {b: temp_text(getattr(cfg, f"temp_{b}")) for b in BANKS},
            "settings": settings_text(self.base),
        }

    def _check_sizes(self, req: RunRequest) -> None:
        lim = self.limits
        size = len(req.graph.encode("utf-8"))
        if size > lim.graph_bytes:
            raise ApiError(
                413,
                "too_large",
                f"the graph is {size} bytes; the explorer takes at most {lim.graph_bytes}",
                field="graph",
            )
        lines = len(req.graph.splitlines())  # as the parser counts: \r, \u2028 ... too
        if lines > lim.graph_lines:
            raise ApiError(
                413,
                "too_large",
                f"the graph has {lines} lines; the explorer takes at most {lim.graph_lines}",
                field="graph",
            )
        n = len(req.sentence.split())
        if n > lim.sentence_tokens:
            raise ApiError(
                413,
                "too_large",
                f"the sentence has {n} tokens; the explorer takes at most {lim.sentence_tokens}",
                field="sentence",
            )
        for what, text in (("probe", req.probe), ("expect", req.expect or ""), ("name", req.name)):
            if len(text) > lim.token_chars:
                raise ApiError(
                    413,
                    "too_large",
                    f"the {what} is {len(text)} characters; at most {lim.token_chars}",
                    field=what,
                )

    def _temps(self, req: RunRequest) -> dict[str, float | tuple[float, ...]]:
        lim = self.limits
        out: dict[str, float | tuple[float, ...]] = {}
        for bank, t in req.temp.items():
            if bank not in BANKS:
                raise ApiError(
                    422,
                    "input",
                    f"unknown bank {bank!r} in temp (known: {', '.join(BANKS)})",
                    field=f"temp-{bank}",
                )
            values = t if isinstance(t, list) else [t]
            if not values or len(values) > lim.temp_layers:
                raise ApiError(
                    422,
                    "input",
                    f"temp {bank}: give one number, or one per layer (at most {lim.temp_layers})",
                    field=f"temp-{bank}",
                )
            for v in values:
                if not lim.temp_min <= v <= lim.temp_max:  # NaN fails this too
                    raise ApiError(
                        422,
                        "input",
                        f"temp {bank} must be between {lim.temp_min:g} and {lim.temp_max:g}, "
                        f"got {v:g}",
                        field=f"temp-{bank}",
                    )
            out[f"temp_{bank}"] = tuple(values) if isinstance(t, list) else float(t)
        return out

    def _graph_figure(self, text: str, graph: Any) -> str:
        return _remember(
            self._graphs,
            text,
            lambda: svg_data_uri(
                figure_bytes(graph_figure(graph, max_tokens=self.limits.graph_figure_tokens), "svg")
            ),
        )

    def run(self, req: RunRequest) -> dict[str, Any]:
        """Run one request; raise :class:`ApiError`, :class:`GraphSyntaxError` or
        :class:`AssocmemError` for the page to show."""
        self._check_sizes(req)
        graph = parse_graph(req.graph, file="graph")  # line numbers of the text box
        sentence = tuple(req.sentence.split())
        probe = req.probe.strip().lstrip("*")
        expect = (req.expect or "").strip() or None
        if not sentence:
            raise ApiError(
                422,
                "input",
                "the sentence is empty: write tokens separated by spaces",
                field="sentence",
            )
        if not probe or len(probe.split()) != 1:
            raise ApiError(422, "input", "the probe is one token, e.g. ОНА", field="probe")
        bad = unknown_token(graph, sentence, probe, expect, self.base.vocabulary)
        if bad is not None:
            what, _, message = bad
            raise ApiError(422, "input", message, field=what)
        config = replace(self.base.config, **self._temps(req))  # validates (InputError)
        case = Case(name=req.name, sentence=sentence, probe=probe, expect=expect)
        exp = replace(self.base, graph=graph, config=config, cases=(case,))
        result = run_case(exp.build(), case, where="sentence")
        figures: dict[str, str] = {}
        graph_uri, note = None, ""
        if req.figures and len(graph.tokens) > self.limits.figure_tokens:
            note = (
                f'<p class="muted figure-note">No figures: the graph has {len(graph.tokens)} '
                f"distinct tokens; the explorer draws them for at most "
                f"{self.limits.figure_tokens} (the numbers above are complete).</p>"
            )
        elif req.figures:
            with self._draw:
                key = (req.graph, case, config)  # the base experiment is fixed
                figures = _remember(self._figures, key, lambda: case_figures(result))
                graph_uri = self._graph_figure(req.graph, graph)
        return {
            "name": case.name,
            "tokens": result.trace.tokens,
            "logits": result.logits,
            "top": result.top,
            "expect": expect,
            "pass": result.passed,
            "margin": result.margin if len(result.logits) > 1 else None,
            "html": case_html(result, figures, slug="explorer") + note,
            "graph_figure": graph_uri,
        }


def _remember(cache: OrderedDict, key: Any, make: Any, size: int = 8) -> Any:
    """``cache[key]``, made by ``make()`` when missing; the ``size`` latest keys are kept."""
    if key not in cache:
        cache[key] = make()
        while len(cache) > size:
            cache.popitem(last=False)
    cache.move_to_end(key)
    return cache[key]


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) past ``limit`` bytes without reading further."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "too_large", f"the request is {declared} bytes; at most {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "too_large", f"the request is over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _validation_message(e: ValidationError) -> str:
    first = e.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()) if not str(p).startswith("function"))
    return f"{where or 'request'}: {first.get('msg', 'invalid')}"


def create_app(
    experiment: Experiment | None = None,
    limits: Limits | None = None,
    allowed_hosts: list[str] | None = None,
) -> FastAPI:
    """The explorer app over ``experiment`` (default: the seed, :data:`DEFAULT_EXPERIMENT`).

    ``allowed_hosts`` restricts the ``Host`` header (the command passes the loopback
    names when bound to loopback: a page elsewhere cannot rebind a name onto it).
    """
    explorer = Explorer(experiment or parse_experiment(DEFAULT_EXPERIMENT, file="<seed>"), limits)
    app = FastAPI(title="assocmem explorer", docs_url=None, redoc_url=None, openapi_url=None)
    if allowed_hosts:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)
    app.state.explorer = explorer

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, e: ApiError) -> JSONResponse:
        return JSONResponse(e.body(), status_code=e.status)

    @app.exception_handler(GraphSyntaxError)
    async def _graph_error(request: Request, e: GraphSyntaxError) -> JSONResponse:
        return JSONResponse(
            {
                "error": {
                    "kind": "graph",
                    "message": e.message,
                    "line": e.line,
                    "column": e.column,
                    "text": e.text,
                    "field": "graph",
                }
            },
            status_code=422,
        )

    @app.exception_handler(AssocmemError)
    async def _input_error(request: Request, e: AssocmemError) -> JSONResponse:
        return JSONResponse({"error": {"kind": "input", "message": str(e)}}, status_code=422)

    @app.exception_handler(Exception)
    async def _internal(request: Request, e: Exception) -> JSONResponse:
        log.exception("explorer: unexpected error")  # the traceback stays in the server log
        return JSONResponse(
            {"error": {"kind": "internal", "message": f"internal error ({type(e).__name__})"}},
            status_code=500,
        )

    @app.get("/", response_class=HTMLResponse)
    def page() -> HTMLResponse:
        return HTMLResponse(
            explorer_page(explorer.initial_state()), headers={"Content-Security-Policy": PAGE_CSP}
        )

    @app.post("/api/run")
    async def api_run(request: Request) -> JSONResponse:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise ApiError(415, "bad_request", "post JSON (Content-Type: application/json)")
        body = await _read_body(request, explorer.limits.body_bytes)
        try:
            req = RunRequest.model_validate_json(body)
        except ValidationError as e:
            raise ApiError(422, "bad_request", _validation_message(e)) from None
        return JSONResponse(await run_in_threadpool(explorer.run, req))

    return app


PAGE_CSP = (
    "default-src 'none'; connect-src 'self'; img-src data:; style-src 'unsafe-inline'; "
    "script-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
)


def _package_text(name: str) -> str:
    """A text file shipped beside this module (the explorer's page, style and script)."""
    return resources.files("assocmem.views").joinpath(name).read_text(encoding="utf-8")


def explorer_page(state: dict[str, Any]) -> str:
    """The explorer's HTML (explorer.html, .css, .js beside this module); ``state`` (the
    file's graph, cases, bank names, temperatures) rides along as JSON and fills the form."""
    temp_inputs = "\n".join(
        f'<div><label for="temp-{b}">{b}</label><input type="text" id="temp-{b}"></div>'
        for b in state["banks"]
    )
    return Template(_package_text("explorer.html")).substitute(
        source=escape(state["source"]),
        settings=escape(state["settings"]),
        css=CSS + _package_text("explorer.css"),
        temp_inputs=temp_inputs,
        state=script_json(state),
        viewer_js=VIEWER_JS,
        explorer_js=_package_text("explorer.js"),
    )
