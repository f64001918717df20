import Hummingbird
import NIOCore

/// The live web view at `GET /` on the API port: one self-contained page (inline CSS and JS, no
/// external assets, since a gateway has no internet) that polls `/v1/stats` every 2 s (`?interval=S`
/// overrides) and shows connections over time, rates, and the lane traffic split per service —
/// events and fallbacks per lane — with instance health and the outbox when present.
///
/// Element ids the page fills (kept stable for the browser test and for people scripting it):
/// `online`, `pending`, `connections`, `peak`, `accepts-rate`, `logins-rate`, `frames-in-rate`,
/// `frames-out-rate`, `connections-chart`, `lanes-body` (rows with `data-lane`/`data-service`),
/// `instances-body`, `outbox`, `status` ("live" once a snapshot arrived, "error: …" when not).
public enum WebView {
    /// `GET /`, for the API to add.
    public static func routes() -> RouteCollection<AdminAPI.Context> {
        let routes = RouteCollection(context: AdminAPI.Context.self)
        routes.get("/") { _, _ in
            Response(
                status: .ok,
                headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-store"],
                body: .init(byteBuffer: ByteBuffer(string: html)))
        }
        return routes
    }

    static let html = #"""
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>pilegate</title>
        <style>
        :root { --bg:#0f1419; --panel:#171d24; --line:#2a323c; --text:#d8dee6; --dim:#8a96a3; --accent:#4fb3ff;
                --accent2:#f0b54a; --ok:#5cc98a; --warn:#f0b54a; --bad:#ef6b6b; }
        * { box-sizing: border-box; }
        body { margin:0; padding:16px 20px; background:var(--bg); color:var(--text);
               font:14px/1.4 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; }
        header { display:flex; align-items:baseline; gap:16px; flex-wrap:wrap; margin-bottom:12px; }
        h1 { font-size:20px; margin:0; }
        h2 { font-size:13px; text-transform:uppercase; letter-spacing:.08em; color:var(--dim); margin:0 0 8px; }
        .dim { color:var(--dim); }
        #status.live { color:var(--ok); } #status.error { color:var(--bad); }
        .cards { display:grid; grid-template-columns:repeat(auto-fill, minmax(130px, 1fr)); gap:10px; margin-bottom:14px; }
        .card, .panel { background:var(--panel); border:1px solid var(--line); border-radius:8px; padding:10px 12px; }
        .card .v { font-size:24px; font-weight:600; font-variant-numeric:tabular-nums; }
        .card .k { color:var(--dim); font-size:12px; }
        .grid { display:grid; grid-template-columns:minmax(0, 3fr) minmax(0, 2fr); gap:14px; margin-bottom:14px; }
        @media (max-width:900px) { .grid { grid-template-columns:1fr; } }
        svg { width:100%; height:220px; display:block; }
        table { width:100%; border-collapse:collapse; font-variant-numeric:tabular-nums; }
        th, td { padding:4px 8px; border-bottom:1px solid var(--line); text-align:right; white-space:nowrap; }
        th:first-child, td:first-child, th.l, td.l { text-align:left; }
        th { color:var(--dim); font-weight:500; font-size:12px; }
        .bar { display:flex; height:14px; border-radius:3px; overflow:hidden; background:var(--line); min-width:120px; }
        .bar span { display:block; height:100%; }
        .legend span { display:inline-block; margin-right:12px; font-size:12px; }
        .sw { display:inline-block; width:10px; height:10px; border-radius:2px; margin-right:4px; vertical-align:-1px; }
        .state-healthy { color:var(--ok); } .state-warming { color:var(--accent2); }
        .state-ejected { color:var(--bad); } .state-draining { color:var(--dim); }
        .fb { color:var(--warn); }
        </style>
        </head>
        <body>
        <header>
          <h1>pilegate <span id="node" class="dim"></span></h1>
          <span class="dim">up <span id="uptime">–</span></span>
          <span id="status">connecting…</span>
          <span class="dim">refresh <span id="interval"></span></span>
        </header>
        <section class="cards">
          <div class="card"><div class="v" id="online">–</div><div class="k">online</div></div>
          <div class="card"><div class="v" id="pending">–</div><div class="k">logging in</div></div>
          <div class="card"><div class="v" id="connections">–</div><div class="k">open connections</div></div>
          <div class="card"><div class="v" id="peak">–</div><div class="k">peak online</div></div>
          <div class="card"><div class="v" id="accepts-rate">–</div><div class="k">accepts/s</div></div>
          <div class="card"><div class="v" id="logins-rate">–</div><div class="k">logins/s</div></div>
          <div class="card"><div class="v" id="frames-in-rate">–</div><div class="k">frames in/s</div></div>
          <div class="card"><div class="v" id="frames-out-rate">–</div><div class="k">frames out/s</div></div>
          <div class="card"><div class="v" id="events-rate">–</div><div class="k">events routed/s</div></div>
          <div class="card"><div class="v" id="fallbacks-rate">–</div><div class="k">fallbacks/s</div></div>
          <div class="card"><div class="v" id="memory">–</div><div class="k">memory</div></div>
          <div class="card"><div class="v" id="outbox">–</div><div class="k">outbox depth</div></div>
        </section>
        <div class="grid">
          <section class="panel">
            <h2>Connections over time</h2>
            <svg id="connections-chart" viewBox="0 0 600 220" preserveAspectRatio="none" role="img" aria-label="connections over time"></svg>
            <div class="legend"><span><i class="sw" style="background:var(--accent)"></i>online</span>
              <span><i class="sw" style="background:var(--accent2)"></i>logging in</span>
              <span class="dim" id="chart-range"></span></div>
          </section>
          <section class="panel">
            <h2>Sessions per lane</h2>
            <table><thead><tr><th>lane</th><th>sessions</th><th class="l">share</th></tr></thead>
              <tbody id="sessions-body"></tbody></table>
          </section>
        </div>
        <section class="panel" style="margin-bottom:14px">
          <h2>Lane traffic per service</h2>
          <table>
            <thead><tr><th>service</th><th>lane</th><th>events/s</th><th>routed</th><th>fallbacks/s</th><th>fallbacks</th>
              <th>acks</th><th>failures</th><th>p50</th><th>p99</th><th class="l">split of the service's events</th></tr></thead>
            <tbody id="lanes-body"><tr><td colspan="11" class="dim">no lane traffic yet</td></tr></tbody>
          </table>
        </section>
        <section class="panel">
          <h2>Backend instances</h2>
          <table>
            <thead><tr><th>service</th><th>instance</th><th>lane</th><th class="l">state</th><th>in flight</th><th>queued</th><th>ejections</th></tr></thead>
            <tbody id="instances-body"><tr><td colspan="7" class="dim">no backend connected</td></tr></tbody>
          </table>
        </section>
        <script>
        "use strict";
        const params = new URLSearchParams(location.search);
        const intervalMs = Math.max(200, 1000 * (parseFloat(params.get("interval")) || 2));
        const bounds = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
        const palette = ["#4fb3ff", "#f0b54a", "#5cc98a", "#c58af9", "#ef6b6b", "#7fd6d0", "#e3e36a", "#f59ac2"];
        const history = [];
        let previous = null;
        const $ = (id) => document.getElementById(id);
        const text = (id, v) => { const e = $(id); if (e) e.textContent = v; };
        const laneName = (l) => l === "" ? "base" : l;
        const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({"&":"&amp;","<":"&lt;",">":"&gt;","\"":"&quot;","'":"&#39;"}[c]));
        function fmtRate(v) {
          if (v == null || !isFinite(v)) return "–";
          if (v === 0) return "0";
          if (v < 10) return v.toFixed(2).replace(/\.?0+$/, "");
          if (v < 1000) return v.toFixed(1).replace(/\.0$/, "");
          return (v / 1000).toFixed(1) + "k";
        }
        function fmtBytes(n) {
          const u = ["B", "KiB", "MiB", "GiB"]; let i = 0;
          while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
          return (i ? n.toFixed(1) : n) + " " + u[i];
        }
        function fmtDur(s) {
          if (s == null || !isFinite(s)) return "–";
          if (s < 0.001) return Math.round(s * 1e6) + " µs";
          if (s < 1) return (s * 1000).toFixed(1).replace(/\.0$/, "") + " ms";
          if (s < 60) return s.toFixed(1) + " s";
          const t = Math.floor(s);
          if (t < 3600) return Math.floor(t / 60) + "m" + String(t % 60).padStart(2, "0") + "s";
          if (t < 86400) return Math.floor(t / 3600) + "h" + String(Math.floor(t % 3600 / 60)).padStart(2, "0") + "m";
          return Math.floor(t / 86400) + "d" + String(Math.floor(t % 86400 / 3600)).padStart(2, "0") + "h";
        }
        function sum(o) { let n = 0; for (const k in (o || {})) n += o[k]; return n; }
        function quantile(q, buckets) {
          const total = buckets.reduce((a, b) => a + b, 0);
          if (!total) return null;
          const rank = q * total; let seen = 0;
          for (let i = 0; i < buckets.length; i++) {
            const n = buckets[i];
            if (seen + n >= rank && n > 0) {
              if (i >= bounds.length) return bounds[bounds.length - 1];
              const lo = i === 0 ? 0 : bounds[i - 1];
              return lo + (bounds[i] - lo) * ((rank - seen) / n);
            }
            seen += n;
          }
          return bounds[bounds.length - 1];
        }
        function outboxDepth(o) {
          if (!o) return null;
          if (typeof o.depth === "number") return o.depth;
          const deep = (v) => typeof v === "number" ? v : (v && typeof v === "object" ? Object.values(v).reduce((a, x) => a + deep(x), 0) : 0);
          return o.pending ? deep(o.pending) : null;
        }
        function drawChart() {
          const svg = $("connections-chart");
          const W = 600, H = 220, P = 28;
          if (!history.length) { svg.innerHTML = ""; return; }
          const t0 = history[0].t, t1 = history[history.length - 1].t;
          const span = Math.max(t1 - t0, 1);
          const max = Math.max(1, ...history.map((h) => Math.max(h.online, h.pending)));
          const x = (t) => P + (W - P - 6) * ((t - t0) / span);
          const y = (v) => H - 18 - (H - 30) * (v / max);
          const line = (key) => history.map((h, i) => (i ? "L" : "M") + x(h.t).toFixed(1) + "," + y(h[key]).toFixed(1)).join(" ");
          let grid = "";
          for (const f of [0, 0.5, 1]) {
            const v = Math.round(max * f), yy = y(v).toFixed(1);
            grid += `<line x1="${P}" x2="${W}" y1="${yy}" y2="${yy}" stroke="#2a323c"/>` +
                    `<text x="${P - 4}" y="${yy}" fill="#8a96a3" font-size="10" text-anchor="end" dominant-baseline="middle">${v}</text>`;
          }
          const last = history[history.length - 1];
          svg.innerHTML = grid +
            `<path d="${line("pending")}" fill="none" stroke="#f0b54a" stroke-width="1.5" vector-effect="non-scaling-stroke"/>` +
            `<path d="${line("online")}" fill="none" stroke="#4fb3ff" stroke-width="2" vector-effect="non-scaling-stroke"/>` +
            `<circle cx="${x(last.t).toFixed(1)}" cy="${y(last.online).toFixed(1)}" r="3" fill="#4fb3ff"/>`;
          text("chart-range", "last " + fmtDur(span) + " · " + history.length + " samples");
        }
        function render(s) {
          const c = s.counters, hub = (s.extensions || {}).hub, outbox = (s.extensions || {}).outbox;
          const dt = previous ? c.uptimeSeconds - previous.counters.uptimeSeconds : 0;
          const rate = (now, before) => (previous && dt > 0) ? Math.max(0, now - before) / dt : null;
          text("node", s.node); text("uptime", fmtDur(c.uptimeSeconds));
          text("online", c.online); text("pending", c.pendingLogins); text("connections", c.connections); text("peak", c.peakOnline);
          text("accepts-rate", fmtRate(rate(c.accepted, previous && previous.counters.accepted)));
          text("logins-rate", fmtRate(rate(c.loginsAccepted, previous && previous.counters.loginsAccepted)));
          text("frames-in-rate", fmtRate(rate(sum(c.framesIn), previous && sum(previous.counters.framesIn))));
          text("frames-out-rate", fmtRate(rate(sum(c.framesOut), previous && sum(previous.counters.framesOut))));
          text("memory", fmtBytes((s.process || {}).residentBytes || 0));
          const depth = outboxDepth(outbox);
          text("outbox", depth == null ? "n/a" : depth);
          history.push({ t: c.uptimeSeconds, online: c.online, pending: c.pendingLogins });
          while (history.length > 900) history.shift();
          drawChart();
          // Sessions per lane.
          const lanes = s.sessionsByLane || {};
          const totalSessions = sum(lanes);
          const laneKeys = Object.keys(lanes).sort();
          const laneColor = {}; laneKeys.forEach((l, i) => laneColor[l] = palette[i % palette.length]);
          $("sessions-body").innerHTML = laneKeys.length ? laneKeys.map((l) =>
            `<tr data-lane="${esc(laneName(l))}"><td><i class="sw" style="background:${laneColor[l]}"></i>${esc(laneName(l))}</td><td>${lanes[l]}</td>` +
            `<td class="l"><div class="bar"><span style="width:${(100 * lanes[l] / (totalSessions || 1)).toFixed(1)}%;background:${laneColor[l]}"></span></div></td></tr>`).join("")
            : `<tr><td colspan="3" class="dim">no sessions</td></tr>`;
          // Lane traffic per service: events and fallbacks, and each lane's share of the service.
          const rows = []; let evRate = 0, fbRate = 0;
          const traffic = (hub && hub.lanes) || {};
          const prevTraffic = (previous && previous.extensions && previous.extensions.hub && previous.extensions.hub.lanes) || {};
          const byService = {};
          for (const lane of Object.keys(traffic)) for (const svc of Object.keys(traffic[lane])) {
            (byService[svc] = byService[svc] || []).push(lane);
            if (!(lane in laneColor)) laneColor[lane] = palette[Object.keys(laneColor).length % palette.length];
          }
          for (const svc of Object.keys(byService).sort()) {
            const ls = byService[svc].sort();
            const total = ls.reduce((a, l) => a + traffic[l][svc].routed, 0) || 1;
            const split = `<div class="bar">` + ls.map((l) =>
              `<span title="${esc(laneName(l))}" style="width:${(100 * traffic[l][svc].routed / total).toFixed(1)}%;background:${laneColor[l]}"></span>`).join("") + `</div>`;
            ls.forEach((l, i) => {
              const t = traffic[l][svc], p = (prevTraffic[l] || {})[svc] || { routed: 0, fallbacks: 0, latencyBuckets: [] };
              const er = rate(t.routed, p.routed), fr = rate(t.fallbacks, p.fallbacks);
              evRate += er || 0; fbRate += fr || 0;
              let buckets = t.latencyBuckets || [];
              if (p.latencyBuckets && p.latencyBuckets.length === buckets.length) {
                const d = buckets.map((n, j) => Math.max(0, n - p.latencyBuckets[j]));
                if (d.some((n) => n > 0)) buckets = d;
              }
              rows.push(`<tr data-lane="${esc(laneName(l))}" data-service="${esc(svc)}"><td>${i ? "" : esc(svc)}</td>` +
                `<td><i class="sw" style="background:${laneColor[l]}"></i>${esc(laneName(l))}</td>` +
                `<td class="events-rate">${fmtRate(er)}</td><td class="routed">${t.routed}</td>` +
                `<td class="fb">${fmtRate(fr)}</td><td class="fallbacks${t.fallbacks ? " fb" : ""}">${t.fallbacks}</td>` +
                `<td>${t.acks}</td><td>${t.failures}</td><td>${fmtDur(quantile(0.5, buckets))}</td><td>${fmtDur(quantile(0.99, buckets))}</td>` +
                `<td class="l">${i ? "" : split}</td></tr>`);
            });
          }
          $("lanes-body").innerHTML = rows.length ? rows.join("") : `<tr><td colspan="11" class="dim">no lane traffic yet</td></tr>`;
          text("events-rate", previous ? fmtRate(evRate) : "–");
          text("fallbacks-rate", previous ? fmtRate(fbRate) : "–");
          const inst = (hub && hub.instances) || [];
          $("instances-body").innerHTML = inst.length ? inst.map((i) =>
            `<tr><td>${esc(i.service)}</td><td>${esc(i.instance)}</td><td>${esc(laneName(i.lane))}</td>` +
            `<td class="l state-${esc(i.state)}">${esc(i.state)}</td><td>${i.inFlight}</td><td>${i.queued}</td><td>${i.ejections}</td></tr>`).join("")
            : `<tr><td colspan="7" class="dim">no backend connected</td></tr>`;
          previous = s;
        }
        async function tick() {
          try {
            const r = await fetch("/v1/stats", { cache: "no-store" });
            if (!r.ok) throw new Error("HTTP " + r.status);
            render(await r.json());
            $("status").textContent = "live"; $("status").className = "live";
          } catch (e) {
            $("status").textContent = "error: " + e.message; $("status").className = "error";
          }
          setTimeout(tick, intervalMs);
        }
        text("interval", fmtDur(intervalMs / 1000));
        tick();
        </script>
        </body>
        </html>
        """#
}
