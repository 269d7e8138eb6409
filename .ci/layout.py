#!/usr/bin/env python3
"""The layout rules of src/ that a compiler does not check (.ci/run runs this):

- no import circle between files: the drawing of which file uses which
  (`crate::a::b`, `super::x`, `self::x` paths outside comments and test
  modules; a child using its parent does not count) has no cycle;
- no file holds more than 900 lines of code before its `#[cfg(test)]`
  module (blank and comment lines not counted).

Usage: .ci/layout.py [SRC]   (exit 1 naming each breach)"""
import os, re, sys
root = sys.argv[1] if len(sys.argv) > 1 else 'src'
files = {}
for dp, dn, fn in os.walk(root):
    for f in fn:
        if f.endswith('.rs'):
            p = os.path.join(dp, f)
            rel = os.path.relpath(p, root)[:-3]
            parts = rel.split(os.sep)
            if parts[-1] == 'mod': parts = parts[:-1]
            if parts == ['lib'] or parts == ['main']: parts = []
            files['::'.join(parts)] = p
mods = set(files)
def resolve(path):
    # longest prefix that is a module file
    parts = path.split('::')
    while parts:
        m = '::'.join(parts)
        if m in mods: return m
        parts = parts[:-1]
    return None
edges = {m: set() for m in mods}
for m, p in files.items():
    text = open(p).read()
    # cut test module
    i = text.find('#[cfg(test)]')
    if i >= 0: text = text[:i]
    text = '\n'.join(l for l in text.splitlines() if not l.lstrip().startswith('//'))
    me = m.split('::') if m else []
    is_mod_file = p.endswith('mod.rs') or p.endswith('lib.rs')
    base = me if is_mod_file else me[:-1]
    for u in re.findall(r'(?:use\s+|[^\w:])((?:crate|super|self)(?:::\w+)+)', text):
        segs = u.split('::')
        if segs[0] == 'crate': tgt = segs[1:]
        elif segs[0] == 'self': tgt = (me if is_mod_file else me) + segs[1:]
        else:
            b = list(base); s = segs
            while s and s[0] == 'super':
                b = b[:-1]; s = s[1:]
            tgt = b + s
        r = resolve('::'.join(tgt))
        if r is not None and r != m and not (m.startswith(r + '::') or r == ''):
            edges[m].add(r)
# cycles between files (SCCs)
index = {}; low = {}; stack = []; on = set(); sccs = []; idx = [0]
sys.setrecursionlimit(10000)
def strong(v):
    index[v] = low[v] = idx[0]; idx[0] += 1; stack.append(v); on.add(v)
    for w in edges[v]:
        if w not in index:
            strong(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v: break
        if len(comp) > 1: sccs.append(comp)
for v in mods:
    if v not in index: strong(v)
for c in sccs:
    print('cycle:', ' <-> '.join(sorted(c)))
    for a in c:
        print('   ', a, '->', sorted(x for x in edges[a] if x in c))
MAX_CODE = 900
too_long = []
for m, p in sorted(files.items(), key=lambda x: x[1]):
    text = open(p).read()
    i = text.find('#[cfg(test)]')
    if i >= 0: text = text[:i]
    code = [l for l in text.splitlines() if l.strip() and not l.strip().startswith('//')]
    if len(code) > MAX_CODE:
        too_long.append((p, len(code)))
for p, n in too_long:
    print(f'too long: {p} has {n} lines of code before its tests (at most {MAX_CODE})')
print(f'{len(mods)} files, {sum(len(e) for e in edges.values())} imports between them, {len(sccs)} circles, {len(too_long)} files too long')
sys.exit(1 if sccs or too_long else 0)
