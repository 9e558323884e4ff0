// The explorer page's script (views/server.py serves it inline). STATE, the page's data,
// comes from the server: the file's graph, cases, bank names and their temperatures.
"use strict";
const STATE = JSON.parse(document.getElementById("am-state").textContent);
const $ = (id) => document.getElementById(id);
let seq = 0, timer = null;

function fillCase(k) {
  const c = STATE.cases[k];
  if (!c) return;
  $("sentence").value = c.sentence; $("probe").value = c.probe; $("expect").value = c.expect;
}
function gutter(errLine) {
  const n = $("graph").value.split("\n").length;
  const g = $("gutter");
  g.replaceChildren();
  for (let i = 1; i <= n; i++) {
    const d = document.createElement("div");
    d.textContent = i === errLine ? "⚠ " + i : String(i);
    if (i === errLine) { d.className = "err"; d.title = "error on this line"; }
    d.dataset.line = i;
    g.append(d);
  }
  g.scrollTop = $("graph").scrollTop;
}
function temp(bank) {
  const raw = $("temp-" + bank).value.trim();
  const parts = raw.split(/[,\s]+/).filter((s) => s.length);
  const nums = parts.map(Number);
  if (parts.length === 0 || nums.some((v) => Number.isNaN(v))) return raw;  // the server says why
  return nums.length === 1 ? nums[0] : nums;
}
function clearErrors() {
  $("error").hidden = true; $("graph-error").hidden = true;
  document.querySelectorAll(".bad").forEach((e) => e.classList.remove("bad"));
  gutter(0);
}
function showError(status, err) {
  $("result").classList.add("stale");
  if (err.kind === "graph") {
    gutter(err.line);
    const box = $("graph-error");
    box.replaceChildren();
    const p = document.createElement("div");
    p.className = "where";
    p.textContent = "line " + err.line + ", column " + err.column + ": " + err.message;
    const pre = document.createElement("pre");
    pre.textContent = err.text + "\n" + " ".repeat(Math.max(0, err.column - 1)) + "^";
    box.append(p, pre);
    box.hidden = false;
    $("graph").classList.add("bad");
    return;
  }
  const box = $("error");
  box.textContent = (status === 413 ? "too large: " : "") + err.message;
  box.dataset.status = status;
  box.hidden = false;
  const field = err.field && $(err.field);
  if (field) field.classList.add("bad");
}
// One edit, two answers: the numbers at once, then the same run with its figures
// (drawing them takes a second or more); an answer older than the latest edit is dropped.
async function post(body) {
  const resp = await fetch("api/run", {
    method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body),
  });
  return [resp, await resp.json()];
}
function show(data) {
  const result = $("result");
  result.classList.remove("stale");
  result.innerHTML = data.html;  // built by the server from escaped text
  amInit(result);
  const gf = $("graph-figure");
  if (data.graph_figure) {
    let img = gf.querySelector("img");
    if (!img) { img = document.createElement("img"); img.alt = "the relation graph"; gf.append(img); }
    img.src = data.graph_figure;
  }
}
async function run() {
  const my = ++seq;
  $("status").textContent = "running…";
  const body = {
    graph: $("graph").value, sentence: $("sentence").value, probe: $("probe").value,
    expect: $("expect").value, temp: {}, figures: false,
  };
  for (const b of STATE.banks) body.temp[b] = temp(b);
  try {
    let [resp, data] = await post(body);
    if (my !== seq) return;
    clearErrors();
    if (!resp.ok) {
      $("status").textContent = "";
      showError(resp.status, data.error || {message: "HTTP " + resp.status});
      return;
    }
    show(data);
    $("status").textContent = "drawing the figures…";
    [resp, data] = await post({...body, figures: true});
    if (my !== seq) return;
    $("status").textContent = "";
    if (resp.ok) show(data);
    else showError(resp.status, data.error || {message: "HTTP " + resp.status});
  } catch (e) {
    if (my !== seq) return;
    $("status").textContent = "";
    showError(0, {kind: "network", message: "no answer from the explorer: " + e});
  }
}
function soon() { clearTimeout(timer); timer = setTimeout(run, 350); }

document.addEventListener("DOMContentLoaded", () => {
  $("graph").value = STATE.graph;
  for (const b of STATE.banks) $("temp-" + b).value = STATE.temp[b];
  const pick = $("case-pick");
  STATE.cases.forEach((c, k) => pick.add(new Option(c.name + ": " + c.sentence, String(k))));
  pick.addEventListener("change", () => { fillCase(Number(pick.value)); run(); });
  fillCase(0);
  gutter(0);
  $("graph").addEventListener("scroll", () => { $("gutter").scrollTop = $("graph").scrollTop; });
  $("graph").addEventListener("input", () => { gutter(0); soon(); });
  for (const id of ["sentence", "probe", "expect", ...STATE.banks.map((b) => "temp-" + b)]) {
    $(id).addEventListener("input", soon);
  }
  $("form").addEventListener("submit", (e) => { e.preventDefault(); clearTimeout(timer); run(); });
  run();
});
