"""The page around every drainwatch report: inline style only, so it opens offline."""

from __future__ import annotations

from string import Template

MONO = "ui-monospace, SFMono-Regular, Menlo, Consolas, monospace"

PAGE = Template("""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title</title>
<style>
:root { --pass: #2b8a3e; --leak: #c92a2a; --error: #d9480f; --none: #868e96; --line: #dee2e6; --muted: #6c757d; }
* { box-sizing: border-box; }
body { margin: 0; background: #f8f9fa; color: #212529;
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1320px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 22px; margin: 0 0 2px; } h1 small { color: var(--muted); font-weight: 400; }
h2 { font-size: 18px; margin: 36px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 15px; margin: 20px 0 8px; }
.meta, .muted, figcaption { color: var(--muted); font-size: 13.5px; }
.banner { margin: 16px 0; padding: 12px 16px; border-radius: 6px; border-left: 6px solid var(--error);
  background: #fff4e6; } .banner strong { color: var(--error); }
.notes { margin: 12px 0; padding: 8px 16px; background: #f1f3f5; border-radius: 6px; font-size: 13.5px; }
.verdict { display: grid; grid-template-columns: 230px 1fr; gap: 24px; margin-top: 18px; padding: 20px 24px;
  background: #fff; border: 1px solid var(--line); border-top: 8px solid var(--c); border-radius: 8px; }
.verdict.pass { --c: var(--pass); } .verdict.leak { --c: var(--leak); } .verdict.error { --c: var(--error); } .verdict.saturated { --c: #e8590c; }
.verdict.none { --c: var(--none); } .verdict.none .word { font-size: 38px; }
.word { font-size: 54px; font-weight: 800; letter-spacing: 1px; color: var(--c); line-height: 1.1; }
.reasons { margin: 8px 0 0; padding-left: 18px; } .reasons li { margin: 3px 0; } .where { margin: 10px 0 0; }
.tiles { display: grid; grid-template-columns: repeat(auto-fit, minmax(170px, 1fr)); gap: 10px; }
.tile { padding: 10px 12px; background: #f8f9fa; border-radius: 6px; }
.tile b { display: block; font-size: 22px; } .tile span { color: var(--muted); font-size: 13px; }
.tile.bad b { color: var(--leak); } .tile.good b { color: var(--pass); }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; background: #fff; font-size: 13.5px; margin: 6px 0 4px; }
th, td { text-align: left; padding: 5px 9px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: #f1f3f5; font-weight: 600; } .nw { white-space: nowrap; } tr.total td { font-weight: 700; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.leak td { background: #fff5f5; } tr.leak td:first-child { box-shadow: inset 4px 0 var(--leak); }
tr.maybe td { background: #fff9db; } tr.maybe td:first-child { box-shadow: inset 4px 0 #f59f00; }
code, pre, td.q, td.id { font-family: $mono; font-size: 12.5px; } pre { white-space: pre-wrap; margin: 4px 0; }
td.q { min-width: 260px; max-width: 560px; overflow-wrap: anywhere; color: #495057; } td.id { word-break: break-all; }
.ok { color: var(--pass); font-weight: 700; } .fail { color: var(--leak); font-weight: 700; }
.better { color: var(--pass); font-weight: 700; } .worse { color: var(--leak); font-weight: 700; } .same { color: var(--muted); }
.kind { padding: 1px 7px; border-radius: 9px; background: #e9ecef; font-size: 12px; white-space: nowrap; }
.kind.held, .kind.in_transaction, .kind.never_reused { background: var(--leak); color: #fff; } .kind.unsure { background: #ffd43b; }
figure { margin: 0; padding: 12px; background: #fff; border: 1px solid var(--line); border-radius: 8px; }
figure img { display: block; width: 100%; height: auto; }
.cols { display: grid; grid-template-columns: repeat(auto-fit, minmax(380px, 1fr)); gap: 0 28px; }
footer { margin-top: 40px; color: var(--muted); font-size: 12.5px; }
@media (max-width: 760px) { .verdict { grid-template-columns: 1fr; } }
</style></head>
<body><main>
$body
</main></body></html>
""")
