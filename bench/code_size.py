"""Lines in speechrecipe/problems/ and engine/ and the longest functions there, at a git revision.

    python3 bench/code_size.py REV
"""
from __future__ import annotations

import ast
import subprocess
import sys


def git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout


def python_files(rev: str, prefix: str) -> list[str]:
    return [f for f in git("ls-tree", "-r", "--name-only", rev, prefix).split() if f.endswith(".py")]


def main(rev: str) -> None:
    longest = []
    for prefix in ("speechrecipe/problems/", "speechrecipe/engine/"):
        files = python_files(rev, prefix)
        sources = {f: git("show", f"{rev}:{f}") for f in files}
        print(f"{prefix}: {len(files)} files, {sum(len(s.splitlines()) for s in sources.values())} lines")
        for name, source in sources.items():
            longest += [(node.end_lineno - node.lineno + 1, f"{name}:{node.name}") for node in ast.walk(ast.parse(source))
                        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
    print("longest functions:", sorted(longest, reverse=True)[:3])


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "HEAD")
