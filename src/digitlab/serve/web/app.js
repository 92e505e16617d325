// digitlab draw-a-digit page: strokes on a canvas -> PNG -> POST /v1/predict -> results.
// Two pads: a square one for one digit, a wide one (3:1) for a number (?number=true).
"use strict";

const pad = document.getElementById("pad");
const ctx = pad.getContext("2d");
const seen = document.getElementById("seen");
const $ = (id) => document.getElementById(id);
const strokes = [];          // each stroke: a list of [x, y] points in canvas pixels
let drawing = null;          // the stroke under the pointer
let frame = 0;               // a repaint waiting for the next animation frame
let inFlight = 0;            // request counter: only the latest answer is shown
let mode = "digit";          // "digit" or "number"
let maxUpload = 4 * 1024 * 1024;  // the server's limit, read from /v1/model below

const LINE = 20;             // stroke width on the 280 px high canvas: MNIST-like thickness after scaling
const WIDE = 3;              // the number pad is three times as wide as high
const MAX_SIDE = 1600;       // photos are scaled down to this longer side before upload: plenty for digits

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
  if (!frame) frame = requestAnimationFrame(() => { frame = 0; paint(); });  // once a frame, however fast the pen
});
// One request per stroke, when the pen lifts: reading a half-drawn stroke only flickers wrong answers.
for (const type of ["pointerup", "pointercancel"]) {
  pad.addEventListener(type, () => {
    if (!drawing) return;
    drawing = null;
    cancelAnimationFrame(frame);
    frame = 0;
    paint();  // the whole stroke, before the canvas is read
    predictCanvas();
  });
}

$("undo").addEventListener("click", () => { strokes.pop(); paint(); strokes.length ? predictCanvas() : reset(); });
$("clear").addEventListener("click", () => { strokes.length = 0; paint(); reset(); });
$("file").addEventListener("change", (e) => { if (e.target.files[0]) predictFile(e.target.files[0]); e.target.value = ""; });
$("mode-digit").addEventListener("click", () => setMode("digit"));
$("mode-number").addEventListener("click", () => setMode("number"));
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  if (e.dataTransfer.files[0]) predictFile(e.dataTransfer.files[0]);
});

function setMode(next) {
  mode = next;
  document.body.dataset.mode = mode;  // the layout follows: a wide pad above the answer
  $("mode-digit").setAttribute("aria-pressed", String(mode === "digit"));
  $("mode-number").setAttribute("aria-pressed", String(mode === "number"));
  $("hint-what").textContent = mode === "number" ? "Write a number here" : "Draw a digit here";
  pad.width = mode === "number" ? WIDE * pad.height : pad.height;  // resizing clears the canvas
  history.replaceState(null, "", mode === "number" ? "#number" : location.pathname);
  strokes.length = 0;
  paint();
  reset();
}

function reset() {
  inFlight++;
  show({ state: "empty" });
}

function predictCanvas() {
  if (!strokes.length) return reset();
  pad.toBlob((blob) => send(blob, "drawing.png"), "image/png");
}

async function predictFile(file) {
  strokes.length = 0;
  paint();
  const img = new Image();
  img.src = URL.createObjectURL(file);
  const decoded = await img.decode().then(() => true, () => false);  // false: the server says what is wrong
  URL.revokeObjectURL(img.src);
  if (decoded) {  // show it on the pad, scaled to fit
    const s = Math.min(pad.width / img.naturalWidth, pad.height / img.naturalHeight);
    const w = img.naturalWidth * s, h = img.naturalHeight * s;
    ctx.drawImage(img, (pad.width - w) / 2, (pad.height - h) / 2, w, h);
    $("hint").hidden = true;
    $("clear").disabled = false;
  }
  const small = decoded ? await shrink(file, img) : file;
  send(small, small === file ? file.name : file.name.replace(/\.[^.]*$/, "") + ".jpg");
}

// A phone photo (4-12 MB, 12 megapixels) would be refused as over the upload limit and is far
// more than a digit needs: scale it to MAX_SIDE as a JPEG. Small files go as they are. (An <img>
// is upright as the camera meant it: browsers apply the photo's EXIF orientation.)
function shrink(file, img) {
  const s = Math.min(1, MAX_SIDE / Math.max(img.naturalWidth, img.naturalHeight));
  if (s === 1 && file.size <= maxUpload - 65536) return Promise.resolve(file);  // room for the form's own bytes
  const canvas = document.createElement("canvas");
  canvas.width = Math.round(img.naturalWidth * s);
  canvas.height = Math.round(img.naturalHeight * s);
  const c = canvas.getContext("2d");
  c.fillStyle = "#fff";  // JPEG has no transparency: a transparent background becomes paper
  c.fillRect(0, 0, canvas.width, canvas.height);
  c.drawImage(img, 0, 0, canvas.width, canvas.height);
  return new Promise((resolve) => canvas.toBlob((blob) => resolve(blob || file), "image/jpeg", 0.92));
}

async function send(blob, name) {
  const ticket = ++inFlight;
  const body = new FormData();
  body.append("file", blob, name);
  const panel = document.querySelector(".result");
  panel.classList.add("busy");
  panel.dataset.state = "reading";
  if ($("digit").textContent === "–") $("status").textContent = "Reading…";  // keep the last answer meanwhile
  const query = mode === "number" ? "number=true&top_k=1" : "top_k=3";
  try {
    const response = await fetch(`/v1/predict?${query}`, { method: "POST", body });
    const data = await response.json().catch(() => ({ error: `server answered ${response.status}` }));
    if (ticket !== inFlight) return;  // a newer drawing is on its way
    if (!response.ok) return show({ state: "error", message: data.error || `server answered ${response.status}` });
    const read = mode === "number" ? data.number : data.digit;
    show({ state: read === null || read === undefined ? "declined" : "ok", data });
  } catch (err) {
    if (ticket === inFlight) show({ state: "error", message: "cannot reach the server: " + err.message });
  }
}

const capital = (text) => text && text.charAt(0).toUpperCase() + text.slice(1);
const percent = (p) => `${(100 * (p || 0)).toFixed(1)}%`;

function show({ state, data, message }) {
  const panel = document.querySelector(".result");
  panel.classList.remove("busy");
  panel.dataset.state = state;  // empty, ok, declined or error: for styling and for tests
  const status = $("status");
  status.className = "status " + (state === "declined" || state === "error" ? state : "");
  const answer = data && (mode === "number" ? data.number : data.digit);
  $("digit").textContent = state === "ok" ? answer : state === "declined" ? "?" : "–";
  status.textContent = {
    empty: mode === "number" ? "Waiting for a number." : "Waiting for a digit.",
    ok: data && (mode === "number" ? numberStatus(data) : `Confidence ${percent(data.confidence)}`),
    declined: data && capital(data.reason || "no digits found"),  // says why
    error: `Something went wrong: ${message}`,
  }[state];
  if (mode === "digit") showBars(state, data && data.probabilities);
  else showDigits(data && data.digits);
  showSeen(data && data.input28);
}

function numberStatus({ digits, confidence }) {  // the number's confidence: its least sure digit's
  const sure = confidence ?? Math.min(...digits.map((d) => d.confidence));
  return `${digits.length} digit${digits.length === 1 ? "" : "s"} · confidence ${percent(sure)}`;
}

function showBars(state, probs) {
  const top = probs ? probs.indexOf(Math.max(...probs)) : -1;
  for (let d = 0; d < 10; d++) {
    const bar = $("bar" + d);
    bar.classList.toggle("top", d === top && state === "ok");
    bar.querySelector(".fill").style.width = probs ? `${(100 * probs[d]).toFixed(1)}%` : "0";
    bar.querySelector(".pct").textContent = probs ? `${(100 * probs[d]).toFixed(1)}%` : "–";
  }
}

function showDigits(digits) {  // one chip a digit: what was read and how sure, or why not
  const list = $("digits");
  list.replaceChildren();
  for (const d of digits || []) {
    const item = document.createElement("li");
    item.className = d.digit === null ? "declined" : "";
    item.innerHTML = `<b></b><span></span>`;
    item.querySelector("b").textContent = d.digit === null ? "?" : d.digit;
    item.querySelector("span").textContent = d.digit === null ? capital(d.reason) : percent(d.confidence);
    list.append(item);
  }
}

function showSeen(rows) {  // the 28x28 images the model read, side by side for a number
  const width = rows ? rows[0].length : 28;
  seen.width = width;
  seen.style.width = `${3 * width}px`;
  const c = seen.getContext("2d");
  const pixels = c.createImageData(width, 28);
  for (let i = 0; i < width * 28; i++) {
    const v = rows ? rows[Math.floor(i / width)][i % width] : 0;
    pixels.data.set([v, v, v, 255], i * 4);
  }
  c.putImageData(pixels, 0, 0);
}

fetch("/v1/model").then((r) => r.json()).then((m) => {
  const acc = m.metrics && m.metrics.test_accuracy ? `, ${(100 * m.metrics.test_accuracy).toFixed(2)}% on the MNIST test set` : "";
  $("model").textContent = `Model: ${m.name} (${m.format}${acc}) · digitlab ${m.digitlab_version}`;
  if (m.input && m.input.max_upload_bytes) maxUpload = m.input.max_upload_bytes;
}).catch(() => { $("model").textContent = "Model information unavailable."; });

if (location.hash === "#number") setMode("number");
else { paint(); show({ state: "empty" }); }
