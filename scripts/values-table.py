#!/usr/bin/env python3
"""The chart's values table for the README, generated from values.yaml's `# --` comments.

    python3 scripts/values-table.py            # print the table
    python3 scripts/values-table.py --check    # fail when README.md's table differs

Each key documented with a `# -- text` comment (continued by following `#` lines) becomes a row:
its dotted path, its default as written in values.yaml, and the text. The README holds the table
between `<!-- values-table:start -->` and `<!-- values-table:end -->`; `--check` is run by
`scripts/chart-check.sh`, so the documentation cannot drift from the chart.
"""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VALUES = ROOT / "charts" / "kubevigil" / "values.yaml"
README = ROOT / "README.md"
START = "<!-- values-table:start -->"
END = "<!-- values-table:end -->"
KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_]+):(?P<rest>.*)$")


def default_of(lines, i, indent, rest):
    """The default as one short string: the inline value, or the block below the key."""
    rest = rest.strip()
    if rest:
        return rest
    block = []
    for line in lines[i + 1 :]:
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if len(line) - len(line.lstrip(" ")) <= indent and not stripped.startswith("- "):
            break
        if len(line) - len(line.lstrip(" ")) < indent:
            break
        block.append(stripped)
    if block and all(b.startswith("- ") and ":" not in b for b in block):
        return "[" + ", ".join(b[2:] for b in block) + "]"
    return "see values.yaml" if block else ""


def rows():
    lines = VALUES.read_text().splitlines()
    stack = []  # (indent, key)
    doc = None
    in_example = False
    out = []
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("# --"):
            doc = [stripped[4:].strip()]
            in_example = False
            continue
        if stripped.startswith("#"):
            # Examples (`Example:` and the indented `#   ...` lines after it) stay in values.yaml.
            if doc is not None and not in_example:
                text = stripped[1:].strip()
                if line.startswith("#   ") or text.startswith("Example"):
                    in_example = True
                else:
                    doc.append(text)
            continue
        m = KEY.match(line)
        if not m:
            if stripped:
                doc = None
            continue
        indent = len(m.group("indent"))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, m.group("key")))
        if doc is not None:
            path = ".".join(k for _, k in stack)
            text = " ".join(t for t in doc if t)
            text = re.sub(r"\s*Example:\s*$", "", text).replace("|", "\\|")
            default = default_of(lines, i, indent, m.group("rest")).replace("|", "\\|")
            out.append(f"| `{path}` | `{default}` | {text} |" if default else f"| `{path}` | | {text} |")
            doc = None
    return out


def table():
    return "\n".join(["| key | default | description |", "|---|---|---|", *rows()])


def main():
    generated = table()
    if len(sys.argv) > 1 and sys.argv[1] == "--check":
        text = README.read_text()
        if START not in text or END not in text:
            sys.exit(f"README.md has no {START} ... {END} section")
        current = text.split(START, 1)[1].split(END, 1)[0].strip()
        if current != generated:
            print("README.md's chart values table is out of date; the generated one is:\n")
            print(generated)
            sys.exit("run: python3 scripts/values-table.py --write")
        print("README values table matches values.yaml")
    elif len(sys.argv) > 1 and sys.argv[1] == "--write":
        text = README.read_text()
        head, rest = text.split(START, 1)
        _, tail = rest.split(END, 1)
        README.write_text(f"{head}{START}\n{generated}\n{END}{tail}")
        print("README.md: values table written")
    else:
        print(generated)


if __name__ == "__main__":
    main()
