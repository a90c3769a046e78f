"""Replaces one level-2 section of benchmarks/RESULTS.md (or appends it): shared by the harnesses' reports."""
import os
import re


def write_section(path, heading, section):
    """The section runs from "## <heading>" to the next level-2 heading (or the end of the file)."""
    text = open(path).read() if os.path.exists(path) else "# Benchmark results\n\n"
    pattern = re.compile(r"^## " + re.escape(heading) + r"\n.*?(?=^## |\Z)", re.M | re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section.rstrip("\n") + "\n\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n"
    open(path, "w").write(text)
    print(f"\nwritten to {path}")
