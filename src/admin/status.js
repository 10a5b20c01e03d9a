"use strict";
let token = sessionStorage.getItem("sluice-token") || "";
const esc = (v) => String(v).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
const count = (n) => String(Math.round(n || 0));
const rate = (n) => (n || 0) >= 100 ? String(Math.round(n)) : (n || 0).toFixed(1);
const size = (b) => {
  const u = ["B", "KiB", "MiB", "GiB"]; let i = 0; b = b || 0;
  while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; }
  return (i ? b.toFixed(1) : String(b)) + " " + u[i];
};
const time = (ms) => new Date(ms).toISOString().replace("T", " ").slice(0, 19) + "Z";

function spark(name, values, fmt) {
  const w = 240, h = 48;
  const drawn = values.length === 1 ? [values[0], values[0]] : values;
  const top = Math.max(0, ...values), max = Math.max(1, top);
  const pts = drawn.map((v, i) => {
    const x = (i * w) / Math.max(1, drawn.length - 1);
    return x.toFixed(1) + "," + (h - 2 - ((h - 4) * v) / max).toFixed(1);
  }).join(" ");
  const last = values.length ? fmt(values[values.length - 1]) : "–";
  return `<div class="chart" data-chart="${esc(name)}">${esc(name)}: <b>${esc(last)}</b> (max ${esc(fmt(top))})
    <svg width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" role="img" aria-label="${esc(name)}">
      <polyline fill="none" stroke="#3b6fd8" stroke-width="1.5" points="${pts}"/></svg></div>`;
}

function repo(r) {
  const s = r.series || {}, t = r.totals || {};
  const last = (a) => (a && a.length ? a[a.length - 1] : 0);
  const ch = r.channel || null;
  const fill = ch && ch.max_bytes ? Math.min(100, (100 * ch.bytes) / ch.max_bytes) : 0;
  const parts = (r.partitions || []).map((p) => `<tr data-partition="${esc(p.partition)}">
      <td>${esc(p.partition)}</td><td class="seq">${esc(p.checkpoint_seq)}</td>
      <td class="offset">${esc(p.committed_offset)}</td><td class="lag">${p.lag == null ? "–" : esc(p.lag)}</td>
      <td class="failing">${p.failing ? `since ${esc(time(p.failing.since_ms))}, ${esc(p.failing.attempts)} attempts: ${esc(p.failing.error)}` : ""}</td></tr>`).join("");
  const held = (r.not_read || []).map((n) => `<tr data-not-read="${esc(n.partition)}">
      <td>${esc(n.partition)}</td><td class="held-state">${esc(n.state === "refused" ? "refused" : "no leader that answers")}</td>
      <td>${esc(time(n.since_ms))}</td><td class="failing">${esc(n.error)}</td></tr>`).join("");
  const commits = (r.recent_commits || []).slice().reverse().map((c) => `<tr>
      <td>${esc(time(c.at_ms))}</td><td>${esc(c.partition)}</td><td>${esc(c.rows)}</td>
      <td>${esc(c.dead_letters)}</td><td>${esc(c.files)}</td><td>${esc(size(c.bytes))}</td>
      <td>${esc(c.seconds.toFixed(3))} s</td></tr>`).join("");
  const reasons = Object.entries(r.dead_letters_by_reason || {}).map(([k, v]) =>
      `<tr data-reason="${esc(k)}"><td>${esc(k)}</td><td>${esc(count(v))}</td></tr>`).join("");
  return `<section class="repo" id="repo-${esc(r.repo)}" data-repo="${esc(r.repo)}">
    <h2>${esc(r.repo)} <span class="state ${esc(r.state)}" data-state="${esc(r.state)}">${esc(r.state)}${r.paused ? " (paused)" : ""}</span>
      <small>${esc(r.job)}</small></h2>
    ${r.error ? `<div class="error">${esc(r.error)}</div>` : ""}
    <div class="numbers">
      <div><b data-total="rows_out">${count(t.rows_out)}</b><span>rows written</span></div>
      <div><b data-total="records_in">${count(t.records_in)}</b><span>records read</span></div>
      <div><b data-total="dead_letters_found">${count(t.dead_letters_found)}</b><span>dead letters found</span></div>
      <div><b data-total="lag">${t.lag == null ? "–" : count(t.lag)}</b><span>lag (records)</span></div>
      <div><b>${rate(last(s.written_per_s))}</b><span>rows/s written</span></div>
    </div>
    ${ch ? `<div>channel: ${esc(size(ch.bytes))} of ${esc(size(ch.max_bytes))}, ${esc(ch.batches)} batches
      <div class="bar"><i data-fill="${fill.toFixed(1)}"></i></div></div>` : ""}
    <div class="charts">
      ${spark("records read/s", s.read_per_s || [], rate)}
      ${spark("rows written/s", s.written_per_s || [], rate)}
      ${spark("lag", s.lag || [], count)}
      ${spark("channel", s.channel_bytes || [], size)}
    </div>
    ${held ? `<div class="not-read"><h3>Partitions not read</h3><table><tr><th>partition</th><th>why</th><th>since</th><th>error</th></tr>${held}</table></div>` : ""}
    <div class="columns">
      <div><h3>Partitions</h3><table><tr><th>partition</th><th>checkpoint</th><th>committed offset</th><th>lag</th><th>commits failing</th></tr>${parts}</table></div>
      <div><h3>Dead letters by reason (committed)</h3><table><tr><th>reason</th><th>count</th></tr>${reasons}</table></div>
    </div>
    <h3>Last commits</h3>
    <table><tr><th>at</th><th>partition</th><th>rows</th><th>dead letters</th><th>files</th><th>bytes</th><th>took</th></tr>${commits}</table>
  </section>`;
}

// What is shown is the last answer, or nothing: stale numbers are worse than none.
function fail(why) {
  document.getElementById("repos").innerHTML = "";
  document.getElementById("updated").textContent = why;
}

let busy = false;
async function load() {
  if (busy) return; // the answer before is still on its way
  busy = true;
  try {
    const answer = await fetch("/v1/status", { headers: token ? { Authorization: "Bearer " + token } : {} });
    if (answer.status === 401) {
      document.getElementById("login").style.display = "block";
      return fail("token needed");
    }
    let s;
    try { s = await answer.json(); } catch (e) { return fail("not an answer from sluice (" + answer.status + ")"); }
    if (!answer.ok) return fail(s.error || answer.statusText);
    document.getElementById("login").style.display = "none";
    document.getElementById("job").textContent = [...new Set(s.repos.map((r) => r.job))].join(", ");
    document.getElementById("repos").innerHTML = s.repos.map(repo).join("");
    for (const bar of document.querySelectorAll("i[data-fill]")) bar.style.width = bar.dataset.fill + "%";
    const u = document.getElementById("updated");
    u.textContent = "updated " + time(s.now_ms);
    u.dataset.loaded = "1";
  } catch (e) {
    fail("cannot reach the job: " + e);
  } finally {
    busy = false;
  }
}

document.getElementById("login").addEventListener("submit", (e) => {
  e.preventDefault();
  token = document.getElementById("token").value;
  sessionStorage.setItem("sluice-token", token);
  load();
});
load();
setInterval(load, 2000);
