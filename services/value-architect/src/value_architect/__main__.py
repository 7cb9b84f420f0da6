# Platform-owned: from the service template; `cruft update` merges template changes here.
"""Run the service: `python -m value_architect` (or `value-architect`).

`python -m value_architect asyncapi` prints the AsyncAPI document of its events.
"""

from event_chassis import run

from .service import create_service


def main() -> None:
    run(create_service)


if __name__ == "__main__":
    main()
