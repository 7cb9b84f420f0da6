# Team-owned: {{ cookiecutter.owner }} edits this file; template updates (cruft update) skip it.
"""The committed contract (contracts/asyncapi.yaml) is what the code declares today.

The platform's `./deploy-all.sh contracts` checks it against every other service's; a
stale one would let a change through unchecked. When this fails, regenerate and commit:
`python -m event_chassis.contract write`.
"""

from pathlib import Path

from event_chassis.contract import PATH, document, to_yaml

from {{ cookiecutter.package_name }}.service import create_service
from {{ cookiecutter.package_name }}.settings import Settings

SERVICE = Path(__file__).resolve().parents[1]


async def test_the_committed_contract_is_current(settings: Settings) -> None:
    committed = SERVICE / PATH
    assert committed.exists(), f"{PATH} is missing: python -m event_chassis.contract write"
    generated = to_yaml(document(create_service(settings)))

    assert committed.read_text() == generated, (
        f"{PATH} is stale: python -m event_chassis.contract write, then commit it"
    )
