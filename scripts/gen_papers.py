"""Regenerate src/tokenworks/papers.json from the project's paper index (INDEX.md).

Usage: python scripts/gen_papers.py ../shared/papers/INDEX.md
"""
import json
import re
import sys
from pathlib import Path

rows = {}
for line in Path(sys.argv[1]).read_text().splitlines():
    m = re.match(r"\|\s*(P\d\d)\s*\|\s*(.+?)\s*\|\s*([A-Z]+)\s*\|\s*(.+?)\s*\|$", line)
    if m:
        pid, title, family, show = m.groups()
        rows[pid] = {"title": title, "family": family, "show": show}
assert len(rows) == 69, len(rows)
out = Path(__file__).resolve().parents[1] / "src/tokenworks/papers.json"
out.write_text(json.dumps(rows, indent=1, ensure_ascii=False) + "\n")
print(f"wrote {len(rows)} papers to {out}")
