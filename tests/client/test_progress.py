"""Pull/push/load progress: redrawn per layer on a terminal, plain lines otherwise."""

from __future__ import annotations

import io

import pytest
from dockyard.client.progress import StreamError, display, progress_bar

PULL = [
    {"status": "Pulling from library/busybox", "id": "latest"},
    {"status": "Pulling fs layer", "progressDetail": {}, "id": "aaa"},
    {"status": "Pulling fs layer", "progressDetail": {}, "id": "bbb"},
    {"status": "Downloading", "progressDetail": {"current": 1_200_000, "total": 3_400_000},
     "id": "aaa"},
    {"status": "Downloading", "progressDetail": {"current": 500, "total": 1000}, "id": "bbb"},
    {"status": "Download complete", "progressDetail": {}, "id": "aaa"},
    {"status": "Pull complete", "progressDetail": {}, "id": "aaa"},
    {"status": "Pull complete", "progressDetail": {}, "id": "bbb"},
    {"status": "Digest: sha256:00"},
    {"status": "Status: Downloaded newer image for busybox:latest"},
]


def test_progress_bar_like_docker():
    bar = progress_bar({"current": 1_200_000, "total": 3_400_000})
    # 35% -> 17 "=" and a ">" in a 50-wide box, then the sizes right-aligned in 8 columns
    assert bar == "[" + "=" * 17 + ">" + " " * 32 + "] " + "   1.2MB/3.4MB"
    assert progress_bar({"current": 10, "total": 10}).startswith("[" + "=" * 50 + "]")
    assert progress_bar({}) == ""
    assert progress_bar({"current": 2048}) == " 2.048kB"
    assert progress_bar({"current": 1_200_000, "total": 3_400_000}, width=60) == \
        "   1.2MB/3.4MB"


def test_plain_lines_when_not_a_terminal():
    out = io.StringIO()
    display(PULL, out, tty=False)
    assert out.getvalue().splitlines() == [
        "latest: Pulling from library/busybox",
        "aaa: Pulling fs layer",
        "bbb: Pulling fs layer",
        "aaa: Download complete",
        "aaa: Pull complete",
        "bbb: Pull complete",
        "Digest: sha256:00",
        "Status: Downloaded newer image for busybox:latest",
    ]


def _screen(text: str) -> list[str]:
    """Replay the cursor movements docker's renderer uses onto a list of lines."""
    lines = [""]
    row = col = 0
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\x1b":
            j = i + 2
            while not text[j].isalpha():
                j += 1
            arg, cmd = text[i + 2:j], text[j]
            n = int(arg) if arg.isdigit() else 1
            if cmd == "A":
                row -= n
            elif cmd == "B":
                row += n
            elif cmd == "K":
                lines[row] = ""
            i = j + 1
            continue
        while row >= len(lines):
            lines.append("")
        if c == "\n":
            row += 1
            col = 0
            while row >= len(lines):
                lines.append("")
        elif c == "\r":
            col = 0
        else:
            cur = lines[row].ljust(col)
            lines[row] = cur[:col] + c + cur[col + 1:]
            col += 1
        i += 1
    return [line.rstrip() for line in lines if line.strip()]


def test_terminal_redraws_each_layer_in_place():
    out = io.StringIO()
    display(PULL[:5], out, tty=True)
    screen = _screen(out.getvalue())
    assert screen[0] == "latest: Pulling from library/busybox"
    assert screen[1].startswith("aaa: Downloading [=================>")
    assert screen[1].endswith("1.2MB/3.4MB")
    assert screen[2].startswith("bbb: Downloading [=========================>")
    assert len(screen) == 3  # one line per layer, redrawn
    out = io.StringIO()
    display(PULL, out, tty=True)
    screen = _screen(out.getvalue())
    assert screen[1] == "aaa: Pull complete" and screen[2] == "bbb: Pull complete"
    assert screen[-1] == "Status: Downloaded newer image for busybox:latest"


def test_in_stream_error_raises_with_the_message():
    with pytest.raises(StreamError, match="manifest unknown"):
        display([{"status": "x"}, {"errorDetail": {"message": "manifest unknown"},
                                   "error": "manifest unknown"}], io.StringIO(), tty=False)


def test_load_stream_and_aux():
    out = io.StringIO()
    aux = display([{"stream": "Loaded image: busybox:latest\n"},
                   {"aux": {"Tag": "v1", "Digest": "sha256:1", "Size": 5}}], out, tty=False)
    assert out.getvalue() == "Loaded image: busybox:latest\n"
    assert aux == [{"Tag": "v1", "Digest": "sha256:1", "Size": 5}]
