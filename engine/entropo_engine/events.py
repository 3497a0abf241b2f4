"""Progress events: one JSON object per line on stdout, the TypeScript activity's progress feed."""

import json


def emit(event: str, **fields) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)
