"""The script of the HTML report: canvas charts, no library, nothing fetched.

Kept as a Python string so that the report is one file, written with the
package and nothing else. Canvas, not SVG: 100,000 bars draw in tens of
milliseconds and the page stays responsive (a DOM node per bar would not).
"""

SCRIPT = r"""
"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
const T = D.task, S = D.seg, NS = S.r.length, NR = D.rows.length;
const dpr = window.devicePixelRatio || 1;
function fmt(ms) {
  if (ms === null || ms < 0) return "-";
  if (ms === 0) return "0";
  const s = ms / 1000;
  if (s < 1) return ms.toFixed(ms < 10 ? 2 : 0) + " ms";
  if (s < 60) return s.toFixed(2) + " s";
  const h = Math.floor(s / 3600), m = Math.floor(s % 3600 / 60), x = Math.round(s % 60);
  return (h ? h + ":" + String(m).padStart(2, "0") : m) + ":" + String(x).padStart(2, "0");
}
function canvas(id, h) {
  const c = document.getElementById(id);
  const w = c.parentElement.clientWidth || 900;
  c.width = w * dpr; c.height = h * dpr;
  c.style.width = w + "px"; c.style.height = h + "px";
  const g = c.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  return [c, g, w, h];
}
const L = 70, R = 10, TOP = 8, B = 22;
function ticks(g, a, b, x0, x1, y) {
  g.fillStyle = "#333"; g.font = "11px sans-serif"; g.textAlign = "center";
  const span = b - a, raw = span / 8, p = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map(k => k * p).find(k => k >= raw) || raw;
  for (let t = Math.ceil(a / step) * step; t <= b; t += step) {
    const x = x0 + (t - a) / span * (x1 - x0);
    g.fillRect(x, y, 1, 4); g.fillText(fmt(t), x, y + 15);
  }
}
// -- Gantt: a bar per task per core; rows thinner than a pixel share it -----------
let view = [0, D.span];
const byRow = Array.from({length: NR}, () => []);
for (let i = 0; i < NS; i++) byRow[S.r[i]].push(i);
for (const r of byRow) r.sort((p, q) => T.s[S.k[p]] - T.s[S.k[q]]);
const GH = Math.min(Math.max(NR * 14, 120), 520);
function end(k) { return T.e[k] < 0 ? D.span : T.e[k]; }
function drawGrid() {
  const [c, g, w, h] = canvas("gantt", GH + B);
  const x0 = L, x1 = w - R, G = D.grid, rh = GH / G.length, cw = (x1 - x0) / G[0].length;
  g.clearRect(0, 0, w, h);
  g.fillStyle = D.colours[0];
  for (let r = 0; r < G.length; r++) for (let i = 0; i < G[r].length; i++) {
    if (!G[r][i]) continue;
    g.globalAlpha = 0.1 + 0.9 * G[r][i];
    g.fillRect(x0 + i * cw, r * rh, Math.max(cw, 0.6), Math.max(rh, 0.6));
  }
  g.globalAlpha = 1;
  ticks(g, 0, D.span, x0, x1, GH);
}
function drawGantt() {
  if (D.grid) return drawGrid();
  const [c, g, w, h] = canvas("gantt", GH + B);
  const x0 = L, x1 = w - R, rh = GH / NR, [a, b] = view, k = (x1 - x0) / (b - a);
  g.clearRect(0, 0, w, h);
  for (let i = 0; i < NS; i++) {
    const t = S.k[i], s = T.s[t], e = end(t);
    if (e < a || s > b) continue;
    const xs = x0 + Math.max(s - a, 0) * k, xe = x0 + (Math.min(e, b) - a) * k;
    g.fillStyle = D.colours[T.st[t]];
    g.fillRect(xs, S.r[i] * rh, Math.max(xe - xs, 0.6), Math.max(rh - (rh > 4 ? 1 : 0), 0.6));
  }
  g.fillStyle = "#333"; g.font = "11px sans-serif"; g.textAlign = "right";
  for (const [name, first, n] of D.nodes) {
    g.fillRect(0, first * rh, x0 - 2, 0.5);
    if (n * rh >= 11) g.fillText(name, x0 - 4, first * rh + Math.min(n * rh, 24) / 2 + 4);
  }
  ticks(g, a, b, x0, x1, GH);
}
const tip = document.getElementById("tip");
function taskAt(ev) {
  const c = document.getElementById("gantt"), rect = c.getBoundingClientRect();
  const x = ev.clientX - rect.left, y = ev.clientY - rect.top, w = rect.width;
  if (x < L || y >= GH) return -1;
  const row = Math.floor(y / (GH / NR)), [a, b] = view;
  const t = a + (x - L) / (w - R - L) * (b - a), segs = byRow[row] || [];
  const slack = (b - a) / (w - R - L);  // a bar is at least a pixel wide
  let lo = 0, hi = segs.length - 1, best = -1;
  while (lo <= hi) { const m = (lo + hi) >> 1; if (T.s[S.k[segs[m]]] <= t + slack) { best = m; lo = m + 1; } else hi = m - 1; }
  for (let j = best; j >= 0 && j > best - 3; j--) { const k = S.k[segs[j]]; if (end(k) >= t - slack) return k; }
  return -1;
}
let drag = null;
const gc = document.getElementById("gantt");
function gridTip(ev) {
  const rect = gc.getBoundingClientRect(), G = D.grid;
  const x = ev.clientX - rect.left - L, y = ev.clientY - rect.top, wd = rect.width - R - L;
  if (x < 0 || x > wd || y >= GH) { tip.style.display = "none"; return; }
  const r = Math.floor(y / (GH / G.length)), i = Math.floor(x / wd * G[0].length);
  const a = D.rows[r * D.per], b = D.rows[Math.min((r + 1) * D.per, NR) - 1];
  tip.textContent = `cores ${a}..${b}, ${fmt(i / G[0].length * D.span)}..${fmt((i + 1) / G[0].length * D.span)}: ${Math.round(100 * G[r][i])}% busy`;
  tip.style.display = "block";
  tip.style.left = (ev.pageX + 12) + "px"; tip.style.top = (ev.pageY + 12) + "px";
}
gc.addEventListener("mousemove", ev => {
  if (D.grid) return gridTip(ev);
  const k = taskAt(ev);
  if (k < 0) { tip.style.display = "none"; return; }
  const r = D.reason[k];
  tip.innerHTML = "";
  const lines = [["", T.n[k]], ["state", D.states[T.st[k]]], ["start", fmt(T.s[k])],
    ["end", T.e[k] < 0 ? "running" : fmt(T.e[k])], ["run time", T.e[k] < 0 ? "-" : fmt(T.e[k] - T.s[k])],
    ["queue wait", T.q[k] === null ? "-" : fmt(T.s[k] - T.q[k])], ["exit code", T.c[k] === null ? "-" : String(T.c[k])]];
  if (r) lines.push(["reason", r]);
  for (const [k2, v] of lines) { const d = document.createElement("div"); d.textContent = k2 ? k2 + ": " + v : v; if (!k2) d.style.fontWeight = "bold"; tip.appendChild(d); }
  tip.style.display = "block";
  tip.style.left = (ev.pageX + 12) + "px"; tip.style.top = (ev.pageY + 12) + "px";
});
gc.addEventListener("mouseleave", () => { tip.style.display = "none"; });
function timeAt(ev) {
  const rect = gc.getBoundingClientRect(), [a, b] = view;
  return a + Math.min(Math.max(ev.clientX - rect.left - L, 0), rect.width - R - L) / (rect.width - R - L) * (b - a);
}
gc.addEventListener("mousedown", ev => { if (!D.grid) drag = timeAt(ev); });
gc.addEventListener("mouseup", ev => {
  if (drag === null) return;
  const t = timeAt(ev), a = Math.min(drag, t), b = Math.max(drag, t);
  drag = null;
  if (b - a > (view[1] - view[0]) / 200) { view = [a, b]; drawGantt(); }
});
gc.addEventListener("dblclick", () => { view = [0, D.span]; drawGantt(); });
// -- series over time ---------------------------------------------------------
function series(id, vals, colour, ref, label) {
  const [c, g, w, h] = canvas(id, 160);
  const x0 = L, x1 = w - R, y1 = h - B, n = vals.length;
  let ymax = Math.max(ref || 0, ...vals, 1e-9) * 1.05;
  g.fillStyle = colour; g.globalAlpha = 0.55;
  g.beginPath(); g.moveTo(x0, y1);
  for (let i = 0; i < n; i++) {
    const y = y1 - vals[i] / ymax * (y1 - TOP);
    g.lineTo(x0 + i / n * (x1 - x0), y); g.lineTo(x0 + (i + 1) / n * (x1 - x0), y);
  }
  g.lineTo(x1, y1); g.closePath(); g.fill(); g.globalAlpha = 1;
  if (ref) {
    const y = y1 - ref / ymax * (y1 - TOP);
    g.strokeStyle = "#000"; g.setLineDash([4, 3]); g.beginPath(); g.moveTo(x0, y); g.lineTo(x1, y); g.stroke(); g.setLineDash([]);
    g.fillStyle = "#000"; g.textAlign = "left"; g.font = "11px sans-serif"; g.fillText("allocation: " + ref + " cores", x0 + 4, y - 3);
  }
  g.fillStyle = "#333"; g.textAlign = "right"; g.font = "11px sans-serif";
  g.fillText(label, x0 - 4, (TOP + y1) / 2 + 4); g.fillText("0", x0 - 4, y1);
  g.fillText(String(+(ymax / 1.05).toPrecision(3)), x0 - 4, y1 - (y1 - TOP) / 1.05 + 4);
  ticks(g, 0, D.span, x0, x1, y1);
}
function hist() {
  const [c, g, w, h] = canvas("hist", 180);
  const E = D.hist.edges, C = D.hist.counts, n = C.length, x0 = L, x1 = w - R, y1 = h - B;
  if (!n) return;
  const cmax = Math.max(...C);
  g.fillStyle = "#0072B2";
  for (let i = 0; i < n; i++) {
    const bh = C[i] / cmax * (y1 - TOP);
    g.fillRect(x0 + i / n * (x1 - x0) + 0.5, y1 - bh, (x1 - x0) / n - 1, bh);
  }
  g.fillStyle = "#333"; g.font = "11px sans-serif"; g.textAlign = "center";
  for (let i = 0; i <= n; i += Math.ceil(n / 8)) {
    g.textAlign = i === n ? "right" : i === 0 ? "left" : "center";
    g.fillText(fmt(E[i] * 1000), x0 + i / n * (x1 - x0), y1 + 15);
  }
  g.textAlign = "right"; g.fillText(String(cmax), x0 - 4, TOP + 10); g.fillText("0", x0 - 4, y1);
}
function drawAll() {
  drawGantt();
  series("busy", D.tl.busy, "#0072B2", D.tl.cores, "cores");
  series("queue", D.tl.queued, "#E69F00", 0, "tasks");
  hist();
}
drawAll();
let pending = null;
window.addEventListener("resize", () => { clearTimeout(pending); pending = setTimeout(drawAll, 150); });
// For checks (a headless browser's test): which charts have ink on them.
const drawn = ["gantt", "busy", "queue", "hist"].filter(id => {
  const c = document.getElementById(id), px = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  for (let i = 3; i < px.length; i += 4 * 7) if (px[i]) return true;
  return false;
});
document.body.setAttribute("data-drawn", drawn.join(" "));
document.body.setAttribute("data-rendered", String(NS));
"""
