"""docs/integrate.md works as printed: each ```sh block is run with curl against a live server.

Each block's first line says the status it answers (``# answers 201: ...``); the blocks run in
order on the demo catalog with a token of its webshop channel, and ``$ORDER`` is the id of the
last order the guide created, as the guide tells the reader to keep it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from django.core.management import call_command

from apps.core.services import token_create
from apps.orders.models import Order

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(shutil.which("curl") is None, reason="the guide's commands need curl"),
]

GUIDE = Path(__file__).resolve().parents[3] / "docs" / "integrate.md"


def guide_commands() -> list[tuple[int, str]]:
    blocks = re.findall(r"```sh\n(.*?)```", GUIDE.read_text(), re.S)
    commands = []
    for block in blocks:
        expected = re.match(r"# answers (\d{3})", block)
        assert expected, f"a command of the guide does not say what it answers:\n{block}"
        commands.append((int(expected.group(1)), block))
    return commands


def run(block: str, env: dict[str, str]) -> tuple[int, str, object]:
    done = subprocess.run(["bash", "-c", block], env=env, capture_output=True, text=True, timeout=30, check=True)
    head, _, body = done.stdout.replace("\r\n", "\n").partition("\n\n")
    status = int(head.split()[1])
    return status, head, json.loads(body) if body.strip() else None


def test_every_command_of_the_guide_answers_what_it_says(live_server):
    call_command("loaddata", "demo_catalog", verbosity=0)
    env = {**os.environ, "STOCKROOM": live_server.url, "TOKEN": token_create(channel_code="shop1")}
    commands = guide_commands()
    assert len(commands) >= 10
    for expected, block in commands:
        status, head, body = run(block, env)
        assert status == expected, (block, head, body)
        if status >= 400:
            assert isinstance(body, dict) and {"code", "detail", "errors"} <= set(body), body
        if "Idempotent-Replayed: true" in block:
            assert "idempotent-replayed: true" in head.lower(), head
        if status == 201 and "/api/v1/orders/" in block:
            env["ORDER"] = str(body["id"])  # type: ignore[index]
    orders = dict(Order.objects.values_list("external_id", "status"))
    assert orders == {"10042": "fulfilled", "10043": "cancelled"}
