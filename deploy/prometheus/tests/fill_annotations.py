#!/usr/bin/env python3
"""Fill `exp_annotations: FILL` placeholders of a promtool rule test with the
annotations promtool renders, so expected alerts need only their labels when
written.

    python3 deploy/prometheus/tests/fill_annotations.py deploy/prometheus/tests/X.rules.test.yml

Write `exp_annotations: FILL` under each `exp_labels` that should be filled,
run this, then READ the inserted text: it becomes the golden output, so check
that every template rendered the way you meant. Everything else in the file
(comments included) is left as it is.
"""
import json
import os
import re
import subprocess
import sys
import tempfile

path = sys.argv[1]
here = os.path.dirname(os.path.abspath(path))
src = open(path).read()
if "exp_annotations: FILL" not in src:
    sys.exit("no `exp_annotations: FILL` placeholder")
skel = src.replace("exp_annotations: FILL", "exp_annotations: {}")
with tempfile.NamedTemporaryFile("w", suffix=".yml", dir=here, delete=False) as f:
    f.write(skel)
try:
    res = subprocess.run(["promtool", "test", "rules", f.name], capture_output=True, text=True)
finally:
    os.unlink(f.name)
out = res.stdout + res.stderr
got = []
for block in re.split(r"\n\s*name: ", out)[1:]:
    if "got:[" not in block:
        continue
    for m in re.finditer(r"Annotations:\{(.*)\},?\s*\n", block.split("got:[", 1)[1]):
        got.append({k: json.loads('"' + v + '"')
                    for k, v in re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(1))})

lines, i = [], 0
for line in src.split("\n"):
    if line.strip() != "exp_annotations: FILL":
        lines.append(line)
        continue
    if i >= len(got):
        sys.exit("promtool reported fewer alerts than there are FILL placeholders; "
                 "fix the labels / eval times first:\n" + out)
    ind = line[: len(line) - len(line.lstrip())]
    ann = got[i]
    i += 1
    lines.append(ind + "exp_annotations:")
    for k in sorted(ann, key=lambda k: ({"summary": 0, "description": 1}.get(k, 2), k)):
        v = ann[k]
        if "\n" in v:
            lines.append(f"{ind}  {k}: |-")
            lines.extend((f"{ind}    {l}" if l else "") for l in v.split("\n"))
        else:
            lines.append(f"{ind}  {k}: {json.dumps(v)}")
if i != len(got):
    sys.exit(f"{len(got)} alerts reported but {i} placeholders; fix the test first:\n" + out)
open(path, "w").write("\n".join(lines))
print(f"filled {i} placeholder(s); now run: promtool test rules {path}")
