"""Every file in events/ through the real handler, in-process (moto + SMC sandbox over HTTP): the
documented status, outcome counts and SMC effect of events/cases.json (`tests.cases`)."""

from __future__ import annotations

import json

from tests import support
from tests.cases import EVENTS, check_every_case, use_example_credentials


def test_every_event_file_gets_its_documented_status_outcomes_and_smc_effect(stack):
    env = json.loads((EVENTS / "env.json").read_text())["WebhookFunction"]
    use_example_credentials(stack)
    example = {
        name: value
        for name, value in env.items()
        if name.startswith(("SMC_ALLOWED", "SMC_PROFILE", "SMC_TRANS"))
    }
    stack.set_env(**example)
    check_every_case(stack, lambda event: support.invoke(event)[:2])
