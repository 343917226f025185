"""The stylesheet inlined into every HTML report (system fonts only; nothing is fetched)."""

CSS = """
:root { --ink:#1f2937; --muted:#6b7280; --line:#e5e7eb; --bg:#f8fafc; --card:#fff;
  --pass:#15803d; --pass-bg:#dcfce7; --fail:#b91c1c; --fail-bg:#fee2e2; --err:#7e22ce; --err-bg:#f3e8ff; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
  font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif; }
main { max-width:1180px; margin:0 auto; padding:24px 20px 40px; }
h2 { font-size:18px; margin:0 0 10px; }
h3 { font-size:15px; margin:18px 0 6px; }
section, footer { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:16px 18px;
  margin:16px 0; }
code { font:12.5px/1.3 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace; }
p { margin:6px 0; }
.note, .caption, .meta { color:var(--muted); font-size:12.5px; }
.headline { font-weight:600; }
.banner { display:flex; gap:22px; align-items:center; border-radius:12px; padding:18px 22px; border:2px solid; }
.banner.pass { background:var(--pass-bg); border-color:var(--pass); }
.banner.blocked { background:var(--fail-bg); border-color:var(--fail); }
.banner.error { background:var(--err-bg); border-color:var(--err); }
.verdict { font-size:34px; font-weight:800; letter-spacing:.04em; min-width:180px; text-align:center; }
.pass .verdict { color:var(--pass); } .blocked .verdict { color:var(--fail); } .error .verdict { color:var(--err); }
.summary { display:flex; flex-direction:column; gap:3px; min-width:0; overflow-wrap:anywhere; }
.sentence { font-size:16px; font-weight:600; }
.k { display:inline-block; min-width:72px; color:var(--muted); }
.scroll { overflow-x:auto; }
table { border-collapse:collapse; width:100%; font-size:13px; }
th, td { text-align:left; padding:6px 8px; border-bottom:1px solid var(--line); vertical-align:top; }
th { background:#f1f5f9; font-weight:600; white-space:nowrap; }
table.checks td:nth-child(-n+5) { white-space:nowrap; }
table.checks td:last-child { color:#374151; min-width:320px; }
table.num td:not(:first-child) { font-variant-numeric:tabular-nums; white-space:nowrap; }
table.num th { white-space:normal; }
tr.st-fail td { background:#fff5f5; } tr.st-error td { background:#fbf7ff; } tr.sig td { background:#fff7ed; }
.pill { display:inline-block; padding:1px 8px; border-radius:999px; font-size:11.5px; font-weight:700;
  letter-spacing:.03em; }
.pill.pass { background:var(--pass-bg); color:var(--pass); }
.pill.fail { background:var(--fail-bg); color:var(--fail); }
.pill.error { background:var(--err-bg); color:var(--err); }
.warn { color:var(--err); font-weight:600; }
summary { cursor:pointer; } summary h2 { display:inline; }
ul.errors { margin:0; padding-left:18px; }
.grid { display:grid; grid-template-columns:repeat(auto-fit,minmax(440px,1fr)); gap:14px; margin:10px 0; }
.card { margin:0; border:1px solid var(--line); border-radius:8px; padding:10px 12px; background:#fff; }
figcaption { font-weight:600; font-size:13px; margin-bottom:4px; }
svg.chart { width:100%; max-width:660px; height:auto; display:block; font-size:12px; font-family:inherit; }
svg .gl { stroke:#eef2f7; } svg .zero { stroke:#9ca3af; } svg .tick { fill:var(--muted); font-size:11px; }
svg .ref { stroke:#dc2626; stroke-dasharray:4 3; } svg .reflabel { fill:#dc2626; font-size:11px; }
svg .whisker { stroke:#111827; stroke-width:1.5; fill:none; } svg .val { fill:#374151; font-size:11px; }
svg .group { fill:var(--ink); } svg .na { fill:var(--muted); font-style:italic; font-size:11px; }
footer dl { display:grid; grid-template-columns:max-content 1fr; gap:2px 14px; margin:0; font-size:12.5px; }
footer dt { color:var(--muted); } footer dd { margin:0; overflow-wrap:anywhere; }
@media print { body { background:#fff; } section, footer { break-inside:avoid; } }
"""
