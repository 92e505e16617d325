// digitlab draw-a-digit page: strokes on a canvas -> PNG -> POST /v1/predict -> results.
"use strict";

const pad = document.getElementById("pad");
const ctx = pad.getContext("2d");
const seen = document.getElementById("seen").getContext("2d");
const $ = (id) => document.getElementById(id);
const strokes = [];          // each stroke: a list of [x, y] points in canvas pixels
let drawing = null;          // the stroke under the pointer
let pending = null;          // timer for predictions while drawing
let inFlight = 0;            // request counter: only the latest answer is shown

const LINE = 20;             // stroke width on the 280 px canvas: MNIST-like thickness after scaling

for (let d = 0; d < 10; d++) {
  $("bars").insertAdjacentHTML("beforeend",
    `<div class="bar" id="bar${d}"><span>${d}</span><div class="track"><div class="fill"></div></div>` +
    `<span class="pct">–</span></div>`);
}

function paint() {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, pad.width, pad.height);
  ctx.strokeStyle = "#000";
  ctx.lineWidth = LINE;
  ctx.lineCap = ctx.lineJoin = "round";
  for (const s of strokes) {
    ctx.beginPath();
    ctx.moveTo(s[0][0], s[0][1]);
    if (s.length === 1) ctx.lineTo(s[0][0] + 0.01, s[0][1]);  // a dot
    // Quadratic curves through the midpoints: smooth strokes from jittery pointer samples.
    for (let i = 1; i < s.length - 1; i++) {
      const mx = (s[i][0] + s[i + 1][0]) / 2, my = (s[i][1] + s[i + 1][1]) / 2;
      ctx.quadraticCurveTo(s[i][0], s[i][1], mx, my);
    }
    if (s.length > 1) ctx.lineTo(s[s.length - 1][0], s[s.length - 1][1]);
    ctx.stroke();
  }
  const empty = strokes.length === 0;
  $("hint").hidden = !empty;
  $("undo").disabled = $("clear").disabled = empty;
}

function point(e) {
  const r = pad.getBoundingClientRect();
  return [(e.clientX - r.left) * pad.width / r.width, (e.clientY - r.top) * pad.height / r.height];
}

pad.addEventListener("pointerdown", (e) => {
  e.preventDefault();
  pad.setPointerCapture(e.pointerId);
  drawing = [point(e)];
  strokes.push(drawing);
  paint();
});
pad.addEventListener("pointermove", (e) => {
  if (!drawing) return;
  for (const ev of e.getCoalescedEvents ? e.getCoalescedEvents() : [e]) drawing.push(point(ev));
  paint();
  if (!pending) pending = setTimeout(() => { pending = null; predictCanvas(); }, 250);  // live, throttled
});
for (const type of ["pointerup", "pointercancel"]) {
  pad.addEventListener(type, () => { if (drawing) { drawing = null; predictCanvas(); } });
}

$("undo").addEventListener("click", () => { strokes.pop(); paint(); strokes.length ? predictCanvas() : reset(); });
$("clear").addEventListener("click", () => { strokes.length = 0; paint(); reset(); });
$("file").addEventListener("change", (e) => { if (e.target.files[0]) predictFile(e.target.files[0]); });
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  if (e.dataTransfer.files[0]) predictFile(e.dataTransfer.files[0]);
});

function reset() {
  inFlight++;
  show({ state: "empty" });
}

function predictCanvas() {
  if (!strokes.length) return reset();
  pad.toBlob((blob) => send(blob, "drawing.png"), "image/png");
}

function predictFile(file) {
  strokes.length = 0;
  paint();
  const img = new Image();
  img.onload = () => {  // show the dropped image on the pad, scaled to fit
    const s = Math.min(pad.width / img.width, pad.height / img.height);
    ctx.drawImage(img, (pad.width - img.width * s) / 2, (pad.height - img.height * s) / 2, img.width * s, img.height * s);
    $("hint").hidden = true;
    $("clear").disabled = false;
    URL.revokeObjectURL(img.src);
  };
  img.src = URL.createObjectURL(file);
  send(file, file.name);
}

async function send(blob, name) {
  const ticket = ++inFlight;
  const body = new FormData();
  body.append("file", blob, name);
  const panel = document.querySelector(".result");
  panel.classList.add("busy");
  panel.dataset.state = "reading";
  if ($("digit").textContent === "–") $("status").textContent = "Reading…";  // keep the last answer meanwhile
  try {
    const response = await fetch("/v1/predict?top_k=3", { method: "POST", body });
    const data = await response.json().catch(() => ({ error: `server answered ${response.status}` }));
    if (ticket !== inFlight) return;  // a newer drawing is on its way
    if (!response.ok) return show({ state: "error", message: data.error || `server answered ${response.status}` });
    show({ state: data.digit === null ? "declined" : "ok", data });
  } catch (err) {
    if (ticket === inFlight) show({ state: "error", message: "cannot reach the server: " + err.message });
  }
}

function show({ state, data, message }) {
  const panel = document.querySelector(".result");
  panel.classList.remove("busy");
  panel.dataset.state = state;  // empty, ok, declined or error: for styling and for tests
  const status = $("status");
  status.className = "status " + (state === "declined" || state === "error" ? state : "");
  $("digit").textContent = state === "ok" ? data.digit : state === "declined" ? "?" : "–";
  status.textContent = {
    empty: "Waiting for a digit.",
    ok: data && `Confidence ${(100 * (data.confidence || 0)).toFixed(1)}%`,
    declined: data && data.reason && data.reason.charAt(0).toUpperCase() + data.reason.slice(1),  // says why
    error: `Something went wrong: ${message}`,
  }[state];
  const probs = data && data.probabilities;
  const top = probs ? probs.indexOf(Math.max(...probs)) : -1;
  for (let d = 0; d < 10; d++) {
    const bar = $("bar" + d);
    bar.classList.toggle("top", d === top && state === "ok");
    bar.querySelector(".fill").style.width = probs ? `${(100 * probs[d]).toFixed(1)}%` : "0";
    bar.querySelector(".pct").textContent = probs ? `${(100 * probs[d]).toFixed(1)}%` : "–";
  }
  const pixels = seen.createImageData(28, 28);
  for (let i = 0; i < 784; i++) {
    const v = data && data.input28 ? data.input28[Math.floor(i / 28)][i % 28] : 0;
    pixels.data.set([v, v, v, 255], i * 4);
  }
  seen.putImageData(pixels, 0, 0);
}

fetch("/v1/model").then((r) => r.json()).then((m) => {
  const acc = m.metrics && m.metrics.test_accuracy ? `, ${(100 * m.metrics.test_accuracy).toFixed(2)}% on the MNIST test set` : "";
  $("model").textContent = `Model: ${m.name} (${m.format}${acc}) · digitlab ${m.digitlab_version}`;
}).catch(() => { $("model").textContent = "Model information unavailable."; });

paint();
show({ state: "empty" });
