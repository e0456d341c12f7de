#!/usr/bin/env python3
"""Which top-level modules of src/ use which, and the cycles among them.

Reads every `crate::<module>` path in src/ (use lines and inline paths, comments and doc
comments skipped) and prints the edges and every strongly connected component with more than
one module. Exit status 1 when there is a cycle or a module below `app` names `app`.

    python3 tools/modgraph.py            # summary
    python3 tools/modgraph.py --edges    # and every edge with the files that make it
"""
import os
import re
import sys
from collections import defaultdict

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
# The binary's own files and the wiring: they sit above everything and may use anything.
TOP = {"main", "lib", "app", "winservice", "demo", "sim"}

PATH = re.compile(r"\bcrate::([a-z_][a-z0-9_]*)")
GROUP = re.compile(r"\buse\s+crate::\{([^;]*)\}", re.S)


def module_of(rel):
    first = rel.split(os.sep)[0]
    return first[:-3] if first.endswith(".rs") else first


def strip_comments(text):
    out = []
    for line in text.splitlines():
        s = line.lstrip()
        if s.startswith("//"):
            continue
        out.append(line.split(" // ")[0])
    return "\n".join(out)


def edges():
    found = defaultdict(set)
    for dirpath, _, files in os.walk(ROOT):
        for f in files:
            if not f.endswith(".rs"):
                continue
            full = os.path.join(dirpath, f)
            rel = os.path.relpath(full, ROOT)
            src = module_of(rel)
            text = strip_comments(open(full, encoding="utf-8").read())
            # cut test modules: they may use anything
            cut = text.find("#[cfg(test)]")
            if cut >= 0:
                text = text[:cut]
            targets = set(PATH.findall(text))
            for group in GROUP.findall(text):
                for item in group.split(","):
                    name = item.strip().split("::")[0].split(" ")[0].strip("{} \n")
                    if name:
                        targets.add(name)
            for t in targets:
                if t != src and t not in ("self", "super"):
                    found[(src, t)].add(rel)
    return found


def sccs(nodes, adj):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in adj[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(sorted(comp))

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def main():
    found = edges()
    adj = defaultdict(set)
    nodes = set()
    for (a, b) in found:
        adj[a].add(b)
        nodes.update((a, b))
    bad = 0
    if "--edges" in sys.argv:
        for (a, b), files in sorted(found.items()):
            print(f"{a} -> {b}: {', '.join(sorted(files))}")
    for comp in sccs(nodes, adj):
        if len(comp) > 1:
            bad = 1
            print("cycle:", " ⇄ ".join(comp))
            for a in comp:
                for b in comp:
                    if (a, b) in found:
                        print(f"  {a} -> {b}: {', '.join(sorted(found[(a, b)]))}")
    for (a, b), files in sorted(found.items()):
        if b == "app" and a not in TOP:
            bad = 1
            print(f"below app, uses app: {a} ({', '.join(sorted(files))})")
    print(f"{len(nodes)} modules, {len(found)} edges, {'cycles or upward uses found' if bad else 'no cycle, nothing below app uses app'}")
    return bad


if __name__ == "__main__":
    sys.exit(main())
