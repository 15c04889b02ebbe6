"""A package only so that ``infra.local`` (``make up``'s stack, which the tests reuse) can be imported and run with
``python -m`` from the repository root. Nothing here ships: the wheel holds ``connector`` and ``functions`` only."""
