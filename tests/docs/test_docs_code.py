"""Every fenced code block of README.md and docs/*.md is run here, or marked as not run
with a reason, so the docs cannot rot.

How a block is treated is decided by its fence's language and by an HTML comment on the
line just before the fence:

- ```python: run with this Python (`python -`), in the page's folder.
- ```sh: run with `bash -e` in the page's folder; `kojo` is this checkout's CLI.
- `<!-- file: NAME -->` before any block: its text is written to NAME in the page's
  folder (later blocks import or read it).
- `<!-- background -->` before an sh block: started and left running (a server); it gets
  SIGINT when the page is done and must then exit 0.
- `<!-- not-run: REASON -->` before any block: not run (a systemd unit, a Dockerfile, a
  command that needs a cluster, output shown for reading); the reason is required.

Any other block fails the test. The blocks of one page run in order in one temporary
folder, with `KOJO_DATABASE_URL` pointing at a SQLite database there; a block that exits
non-zero fails the test with its output.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import kojo

ROOT = Path(__file__).resolve().parents[2]
SRC = Path(kojo.__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
RUN_LANGUAGES = {"python", "sh"}
BLOCK_TIMEOUT = 60.0
SERVER_STOP_TIMEOUT = 35.0

_FENCE = re.compile(r"^(`{3,})(.*)$")
_DIRECTIVE = re.compile(r"^<!--\s*([a-z-]+)(?::\s*(.*?))?\s*-->$")


@dataclass
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    language: str
    text: str
    directive: str | None  # not-run, file, background
    argument: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of a page, each with the directive just before it, if any."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, info = match.group(1), match.group(2).strip()
        start = i
        i += 1
        body: list[str] = []
        while i < len(lines) and not lines[i].startswith(fence):
            body.append(lines[i])
            i += 1
        i += 1  # the closing fence
        previous = next(
            (lines[j].strip() for j in range(start - 1, -1, -1) if lines[j].strip()), ""
        )
        directive, argument = None, ""
        comment = _DIRECTIVE.match(previous)
        if comment:
            directive, argument = comment.group(1), (comment.group(2) or "").strip()
        language = info.split()[0].lower() if info else ""
        found.append(Block(page, start + 1, language, "\n".join(body) + "\n", directive, argument))
    return found


def problem(block: Block) -> str | None:
    """Why a block is neither run nor properly marked; None when it is fine."""
    if block.directive == "not-run":
        return None if block.argument else "<!-- not-run: --> needs a reason"
    if block.directive == "file":
        return None if block.argument else "<!-- file: --> needs a file name"
    if block.directive == "background":
        return None if block.language == "sh" else "<!-- background --> is for sh blocks"
    if block.directive is not None:
        return f"unknown directive <!-- {block.directive} -->"
    if block.language not in RUN_LANGUAGES:
        return (
            f"a ```{block.language or '(no language)'} block is not run: "
            "mark it <!-- not-run: reason --> or <!-- file: NAME -->"
        )
    return None


def test_every_block_is_run_or_marked_with_a_reason() -> None:
    problems = [f"{b.where}: {why}" for p in PAGES for b in blocks(p) if (why := problem(b))]
    assert not problems, "\n".join(problems)


def environment(folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KOJO_")}
    shims = folder / ".bin"
    shims.mkdir(exist_ok=True)
    kojo_shim = shims / "kojo"
    kojo_shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m kojo "$@"\n')
    kojo_shim.chmod(0o755)
    python_shim = shims / "python"
    python_shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python_shim.chmod(0o755)
    env["PATH"] = f"{shims}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(folder)])
    env["KOJO_DATABASE_URL"] = f"sqlite:///{folder / 'kojo.db'}"
    return env


def run_page(page: Path, folder: Path) -> None:
    env = environment(folder)
    background: list[tuple[Block, subprocess.Popen[str]]] = []
    try:
        for block in blocks(page):
            why = problem(block)
            assert why is None, f"{block.where}: {why}"
            if block.directive == "not-run":
                continue
            if block.directive == "file":
                target = folder / block.argument
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(block.text, encoding="utf-8")
                continue
            command = [sys.executable, "-"] if block.language == "python" else ["bash", "-e"]
            if block.directive == "background":
                proc = subprocess.Popen(
                    ["bash", "-c", block.text],
                    cwd=folder,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    start_new_session=True,  # SIGINT to its group, as Ctrl-C would
                )
                background.append((block, proc))
                continue
            done = subprocess.run(
                command,
                input=block.text,
                cwd=folder,
                env=env,
                capture_output=True,
                text=True,
                timeout=BLOCK_TIMEOUT,
            )
            assert done.returncode == 0, (
                f"{block.where}: exit {done.returncode}\n--- block\n{block.text}"
                f"--- stdout\n{done.stdout}--- stderr\n{done.stderr}"
            )
    finally:
        for block, proc in background:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
            try:
                output, _ = proc.communicate(timeout=SERVER_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                output, _ = proc.communicate()
                pytest.fail(f"{block.where}: did not stop on SIGINT\n{output[-3000:]}")
            assert proc.returncode == 0, f"{block.where}: exit {proc.returncode}\n{output[-3000:]}"


RUNNABLE = [p for p in PAGES if any(b.directive != "not-run" for b in blocks(p))]


@pytest.mark.parametrize("page", RUNNABLE, ids=[str(p.relative_to(ROOT)) for p in RUNNABLE])
def test_the_code_blocks_of_a_page_run(page: Path, tmp_path: Path) -> None:
    run_page(page, tmp_path)


_LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_links_between_pages_point_at_files_that_exist() -> None:
    broken = []
    for page in PAGES:
        for target in _LINK.findall(page.read_text(encoding="utf-8")):
            path = target.split("#", 1)[0]
            if not path or "://" in path or path.startswith("mailto:"):
                continue
            if not (page.parent / path).exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken, "\n".join(broken)
